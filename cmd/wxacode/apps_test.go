package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
)

// appsFile writes an apps file into a folder of the test.
func appsFile(t testing.TB, text string) string {
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

// manyApps is a run of one worker serving many apps from an apps file
// against the simulator, every app with a campaign queued.
type manyApps struct {
	// apps is the number of apps the worker serves; one more app, in the
	// simulator but not in the file, gets a campaign too.
	apps int
	// limits are the apps' ceilings within per, in turn; the first is
	// also the simulator's (and the worker's default), the others go in
	// the file.
	limits []int
	per    time.Duration
	// work is how long each app's campaign lasts at its ceiling.
	work time.Duration
}

// appFigures are one app's calls in the simulator's log.
type appFigures struct {
	appid     string
	limit     int
	calls     int
	in        int // calls in the common window
	maxWindow int
	use       float64 // of the ceiling, over the common window
	errcodes  map[int]int
}

// manyAppsRun is what a run measured.
type manyAppsRun struct {
	apps []appFigures
	// span is the common window: from the last app's first call to the
	// first app's last call, when every app had work.
	span time.Duration
	// unservedCalls counts calls of the app no worker serves.
	unservedCalls int
	// cpu is the worker's CPU time (user and system) from its start to
	// the end of the last campaign.
	cpu      time.Duration
	codes    int
	worker   *proc
	env      []string
	unserved string // the campaign of the app no worker serves
}

func (m manyApps) appid(i int) string { return fmt.Sprintf("wx%016x", 0xa9000+i) }

func (m manyApps) limit(i int) int { return m.limits[i%len(m.limits)] }

// scenes is the size of app i's campaign: work at its ceiling.
func (m manyApps) scenes(i int) int {
	return int(float64(m.limit(i)) * m.work.Seconds() / m.per.Seconds())
}

// run starts the simulator, enqueues a campaign per app, runs one worker
// until every served campaign is done, and reads the call log.
func (m manyApps) run(t testing.TB, r *testenv.Redis) manyAppsRun {
	t.Helper()
	rate := func(n int) string { return fmt.Sprintf("%d/%s", n, m.per) }
	simArgs := []string{"--rate", rate(m.limits[0]), "--latency", "20ms-120ms"}
	dir := t.TempDir()
	var yaml strings.Builder
	yaml.WriteString("apps:\n")
	env := []string{
		"REDIS_URL=" + r.URL,
		"WXACODE_RATE=" + rate(m.limits[0]),
		// The simulator, Redis, the worker's apps and this test (and
		// other packages' tests) share two cores: keep 800 ms for the
		// spread between admission and arrival (utilisation at most
		// 30/30.8 = 97.4% for 30 s).
		"WXACODE_RATE_MARGIN=800ms",
	}
	for i := range m.apps + 1 {
		secret := fmt.Sprintf("%032x", 0x5ec000+i)
		simArgs = append(simArgs, "--app", m.appid(i)+":"+secret)
		if i == m.apps {
			break // served by no worker
		}
		fmt.Fprintf(&yaml, "  - appid: %s\n", m.appid(i))
		if i%2 == 0 {
			f := filepath.Join(dir, m.appid(i))
			if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&yaml, "    secret_file: %s\n", f)
		} else {
			fmt.Fprintf(&yaml, "    secret_env: SECRET_%d\n", i)
			env = append(env, fmt.Sprintf("SECRET_%d=%s", i, secret))
		}
		if m.limit(i) != m.limits[0] {
			fmt.Fprintf(&yaml, "    rate: %s\n", rate(m.limit(i)))
		}
	}
	_, base, callLog := startSimulator(t, "", simArgs...)
	env = append(env, "WECHAT_API_BASE="+base)
	path := appsFile(t, yaml.String())

	out := manyAppsRun{env: env, unserved: fmt.Sprintf("app%02d", m.apps)}
	for i := range m.apps + 1 {
		n := m.scenes(i)
		scenes := make([]string, n)
		for j := range scenes {
			scenes[j] = fmt.Sprintf("a%d-%d", i, j)
		}
		name := fmt.Sprintf("app%02d", i)
		_, stderr, code := run(t, env, strings.Join(scenes, "\n"), "enqueue", "--campaign", name, "--appid", m.appid(i), "--page", "pages/p/index", "--scenes", "-", "--batch-size", "40")
		if code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", name, code, stderr)
		}
		// No worker runs yet.
		if !strings.Contains(stderr, "note: no running worker serves "+m.appid(i)+" yet") {
			t.Errorf("enqueue %s did not say that no worker serves its app: %q", name, stderr)
		}
		if i < m.apps {
			out.codes += n
		}
	}
	out.worker = start(t, append(env, "WXACODE_APPS="+path), "worker")
	cpu0 := cpuTime(t, out.worker.cmd.Process.Pid)
	for i := range m.apps {
		waitFor(t, env, fmt.Sprintf("app%02d", i), 3*time.Minute+3*m.work, func(s statusOut) bool { return s.Done })
	}
	out.cpu = cpuTime(t, out.worker.cmd.Process.Pid) - cpu0

	times := map[string][]time.Time{}
	codes := map[string]map[int]int{}
	for _, e := range readCallLog(t, callLog) {
		if e.API != "getwxacodeunlimit" {
			continue
		}
		times[e.App] = append(times[e.App], e.Time)
		if codes[e.App] == nil {
			codes[e.App] = map[int]int{}
		}
		codes[e.App][e.Errcode]++
	}
	out.unservedCalls = len(times[m.appid(m.apps)])
	var from, to time.Time
	for i := range m.apps {
		ts := times[m.appid(i)]
		if len(ts) == 0 {
			t.Fatalf("app %s was never called", m.appid(i))
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		if from.IsZero() || ts[0].After(from) {
			from = ts[0]
		}
		if to.IsZero() || ts[len(ts)-1].Before(to) {
			to = ts[len(ts)-1]
		}
	}
	out.span = to.Sub(from)
	for i := range m.apps {
		ts := times[m.appid(i)]
		f := appFigures{appid: m.appid(i), limit: m.limit(i), calls: len(ts), maxWindow: maxInWindow(ts, m.per), errcodes: codes[m.appid(i)]}
		for _, tm := range ts {
			if !tm.Before(from) && !tm.After(to) {
				f.in++
			}
		}
		// n calls in [from, to] span n-1 gaps.
		if out.span > 0 {
			f.use = float64(f.in-1) / out.span.Seconds() / (float64(f.limit) / m.per.Seconds())
		}
		out.apps = append(out.apps, f)
	}
	return out
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// TestManyAppsOneWorker: one worker process serves 20 apps from an apps
// file (two ceilings, secrets from files and variables), each with a
// campaign queued, and keeps every app at ≥ 95% of its own ceiling at the
// same time, with no window over any app's N, no 45009 and no batch
// handed back; a campaign of a 21st app, which the worker does not serve,
// is never called and is reported unserved.
func TestManyAppsOneWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// Not parallel: the figure is each app's share of its ceiling, which
	// the other end-to-end tests' load would blur.
	r := testenv.NewRedis(t)
	m := manyApps{apps: 20, limits: []int{240, 120}, per: 30 * time.Second, work: 40 * time.Second}
	res := m.run(t, r)
	env := res.env

	// The 21st app's campaign: unserved, in status and on the dashboard,
	// while the worker still runs.
	out, stderr, code := run(t, env, "", "status", res.unserved, "--json")
	var st struct {
		statusOut
		Workers  int  `json:"workers"`
		Unserved bool `json:"unserved"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status %s: exit %d, %v: %s %s", res.unserved, code, err, out, stderr)
	}
	if !st.Unserved || st.Workers != 0 || st.Succeeded+st.Failed != 0 {
		t.Errorf("status of the 21st app's campaign: %+v; want unserved, 0 workers, nothing made", st)
	}
	if text, _, _ := run(t, env, "", "status", res.unserved); !strings.Contains(text, "unserved: no running worker serves "+m.appid(m.apps)) {
		t.Errorf("status text of %s does not say it is unserved: %q", res.unserved, text)
	}
	out, _, _ = run(t, env, "", "status", "app03", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Unserved || st.Workers != 1 {
		t.Errorf("status of a served app's campaign: %s; want 1 worker, not unserved", out)
	}
	dashboard := startURL(t, env, "serve", "--addr", "127.0.0.1:0")
	metrics := scrape(t, dashboard+"/metrics")
	if v := metricValue(metrics, "wxacode_campaign_unserved", `campaign="`+res.unserved+`"`); v != 1 {
		t.Errorf("/metrics: wxacode_campaign_unserved of %s = %v, want 1", res.unserved, v)
	}
	if v := metricValue(metrics, "wxacode_app_workers", `appid="`+m.appid(5)+`"`); v != 1 {
		t.Errorf("/metrics: wxacode_app_workers of %s = %v, want 1", m.appid(5), v)
	}
	if page := scrape(t, dashboard+"/campaigns/"+res.unserved); !strings.Contains(page, "no running worker serves app "+m.appid(m.apps)) {
		t.Errorf("the dashboard's page of %s does not say it is unserved", res.unserved)
	}

	if res.unservedCalls != 0 {
		t.Errorf("the 21st app, which no worker serves, was called %d times", res.unservedCalls)
	}
	// Its batches were never pulled: all still pending in its own queue,
	// none handed back to wait for a retry.
	q, _ := campaign.QueueFor(m.appid(m.apps), "default")
	info, err := asynq.NewInspectorFromRedisClient(r.Client).GetQueueInfo(q)
	batches := (m.scenes(m.apps) + 39) / 40
	if err != nil || info.Pending != batches || info.Retry != 0 || info.Active != 0 || info.Processed != 0 {
		t.Errorf("queue %s of the unserved app: %+v, %v; want its %d batches pending, none taken", q, info, err, batches)
	}
	if res.span < 20*time.Second {
		t.Fatalf("the apps ran at the same time for only %s", res.span)
	}
	worst := 1e9
	for i, f := range res.apps {
		worst = min(worst, f.use)
		t.Logf("app %s: ceiling %d/%s, %d calls, %.1f%% of the ceiling over the common %s, largest window %d", f.appid, f.limit, m.per, f.calls, 100*f.use, res.span.Round(time.Millisecond), f.maxWindow)
		want := m.scenes(i)
		if f.calls != want || f.errcodes[0] != want {
			t.Errorf("app %s: %d calls, answers by errcode %v; want %d images, one call per scene", f.appid, f.calls, f.errcodes, want)
		}
		if f.maxWindow > f.limit {
			t.Errorf("app %s: %d calls in one %s window, over its ceiling %d", f.appid, f.maxWindow, m.per, f.limit)
		}
		if f.use < 0.95 {
			t.Errorf("app %s ran at %.1f%% of its ceiling while every app had work; want at least 95%%", f.appid, 100*f.use)
		}
	}
	t.Logf("%d apps on one worker: the slowest ran at %.1f%% of its ceiling over %s; worker CPU %s for %d codes", m.apps, 100*worst, res.span.Round(time.Millisecond), res.cpu, res.codes)
	for _, line := range strings.Split(res.worker.out.String(), "\n") {
		if strings.Contains(line, "handed back") || strings.Contains(line, "no WeChat client") ||
			strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("worker log: %s", line)
		}
	}
}

// BenchmarkManyApps runs one worker serving 1, 5, 20 and 50 apps, every
// app with a campaign at its ceiling and the ceilings together at 160
// calls a second (4800 per 30 s), and reports the slowest app's share of its ceiling
// (min_use_%), the largest window of any app against its N
// (max_window/N) and the worker's CPU per code. Run with -benchtime 1x.
func BenchmarkManyApps(b *testing.B) {
	for _, n := range []int{1, 5, 20, 50} {
		b.Run(fmt.Sprintf("apps=%d", n), func(b *testing.B) {
			for range b.N {
				r := testenv.NewRedis(b)
				m := manyApps{apps: n, limits: []int{4800 / n}, per: 30 * time.Second, work: 40 * time.Second}
				res := m.run(b, r)
				worst, over := 1e9, 0.0
				for _, f := range res.apps {
					worst = min(worst, f.use)
					over = max(over, float64(f.maxWindow)/float64(f.limit))
				}
				b.ReportMetric(100*worst, "min_use_%")
				b.ReportMetric(over, "max_window/N")
				b.ReportMetric(float64(res.cpu.Microseconds())/float64(res.codes), "cpu_µs/code")
				b.ReportMetric(float64(res.unservedCalls), "unserved_calls")
			}
		})
	}
}
