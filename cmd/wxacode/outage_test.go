package main

// Outage tests: the built binary (two workers and serve) runs a campaign
// against real services while one of them fails: Redis SIGKILLed and
// restarted from its append-only file, MinIO SIGKILLed for 15 s, a Sentinel
// failover of the Redis primary, a Redis Cluster node restarted. Each test
// logs the figures the README's operations section quotes: scenes stored,
// scenes paid twice (from the simulator's call log), the largest window
// and whether the workers survived. They run one after the other, before
// the package's parallel tests: each starts a dozen processes, and two cores
// running them all at once would blur the figures of every test.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

const (
	outageRate   = "600/10s"
	outageN      = 600
	outageWindow = 10 * time.Second
)

// outageRig is a campaign run by two workers and watched by serve.
type outageRig struct {
	t         *testing.T
	env       []string
	callLog   string
	name      string
	total     int
	workers   []*proc
	serve     *proc
	dashboard string
}

// newOutageRig enqueues a campaign of n scenes on redisURL and starts the
// simulator, serve and two workers.
func newOutageRig(t *testing.T, redisURL string, storageEnv []string, n int) *outageRig {
	t.Helper()
	_, base, callLog := startSimulator(t, "", "--rate", outageRate, "--latency", "5ms-40ms", "--seed", "11")
	env := append(storageEnv,
		"REDIS_URL="+redisURL,
		"WECHAT_APPID="+simulator.DemoAppID,
		"WECHAT_SECRET="+simulator.DemoSecret,
		"WECHAT_API_BASE="+base,
		"WXACODE_RATE="+outageRate,
		// Many processes share two cores: leave the spread between
		// admission and arrival 200 ms.
		"WXACODE_RATE_MARGIN=400ms",
	)
	rg := &outageRig{t: t, env: env, callLog: callLog, name: "outage", total: n}
	scenes := make([]string, n)
	for i := range scenes {
		scenes[i] = fmt.Sprintf("o%05d", i)
	}
	if _, stderr, code := run(t, env, strings.Join(scenes, "\n"), "enqueue", "--campaign", rg.name, "--page", "pages/p/index", "--scenes", "-", "--batch-size", "50"); code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, stderr)
	}
	rg.serve = start(t, env, "serve", "--addr", "127.0.0.1:0")
	rg.dashboard = waitURL(t, rg.serve)
	for range 2 {
		rg.workers = append(rg.workers, start(t, env, "worker", "--create-bucket", "--shutdown-timeout", "10s"))
	}
	return rg
}

