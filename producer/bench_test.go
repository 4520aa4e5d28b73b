package producer

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/storage"
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

// BenchmarkMillionLifecycle takes a 1,000,000-scene campaign through its
// life on a real Redis and MinIO: enqueued, every scene recorded (1% as
// failures), archived into its manifest beside the codes, exported from
// the manifest, and read back for a retry. It reports Redis memory at
// each step and the time of archive, export and restore. Run with
// -benchtime 1x.
func BenchmarkMillionLifecycle(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		srv := testenv.NewRedisServer(b)
		r := testenv.NewRedisOn(b, srv, 1)
		m := testenv.NewMinIO(b)
		blobs, err := storage.Open(ctx, "s3://"+m.Bucket+"/codes", storage.Options{Getenv: envOf(m.Server.Env())})
		if err != nil {
			b.Fatal(err)
		}
		client := asynq.NewClientFromRedisClient(r.Client)
		store := campaign.NewStore(r.Client, "")
		p, err := New(store, client, Config{Tasks: asynq.NewInspectorFromRedisClient(r.Client), Blobs: blobs})
		if err != nil {
			b.Fatal(err)
		}
		base := usedMemory(b, r.Client)
		sc, err := Range("sku%08d", 1, n)
		if err != nil {
			b.Fatal(err)
		}
		sum, err := p.Enqueue(ctx, Spec{Name: "million", AppID: "wx0123456789abcdef", Options: wechat.DefaultCodeOptions(), KeyPrefix: "codes/"}, sc.List)
		if err != nil {
			b.Fatal(err)
		}
		enqueued := usedMemory(b, r.Client) - base
		// Drop the asynq tasks, as workers finishing them would (their
		// records expire with their retention): what stays is the campaign.
		if _, err := asynq.NewInspectorFromRedisClient(r.Client).DeleteAllPendingTasks("wxacode-wx0123456789abcdef-default"); err != nil {
			b.Fatal(err)
		}
		c := sum.Campaign
		t0 := time.Now()
		var wg sync.WaitGroup
		next := make(chan int64, 1024)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					var err error
					if i%100 == 7 {
						_, err = store.MarkFailed(ctx, c, i, 41030, "invalid page rid: 0")
					} else {
						_, err = store.MarkSucceeded(ctx, c, i, campaign.Result{ContentType: "image/jpeg", Size: 30_000 + i%1000, SHA256: fmt.Sprintf("%064x", i)})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		for i := range int64(n) {
			next <- i
		}
		close(next)
		wg.Wait()
		recordTime := time.Since(t0)
		done := usedMemory(b, r.Client) - base

		b.ResetTimer()
		t0 = time.Now()
		ok, err := store.Archive(ctx, "million", blobs)
		if err != nil || !ok {
			b.Fatalf("Archive = %v, %v", ok, err)
		}
		archiveTime := time.Since(t0)
		archived := usedMemory(b, r.Client) - base
		c, _ = store.Get(ctx, "million")

		t0 = time.Now()
		rows := 0
		w, _ := campaign.NewExportWriter(io.Discard, campaign.FormatCSV)
		if err := store.Export(ctx, c, blobs, func(row campaign.ExportRow) error { rows++; return w.Write(row) }); err != nil || rows != n {
			b.Fatalf("export: %d rows, %v", rows, err)
		}
		exportTime := time.Since(t0)

		t0 = time.Now()
		rs, err := p.Retry(ctx, "million")
		if err != nil || !rs.Restored || rs.Reset != n/100 {
			b.Fatalf("Retry = %+v, %v", rs, err)
		}
		retryTime := time.Since(t0)
		b.StopTimer()

		mib := func(v int64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mib(enqueued), "enqueued_MiB")
		b.ReportMetric(mib(done), "done_MiB")
		b.ReportMetric(mib(archived), "archived_MiB")
		b.ReportMetric(archiveTime.Seconds(), "archive_s")
		b.ReportMetric(exportTime.Seconds(), "export_s")
		b.ReportMetric(retryTime.Seconds(), "retry_s")
		b.Logf("1,000,000 scenes: Redis %.1f MiB enqueued, %.1f MiB with every scene recorded (%s to record), %.2f MiB archived (manifest in %d parts, archive %s); export from the manifest %s; retry of the finished campaign (read back, %d failed scenes pending, %d batches enqueued) %s",
			mib(enqueued), mib(done), recordTime.Round(time.Second), mib(archived), c.Manifest, archiveTime.Round(time.Millisecond), exportTime.Round(time.Millisecond), rs.Reset, rs.Enqueued, retryTime.Round(time.Millisecond))
		client.Close()
		srv.Stop()
	}
}

// envOf turns KEY=VALUE pairs into a getenv.
func envOf(kv []string) func(string) string {
	return func(k string) string {
		for _, e := range kv {
			if v, ok := strings.CutPrefix(e, k+"="); ok {
				return v
			}
		}
		return ""
	}
}
