package producer

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
)

// usedMemory reads used_memory from INFO memory.
func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO")
	return 0
}

// BenchmarkEnqueueMillion enqueues a 1,000,000-scene campaign (from a
// range, as `wxacode enqueue --range` does) into a real Redis and reports
// the wall time, the Redis memory the campaign takes and the latency of
// reading its status; from a range and from a CRLF file of scenes. Run
// with -benchtime 1x.
func BenchmarkEnqueueMillion(b *testing.B) {
	const n = 1_000_000
	var file strings.Builder
	for i := 1; i <= n; i++ {
		file.WriteString("sku")
		file.WriteString(strconv.Itoa(10_000_000 + i))
		file.WriteString("\r\n")
	}
	sources := map[string]func() (Scenes, error){
		"range": func() (Scenes, error) { return Range("sku%08d", 1, n) },
		"file":  func() (Scenes, error) { return Read(strings.NewReader(file.String())) },
	}
	for _, name := range []string{"range", "file"} {
		b.Run(name, func(b *testing.B) { benchEnqueue(b, n, sources[name]) })
	}
}

func benchEnqueue(b *testing.B, n int64, source func() (Scenes, error)) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv := testenv.NewRedisServer(b) // a server of its own, so memory is the campaign's
		r := testenv.NewRedisOn(b, srv, 1)
		client := asynq.NewClientFromRedisClient(r.Client)
		store := campaign.NewStore(r.Client, "")
		p, err := New(store, client, Config{})
		if err != nil {
			b.Fatal(err)
		}
		before := usedMemory(b, r.Client)
		b.StartTimer()
		start := time.Now()
		sc, err := source()
		if err != nil {
			b.Fatal(err)
		}
		spec := Spec{Name: "million", AppID: "wx0123456789abcdef", Options: wechat.DefaultCodeOptions(), Priority: "default"}
		sum, err := p.Enqueue(context.Background(), spec, sc.List)
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		b.StopTimer()
		if sum.Campaign.Total != n || sum.Enqueued != sum.Campaign.Batches {
			b.Fatalf("enqueued %+v", sum)
		}
		mem := usedMemory(b, r.Client) - before
		// status of the million-scene campaign: one HGETALL.
		const reads = 200
		t0 := time.Now()
		for range reads {
			c, err := store.Get(context.Background(), "million")
			if err != nil || c.Total != n {
				b.Fatalf("status: %+v, %v", c, err)
			}
		}
		status := time.Since(t0) / reads
		b.ReportMetric(wall.Seconds(), "enqueue_s")
		b.ReportMetric(float64(mem)/(1<<20), "redis_MiB")
		b.ReportMetric(float64(status.Microseconds())/1000, "status_ms")
		b.Logf("enqueue of %d scenes: %s wall, Redis used_memory +%.1f MiB, %d batch tasks, status %s", n, wall.Round(time.Millisecond), float64(mem)/(1<<20), sum.Campaign.Batches, status)
		client.Close()
		srv.Stop()
	}
}