// waitURL waits for a server process to print its URL.
func waitURL(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if u := urlRE.FindString(p.out.String()); u != "" {
			return u
		}
		select {
		case <-p.done:
			t.Fatalf("server exited: %s", p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not say where it listens: %s", p.out.String())
	return ""
}

// tryStatus reads the campaign's status; false while Redis cannot answer.
func (rg *outageRig) tryStatus() (statusOut, bool) {
	stdout, _, code := run(rg.t, rg.env, "", "status", rg.name, "--json")
	var s statusOut
	if code != 0 || json.Unmarshal([]byte(stdout), &s) != nil {
		return s, false
	}
	return s, true
}

// waitFor polls the status until cond holds, tolerating a Redis that does
// not answer for a while.
func (rg *outageRig) waitFor(timeout time.Duration, what string, cond func(statusOut) bool) statusOut {
	rg.t.Helper()
	deadline := time.Now().Add(timeout)
	var last statusOut
	for {
		if s, ok := rg.tryStatus(); ok {
			last = s
			if cond(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			rg.t.Fatalf("%s: not reached after %s: %+v", what, timeout, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// outageFigures is what an outage run reports.
type outageFigures struct {
	stored, total  int64
	paidTwice      int
	extraCalls     int // image answers beyond one per scene
	largestWindow  int
	callsInOutage  int // calls that arrived from one second into the outage to its end
	workersSurvive bool
}

func (f outageFigures) String() string {
	return fmt.Sprintf("%d of %d scenes stored, %d paid twice (%d extra image calls), largest %s window %d of %d, %d calls arrived during the outage after its first second, workers survived: %v",
		f.stored, f.total, f.paidTwice, f.extraCalls, outageWindow, f.largestWindow, outageN, f.callsInOutage, f.workersSurvive)
}

// finish waits for the campaign to end, stops the workers with SIGTERM and
// returns the figures; from and to bound the outage.
func (rg *outageRig) finish(from, to time.Time) outageFigures {
	t := rg.t
	t.Helper()
	final := rg.waitFor(3*time.Minute, "campaign done", func(s statusOut) bool { return s.Done })
	f := outageFigures{stored: final.Succeeded, total: int64(rg.total), workersSurvive: true}
	for i, w := range rg.workers {
		select {
		case <-w.done:
			f.workersSurvive = false
			t.Errorf("worker %d exited during the run: %s", i, tail(w.out.String(), 2000))
			continue
		default:
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, w := range rg.workers {
		select {
		case <-w.done:
			if code := w.cmd.ProcessState.ExitCode(); code != 0 {
				f.workersSurvive = false
				t.Errorf("worker %d exited %d after SIGTERM", i, code)
			}
		case <-time.After(40 * time.Second):
			f.workersSurvive = false
			t.Errorf("worker %d did not stop within 40 s of SIGTERM", i)
		}
	}
	// serve survived too, and answers: the campaign API, asynqmon and the
	// health check, all through the same kind of Redis connection.
	select {
	case <-rg.serve.done:
		t.Errorf("serve exited during the run: %s", tail(rg.serve.out.String(), 2000))
	default:
		for _, path := range []string{"/api/campaigns/" + rg.name, "/monitoring/api/queues", "/healthz"} {
			resp, err := http.Get(rg.dashboard + path)
			if err != nil {
				t.Errorf("serve after the outage: GET %s: %v", path, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("serve after the outage: GET %s: %s %s", path, resp.Status, body)
			}
			if path == "/monitoring/api/queues" && !strings.Contains(string(body), demoQueue) {
				t.Errorf("asynqmon after the outage does not list the queue: %s", body)
			}
		}
	}

	var arrivals []time.Time
	paid := map[string]int{}
	paidAt := map[string][]time.Time{}
	for _, c := range readCallLog(t, rg.callLog) {
		if c.API != "getwxacodeunlimit" {
			continue
		}
		arrivals = append(arrivals, c.Time)
		if !c.Time.Before(from.Add(time.Second)) && c.Time.Before(to) {
			f.callsInOutage++
		}
		if c.Errcode == 0 && c.Status == 200 && c.SHA256 != "" {
			paid[c.Scene]++
			paidAt[c.Scene] = append(paidAt[c.Scene], c.Time)
		}
	}
	for scene, n := range paid {
		if n > 1 {
			f.paidTwice++
			f.extraCalls += n - 1
			if f.paidTwice <= 5 {
				t.Logf("scene %s paid %d times, at %v (outage %s to %s)", scene, n, paidAt[scene], from.Format(time.TimeOnly), to.Format(time.TimeOnly))
				for i, w := range rg.workers {
					for _, line := range strings.Split(w.out.String(), "\n") {
						if strings.Contains(line, scene) {
							t.Logf("worker %d: %s", i, line)
						}
					}
				}
			}
		}
	}
	f.largestWindow = maxInWindow(arrivals, outageWindow)
	t.Logf("%s: %s", t.Name(), f)

	if final.Succeeded != int64(rg.total) || final.Failed != 0 {
		t.Errorf("final status %+v: want all %d succeeded", final, rg.total)
	}
	if f.largestWindow > outageN {
		t.Errorf("%d calls arrived within one %s window; the ceiling is %d", f.largestWindow, outageWindow, outageN)
	}
	if len(paid) != rg.total {
		t.Errorf("%d scenes got an image from the simulator, want %d", len(paid), rg.total)
	}
	return f
}

// TestOutageRedisRestart: Redis SIGKILLed mid-campaign and restarted from
// its append-only file 5 s later.
func TestOutageRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test skipped in -short mode")
	}
	srv := testenv.NewRedisServerAOF(t)
	rg := newOutageRig(t, "redis://"+srv.Addr+"/0", []string{"STORAGE_URL=file://" + t.TempDir()}, 400)
	rg.waitFor(2*time.Minute, "150 scenes stored", func(s statusOut) bool { return s.Succeeded >= 150 })
	from := time.Now()
	srv.Stop()
	time.Sleep(5 * time.Second)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rg.finish(from, time.Now())
}

// TestOutageMinIO: MinIO SIGKILLed mid-campaign and back 15 s later. The
// workers stop calling, keep the codes they paid for and store them when
// MinIO is back: at most 1% of the scenes are paid twice, none is lost.
func TestOutageMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test skipped in -short mode")
	}
	r := testenv.NewRedis(t)
	m := testenv.NewMinIOServer(t)
	bucket := testenv.NewBucket(t, m)
	rg := newOutageRig(t, r.URL, bucket.Env(), 600)
	rg.waitFor(2*time.Minute, "150 scenes stored", func(s statusOut) bool { return s.Succeeded >= 150 })
	from := time.Now()
	m.Stop()
	time.Sleep(15 * time.Second)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	f := rg.finish(from, time.Now())
	if f.paidTwice > rg.total/100 {
		t.Errorf("%d of %d scenes paid twice: more than 1%%", f.paidTwice, rg.total)
	}
	// Every scene's object is in the bucket.
	var objects int // codes only: a finished campaign's manifest lies beside them
	p := s3.NewListObjectsV2Paginator(m.S3(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasPrefix(k, rg.name+"/") && (strings.HasSuffix(k, ".jpg") || strings.HasSuffix(k, ".png")) {
				objects++
			}
		}
	}
	if objects != rg.total {
		t.Errorf("%d codes under %s/, want %d", objects, rg.name, rg.total)
	}
}

// TestOutageSentinelFailover: the primary behind the Sentinels SIGKILLed
// mid-campaign; the Sentinels promote the replica and every process follows.
func TestOutageSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test skipped in -short mode")
	}
	s := testenv.NewRedisSentinel(t)
	rg := newOutageRig(t, s.URL(), []string{"STORAGE_URL=file://" + t.TempDir()}, 400)
	rg.waitFor(2*time.Minute, "150 scenes stored", func(st statusOut) bool { return st.Succeeded >= 150 })
	from := time.Now()
	s.Primary.Stop()
	if err := s.WaitPrimary(s.Replica.Addr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	rg.finish(from, time.Now())
}

// TestOutageClusterNodeRestart: the Cluster node that holds the app's
// ceiling SIGKILLed mid-campaign and started again (from its append-only
// file) 3 s later.
func TestOutageClusterNodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test skipped in -short mode")
	}
	c := testenv.NewRedisCluster(t)
	rg := newOutageRig(t, c.URL(), []string{"STORAGE_URL=file://" + t.TempDir()}, 400)
	node, err := c.Node(context.Background(), "wxacode:limiter:{"+simulator.DemoAppID+"}")
	if err != nil {
		t.Fatal(err)
	}
	rg.waitFor(2*time.Minute, "150 scenes stored", func(st statusOut) bool { return st.Succeeded >= 150 })
	from := time.Now()
	c.Stop(node)
	time.Sleep(3 * time.Second)
	if err := c.Start(node); err != nil {
		t.Fatal(err)
	}
	rg.finish(from, time.Now())
}
