package limiter

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// t0 is a whole second, one second into a 5 s window.
var t0 = time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)

// The ceiling most tests use: 300/5s with the default margin of 50ms, so
// slots are ceil(5.05s/300) = 16834µs apart.
var (
	limit300   = Limit{N: 300, Per: 5 * time.Second}
	spacing300 = int64(16834)
)

// newMini returns a miniredis frozen at t0 and a client of it.
func newMini(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(t0)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return mr, c
}

func newLimiter(t testing.TB, rdb rediser, cfg Config) *Limiter {
	t.Helper()
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func us(t time.Time) int64 { return t.UnixMicro() }

// mustAcquire runs the acquire script as Wait does.
func mustAcquire(t *testing.T, l *Limiter, key string, held, maxWait int64) reply {
	t.Helper()
	r, err := l.acquire(context.Background(), l.redisKey(key), held, maxWait)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return r
}

func TestConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name       string
		cfg        Config
		wantErr    string
		wantMargin time.Duration
	}{
		{"default margin", Config{Limit: Limit{5000, time.Minute}}, "", 600 * time.Millisecond},
		{"least margin", Config{Limit: Limit{10, 100 * time.Millisecond}}, "", MinMargin},
		{"own margin", Config{Limit: limit300, Margin: time.Second}, "", time.Second},
		{"no limit", Config{}, "config Limit", 0},
		{"zero N", Config{Limit: Limit{0, time.Minute}}, "config Limit: N is 0", 0},
		{"short margin", Config{Limit: limit300, Margin: time.Millisecond}, "config Margin", 0},
		{"negative margin", Config{Limit: limit300, Margin: -time.Second}, "config Margin", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(c, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if l.Margin() != tt.wantMargin {
				t.Errorf("Margin() = %s, want %s", l.Margin(), tt.wantMargin)
			}
			if l.prefix != DefaultPrefix {
				t.Errorf("prefix = %q, want %q", l.prefix, DefaultPrefix)
			}
		})
	}
	if _, err := New(nil, Config{Limit: limit300}); err == nil {
		t.Error("New(nil client) = nil error")
	}
}

