package main

// End-to-end tests of campaigns of interfaces A and C: the built binary
// against real Redis, real MinIO and the simulator.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/wechat"
)

// acPaths returns n distinct paths with query syntax.
func acPaths(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("pages/%s/index?id=%d&from=box/%d", prefix, i, i)
	}
	return out
}

// ledger reads the app's lifetime-quota ledger.
func ledger(t *testing.T, r *testenv.Redis) int64 {
	t.Helper()
	n, err := r.Client.Get(context.Background(), wechat.QuotaKey(simulator.DemoAppID)).Int64()
	if err != nil {
		t.Fatalf("quota ledger: %v", err)
	}
	return n
}

// TestLimitedEndToEnd runs a campaign of interface A (with a path too long
// for a readable key) and one of C through the built binary, killing the
// worker with SIGKILL halfway: every path is stored once, reads back as
// its path, is exported with its key, and the ledger counts what the
// simulator saw.
func TestLimitedEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	t.Parallel()
	began := time.Now()
	r := testenv.NewRedis(t)
	m := testenv.NewMinIO(t)
	_, base, callLog := startSimulator(t, "")
	env := append(m.Env(),
		"REDIS_URL="+r.URL,
		"WECHAT_APPID="+simulator.DemoAppID,
		"WECHAT_SECRET="+simulator.DemoSecret,
		"WECHAT_API_BASE="+base,
		// Slow enough that the worker is killed with most paths to go.
		"WXACODE_RATE=20/1s",
	)
	long := "pages/long/index?q=" + strings.Repeat("x", 1005) // 1024 bytes
	aPaths := append(acPaths("a", 59), long)
	cPaths := acPaths("c", 40)
	for _, tc := range []struct {
		name, iface string
		paths       []string
		extra       []string
	}{
		{"kind-a", "a", aPaths, []string{"--width", "1280"}},
		{"kind-c", "c", cPaths, nil},
	} {
		in := strings.Join(append(tc.paths, tc.paths[0]), "\n") + "\n" // one duplicate
		args := append([]string{"enqueue", "--campaign", tc.name, "--interface", tc.iface, "--paths", "-", "--batch-size", "20"}, tc.extra...)
		stdout, stderr, code := run(t, env, in, args...)
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d paths (1 duplicates dropped)", len(tc.paths))) {
			t.Fatalf("enqueue %s: exit %d: %s %s", tc.name, code, stdout, stderr)
		}
	}
	w := start(t, env, "worker")
	waitFor(t, env, "kind-a", time.Minute, func(s statusOut) bool { return s.Succeeded >= 15 })
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	atKill := status(t, env, "kind-a")
	start(t, env, "worker")
	total := len(aPaths) + len(cPaths)
	for _, tc := range []struct {
		name  string
		paths []string
	}{{"kind-a", aPaths}, {"kind-c", cPaths}} {
		s := waitFor(t, env, tc.name, 2*time.Minute, func(s statusOut) bool { return s.Done })
		if s.Succeeded != int64(len(tc.paths)) || s.Failed != 0 {
			t.Fatalf("%s: status %+v, want all %d succeeded", tc.name, s, len(tc.paths))
		}
	}
	stdout, _, _ := run(t, env, "", "status", "kind-c", "--json")
	var st struct {
		Interface string `json:"interface"`
		Page      string `json:"page"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.Interface != "c" || st.Page != "" {
		t.Errorf("status --json of kind-c: %s (%v); want interface c, no page", stdout, err)
	}

	// The simulator's call log: every A and C call, and the codes made.
	codes, calls := map[string]int{}, 0
	for _, c := range readCallLog(t, callLog) {
		if c.API != "getwxacode" && c.API != "createwxaqrcode" {
			continue
		}
		calls++
		if c.Errcode == 0 && c.SHA256 != "" {
			codes[c.API+" "+c.Page]++
		}
	}
	twice := 0
	for _, n := range codes {
		if n > 1 {
			twice++
		}
	}
	used := ledger(t, r)
	t.Logf("%d paths stored; the killed worker had %d of %d A paths done; simulator: %d A/C calls, %d codes, %d paths paid twice; ledger: %d",
		total, atKill.Succeeded, len(aPaths), calls, len(codes), twice, used)
	// Every call sent took a unit and none was refunded (no errcode came
	// back). A worker killed between its unit and the call's arrival keeps
	// the unit of a call never made: one at most at this ceiling.
	if used < int64(calls) || used > int64(calls)+1 || len(codes) != total {
		t.Errorf("ledger %d, simulator saw %d A/C calls making codes for %d paths: want the ledger to count every call (±1 at the kill) and every path made", used, calls, len(codes))
	}

	// Export: one row per path with its key; every object holds the image
	// of its path, stored once.
	s3c := m.Server.S3()
	keys := map[string]bool{}
	for _, tc := range []struct {
		name  string
		paths []string
	}{{"kind-a", aPaths}, {"kind-c", cPaths}} {
		rows := exportRows(t, env, tc.name)
		if len(rows) != len(tc.paths) {
			t.Fatalf("%s: export has %d rows, want %d", tc.name, len(rows), len(tc.paths))
		}
		for i, row := range rows {
			if row["path"] != tc.paths[i] || row["scene"] != "" || row["status"] != "succeeded" || keys[row["key"]] {
				t.Fatalf("%s row %d: %v; want path %q, no scene, a key of its own", tc.name, i, row, tc.paths[i])
			}
			keys[row["key"]] = true
			if tc.paths[i] == long {
				if !strings.HasPrefix(row["key"], "kind-a/_sha256/") {
					t.Errorf("1024-byte path: key %q, want the digest form", row["key"])
				}
			} else if want := "pages(2f)" + tc.name[len("kind-"):] + "(2f)index(3f)id(3d)"; !strings.HasPrefix(row["key"], tc.name+"/"+want) {
				t.Errorf("%s: key %q, want the readable %s/%s…", tc.paths[i], row["key"], tc.name, want)
			}
			body, sum := getObject(t, s3c, m.Bucket, row["key"])
			if sum != row["sha256"] {
				t.Fatalf("%s: bytes differ from the export's sha256", row["key"])
			}
			if i%5 == 0 || tc.paths[i] == long {
				if text, err := simulator.DecodeImageText(body); err != nil || text != tc.paths[i] {
					t.Fatalf("%s reads %.60q, %v; want its path", row["key"], text, err)
				}
			}
		}
	}
	var objects int
	pager := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: aws.String(m.Bucket)})
	for pager.HasMorePages() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".jpg") || strings.HasSuffix(k, ".png") {
				objects++
			}
		}
	}
	if objects != total {
		t.Errorf("bucket holds %d codes, want %d: one per path", objects, total)
	}
	t.Logf("A and C end to end: %d paths in %s", total, time.Since(began).Round(time.Millisecond))
}

// TestLimitedQuota: a campaign past what is left of the lifetime quota is
// refused whole (exit 2, how many remain, nothing in Redis, nothing
// called); one that slipped past the check (the ledger moved after it was
// enqueued) makes exactly the calls left and fails the rest with the
// quota's reason.
func TestLimitedQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	t.Parallel()
	r := testenv.NewRedis(t)
	_, base, callLog := startSimulator(t, "")
	env := []string{
		"REDIS_URL=" + r.URL, "STORAGE_URL=file://" + t.TempDir(),
		"WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=" + simulator.DemoSecret,
		"WECHAT_API_BASE=" + base, "WXACODE_RATE=6000/1m",
	}
	ctx := context.Background()
	// Bad usage first: nothing written.
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"page with A", "pages/a?x=1\n", []string{"--interface", "a", "--paths", "-", "--page", "pages/a"}, "--page: interface a does not take it"},
		{"hyaline with C", "pages/a?x=1\n", []string{"--interface", "c", "--paths", "-", "--hyaline"}, "--hyaline: interface c does not take it"},
		{"scenes with C", "x\n", []string{"--interface", "c", "--scenes", "-"}, "--scenes: interface c does not take it"},
		{"paths with B", "x\n", []string{"--page", "pages/a", "--paths", "-"}, "--paths: interface b takes --scenes"},
		{"unknown interface", "x\n", []string{"--interface", "d", "--paths", "-"}, `--interface: interface "d": want a, b or c`},
		{"C path of 129", "ok?x=1\n" + strings.Repeat("p", 129) + "\n", []string{"--interface", "c", "--paths", "-"}, "2: path is 129 bytes long: at most 128"},
	} {
		_, stderr, code := run(t, env, tc.stdin, append([]string{"enqueue", "--campaign", "bad"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, stderr, tc.want)
		}
	}
	if n, _ := r.Client.DBSize(ctx).Result(); n != 0 {
		t.Fatalf("bad usage left %d keys in Redis", n)
	}

	if err := r.Client.Set(ctx, wechat.QuotaKey(simulator.DemoAppID), 99_990, 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, env, strings.Join(acPaths("big", 20), "\n"), "enqueue", "--campaign", "too-many", "--interface", "c", "--paths", "-")
	want := "quota: 20 codes asked, 10 of 100,000 remain for " + simulator.DemoAppID
	if code != 2 || !strings.Contains(stderr, want) {
		t.Fatalf("20 paths with 10 left: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if keys, _ := r.Client.Keys(ctx, "*too-many*").Result(); len(keys) > 0 {
		t.Fatalf("refused campaign left %q in Redis", keys)
	}
	if names, _ := r.Client.ZRange(ctx, "wxacode:campaigns", 0, -1).Result(); len(names) > 0 {
		t.Fatalf("refused campaign listed: %q", names)
	}

	// Ten paths fit exactly; then the ledger moves on (another tool, or
	// a campaign enqueued meanwhile): five are left for ten.
	paths := acPaths("slip", 10)
	if stdout, stderr, code := run(t, env, strings.Join(paths, "\n"), "enqueue", "--campaign", "slipped", "--interface", "a", "--paths", "-"); code != 0 {
		t.Fatalf("10 paths with 10 left: exit %d: %s %s", code, stdout, stderr)
	}
	if err := r.Client.Set(ctx, wechat.QuotaKey(simulator.DemoAppID), 99_995, 0).Err(); err != nil {
		t.Fatal(err)
	}
	start(t, env, "worker")
	s := waitFor(t, env, "slipped", time.Minute, func(s statusOut) bool { return s.Done })
	if s.Succeeded != 5 || s.Failed != 5 {
		t.Fatalf("status %+v: want 5 succeeded, 5 failed", s)
	}
	for _, row := range exportRows(t, env, "slipped") {
		if row["status"] == "failed" && !strings.Contains(row["error"], "lifetime quota of interfaces A and C used up") {
			t.Errorf("row %v: want the quota's reason", row)
		}
	}
	var calls []string
	for _, c := range readCallLog(t, callLog) {
		if c.API == "getwxacode" || c.API == "createwxaqrcode" {
			calls = append(calls, c.Page)
			if c.Errcode != 0 {
				t.Errorf("simulator answered %d for %s", c.Errcode, c.Page)
			}
		}
	}
	if len(calls) != 5 || ledger(t, r) != wechat.DefaultQuotaLimit {
		t.Fatalf("%d A/C calls reached the simulator (%q), ledger %d: want exactly 5, the ledger at the limit", len(calls), calls, ledger(t, r))
	}
	for _, p := range calls {
		if !strings.HasPrefix(p, "pages/slip/") {
			t.Errorf("call for %q: not a path of the accepted campaign", p)
		}
	}
}
