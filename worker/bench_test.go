package worker

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// BenchmarkCapacity measures the end-to-end capacity of one worker with the
// ceiling lifted: asynq batches from a real Redis, the simulator answering
// at once (each code drawn before the timed run, see CacheImages), images
// stored in a real MinIO, every scene recorded. In the same
// run it measures MinIO's own PutObject rate (raw S3 client, the same image,
// the same number of requests in flight) and reports the ratio, which
// DESIGN.md wants at 80% or more. Run with -benchtime 1x.
func BenchmarkCapacity(b *testing.B) {
	const (
		scenes   = 4000
		inFlight = 128 // the worker's defaults: 4 batches × 32 scenes
	)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := testenv.NewRedis(b)
		m := testenv.NewMinIO(b)
		_, client := simulatorClient(b, r, simulator.Config{RateN: -1, CacheImages: true})
		lim, err := limiter.New(r.Client, limiter.Config{Limit: limiter.Limit{N: 1_000_000_000, Per: time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		getenv := envOf(m.Env())
		store, err := storage.Open(context.Background(), "s3://"+m.Bucket, storage.Options{Getenv: getenv})
		if err != nil {
			b.Fatal(err)
		}
		campaigns := campaign.NewStore(r.Client, "")
		h, err := New(Config{
			Campaigns: campaigns, Limiter: lim, Store: store,
			Apps:   map[string]Codes{simulator.DemoAppID: client},
			Logger: zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		list := make([]string, scenes)
		for j := range list {
			list[j] = fmt.Sprintf("cap%06d", j)
		}
		c, _, err := campaigns.Create(context.Background(), campaign.Campaign{Name: "capacity", AppID: simulator.DemoAppID, Options: wechat.DefaultCodeOptions(), Queue: demoQueue, BatchSize: 100}, list)
		if err != nil {
			b.Fatal(err)
		}
		// WeChat draws its codes on its own machines: let the simulator
		// draw each one before the timed run, so that drawing does not
		// take the CPU the pipeline and MinIO share.
		for _, sc := range list {
			if _, err := client.GetUnlimited(context.Background(), wechat.UnlimitedRequest{Scene: sc, CodeOptions: c.Options}); err != nil {
				b.Fatal(err)
			}
		}
		q := asynq.NewClientFromRedisClient(r.Client)
		for batch := range c.Batches {
			t := campaign.BatchTask{Campaign: c.Name, Batch: batch}
			if _, err := q.Enqueue(asynq.NewTask(campaign.TaskType, t.Marshal()), asynq.Queue(c.Queue), asynq.TaskID(t.ID())); err != nil {
				b.Fatal(err)
			}
		}

		// MinIO's own PutObject rate, before and after the pipeline's run
		// (MinIO's speed drifts as it fills): the same image, as many
		// requests in flight as the worker has calls.
		body, err := client.GetUnlimited(context.Background(), wechat.UnlimitedRequest{Scene: list[0], CodeOptions: c.Options})
		if err != nil {
			b.Fatal(err)
		}
		rawBefore := rawPutRate(b, m, "before", body.Data, scenes, inFlight)

		// The pipeline, with the worker's defaults: 4 batches × 32 scenes.
		b.StartTimer()
		start := time.Now()
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = Serve(ctx, h, ServerConfig{Redis: r.Client, Logger: zerolog.Nop()})
		}()
		for {
			got, err := campaigns.Get(context.Background(), "capacity")
			if err != nil {
				b.Fatal(err)
			}
			if got.Done() {
				if got.Succeeded != scenes {
					b.Fatalf("campaign ended %+v", got)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		pipeline := float64(scenes) / time.Since(start).Seconds()
		b.StopTimer()
		stop()
		wg.Wait()

		raw := (rawBefore + rawPutRate(b, m, "after", body.Data, scenes, inFlight)) / 2
		b.ReportMetric(pipeline, "codes/s")
		b.ReportMetric(raw, "minio_puts/s")
		b.ReportMetric(100*pipeline/raw, "%_of_minio")
		b.Logf("%d codes end to end: %.0f codes/s; MinIO PutObject of the same %d-byte image, %d in flight: %.0f puts/s (mean of before and after); ratio %.0f%%",
			scenes, pipeline, len(body.Data), inFlight, raw, 100*pipeline/raw)
		q.Close()
	}
}

// rawPutRate puts body n times under distinct keys with conc requests in
// flight and returns puts per second.
func rawPutRate(b *testing.B, m *testenv.MinIO, prefix string, body []byte, n, conc int) float64 {
	b.Helper()
	c := m.Server.S3()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				_, err := c.PutObject(context.Background(), &s3.PutObjectInput{
					Bucket: aws.String(m.Bucket), Key: aws.String(fmt.Sprintf("raw-%s/%06d.jpg", prefix, i)),
					Body: bytes.NewReader(body), ContentType: aws.String("image/jpeg"),
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func envOf(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}
