package limiter

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

// countHook counts the commands and pipelines a client sends: its round
// trips to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// liftedLimit is far above what one Redis can serve, so no call waits and
// the benchmarks measure the limiter's own cost.
var liftedLimit = Limit{N: 1e9, Per: time.Second}

// BenchmarkWait is the cost of one admission with the ceiling lifted, from
// one goroutine: time and Redis round trips per call.
func BenchmarkWait(b *testing.B) {
	l, hook := benchLimiter(b)
	ctx := context.Background()
	b.ResetTimer()
	hook.n.Store(0)
	for b.Loop() {
		if err := l.Wait(ctx, "app"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkWaitParallel is the same from many goroutines at once.
func BenchmarkWaitParallel(b *testing.B) {
	l, hook := benchLimiter(b)
	ctx := context.Background()
	b.ResetTimer()
	hook.n.Store(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Wait(ctx, "app"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
}

// BenchmarkWaitAtCeiling is the cost of one admission when every call
// waits for its slot: 32 goroutines under 5000/10s (the default margin,
// 100 ms), as one worker at WeChat's ceiling, only faster. Each admission
// is one round trip: a waiter starts at its slot without confirming it.
func BenchmarkWaitAtCeiling(b *testing.B) {
	r := testenv.NewRedis(b)
	hook := &countHook{}
	r.Client.AddHook(hook)
	l := newLimiter(b, r.Client, Config{Limit: Limit{N: 5000, Per: 10 * time.Second}})
	if err := l.Wait(context.Background(), "app"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	hook.n.Store(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Wait(ctx, "app"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
}

func benchLimiter(b *testing.B) (*Limiter, *countHook) {
	r := testenv.NewRedis(b)
	hook := &countHook{}
	r.Client.AddHook(hook)
	l := newLimiter(b, r.Client, Config{Limit: liftedLimit})
	// Load the script first, so the figures are of the steady state.
	if err := l.Wait(context.Background(), "app"); err != nil {
		b.Fatal(err)
	}
	return l, hook
}
