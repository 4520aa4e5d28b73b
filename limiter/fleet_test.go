package limiter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

// The fleet tests run worker processes: the test binary itself, started
// again to run only TestHelperProcess, configured by these variables.
const (
	envHelper  = "WXACODE_LIMITER_HELPER" // "1" in a helper process
	envAddr    = "WXACODE_LIMITER_ADDR"
	envDB      = "WXACODE_LIMITER_DB"
	envLimit   = "WXACODE_LIMITER_LIMIT"
	envKeys    = "WXACODE_LIMITER_KEYS" // comma-separated apps
	envWorkers = "WXACODE_LIMITER_WORKERS"
	envStart   = "WXACODE_LIMITER_START" // UnixNano: when to start waiting
	envEnd     = "WXACODE_LIMITER_END"   // UnixNano: when to stop
	envOut     = "WXACODE_LIMITER_OUT"   // file for "app unixnano" lines
)

// TestHelperProcess is one worker process of the fleet tests; it does
// nothing unless started by runFleet.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		return
	}
	db, _ := strconv.Atoi(os.Getenv(envDB))
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	start, _ := strconv.ParseInt(os.Getenv(envStart), 10, 64)
	end, _ := strconv.ParseInt(os.Getenv(envEnd), 10, 64)
	lim, err := ParseLimit(os.Getenv(envLimit))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: os.Getenv(envAddr), DB: db})
	defer c.Close()
	hook := &testenv.Trips{}
	c.AddHook(hook)
	l := newLimiter(t, c, Config{Limit: lim})
	keys := strings.Split(os.Getenv(envKeys), ",")
	for _, k := range keys {
		if err := l.Check(context.Background(), k); err != nil {
			t.Fatalf("check: %v", err)
		}
	}
	time.Sleep(time.Until(time.Unix(0, start)))
	times, errs := admit(context.Background(), l, keys, workers, time.Unix(0, end))
	for _, err := range errs {
		t.Error(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# %d\n", hook.Load()) // round trips to Redis
	for _, k := range keys {
		for _, ts := range times[k] {
			fmt.Fprintf(&out, "%s %d\n", k, ts)
		}
	}
	if err := os.WriteFile(os.Getenv(envOut), out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// admit runs workers goroutines per app, each waiting in a loop until end,
// and returns when each call was admitted (UnixNano, sorted) per app, and
// the errors other than the deadline's.
func admit(ctx context.Context, l *Limiter, keys []string, workers int, end time.Time) (map[string][]int64, []error) {
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var (
		mu    sync.Mutex
		times = make(map[string][]int64)
		errs  []error
		wg    sync.WaitGroup
	)
	for _, k := range keys {
		for range workers {
			wg.Go(func() {
				var mine []int64
				for {
					err := l.Wait(ctx, k)
					ts := time.Now().UnixNano()
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
						break
					}
					mine = append(mine, ts)
				}
				mu.Lock()
				times[k] = append(times[k], mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for _, ts := range times {
		slices.Sort(ts)
	}
	return times, errs
}

// run is admit for a test: it fails the test on errors.
func run(t *testing.T, l *Limiter, keys []string, workers int, d time.Duration) map[string][]int64 {
	t.Helper()
	times, errs := admit(context.Background(), l, keys, workers, time.Now().Add(d))
	for _, err := range errs {
		t.Errorf("Wait: %v", err)
	}
	return times
}

// maxInWindow is the most calls that started in any window [t, t+d).
func maxInWindow(times []int64, d time.Duration) int {
	most, j := 0, 0
	for i := range times {
		for j < len(times) && times[j] < times[i]+int64(d) {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// utilisation is the share of the ceiling used in the whole windows of
// length per that follow the first call and end by end, with the count of
// each window.
func utilisation(times []int64, lim Limit, end time.Time) (float64, []int) {
	if len(times) == 0 {
		return 0, nil
	}
	var counts []int
	for from := times[0]; from+int64(lim.Per) <= end.UnixNano(); from += int64(lim.Per) {
		lo, _ := slices.BinarySearch(times, from)
		hi, _ := slices.BinarySearch(times, from+int64(lim.Per))
		counts = append(counts, hi-lo)
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	if len(counts) == 0 {
		return 0, nil
	}
	return float64(total) / float64(lim.N*len(counts)), counts
}

// fleet describes a run of worker processes.
type fleet struct {
	procs   int           // processes
	workers int           // goroutines per app in each process
	limit   Limit         // the ceiling
	keys    []string      // the apps
	length  time.Duration // how long they wait in a loop
}

// runFleet starts the processes against r, calls during (if not nil) once
// they are due to start, and returns the admission times per app, sorted,
// with the time the processes stopped waiting. It logs the Redis round trips
// per admitted call.
func runFleet(t *testing.T, r *testenv.Redis, f fleet, during func(start time.Time)) (map[string][]int64, time.Time) {
	t.Helper()
	// Starting a test binary takes a while on a busy machine: all
	// processes begin together, after it.
	start := time.Now().Add(2 * time.Second)
	end := start.Add(f.length)
	dir := t.TempDir()
	type proc struct {
		cmd    *exec.Cmd
		stderr bytes.Buffer
		out    string
	}
	procs := make([]*proc, f.procs)
	for i := range procs {
		p := &proc{out: filepath.Join(dir, fmt.Sprintf("proc%d.txt", i))}
		p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=2m")
		p.cmd.Env = append(os.Environ(),
			envHelper+"=1",
			envAddr+"="+r.Server.Addr,
			envDB+"="+strconv.Itoa(r.DB),
			envLimit+"="+f.limit.String(),
			envKeys+"="+strings.Join(f.keys, ","),
			envWorkers+"="+strconv.Itoa(f.workers),
			envStart+"="+strconv.FormatInt(start.UnixNano(), 10),
			envEnd+"="+strconv.FormatInt(end.UnixNano(), 10),
			envOut+"="+p.out,
		)
		p.cmd.Stdout = &p.stderr
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start process %d: %v", i, err)
		}
		procs[i] = p
	}
	if during != nil {
		during(start)
	}
	times := make(map[string][]int64)
	var calls, trips int64
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, p.stderr.String())
		}
		f, err := os.Open(p.out)
		if err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, p.stderr.String())
		}
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "# "); ok {
				rt, _ := strconv.ParseInt(n, 10, 64)
				trips += rt
				continue
			}
			k, v, _ := strings.Cut(sc.Text(), " ")
			ts, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("process %d: line %q: %v", i, sc.Text(), err)
			}
			times[k] = append(times[k], ts)
			n++
		}
		f.Close()
		if n == 0 {
			t.Errorf("process %d admitted no call", i)
		}
		calls += int64(n)
	}
	if calls > 0 {
		t.Logf("%d processes: %d calls admitted, %.2f Redis round trips per call (a Check per app included)",
			f.procs, calls, float64(trips)/float64(calls))
	}
	for _, ts := range times {
		slices.Sort(ts)
	}
	return times, end
}

// checkCeiling asserts that times (one app's) never exceed the ceiling in a
// sliding window and, if wantUse is above 0, use at least that share of it.
func checkCeiling(t *testing.T, app string, times []int64, lim Limit, end time.Time, wantUse float64) {
	t.Helper()
	most := maxInWindow(times, lim.Per)
	use, counts := utilisation(times, lim, end)
	t.Logf("app %s: %d calls; at most %d in any sliding %s; full windows %v; utilisation %.4f",
		app, len(times), most, lim.Per, counts, use)
	if most > lim.N {
		t.Errorf("app %s: %d calls started in one sliding %s window, ceiling %d", app, most, lim.Per, lim.N)
	}
	if wantUse > 0 && use < wantUse {
		t.Errorf("app %s: utilisation %.4f, want at least %.2f", app, use, wantUse)
	}
}

var fleetLimit = Limit{N: 300, Per: 5 * time.Second}

// minUse is the share of the ceiling a fleet must use for the test to
// pass. The limiter reaches 0.98 and more on a quiet machine (the figure
// each test logs, and README's); the test, which shares two cores with the
// rest of the suite, fails only below 0.90, where a limiter that wastes
// slots (a fixed window, a deny-and-sleep loop) lands.
const minUse = 0.90

// TestFleetOneApp: four processes, four waiters each, greedy for 15 s under
// 300/5s: never more than 300 in a window, the ceiling used (minUse).
func TestFleetOneApp(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := fleet{procs: 4, workers: 4, limit: fleetLimit, keys: []string{"wxapp1"}, length: 15500 * time.Millisecond}
	times, end := runFleet(t, r, f, nil)
	checkCeiling(t, "wxapp1", times["wxapp1"], f.limit, end, minUse)
}

// TestFleetTwoApps: the same with two apps at once, each held and used on
// its own.
func TestFleetTwoApps(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := fleet{procs: 4, workers: 3, limit: fleetLimit, keys: []string{"wxappA", "wxappB"}, length: 15500 * time.Millisecond}
	times, end := runFleet(t, r, f, nil)
	for _, k := range f.keys {
		checkCeiling(t, k, times[k], f.limit, end, minUse)
	}
}

// TestFleetPause: a pause of one app, declared mid-run, holds its calls in
// every process until it ends; the other app goes on at full use.
func TestFleetPause(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := fleet{procs: 4, workers: 3, limit: fleetLimit, keys: []string{"wxpaused", "wxfree"}, length: 15500 * time.Millisecond}
	l := newLimiter(t, r.Client, Config{Limit: f.limit})
	var declared, until time.Time
	times, end := runFleet(t, r, f, func(start time.Time) {
		time.Sleep(time.Until(start.Add(6 * time.Second)))
		u, err := l.Pause(context.Background(), "wxpaused", 3*time.Second)
		if err != nil {
			t.Errorf("Pause: %v", err)
		}
		declared, until = time.Now(), u
	})
	// A call admitted just before the pause script ran may be recorded a
	// little after Pause returned: allow it the margin.
	from := declared.Add(l.Margin())
	paused := times["wxpaused"]
	lo, _ := slices.BinarySearch(paused, from.UnixNano())
	hi, _ := slices.BinarySearch(paused, until.UnixNano())
	after := len(paused) - hi
	t.Logf("pause declared at +%s until +%s: %d calls of the paused app in it, %d after it",
		declared.Sub(end.Add(-f.length)).Round(time.Millisecond), until.Sub(end.Add(-f.length)).Round(time.Millisecond), hi-lo, after)
	if hi > lo {
		t.Errorf("%d calls of the paused app started during the pause, first at %s after it began",
			hi-lo, time.Duration(paused[lo]-declared.UnixNano()))
	}
	if after == 0 {
		t.Error("the paused app made no call after the pause")
	}
	checkCeiling(t, "wxpaused", paused, f.limit, end, 0)
	checkCeiling(t, "wxfree", times["wxfree"], f.limit, end, minUse)
}
