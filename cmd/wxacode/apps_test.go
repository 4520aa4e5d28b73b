package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
)

// appsFile writes an apps file into a folder of the test.
func appsFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAppsFileBadInput: every mistake in an apps file is bad usage that
// names the file, the line and the field, before anything connects, and
// no secret is ever shown.
func TestAppsFileBadInput(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Zq81xAppsFile"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"not yaml", "apps: [", nil, "yaml:"},
		{"empty", "", nil, "empty; want a list under apps:"},
		{"other key", "applications: []\n", nil, `:1: unknown key "applications"`},
		{"no apps", "apps: []\n", nil, "apps: want a list of at least one app"},
		{"bad appid", "apps:\n  - appid: wx123\n    secret_env: S\n", nil, `:2: appid "wx123": want wx and 16`},
		{"no appid", "apps:\n  - secret_env: S\n", nil, ":2: appid is missing"},
		{"secret inline", "apps:\n  - appid: wx00000000000000b1\n    secret: " + secret + "\n", nil, ":3: secret: the file holds no secret"},
		{"unknown field", "apps:\n  - appid: wx00000000000000b1\n    secret_env: S\n    ratee: 1/1s\n", map[string]string{"S": secret}, `:4: unknown field "ratee"`},
		{"no credential", "apps:\n  - appid: wx00000000000000b1\n", nil, ":2: app wx00000000000000b1: want exactly one of secret_file, secret_env and token_url (has 0)"},
		{"two credentials", "apps:\n  - appid: wx00000000000000b1\n    secret_env: S\n    secret_file: " + secretFile + "\n", map[string]string{"S": secret}, "(has 2)"},
		{"env unset", "apps:\n  - appid: wx00000000000000b1\n    secret_env: NOT_SET_HERE\n", nil, ":3: secret_env of wx00000000000000b1: variable NOT_SET_HERE is not set"},
		{"file missing", "apps:\n  - appid: wx00000000000000b1\n    secret_file: /nonexistent/secret\n", nil, ":3: secret_file of wx00000000000000b1: no such file or directory"},
		{"file empty", "apps:\n  - appid: wx00000000000000b1\n    secret_file: " + emptyFile + "\n", nil, "is empty"},
		{"bad token url", "apps:\n  - appid: wx00000000000000b1\n    token_url: ftp://x\n", nil, ":3: token_url of wx00000000000000b1"},
		{"bad rate", "apps:\n  - appid: wx00000000000000b1\n    secret_env: S\n    rate: fast\n", map[string]string{"S": secret}, `:4: rate "fast" of wx00000000000000b1: want N/DURATION`},
		{"duplicate", "apps:\n  - appid: wx00000000000000b1\n    secret_env: S\n  - appid: wx00000000000000b1\n    secret_env: S\n", map[string]string{"S": secret}, ":4: appid wx00000000000000b1 is already listed at line 2"},
		{"twice with WECHAT_APPID", "apps:\n  - appid: wx00000000000000b1\n    secret_env: S\n", map[string]string{"S": secret, "WECHAT_APPID": "wx00000000000000b1", "WECHAT_SECRET": secret}, "appid wx00000000000000b1 is both --appid/WECHAT_APPID and in WXACODE_APPS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := appsFile(t, tt.yaml)
			env := map[string]string{
				"WXACODE_APPS": path,
				// Nothing listens there: a check that came after a
				// connection would fail otherwise, with exit 1.
				"REDIS_URL":   "redis://127.0.0.1:1/0",
				"STORAGE_URL": "file://" + t.TempDir(),
			}
			for k, v := range tt.env {
				env[k] = v
			}
			var stdout, stderr bytes.Buffer
			code := Main([]string{"worker"}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tt.want)
			}
			if tt.name != "not yaml" && tt.name != "empty" && !strings.Contains(stderr.String(), path) {
				t.Errorf("stderr %q does not name the file %s", stderr.String(), path)
			}
			if strings.Contains(stderr.String(), secret) {
				t.Errorf("stderr shows the secret: %q", stderr.String())
			}
		})
	}
}