// TestSlots checks the script's arithmetic on a frozen clock: slots are
// spaced evenly from now, the deadline refuses without reserving, and the
// state lives in one hash with a TTL.
func TestSlots(t *testing.T) {
	mr, c := newMini(t)
	l := newLimiter(t, c, Config{Limit: limit300})
	if l.spacing != spacing300 {
		t.Fatalf("spacing = %dµs, want %d", l.spacing, spacing300)
	}
	now := us(t0)
	for i := range int64(3) {
		r := mustAcquire(t, l, "app", 0, -1)
		want := reply{status: statusOK, wait: i * spacing300, slot: now + i*spacing300}
		if diff := cmp.Diff(want, r, cmp.AllowUnexported(reply{})); diff != "" {
			t.Fatalf("slot %d (-want +got):\n%s", i, diff)
		}
	}
	// The next slot is 3 spacings away: a caller that can wait less is
	// refused, and nothing is reserved.
	r := mustAcquire(t, l, "app", 0, 3*spacing300-1)
	if r.status != statusRefused || r.wait != 3*spacing300 {
		t.Fatalf("short deadline: got %+v, want refused with wait %d", r, 3*spacing300)
	}
	r = mustAcquire(t, l, "app", 0, 3*spacing300)
	if r.status != statusOK || r.slot != now+3*spacing300 {
		t.Fatalf("after a refusal: got %+v, want slot %d", r, now+3*spacing300)
	}
	// Another app is held on its own.
	if r := mustAcquire(t, l, "other", 0, -1); r.wait != 0 {
		t.Fatalf("other app waits %dµs, want 0", r.wait)
	}
	// When the clock passes tat, the next caller starts at once.
	mr.SetTime(t0.Add(time.Second))
	if r := mustAcquire(t, l, "app", 0, -1); r.wait != 0 || r.slot != us(t0.Add(time.Second)) {
		t.Fatalf("after idling: got %+v, want a slot now", r)
	}

	keys := mr.Keys()
	if diff := cmp.Diff([]string{"wxacode:limiter:{app}", "wxacode:limiter:{other}"}, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if ttl := mr.TTL("wxacode:limiter:{app}"); ttl < 2*(5*time.Second+50*time.Millisecond) {
		t.Errorf("TTL = %s, want at least two windows", ttl)
	}
}

// TestConfirm checks what a waiter that wakes gets: its slot when on time,
// the rest of the wait when its clock ran fast, a new slot at the back of
// the queue when it woke too late.
func TestConfirm(t *testing.T) {
	mr, c := newMini(t)
	l := newLimiter(t, c, Config{Limit: limit300})
	now := us(t0)
	var slots []int64
	for range 4 {
		slots = append(slots, mustAcquire(t, l, "app", 0, -1).slot)
	}

	// On time, and within the tolerance of margin/2.
	mr.SetTime(time.UnixMicro(slots[1] + l.late))
	if r := mustAcquire(t, l, "app", slots[1], -1); r.status != statusOK || r.wait != 0 || r.slot != slots[1] {
		t.Fatalf("on time: got %+v, want start now at %d", r, slots[1])
	}
	// Early by the caller's clock: keep the slot, sleep the rest.
	mr.SetTime(time.UnixMicro(slots[3] - 100))
	if r := mustAcquire(t, l, "app", slots[3], -1); r.wait != 100 || r.slot != slots[3] {
		t.Fatalf("early: got %+v, want wait 100 for slot %d", r, slots[3])
	}
	// Too late: queue again behind the slots already handed out.
	mr.SetTime(time.UnixMicro(slots[2] + l.late + 1))
	r := mustAcquire(t, l, "app", slots[2], -1)
	if want := now + 4*spacing300; r.slot != want || r.wait != want-(slots[2]+l.late+1) {
		t.Fatalf("late: got %+v, want a new slot at %d", r, want)
	}
}

// TestPause checks that a pause holds new and held slots of its app, and
// only its app, until it ends.
func TestPause(t *testing.T) {
	mr, c := newMini(t)
	l := newLimiter(t, c, Config{Limit: limit300})
	ctx := context.Background()
	mustAcquire(t, l, "app", 0, -1) // starts now
	held := mustAcquire(t, l, "app", 0, -1).slot

	// d == 0 pauses to the end of the 5 s window: t0 is 10:00:01.
	until, err := l.Pause(ctx, "app", 0)
	if err != nil {
		t.Fatal(err)
	}
	windowEnd := time.Date(2026, 3, 1, 10, 0, 5, 0, time.UTC)
	if !until.Equal(windowEnd) {
		t.Fatalf("Pause(0) until %s, want %s", until.UTC(), windowEnd)
	}
	// A shorter pause does not shorten it.
	if u, err := l.Pause(ctx, "app", time.Second); err != nil || !u.Equal(windowEnd) {
		t.Fatalf("Pause(1s) = %s, %v; want %s", u.UTC(), err, windowEnd)
	}

	// A new caller queues after the pause, and its answer tells the pause.
	r := mustAcquire(t, l, "app", 0, -1)
	if r.slot != us(windowEnd) || r.pause != us(windowEnd) {
		t.Fatalf("new slot %d with pause %d, want both at the pause's end %d", r.slot, r.pause, us(windowEnd))
	}
	// A waiter whose slot fell in the pause queues again when it wakes.
	mr.SetTime(time.UnixMicro(held))
	r = mustAcquire(t, l, "app", held, -1)
	if r.slot != us(windowEnd)+spacing300 || r.wait == 0 {
		t.Fatalf("held slot in the pause: got %+v, want a new slot at %d", r, us(windowEnd)+spacing300)
	}
	// Other apps go on.
	if r := mustAcquire(t, l, "other", 0, -1); r.wait != 0 {
		t.Fatalf("other app waits %dµs during the pause, want 0", r.wait)
	}
	// A longer pause extends it.
	u, err := l.Pause(ctx, "app", 10*time.Second)
	if want := time.UnixMicro(held).Add(10 * time.Second); err != nil || !u.Equal(want) {
		t.Fatalf("Pause(10s) = %s, %v; want %s", u, err, want)
	}
	if _, err := l.Pause(ctx, "app", -time.Second); err == nil {
		t.Fatal("Pause(-1s) = nil error")
	}
}

// TestGiveBack checks that a cancelled slot goes back only if it is the
// latest handed out.
func TestGiveBack(t *testing.T) {
	mr, c := newMini(t)
	l := newLimiter(t, c, Config{Limit: limit300})
	ctx := context.Background()
	a := mustAcquire(t, l, "app", 0, -1).slot
	b := mustAcquire(t, l, "app", 0, -1).slot
	k := l.redisKey("app")
	tat := func() string { return mr.HGet(k, "tat") }

	l.giveBack(ctx, "app", k, a) // not the latest: nothing changes
	if want := itoa(b + spacing300); tat() != want {
		t.Fatalf("tat after giving back an older slot = %s, want %s", tat(), want)
	}
	l.giveBack(ctx, "app", k, b)
	if want := itoa(b); tat() != want {
		t.Fatalf("tat after giving back the latest slot = %s, want %s", tat(), want)
	}
	if r := mustAcquire(t, l, "app", 0, -1); r.slot != b {
		t.Fatalf("next slot %d, want the one given back %d", r.slot, b)
	}
}

// TestMismatchStale checks that another ceiling is refused while the state
// is in use, and replaces it (with a log line) once it is stale.
func TestMismatchStale(t *testing.T) {
	mr, c := newMini(t)
	ctx := context.Background()
	var logs bytes.Buffer
	fleet := newLimiter(t, c, Config{Limit: limit300})
	other := newLimiter(t, c, Config{Limit: Limit{N: 600, Per: 5 * time.Second}, Logger: zerolog.New(&logs)})

	if err := other.Check(ctx, "app"); err != nil {
		t.Fatalf("Check with no state: %v", err)
	}
	if err := fleet.Wait(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	mr.SetTime(t0.Add(time.Second))
	want := &MismatchError{
		Key:         "app",
		Limit:       Limit{N: 600, Per: 5 * time.Second},
		Margin:      50 * time.Millisecond,
		FleetLimit:  limit300,
		FleetMargin: 50 * time.Millisecond,
		StaleIn:     4050 * time.Millisecond,
	}
	for name, err := range map[string]error{"Check": other.Check(ctx, "app"), "Wait": other.Wait(ctx, "app")} {
		var me *MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("%s: error %v, want a *MismatchError", name, err)
		}
		if diff := cmp.Diff(want, me); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", name, diff)
		}
		if !strings.Contains(err.Error(), "300/5s") || !strings.Contains(err.Error(), "600/5s") {
			t.Errorf("%s: error %q does not name both ceilings", name, err)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("logged on a refusal: %s", logs.String())
	}

	// A window after the fleet's last slot, its state is stale.
	mr.SetTime(t0.Add(5*time.Second + 50*time.Millisecond))
	if err := other.Check(ctx, "app"); err != nil {
		t.Fatalf("Check on stale state: %v", err)
	}
	if err := other.Wait(ctx, "app"); err != nil {
		t.Fatalf("Wait on stale state: %v", err)
	}
	if !strings.Contains(logs.String(), "replaced") || !strings.Contains(logs.String(), `"old_limit":"300/5s"`) {
		t.Errorf("log %q: want a line saying the 300/5s state was replaced", logs.String())
	}
	// Now the old ceiling is the odd one out.
	var me *MismatchError
	if err := fleet.Wait(ctx, "app"); !errors.As(err, &me) || me.FleetLimit.N != 600 {
		t.Fatalf("old ceiling after the replacement: %v, want a *MismatchError naming 600/5s", err)
	}
}

// TestWaitMiniredis runs Wait against miniredis on the wall clock: the
// ceiling holds there too.
func TestWaitMiniredis(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	lim := Limit{N: 10, Per: 500 * time.Millisecond}
	// Times are taken after Wait returns: under the race detector on a
	// busy machine that lags the slot by more than the default 5 ms margin,
	// so this test keeps 50 ms for it, as an operator would on a busy host.
	times := run(t, newLimiter(t, c, Config{Limit: lim, Margin: 50 * time.Millisecond}), []string{"app"}, 4, 2*time.Second)["app"]
	most := maxInWindow(times, lim.Per)
	t.Logf("miniredis: %d calls in 2s, at most %d in any %s", len(times), most, lim.Per)
	if most > lim.N {
		t.Errorf("%d calls in one %s window, ceiling %d", most, lim.Per, lim.N)
	}
	if len(times) < lim.N {
		t.Errorf("only %d calls admitted in 2s under %s", len(times), lim)
	}
}

// TestWaitDeadline checks that Wait fails at once, reserving nothing, when
// the deadline comes before the slot: in Redis and in the local pacer.
func TestWaitDeadline(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	lim := Limit{N: 1, Per: 10 * time.Second}
	a := newLimiter(t, r.Client, Config{Limit: lim})
	b := newLimiter(t, r.Client, Config{Limit: lim})
	ctx := context.Background()
	if err := a.Wait(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	k := a.redisKey("app")
	tat := r.Client.HGet(ctx, k, "tat").Val()

	for name, l := range map[string]*Limiter{"redis": b, "local": a} {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := l.Wait(dctx, "app")
		early := dctx.Err() == nil
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Wait = %v, want an error wrapping context.DeadlineExceeded", name, err)
		}
		if !early {
			t.Errorf("%s: Wait returned after the deadline, want at once", name)
		}
		if got := r.Client.HGet(ctx, k, "tat").Val(); got != tat {
			t.Errorf("%s: tat %s → %s: a refused Wait reserved a slot", name, tat, got)
		}
	}
}

// TestWaitCancel checks that a waiter cancelled while sleeping gives its
// slot back.
func TestWaitCancel(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	lim := Limit{N: 1, Per: 10 * time.Second}
	a := newLimiter(t, r.Client, Config{Limit: lim})
	b := newLimiter(t, r.Client, Config{Limit: lim})
	ctx := context.Background()
	if err := a.Wait(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	k := a.redisKey("app")
	tat := r.Client.HGet(ctx, k, "tat").Val()

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Wait(cctx, "app") }()
	// Cancel once b holds its slot (tat moved on).
	for r.Client.HGet(ctx, k, "tat").Val() == tat {
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v before reserving", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if got := r.Client.HGet(ctx, k, "tat").Val(); got != tat {
		t.Errorf("tat = %s after the cancel, want %s (slot given back)", got, tat)
	}
}

// TestMismatch checks on a real Redis that a worker with another ceiling is
// refused, and that Check says so before it starts.
func TestMismatch(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	fleet := newLimiter(t, r.Client, Config{Limit: limit300})
	odd := newLimiter(t, r.Client, Config{Limit: limit300, Margin: time.Second})
	if err := fleet.Wait(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := fleet.Check(ctx, "app"); err != nil {
		t.Fatalf("Check of the fleet's own ceiling: %v", err)
	}
	for name, err := range map[string]error{"Check": odd.Check(ctx, "app"), "Wait": odd.Wait(ctx, "app")} {
		var me *MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("%s: %v, want a *MismatchError", name, err)
		}
		if me.FleetMargin != 50*time.Millisecond || me.Margin != time.Second || me.StaleIn <= 0 {
			t.Errorf("%s: %+v: want fleet margin 50ms, ours 1s, stale later", name, me)
		}
	}
	// Other apps are free.
	if err := odd.Wait(ctx, "other"); err != nil {
		t.Fatalf("Wait for another app: %v", err)
	}
}

// TestWaitLearnsPause checks, on a real Redis, that a waiter holding a slot
// inside a pause declared after it was handed out does not start before the
// pause ends: declared by its own Limiter (known without asking Redis) or by
// another process's (learned when it wakes).
func TestWaitLearnsPause(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		other bool
	}{{"same limiter", false}, {"another limiter", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testenv.NewRedis(t)
			// One call per 600 ms, and a wide margin so that a loaded
			// machine's late wake-ups are not what is tested.
			cfg := Config{Limit: Limit{N: 1, Per: 400 * time.Millisecond}, Margin: 200 * time.Millisecond}
			l := newLimiter(t, r.Client, cfg)
			pauser := l
			if tc.other {
				pauser = newLimiter(t, r.Client, cfg)
			}
			ctx := t.Context()
			k := l.redisKey("app")
			// Another process takes the slot of now, so l's caller waits.
			if err := newLimiter(t, r.Client, cfg).Wait(ctx, "app"); err != nil {
				t.Fatal(err)
			}
			tat := r.Client.HGet(ctx, k, "tat").Val()
			done := make(chan error, 1)
			go func() { done <- l.Wait(ctx, "app") }()
			// Pause once the waiter holds its slot (tat moved on).
			for r.Client.HGet(ctx, k, "tat").Val() == tat {
				select {
				case err := <-done:
					t.Fatalf("Wait returned %v before reserving", err)
				case <-time.After(5 * time.Millisecond):
				}
			}
			until, err := pauser.Pause(ctx, "app", 1500*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if now := time.Now(); now.Before(until) {
				t.Errorf("the waiter started %s before the end of the pause", until.Sub(now))
			}
		})
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
