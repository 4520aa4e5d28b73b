package main

// Campaign life cycle under many producers and operators: real processes
// of the built binary racing on a real Redis.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

type result struct {
	stdout, stderr string
	code           int
}

// runAll runs the argument lists at the same instant and returns their
// results in order.
func runAll(t *testing.T, env []string, argss ...[]string) []result {
	t.Helper()
	out := make([]result, len(argss))
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i, args := range argss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			out[i].stdout, out[i].stderr, out[i].code = run(t, env, "", args...)
		}()
	}
	close(startGate)
	wg.Wait()
	return out
}

func TestRacingEnqueuesHaveOneWinner(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// Not parallel: it runs before the parallel end-to-end tests, whose
	// figures (scenes paid twice when a worker is killed) suffer from load.
	r := testenv.NewRedis(t)
	env := []string{"REDIS_URL=" + r.URL, "WECHAT_APPID=" + simulator.DemoAppID, "STORAGE_URL=file://" + t.TempDir()}
	dir := t.TempDir()
	for round := range 4 {
		name := fmt.Sprintf("race%d", round)
		var lists [2][]string
		var argss [][]string
		for p := range lists {
			for i := range 600 {
				lists[p] = append(lists[p], fmt.Sprintf("p%d-%04d", p, i))
			}
			file := filepath.Join(dir, fmt.Sprintf("%s-%d.txt", name, p))
			if err := os.WriteFile(file, []byte(strings.Join(lists[p], "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			argss = append(argss, []string{"enqueue", "--campaign", name, "--page", "pages/p/index", "--scenes", file, "--batch-size", "50"})
		}
		res := runAll(t, env, argss...)
		winner := -1
		for p, rs := range res {
			switch rs.code {
			case 0:
				if winner >= 0 {
					t.Fatalf("round %d: both producers exit 0:\n%s\n%s", round, res[0].stdout, res[1].stdout)
				}
				winner = p
			case 2:
				if !strings.Contains(rs.stderr, "campaign "+name+" exists with other scenes or options") {
					t.Fatalf("round %d: loser says %q", round, rs.stderr)
				}
			default:
				t.Fatalf("round %d: producer %d exit %d: %s", round, p, rs.code, rs.stderr)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no producer won: %+v", round, res)
		}
		var got []string
		for _, row := range exportRows(t, env, name) {
			got = append(got, row["scene"])
		}
		if diff := cmp.Diff(lists[winner], got); diff != "" {
			t.Fatalf("round %d: the campaign's scenes are not all the winner's (-want +got):\n%s", round, diff)
		}
	}
}

type lifecycleStatus struct {
	State     campaign.State `json:"state"`
	Total     int64          `json:"total"`
	Succeeded int64          `json:"succeeded"`
	Failed    int64          `json:"failed"`
	Pending   int64          `json:"pending"`
	Done      bool           `json:"done"`
	Archived  bool           `json:"archived"`
}

func stateOf(t *testing.T, env []string, name string) (lifecycleStatus, bool) {
	t.Helper()
	stdout, _, code := run(t, env, "", "status", name, "--json")
	if code != 0 {
		return lifecycleStatus{}, false
	}
	var s lifecycleStatus
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("status --json: %v: %q", err, stdout)
	}
	return s, true
}

func TestCancelDuringEnqueueSticks(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// Not parallel: it runs before the parallel end-to-end tests, whose
	// figures (scenes paid twice when a worker is killed) suffer from load.
	r := testenv.NewRedis(t)
	_, base, callLog := startSimulator(t, "", "--rate", "6000/1m")
	env := []string{
		"REDIS_URL=" + r.URL, "STORAGE_URL=file://" + t.TempDir(),
		"WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=" + simulator.DemoSecret,
		"WECHAT_API_BASE=" + base, "WXACODE_RATE=6000/1m",
	}
	enq := start(t, env, "enqueue", "--campaign", "big", "--page", "pages/p/index",
		"--range", "c%07d", "--from", "1", "--to", "2000000", "--batch-size", "500")
	var seen lifecycleStatus
	for deadline := time.Now().Add(time.Minute); ; {
		if s, ok := stateOf(t, env, "big"); ok {
			seen = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the campaign never showed up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stdout, stderr, code := run(t, env, "", "cancel", "big")
	if code != 0 {
		t.Fatalf("cancel exit %d: %s %s", code, stdout, stderr)
	}
	<-enq.done
	if enq.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("enqueue exit %d: %s", enq.cmd.ProcessState.ExitCode(), enq.out.String())
	}
	t.Logf("cancel landed with the campaign %s (%d scenes); enqueue said: %s", seen.State, seen.Total, strings.TrimSpace(enq.out.String()))
	if seen.State == campaign.StateEnqueuing && !strings.Contains(enq.out.String(), "cancelled while it was enqueued") {
		t.Errorf("enqueue did not report the cancel: %s", enq.out.String())
	}
	after, _ := stateOf(t, env, "big")
	if after.State != campaign.StateCancelled || after.Total != 2_000_000 {
		t.Fatalf("after the enqueue: %+v, want cancelled", after)
	}

	// A worker drains whatever batches were enqueued, and calls nothing.
	start(t, env, "worker")
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		info, err := insp.GetQueueInfo(demoQueue)
		if err == nil && info.Pending == 0 && info.Active == 0 && info.Retry == 0 {
			t.Logf("worker skipped %d batch tasks", info.Completed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %+v %v", info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range readCallLog(t, callLog) {
		if c.API == "getwxacodeunlimit" {
			t.Fatalf("a worker called WeChat for a cancelled campaign: %+v", c)
		}
	}
	if s, _ := stateOf(t, env, "big"); s.State != campaign.StateCancelled || s.Succeeded+s.Failed != 0 {
		t.Fatalf("after the worker: %+v", s)
	}
}

func TestRetryReconcilesWhateverHappened(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// Not parallel: it runs before the parallel end-to-end tests, whose
	// figures (scenes paid twice when a worker is killed) suffer from load.
	r := testenv.NewRedis(t)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sim, base, callLog := startSimulator(t, addr, "--pages", "pages/other/index", "--rate", "6000/1m")
	env := []string{
		"REDIS_URL=" + r.URL, "STORAGE_URL=file://" + t.TempDir(),
		"WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=" + simulator.DemoSecret,
		"WECHAT_API_BASE=" + base, "WXACODE_RATE=6000/1m",
	}
	scenes := e2eScenes(200)
	if _, stderr, code := run(t, env, strings.Join(scenes, "\n"), "enqueue", "--campaign", "mixed", "--page", "pages/new/index", "--scenes", "-", "--batch-size", "20"); code != 0 {
		t.Fatalf("enqueue exit %d: %s", code, stderr)
	}
	// Someone deletes a batch task in the dashboard.
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	if err := insp.DeleteTask(demoQueue, "mixed/b3"); err != nil {
		t.Fatal(err)
	}
	start(t, env, "worker")
	s := waitFor(t, env, "mixed", time.Minute, func(s statusOut) bool { return s.Failed == 180 })
	if s.Pending != 20 || s.Succeeded != 0 {
		t.Fatalf("before retry: %+v; want 180 failed (unpublished page), 20 pending (deleted task)", s)
	}
	calls := 0
	for _, c := range readCallLog(t, callLog) {
		if c.API == "getwxacodeunlimit" {
			calls++
		}
	}

	// The page is published. One retry dies right after its first step
	// (failed scenes reset, nothing enqueued yet: as a crash there leaves
	// it), another is SIGKILLed, then two run at once: the job still
	// finishes, and no scene is paid twice.
	_ = sim.cmd.Process.Kill()
	<-sim.done
	_, _, callLog2 := startSimulator(t, addr, "--pages", "pages/other/index,pages/new/index", "--rate", "6000/1m")
	if _, reset, err := campaign.NewStore(r.Client, "").BeginRetry(context.Background(), "mixed", 0); err != nil || reset != 180 {
		t.Fatalf("first step of a retry: %d reset, %v", reset, err)
	}
	killed := start(t, env, "retry", "mixed")
	time.Sleep(40 * time.Millisecond)
	_ = killed.cmd.Process.Kill()
	<-killed.done
	for i, rs := range runAll(t, env, []string{"retry", "mixed"}, []string{"retry", "mixed"}) {
		if rs.code != 0 {
			t.Fatalf("retry %d exit %d: %s %s", i, rs.code, rs.stdout, rs.stderr)
		}
		t.Logf("retry %d: %s", i, strings.TrimSpace(rs.stdout))
	}
	s = waitFor(t, env, "mixed", time.Minute, func(s statusOut) bool { return s.Done })
	if s.Succeeded != 200 || s.Failed != 0 {
		t.Fatalf("after retry: %+v; want all 200 succeeded", s)
	}
	paid := map[string]int{}
	for _, c := range append(readCallLog(t, callLog), readCallLog(t, callLog2)...) {
		if c.API == "getwxacodeunlimit" && c.Errcode == 0 && c.SHA256 != "" {
			paid[c.Scene]++
		}
	}
	twice := 0
	for sc, n := range paid {
		if n > 1 {
			twice++
			t.Errorf("scene %q paid %d times", sc, n)
		}
	}
	t.Logf("%d calls before the retries; %d scenes stored after them, %d paid twice", calls, len(paid), twice)
	if len(paid) != 200 {
		t.Fatalf("%d scenes got an image, want 200", len(paid))
	}

	// The finished campaign moves to its manifest; export reads it there,
	// and a retry of a finished campaign has nothing to do.
	var ls lifecycleStatus
	for deadline := time.Now().Add(30 * time.Second); !ls.Archived; time.Sleep(200 * time.Millisecond) {
		ls, _ = stateOf(t, env, "mixed")
		if time.Now().After(deadline) {
			t.Fatalf("campaign not archived: %+v", ls)
		}
	}
	rows := exportRows(t, env, "mixed")
	if len(rows) != 200 || rows[0]["scene"] != scenes[0] || rows[0]["status"] != "succeeded" {
		t.Fatalf("export from the manifest: %d rows, first %v", len(rows), rows[0])
	}
	if stdout, stderr, code := run(t, env, "", "retry", "mixed"); code != 0 || !strings.Contains(stdout, "nothing to retry") {
		t.Fatalf("retry of a finished campaign: exit %d %s %s", code, stdout, stderr)
	}
}
