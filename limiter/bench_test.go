package limiter

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
)

// liftedLimit is far above what one Redis can serve, so no call waits and
// the benchmarks measure the limiter's own cost.
var liftedLimit = Limit{N: 1e9, Per: time.Second}

// BenchmarkWait is the cost of one admission with the ceiling lifted, from
// one goroutine: time and Redis round trips per call.
func BenchmarkWait(b *testing.B) {
	l, hook := benchLimiter(b)
	ctx := context.Background()
	b.ResetTimer()
	hook.Store(0)
	for b.Loop() {
		if err := l.Wait(ctx, "app"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(hook.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkWaitParallel is the same from many goroutines at once.
func BenchmarkWaitParallel(b *testing.B) {
	l, hook := benchLimiter(b)
	ctx := context.Background()
	b.ResetTimer()
	hook.Store(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Wait(ctx, "app"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(hook.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkWaitAtCeiling is the cost of one admission when every call
// waits for its slot: 32 goroutines under 5000/10s (the default margin,
// 100 ms), as one worker at WeChat's ceiling, only faster. Each admission
// is one round trip: a waiter starts at its slot without confirming it.
func BenchmarkWaitAtCeiling(b *testing.B) {
	r := testenv.NewRedis(b)
	hook := &testenv.Trips{}
	r.Client.AddHook(hook)
	l := newLimiter(b, r.Client, Config{Limit: Limit{N: 5000, Per: 10 * time.Second}})
	if err := l.Wait(context.Background(), "app"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	hook.Store(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Wait(ctx, "app"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(hook.Load())/float64(b.N), "roundtrips/op")
}

func benchLimiter(b *testing.B) (*Limiter, *testenv.Trips) {
	r := testenv.NewRedis(b)
	hook := &testenv.Trips{}
	r.Client.AddHook(hook)
	l := newLimiter(b, r.Client, Config{Limit: liftedLimit})
	// Load the script first, so the figures are of the steady state.
	if err := l.Wait(context.Background(), "app"); err != nil {
		b.Fatal(err)
	}
	return l, hook
}