// TestNoAppToServe: a worker with neither WECHAT_APPID nor WXACODE_APPS
// says how to give it one.
func TestNoAppToServe(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STORAGE_URL": "file://" + t.TempDir()}
	code := Main([]string{"worker"}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	if code != exitUsage || !strings.Contains(stderr.String(), "no app to serve: set WECHAT_APPID") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	code = Main([]string{"worker", "--queues", "urgent:5"}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	if code != exitUsage || !strings.Contains(stderr.String(), `--queues "urgent:5": want a priority (high, default, low)`) {
		t.Errorf("--queues urgent:5: exit %d, stderr %q", code, stderr.String())
	}
}

// appsRate measures one app's calls in the call log.
type appsRate struct {
	calls     int
	in        int // calls in the common window
	maxWindow int
	limit     int
}

// TestManyAppsOneWorker: one worker process serves 20 apps from an apps
// file, each with campaigns queued, and keeps every app at ≥ 95% of its
// own ceiling at the same time, with no window over any app's N, no 45009
// and no batch handed back; a campaign of a 21st app, which the worker
// does not serve, is never called and is reported unserved.
func TestManyAppsOneWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// Not parallel: the figure is each app's share of its ceiling, which
	// the other end-to-end tests' load would blur.
	r := testenv.NewRedis(t)
	const (
		apps = 20
		per  = 10 * time.Second
		// Apps 0-9 run at the file's rate, apps 10-19 at the default.
		fileRate, fileN = "40/10s", 40
		defRate, defN   = "80/10s", 80
	)
	appid := func(i int) string { return fmt.Sprintf("wx%016x", 0xa9000+i) }
	simArgs := []string{"--rate", defRate, "--latency", "20ms-120ms"}
	dir := t.TempDir()
	var yaml strings.Builder
	yaml.WriteString("apps:\n")
	env := []string{
		"REDIS_URL=" + r.URL,
		"WXACODE_RATE=" + defRate,
		// The simulator, Redis, the worker's 20 apps and this test share
		// two cores: keep 300 ms for the spread between admission and
		// arrival (utilisation at most 10/10.3 = 97.1%).
		"WXACODE_RATE_MARGIN=300ms",
	}
	for i := range apps + 1 {
		secret := fmt.Sprintf("%032x", 0x5ec000+i)
		simArgs = append(simArgs, "--app", appid(i)+":"+secret)
		if i == apps {
			break // the 21st app: in the simulator, served by no worker
		}
		fmt.Fprintf(&yaml, "  - appid: %s\n", appid(i))
		if i%2 == 0 {
			f := filepath.Join(dir, appid(i))
			if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&yaml, "    secret_file: %s\n", f)
		} else {
			fmt.Fprintf(&yaml, "    secret_env: SECRET_%d\n", i)
			env = append(env, fmt.Sprintf("SECRET_%d=%s", i, secret))
		}
		if i < apps/2 {
			fmt.Fprintf(&yaml, "    rate: %s\n", fileRate)
		}
	}
	_, base, callLog := startSimulator(t, "", simArgs...)
	env = append(env, "WECHAT_API_BASE="+base)
	path := appsFile(t, yaml.String())

	// About 35 s of work for every app at its ceiling.
	sizes := map[int]int{}
	for i := range apps + 1 {
		n := 8 * 35
		if i < apps/2 {
			n = 4 * 35
		}
		sizes[i] = n
		scenes := make([]string, n)
		for j := range scenes {
			scenes[j] = fmt.Sprintf("a%d-%d", i, j)
		}
		name := fmt.Sprintf("app%02d", i)
		if _, stderr, code := run(t, env, strings.Join(scenes, "\n"), "enqueue", "--campaign", name, "--appid", appid(i), "--page", "pages/p/index", "--scenes", "-", "--batch-size", "40"); code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", name, code, stderr)
		}
	}
	worker := start(t, append(env, "WXACODE_APPS="+path), "worker")
	for i := range apps {
		waitFor(t, env, fmt.Sprintf("app%02d", i), 3*time.Minute, func(s statusOut) bool { return s.Done })
	}

	// The 21st app's campaign: unserved, in status and on the dashboard,
	// while the worker still runs.
	out, stderr, code := run(t, env, "", "status", "app20", "--json")
	var st struct {
		statusOut
		Workers  int  `json:"workers"`
		Unserved bool `json:"unserved"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status app20: exit %d, %v: %s %s", code, err, out, stderr)
	}
	if !st.Unserved || st.Workers != 0 || st.Succeeded+st.Failed != 0 {
		t.Errorf("status of the 21st app's campaign: %+v; want unserved, 0 workers, nothing made", st)
	}
	if text, _, _ := run(t, env, "", "status", "app20"); !strings.Contains(text, "unserved: no running worker serves "+appid(apps)) {
		t.Errorf("status text of app20 does not say it is unserved: %q", text)
	}
	out, _, _ = run(t, env, "", "status", "app03", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Unserved || st.Workers != 1 {
		t.Errorf("status of a served app's campaign: %s; want 1 worker, not unserved", out)
	}
	dashboard := startURL(t, env, "serve", "--addr", "127.0.0.1:0")
	m := scrape(t, dashboard+"/metrics")
	if v := metricValue(m, "wxacode_campaign_unserved", `campaign="app20"`); v != 1 {
		t.Errorf("/metrics: wxacode_campaign_unserved of app20 = %v, want 1", v)
	}
	if v := metricValue(m, "wxacode_app_workers", `appid="`+appid(5)+`"`); v != 1 {
		t.Errorf("/metrics: wxacode_app_workers of %s = %v, want 1", appid(5), v)
	}

	// Each app's calls, from the simulator's log.
	entries := readCallLog(t, callLog)
	times := map[string][]time.Time{}
	for _, e := range entries {
		if e.API != "getwxacodeunlimit" {
			continue
		}
		if e.Errcode != 0 {
			t.Errorf("call of %s at %s answered %d", e.App, e.Time.Format(time.StampMicro), e.Errcode)
		}
		times[e.App] = append(times[e.App], e.Time)
	}
	if n := len(times[appid(apps)]); n != 0 {
		t.Errorf("the 21st app, which no worker serves, was called %d times", n)
	}
	// The common window: from the last app's first call to the first
	// app's last call; every app is busy throughout.
	var from, to time.Time
	for i := range apps {
		ts := times[appid(i)]
		if len(ts) != sizes[i] {
			t.Errorf("app %s: %d calls, want %d (one per scene)", appid(i), len(ts), sizes[i])
			continue
		}
		maxInWindow(ts, per) // sorts
		if from.IsZero() || ts[0].After(from) {
			from = ts[0]
		}
		if to.IsZero() || ts[len(ts)-1].Before(to) {
			to = ts[len(ts)-1]
		}
	}
	span := to.Sub(from)
	if span < 20*time.Second {
		t.Fatalf("the apps ran at the same time for only %s", span)
	}
	worst := 1e9
	for i := range apps {
		ts := times[appid(i)]
		rr := appsRate{calls: len(ts), limit: defN, maxWindow: maxInWindow(ts, per)}
		if i < apps/2 {
			rr.limit = fileN
		}
		for _, tm := range ts {
			if !tm.Before(from) && !tm.After(to) {
				rr.in++
			}
		}
		// n calls in [from, to] span n-1 gaps.
		use := float64(rr.in-1) / span.Seconds() / (float64(rr.limit) / per.Seconds())
		worst = min(worst, use)
		t.Logf("app %s: ceiling %d/%s, %d calls, %.1f%% of the ceiling over the common %s, largest window %d", appid(i), rr.limit, per, rr.calls, 100*use, span.Round(time.Millisecond), rr.maxWindow)
		if rr.maxWindow > rr.limit {
			t.Errorf("app %s: %d calls in one %s window, over its ceiling %d", appid(i), rr.maxWindow, per, rr.limit)
		}
		if use < 0.95 {
			t.Errorf("app %s ran at %.1f%% of its ceiling while every app had work; want at least 95%%", appid(i), 100*use)
		}
	}
	t.Logf("20 apps on one worker: the slowest ran at %.1f%% of its ceiling over %s", 100*worst, span.Round(time.Millisecond))
	for _, line := range strings.Split(worker.out.String(), "\n") {
		if strings.Contains(line, "handed back") || strings.Contains(line, "no WeChat client") ||
			strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("worker log: %s", line)
		}
	}
}
