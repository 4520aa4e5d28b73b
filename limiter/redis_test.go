package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

// quiet drops go-redis's own log lines: in TestRedisOutage it would log
// every failed dial, which the test counts itself.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }

// TestRedisOutage stops Redis under waiting workers: every Wait fails and
// none admits a call until Redis is back, then admission resumes.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := testenv.NewRedisServer(t)
	r := testenv.NewRedisOn(t, srv, 1)
	l := newLimiter(t, r.Client, Config{Limit: Limit{N: 20, Per: time.Second}})

	type result struct {
		at  time.Time
		err error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ok := make(chan struct{}, 1)     // a call was admitted
	fail := make(chan struct{}, 100) // a Wait failed
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
				err := l.Wait(wctx, "app")
				wcancel()
				mu.Lock()
				results = append(results, result{time.Now(), err})
				mu.Unlock()
				if err == nil {
					select {
					case ok <- struct{}{}:
					default:
					}
				} else if ctx.Err() == nil {
					select {
					case fail <- struct{}{}:
					default:
					}
					time.Sleep(20 * time.Millisecond) // no spinning while Redis is down
				}
			}
		})
	}
	admitted := func(what string) {
		t.Helper()
		select {
		case <-ok:
		case <-time.After(15 * time.Second):
			t.Fatalf("no call admitted %s", what)
		}
	}
	admitted("before the outage")
	admitted("before the outage") // waiters now hold future slots

	for len(fail) > 0 {
		<-fail
	}
	srv.Stop()
	down := time.Now()
	// Let the waiters find out, several times over.
	for range 12 {
		select {
		case <-fail:
		case <-time.After(15 * time.Second):
			t.Fatal("no Wait failed while Redis was down")
		}
	}
	back := time.Now()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for len(ok) > 0 {
		<-ok
	}
	admitted("after Redis came back")
	cancel()
	wg.Wait()

	var failed, during, after int
	for _, res := range results {
		switch {
		case res.err != nil && !errors.Is(res.err, context.Canceled):
			failed++
		case res.err == nil && res.at.After(down) && res.at.Before(back):
			during++
		case res.err == nil && res.at.After(back):
			after++
		}
	}
	t.Logf("%d waits, %d failed, %d admitted while Redis was down, %d after", len(results), failed, during, after)
	if during > 0 {
		t.Errorf("%d calls admitted while Redis was down", during)
	}
	if failed == 0 {
		t.Error("no Wait failed while Redis was down")
	}
	if after == 0 {
		t.Error("no call admitted after Redis came back")
	}
}

// TestCluster runs apps on a Redis Cluster: each app's state sits in one
// slot, the ceiling holds, pauses and checks work.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := testenv.NewRedisCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	lim := Limit{N: 20, Per: time.Second}
	l := newLimiter(t, cl, Config{Limit: lim, Margin: 50 * time.Millisecond}) // times are taken after Wait returns: see TestWaitMiniredis
	keys := []string{"wxa", "wxb", "wxc", "wxd"}
	for _, k := range keys {
		if err := l.Check(ctx, k); err != nil {
			t.Fatalf("Check %s: %v", k, err)
		}
	}
	until, err := l.Pause(ctx, "wxd", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	times := run(t, l, keys, 3, 2500*time.Millisecond)
	for _, k := range keys {
		most := maxInWindow(times[k], lim.Per)
		t.Logf("app %s: %d calls, at most %d in any %s", k, len(times[k]), most, lim.Per)
		if most > lim.N {
			t.Errorf("app %s: %d calls in one %s window, ceiling %d", k, most, lim.Per, lim.N)
		}
		if len(times[k]) == 0 {
			t.Errorf("app %s: no call admitted", k)
		}
	}
	if ts := times["wxd"]; len(ts) > 0 && ts[0] < until.UnixNano() {
		t.Errorf("paused app's first call %s before the pause ended", time.Duration(until.UnixNano()-ts[0]))
	}
	odd := newLimiter(t, cl, Config{Limit: Limit{N: 10, Per: time.Second}})
	var me *MismatchError
	if err := odd.Check(ctx, "wxa"); !errors.As(err, &me) {
		t.Errorf("Check of another ceiling: %v, want a *MismatchError", err)
	}
}
