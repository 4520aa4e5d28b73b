package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// envBenchOnly, when set, limits BenchmarkFloor to the runs it lists,
// comma-separated ("tmpfs/lifted,minio/ceiling").
const envBenchOnly = "WXACODE_BENCH_ONLY"

// envBenchSimulator makes TestBenchSimulator serve the simulator.
const envBenchSimulator = "WXACODE_BENCH_SIMULATOR"

// TestBenchSimulator is the simulator process of BenchmarkFloor; it does
// nothing unless started by it. It serves until its stdin closes, writing
// its address on stdout first.
func TestBenchSimulator(t *testing.T) {
	if os.Getenv(envBenchSimulator) != "1" {
		return
	}
	sim, err := simulator.New(simulator.Config{RateN: -1, CacheImages: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Printf("ADDR %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	<-done
}

// startSimulator runs the simulator in a child process, so that the CPU
// it spends answering is not counted against the programs measured.
func startSimulator(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchSimulator$", "-test.count=1", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), envBenchSimulator+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return "http://" + addr
		}
	}
	b.Fatalf("simulator process: no address (%v)", sc.Err())
	return ""
}

// usage is what a phase cost the process.
type usage struct {
	codes   int
	wall    time.Duration
	cpu     time.Duration // user + system
	trips   int64         // Redis round trips
	bytes   uint64        // allocated
	peakRSS int64         // bytes, the phase's high-water mark
}

func (u usage) cpuPerCode() float64 {
	return float64(u.cpu.Microseconds()) / 1000 / float64(u.codes)
}

// measure runs phase and reports what it cost the process.
func measure(b *testing.B, trips *testenv.Trips, codes int, phase func()) usage {
	b.Helper()
	runtime.GC()
	// Reset the peak RSS (VmHWM) to the current RSS.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := processCPU(b)
	t0 := trips.Load()
	start := time.Now()
	phase()
	u := usage{codes: codes, wall: time.Since(start), cpu: processCPU(b) - cpu0, trips: trips.Load() - t0}
	runtime.ReadMemStats(&m1)
	u.bytes = m1.TotalAlloc - m0.TotalAlloc
	u.peakRSS = peakRSS()
	return u
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads VmHWM from /proc/self/status, in bytes; 0 if unknown.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// floorStore is how the floor program stores a code: os.WriteFile, or a
// PutObject signed with the SHA-256 already computed.
type floorStore func(ctx context.Context, key string, body []byte, sum [32]byte) error

// BenchmarkFloor runs, side by side in one process, the floor of what a
// worker must do per code and the worker itself, on MinIO, a folder on
// tmpfs (/dev/shm) and a folder on disk, with the ceiling lifted and at a
// fast ceiling (5000/10s), and prints per code: process CPU (ms), the
// worker's ratio to the floor, Redis round trips, bytes allocated (and as a
// multiple of the image), and the worker's peak RSS. The simulator answers
// from a child process (its CPU is not counted), with every code drawn
// before the runs. The floor, with the same libraries: one stable_token
// fetch, then per code from 128 goroutines (paced at the limiter's spacing
// at the ceiling): POST getwxacodeunlimit, read the answer, SHA-256, store
// it (os.WriteFile, or PutObject reusing the hash), one Redis HSET. It
// prints figures and fails on none. Run with -benchtime 1x.
func BenchmarkFloor(b *testing.B) {
	const (
		codes    = 2000
		inFlight = 128 // the worker's defaults: 4 batches × 32 scenes
	)
	ceiling := limiter.Limit{N: 5000, Per: 10 * time.Second}
	for range b.N {
		base := startSimulator(b)
		r := testenv.NewRedis(b)
		trips := &testenv.Trips{}
		rdb := redis.NewClient(r.Options())
		b.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(trips)
		m := testenv.NewMinIO(b)
		ctx := context.Background()

		tokens, err := wechat.NewStableTokenSource(wechat.StableTokenConfig{BaseURL: base, AppID: simulator.DemoAppID, Secret: simulator.DemoSecret, Redis: rdb})
		if err != nil {
			b.Fatal(err)
		}
		client, err := wechat.NewClient(wechat.Config{BaseURL: base, AppID: simulator.DemoAppID, Tokens: tokens, Redis: rdb, NoTokenRetry: true})
		if err != nil {
			b.Fatal(err)
		}
		opts := wechat.DefaultCodeOptions()
		scenes := make([]string, codes)
		for i := range scenes {
			scenes[i] = fmt.Sprintf("sku%06d", i)
		}
		// Let the simulator draw every code once, before the runs.
		var size int
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < codes; i = next.Add(1) - 1 {
					img, err := client.GetUnlimited(ctx, wechat.UnlimitedRequest{Scene: scenes[i], CodeOptions: opts})
					if err != nil {
						b.Error(err)
						return
					}
					size = len(img.Data)
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}

		shm, err := os.MkdirTemp("/dev/shm", "wxacode-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(shm) })
		stores := []struct {
			name  string
			store func() storage.Store
			floor func(prefix string) floorStore
		}{
			{"minio", func() storage.Store {
				s, err := storage.Open(ctx, "s3://"+m.Bucket, storage.Options{Getenv: envOf(m.Env())})
				if err != nil {
					b.Fatal(err)
				}
				return s
			}, func(prefix string) floorStore { return s3Floor(m, prefix) }},
			{"tmpfs", func() storage.Store { return fileStore(b, shm) }, func(prefix string) floorStore { return fileFloor(b, shm, prefix) }},
			{"disk", func() storage.Store { return fileStore(b, b.TempDir()) }, func(prefix string) floorStore { return fileFloor(b, b.TempDir(), prefix) }},
		}
		type row struct {
			name          string
			floor, worker usage
		}
		var rows []row
		for _, st := range stores {
			for _, mode := range []string{"lifted", "ceiling"} {
				name := st.name + "/" + mode
				prefix := st.name + "-" + mode
				if only := os.Getenv(envBenchOnly); only != "" && !strings.Contains(","+only+",", ","+name+",") {
					continue
				}
				var pace *rate.Limiter
				lim := limiter.Limit{N: 1_000_000_000, Per: time.Second}
				if mode == "ceiling" {
					lim = ceiling
					l, err := limiter.New(rdb, limiter.Config{Limit: lim})
					if err != nil {
						b.Fatal(err)
					}
					// The floor paces at the limiter's spacing.
					spacing := (lim.Per + l.Margin() + time.Duration(lim.N) - 1) / time.Duration(lim.N)
					pace = rate.NewLimiter(rate.Every(spacing), 1)
				}
				fs := st.floor("f-" + prefix)
				floor := measure(b, trips, codes, func() {
					runFloor(b, base, rdb, "f-"+prefix, scenes, opts, inFlight, pace, fs)
				})
				run := prepareWorker(b, r.Client, rdb, client, st.store(), "w-"+prefix, scenes, lim)
				worker := measure(b, trips, codes, run)
				rows = append(rows, row{name, floor, worker})
				b.Logf("%s: floor %.2f ms CPU/code, %.0f codes/s; worker %.2f ms CPU/code, %.0f codes/s; ratio %.2f",
					name, floor.cpuPerCode(), float64(codes)/floor.wall.Seconds(),
					worker.cpuPerCode(), float64(codes)/worker.wall.Seconds(), worker.cpuPerCode()/floor.cpuPerCode())
			}
		}
		var out strings.Builder
		fmt.Fprintf(&out, "\n%d codes of %d bytes per run; ceiling %s; CPU of this process only (simulator, Redis and MinIO run apart)\n", codes, size, ceiling)
		fmt.Fprintf(&out, "%-14s %10s %10s %6s %12s %12s %14s %14s %10s %9s\n",
			"store/mode", "floor ms", "worker ms", "ratio", "floor trips", "worker trips", "floor B/code", "worker B/code", "x body", "peak RSS")
		for _, rw := range rows {
			wb := float64(rw.worker.bytes) / float64(codes)
			fmt.Fprintf(&out, "%-14s %10.2f %10.2f %6.2f %12.2f %12.2f %14.0f %14.0f %10.2f %7.0fMB\n",
				rw.name, rw.floor.cpuPerCode(), rw.worker.cpuPerCode(), rw.worker.cpuPerCode()/rw.floor.cpuPerCode(),
				float64(rw.floor.trips)/float64(codes), float64(rw.worker.trips)/float64(codes),
				float64(rw.floor.bytes)/float64(codes), wb, wb/float64(size), float64(rw.worker.peakRSS)/(1<<20))
			b.ReportMetric(rw.worker.cpuPerCode()/rw.floor.cpuPerCode(), "ratio_"+strings.ReplaceAll(rw.name, "/", "_"))
		}
		// Printed, not logged: the test framework truncates long logs of
		// benchmarks.
		fmt.Print(out.String())
	}
}

func fileStore(b *testing.B, dir string) storage.Store {
	b.Helper()
	s, err := storage.NewFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fileFloor stores with os.WriteFile in dir/prefix.
func fileFloor(b *testing.B, dir, prefix string) floorStore {
	b.Helper()
	folder := filepath.Join(dir, prefix)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		b.Fatal(err)
	}
	return func(_ context.Context, key string, body []byte, _ [32]byte) error {
		return os.WriteFile(filepath.Join(folder, key), body, 0o644)
	}
}

// s3Floor stores with PutObject under prefix, signed with the hash the
// floor computed.
func s3Floor(m *testenv.MinIO, prefix string) floorStore {
	c := m.Server.S3()
	return func(ctx context.Context, key string, body []byte, sum [32]byte) error {
		hexSum := hex.EncodeToString(sum[:])
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(m.Bucket), Key: aws.String(prefix + "/" + key),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("image/jpeg"),
		}, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
				return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("floorPayloadHash",
					func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
						return next.HandleInitialize(v4.SetPayloadHash(ctx, hexSum), in)
					}), middleware.Before)
			})
		})
		return err
	}
}

