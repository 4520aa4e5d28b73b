package main

// End-to-end tests: the built binary against real Redis, real MinIO and the
// simulator, each in its own process.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var built struct {
	once sync.Once
	path string
	err  error
}

// binary builds wxacode once per test binary.
func binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "wxacode-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "wxacode")
		out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// proc is a wxacode process started by a test.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start starts the binary with env (added to a minimal environment) and
// args; it is killed when the test ends.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	// Codes go to a folder of the test unless env names a store: serve
	// opens storage too, and the default would be ./wxacodes here.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LOG_FORMAT=json", "STORAGE_URL=file://" + t.TempDir()}, env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// run runs the binary to its end and returns stdout, stderr and the exit
// code.
func run(t testing.TB, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	// Codes go to a folder of the test unless env names a store: serve
	// opens storage too, and the default would be ./wxacodes here.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LOG_FORMAT=json", "STORAGE_URL=file://" + t.TempDir()}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// demoQueue is the default-priority queue of the simulator's demo app.
var demoQueue, _ = campaign.QueueFor(simulator.DemoAppID, "default")

var foundStoredRE = regexp.MustCompile(`"found_stored":([0-9]+)`)

var urlRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+`)

// startSimulator starts `wxacode simulate` on a free port (or addr) and
// returns its base URL and call log path.
func startSimulator(t testing.TB, addr string, args ...string) (*proc, string, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	p := start(t, nil, append([]string{"simulate", "--addr", addr, "--log", logPath}, args...)...)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if u := urlRE.FindString(p.out.String()); u != "" {
			return p, u, logPath
		}
		select {
		case <-p.done:
			t.Fatalf("simulator exited: %s", p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("simulator did not say where it listens: %s", p.out.String())
	return nil, "", ""
}

// startURL starts a wxacode server command and returns the base URL it
// prints.
func startURL(t testing.TB, env []string, args ...string) string {
	t.Helper()
	p := start(t, env, args...)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if u := urlRE.FindString(p.out.String()); u != "" {
			return u
		}
		select {
		case <-p.done:
			t.Fatalf("%v exited: %s", args, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%v did not say where it listens: %s", args, p.out.String())
	return ""
}

// scrape returns the text of a Prometheus endpoint.
func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// metricValue sums the samples of a metric whose labels contain every
// matcher.
func metricValue(text, name string, matchers ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range matchers {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

type statusOut struct {
	Campaign  string `json:"campaign"`
	Total     int64  `json:"total"`
	Succeeded int64  `json:"succeeded"`
	Failed    int64  `json:"failed"`
	Pending   int64  `json:"pending"`
	Done      bool   `json:"done"`
}

func status(t testing.TB, env []string, name string) statusOut {
	t.Helper()
	stdout, stderr, code := run(t, env, "", "status", name, "--json")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	var s statusOut
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("status --json: %v: %q", err, stdout)
	}
	return s
}

// waitFor polls status until cond holds or the timeout passes.
func waitFor(t testing.TB, env []string, name string, timeout time.Duration, cond func(statusOut) bool) statusOut {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := status(t, env, name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s: condition not met after %s: %+v", name, timeout, s)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func readCallLog(t testing.TB, path string) []simulator.LogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []simulator.LogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e simulator.LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("call log line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// maxInWindow returns the most times in any half-open window of length d.
func maxInWindow(times []time.Time, d time.Duration) int {
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= d {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func exportRows(t *testing.T, env []string, name string) []map[string]string {
	t.Helper()
	stdout, stderr, code := run(t, env, "", "export", name)
	if code != 0 {
		t.Fatalf("export exit %d: %s", code, stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("export csv: %v", err)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		rows = append(rows, m)
	}
	return rows
}

// getObject reads an object of the bucket and the lowercase hex SHA-256
// of its bytes.
func getObject(t testing.TB, s3c *s3.Client, bucket, key string) ([]byte, string) {
	t.Helper()
	obj, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	body, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	sum := sha256.Sum256(body)
	return body, hex.EncodeToString(sum[:])
}

func e2eScenes(n int) []string {
	special := []string{"a/b", "q?x=1", "h#1", "a&b=c", "..", ".", "~", "(x)", "x.y.z", "../etc", "A=1&B=2", "CON", "con", "~/.", "id=7&from=poster", "a(b)c~d.e"}
	out := append([]string{}, special...)
	for i := 0; len(out) < n; i++ {
		out = append(out, fmt.Sprintf("sku%05d", i))
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	t.Parallel()
	r := testenv.NewRedis(t)
	m := testenv.NewMinIO(t)
	const rate = "600/10s"
	_, base, callLog := startSimulator(t, "", "--rate", rate, "--busy-rate", "0.03", "--5xx-rate", "0.01",
		"--token-invalid-rate", "0.01", "--latency", "5ms-80ms", "--token-lifetime", "20s", "--seed", "7")
	env := append(m.Env(),
		"REDIS_URL="+r.URL,
		"WECHAT_APPID="+simulator.DemoAppID,
		"WECHAT_SECRET="+simulator.DemoSecret,
		"WECHAT_API_BASE="+base,
		"WXACODE_RATE="+rate,
		// Three workers, MinIO, Redis, the simulator and this test share two
		// cores: give the spread between admission and arrival 200 ms.
		"WXACODE_RATE_MARGIN=400ms",
	)
	scenes := e2eScenes(1500)
	stdout, stderr, code := run(t, env, strings.Join(scenes, "\r\n")+"\r\n", "enqueue", "--campaign", "e2e", "--page", "pages/p/index", "--scenes", "-", "--batch-size", "100")
	if code != 0 {
		t.Fatalf("enqueue exit %d: %s %s", code, stdout, stderr)
	}
	dashboard := startURL(t, env, "serve", "--addr", "127.0.0.1:0")
	var workers []*proc
	var workerMetrics []string
	startWorker := func() {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		workers = append(workers, start(t, env, "worker", "--metrics-addr", addr))
		workerMetrics = append(workerMetrics, "http://"+addr)
	}
	for range 3 {
		startWorker()
	}
	waitFor(t, env, "e2e", 2*time.Minute, func(s statusOut) bool { return s.Succeeded >= 400 })
	_ = workers[0].cmd.Process.Signal(syscall.SIGKILL)
	<-workers[0].done
	startWorker()
	mid := scrape(t, dashboard+"/metrics")
	if v := metricValue(mid, "wxacode_campaign_scenes", `campaign="e2e"`, `status="succeeded"`); v < 400 {
		t.Errorf("dashboard /metrics mid-run: succeeded gauge %v, want at least 400", v)
	}
	final := waitFor(t, env, "e2e", 5*time.Minute, func(s statusOut) bool { return s.Done })
	if final.Succeeded != int64(len(scenes)) || final.Failed != 0 {
		t.Fatalf("final status %+v: want all %d succeeded", final, len(scenes))
	}

	// The dashboard's /metrics matches the campaign's status; the workers'
	// counters are non-zero and count no more than was stored.
	fleet := scrape(t, dashboard+"/metrics")
	for status, want := range map[string]int64{"succeeded": final.Succeeded, "failed": final.Failed, "pending": final.Pending} {
		if got := metricValue(fleet, "wxacode_campaign_scenes", `campaign="e2e"`, `status="`+status+`"`); got != float64(want) {
			t.Errorf("dashboard /metrics: %s = %v, status says %d", status, got, want)
		}
	}
	var stored, imageCalls, refreshes float64
	for _, u := range workerMetrics[1:] { // the first was killed
		wm := scrape(t, u+"/metrics")
		stored += metricValue(wm, "wxacode_codes_stored_total", `campaign="e2e"`)
		imageCalls += metricValue(wm, "wxacode_calls_total", `errcode="0"`)
		refreshes += metricValue(wm, "wxacode_token_refreshes_total")
	}
	// A scene the killed worker stored without recording it is found in
	// storage by the next run: stored without a call.
	var found float64
	for _, w := range workers[1:] {
		for _, m := range foundStoredRE.FindAllStringSubmatch(w.out.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			found += float64(n)
		}
	}
	t.Logf("surviving workers' metrics: %v codes stored (%v found in storage), %v calls answered with an image, %v token fetches", stored, found, imageCalls, refreshes)
	if stored == 0 || imageCalls+found < stored || stored > float64(final.Succeeded) || refreshes == 0 {
		t.Errorf("worker metrics: stored %v, image calls %v, token fetches %v (succeeded %d)", stored, imageCalls, refreshes, final.Succeeded)
	}

	// The simulator saw no window over the ceiling, and no 45009.
	calls := readCallLog(t, callLog)
	var arrivals []time.Time
	paid := map[string]int{}
	returned := map[string]map[string]bool{} // scene → sha256s returned
	for _, c := range calls {
		if c.API != "getwxacodeunlimit" {
			continue
		}
		arrivals = append(arrivals, c.Time)
		if c.Errcode == 45009 {
			t.Errorf("simulator answered 45009 at %s", c.Time)
		}
		if c.Errcode == 0 && c.Status == 200 && c.SHA256 != "" {
			paid[c.Scene]++
			if returned[c.Scene] == nil {
				returned[c.Scene] = map[string]bool{}
			}
			returned[c.Scene][c.SHA256] = true
		}
	}
	if most := maxInWindow(arrivals, 10*time.Second); most > 600 {
		t.Errorf("%d calls arrived within one 10s window; the ceiling is 600", most)
	} else {
		t.Logf("calls: %d; most in any 10s window: %d of 600", len(arrivals), most)
	}
	twice := 0
	for sc, n := range paid {
		if n > 1 {
			twice++
			if twice <= 5 {
				var at []string
				for _, c := range calls {
					if c.API == "getwxacodeunlimit" && c.Scene == sc && c.Errcode == 0 && c.SHA256 != "" {
						at = append(at, c.Time.Format("15:04:05.000"))
					}
				}
				t.Logf("scene %q paid %d times, at %v", sc, n, at)
			}
		}
	}
	t.Logf("scenes paid twice: %d of %d", twice, len(scenes))
	if twice > len(scenes)/100 {
		t.Errorf("%d scenes paid twice: more than 1%%", twice)
	}

	// Every scene is exported with its key, and every object holds an
	// image the simulator returned for that scene.
	rows := exportRows(t, env, "e2e")
	if len(rows) != len(scenes) {
		t.Fatalf("export has %d rows, want %d", len(rows), len(scenes))
	}
	keys := map[string]bool{}
	s3c := m.Server.S3()
	for i, row := range rows {
		if row["status"] != "succeeded" || row["key"] == "" {
			t.Fatalf("row %d: %v", i, row)
		}
		if keys[row["key"]] {
			t.Fatalf("key %s listed twice", row["key"])
		}
		keys[row["key"]] = true
		body, got := getObject(t, s3c, m.Bucket, row["key"])
		if got != row["sha256"] {
			t.Fatalf("%s: sha256 %s, export says %s", row["key"], got, row["sha256"])
		}
		if !returned[row["scene"]][got] {
			t.Fatalf("%s: bytes are not an image the simulator returned for scene %q", row["key"], row["scene"])
		}
		if i < 20 { // decode a sample back to its scene
			_, scene, err := simulator.DecodeImage(body)
			if err != nil || scene != row["scene"] {
				t.Fatalf("%s decodes to %q, %v; want %q", row["key"], scene, err, row["scene"])
			}
		}
	}
}

func TestPermanentFailureThenRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	t.Parallel()
	r := testenv.NewRedis(t)
	storeDir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sim, base, callLog := startSimulator(t, addr, "--pages", "pages/other/index", "--rate", "6000/1m")
	env := []string{
		"REDIS_URL=" + r.URL, "STORAGE_URL=file://" + storeDir,
		"WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=" + simulator.DemoSecret,
		"WECHAT_API_BASE=" + base, "WXACODE_RATE=6000/1m",
	}
	scenes := e2eScenes(60)
	if _, stderr, code := run(t, env, strings.Join(scenes, "\n"), "enqueue", "--campaign", "unpublished", "--page", "pages/new/index", "--scenes", "-"); code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, stderr)
	}
	start(t, env, "worker")
	s := waitFor(t, env, "unpublished", time.Minute, func(s statusOut) bool { return s.Done })
	if s.Failed != 60 || s.Succeeded != 0 {
		t.Fatalf("status %+v: want all 60 failed", s)
	}
	for _, row := range exportRows(t, env, "unpublished") {
		if row["status"] != "failed" || row["errcode"] != "41030" {
			t.Fatalf("row %v: want failed with 41030", row)
		}
	}
	n := 0
	for _, c := range readCallLog(t, callLog) {
		if c.API == "getwxacodeunlimit" {
			n++
		}
	}
	if n != 60 {
		t.Fatalf("%d calls for 60 scenes that fail permanently: retries spent the ceiling", n)
	}

	// The page is published: the same simulator address now knows it.
	_ = sim.cmd.Process.Kill()
	<-sim.done
	startSimulator(t, addr, "--pages", "pages/other/index,pages/new/index", "--rate", "6000/1m")
	stdout, stderr, code := run(t, env, "", "retry", "unpublished")
	if code != 0 || !strings.Contains(stdout, "60 failed scenes back to pending") {
		t.Fatalf("retry exit %d: %s %s", code, stdout, stderr)
	}
	s = waitFor(t, env, "unpublished", time.Minute, func(s statusOut) bool { return s.Done })
	if s.Succeeded != 60 || s.Failed != 0 {
		t.Fatalf("after retry %+v: want all 60 succeeded", s)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := []string{"REDIS_URL=" + r.URL, "WECHAT_APPID=wx0123456789abcdef"}
	base := []string{"enqueue", "--campaign", "bad", "--page", "pages/p/index"}
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"33 characters", []string{"--scenes", file("long.txt", "ok\n"+strings.Repeat("x", 33)+"\n")}, "", "2: scene is 33 characters long"},
		{"percent", []string{"--scenes", "-"}, "ok\nok2\n50%\n", `3: scene has "%"`},
		{"chinese", []string{"--scenes", "-"}, "二维码\n", `1: scene has "二"`},
		{"space", []string{"--scenes", "-"}, "a b\r\n", "1: scene has a space"},
		{"width 279", []string{"--scenes", "-", "--width", "279"}, "ok\n", "--width 279"},
		{"leading slash page", []string{"--scenes", "-", "--page", "/pages/x"}, "ok\n", "--page"},
		{"unknown flag", []string{"--scenes", "-", "--colour", "red"}, "ok\n", "unknown flag: --colour"},
		{"missing file", []string{"--scenes", filepath.Join(dir, "nope.txt")}, "", "nope.txt"},
		{"no source", nil, "", "--scenes"},
		{"bad range", []string{"--range", "sku%s", "--from", "1", "--to", "3"}, "", "--range"},
		{"bad priority", []string{"--scenes", "-", "--priority", "urgent"}, "ok\n", "--priority"},
		{"bad campaign", []string{"--scenes", "-", "--campaign", "../x"}, "ok\n", "--campaign"},
		{"bad webhook", []string{"--scenes", "-", "--webhook", "ftp://example.com/x"}, "ok\n", "--webhook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, env, tt.stdin, append(append([]string{}, base...), tt.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stdout %q stderr %q", code, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not name %q", stderr, tt.want)
			}
		})
	}
	if n, err := r.Client.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("bad input left %d keys in Redis (err %v)", n, err)
	}
	for _, args := range [][]string{{"status", "nope"}, {"export", "nope"}, {"retry", "nope"}, {"cancel", "nope"}} {
		_, stderr, code := run(t, env, "", args...)
		if code != 2 || !strings.Contains(stderr, "campaign nope not found") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and 'campaign nope not found'", args, code, stderr)
		}
	}
}