// runFloor is the floor program: one token fetch, then per code a POST, a
// read, a SHA-256, a store and one HSET, from conc goroutines, paced when
// pace is not nil.
func runFloor(b *testing.B, base string, rdb *redis.Client, name string, scenes []string, opts wechat.CodeOptions, conc int, pace *rate.Limiter, store floorStore) {
	ctx := context.Background()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer hc.CloseIdleConnections()
	reqBody, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": simulator.DemoAppID, "secret": simulator.DemoSecret})
	resp, err := hc.Post(base+"/cgi-bin/stable_token", "application/json", bytes.NewReader(reqBody))
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.AccessToken == "" {
		b.Fatalf("floor: token: %v", err)
	}
	u := base + "/wxa/getwxacodeunlimit?access_token=" + tok.AccessToken
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(scenes)); i = next.Add(1) - 1 {
				if pace != nil {
					if err := pace.Wait(ctx); err != nil {
						b.Error(err)
						return
					}
				}
				body, _ := json.Marshal(wechat.UnlimitedRequest{Scene: scenes[i], CodeOptions: opts})
				resp, err := hc.Post(u, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				img, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Error(err)
					return
				}
				sum := sha256.Sum256(img)
				if err := store(ctx, scenes[i]+".jpg", img, sum); err != nil {
					b.Error(err)
					return
				}
				if err := rdb.HSet(ctx, "floor:{"+name+"}", scenes[i], hex.EncodeToString(sum[:])).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// prepareWorker creates and enqueues a campaign of scenes through setup (a
// client whose round trips are not counted), and returns the run: one
// worker with its defaults on rdb until the campaign is done.
func prepareWorker(b *testing.B, setup, rdb *redis.Client, client *wechat.Client, store storage.Store, name string, scenes []string, lim limiter.Limit) func() {
	ctx := context.Background()
	// Each run its own limiter state: the ceilings differ between runs.
	l, err := limiter.New(rdb, limiter.Config{Limit: lim, Prefix: "bench:" + name + ":"})
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{
		Campaigns: campaign.NewStore(rdb, ""), Limiter: l, Store: store,
		Apps:   map[string]Codes{simulator.DemoAppID: client},
		Logger: zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	campaigns := campaign.NewStore(setup, "")
	c, _, err := campaigns.Create(ctx, campaign.Campaign{Name: name, AppID: simulator.DemoAppID, Options: wechat.DefaultCodeOptions(), Queue: demoQueue, BatchSize: 100}, scenes)
	if err != nil {
		b.Fatal(err)
	}
	q := asynq.NewClientFromRedisClient(setup)
	defer q.Close()
	for batch := range c.Batches {
		t := campaign.BatchTask{Campaign: c.Name, Batch: batch}
		if _, err := q.Enqueue(asynq.NewTask(campaign.TaskType, t.Marshal()), asynq.Queue(c.Queue), asynq.TaskID(t.ID())); err != nil {
			b.Fatal(err)
		}
	}
	return func() {
		sctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = Serve(sctx, h, ServerConfig{Redis: rdb, Logger: zerolog.Nop()}) })
		defer wg.Wait()
		defer stop()
		for {
			got, err := campaigns.Get(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			if got.Done() {
				if got.Succeeded != int64(len(scenes)) {
					b.Fatalf("campaign %s ended %+v", name, got)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
