package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// demoQueue is the default-priority queue of the simulator's demo app.
var demoQueue, _ = campaign.QueueFor(simulator.DemoAppID, "default")

func TestMain(m *testing.M) { testenv.Main(m) }

// rig is a worker wired to real Redis, the simulator and a file store.
type rig struct {
	redis     *testenv.Redis
	sim       *simulator.Server
	campaigns *campaign.Store
	store     storage.Store
	handler   *Handler
	obs       *countingObserver
}

type countingObserver struct {
	mu             sync.Mutex
	calls, stored  int
	failed         map[int]int
	waited         time.Duration
	callsByErrcode map[int]int
	nopObserver
}

func (o *countingObserver) Called(app string, d time.Duration, code int, class Class) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	o.callsByErrcode[code]++
}
func (o *countingObserver) Stored(string) { o.mu.Lock(); o.stored++; o.mu.Unlock() }
func (o *countingObserver) Failed(_ string, code int) {
	o.mu.Lock()
	o.failed[code]++
	o.mu.Unlock()
}

// simulatorClient serves a simulator for the test and returns it with an
// interface-B client of its demo app, built as the worker command builds
// it (the worker retries refused tokens itself).
func simulatorClient(tb testing.TB, r *testenv.Redis, cfg simulator.Config) (*simulator.Server, *wechat.Client) {
	tb.Helper()
	sim, err := simulator.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	tb.Cleanup(srv.Close)
	// The simulator's faults hit the token endpoint too; a failed fetch is
	// remembered for ErrorHold, which must stay short of the test's quick
	// backoff (10 ms doubling over 6 attempts).
	tokens, err := wechat.NewStableTokenSource(wechat.StableTokenConfig{BaseURL: srv.URL, AppID: simulator.DemoAppID, Secret: simulator.DemoSecret, Redis: r.Client, ErrorHold: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	client, err := wechat.NewClient(wechat.Config{BaseURL: srv.URL, AppID: simulator.DemoAppID, Tokens: tokens, Redis: r.Client, NoTokenRetry: true})
	if err != nil {
		tb.Fatal(err)
	}
	return sim, client
}

func newRig(t *testing.T, simCfg simulator.Config, mod func(*Config)) *rig {
	t.Helper()
	r := testenv.NewRedis(t)
	sim, client := simulatorClient(t, r, simCfg)
	lim, err := limiter.New(r.Client, limiter.Config{Limit: limiter.Limit{N: 1000, Per: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obs := &countingObserver{failed: map[int]int{}, callsByErrcode: map[int]int{}}
	cfg := Config{
		Campaigns: campaign.NewStore(r.Client, ""),
		Limiter:   lim,
		Apps:      map[string]Codes{simulator.DemoAppID: client},
		Store:     store,
		Backoff:   10 * time.Millisecond,
		Metrics:   obs,
		Logger:    zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{redis: r, sim: sim, campaigns: cfg.Campaigns, store: store, handler: h, obs: obs}
}

func (rg *rig) create(t *testing.T, name, page string, scenes []string, batch int) campaign.Campaign {
	t.Helper()
	opts := wechat.DefaultCodeOptions()
	opts.Page = page
	c, _, err := rg.campaigns.Create(context.Background(), campaign.Campaign{Name: name, AppID: simulator.DemoAppID, Options: opts, Queue: demoQueue, BatchSize: batch}, scenes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func task(name string, batch int) *asynq.Task {
	return asynq.NewTask(campaign.TaskType, campaign.BatchTask{Campaign: name, Batch: batch}.Marshal())
}

func sceneList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("s/%d?x=%d", i, i)
	}
	return out
}

func TestBatchStoresEveryScene(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{BusyRate: 0.1, ServerErrorRate: 0.05, TokenInvalidRate: 0.05, Seed: 3}, nil)
	ctx := context.Background()
	c := rg.create(t, "ok", "pages/p/index", sceneList(40), 40)
	if err := rg.handler.ProcessTask(ctx, task("ok", 0)); err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	got, _ := rg.campaigns.Get(ctx, "ok")
	if got.Succeeded != 40 || got.Failed != 0 {
		t.Fatalf("campaign %+v: want 40 succeeded", got)
	}
	for _, sc := range sceneList(40) {
		obj, err := rg.store.Stat(ctx, storage.Key(c.Name, sc, "jpg"))
		if err != nil || obj.Meta.Scene != sc {
			t.Fatalf("stored %s: %+v, %v", sc, obj, err)
		}
	}
	if rg.obs.callsByErrcode[-1] == 0 || rg.obs.callsByErrcode[40001] == 0 {
		t.Fatalf("no busy or token answer seen: %v", rg.obs.callsByErrcode)
	}
	// Every call the simulator saw went through the worker (and so took a
	// slot of the ceiling): the client made none of its own.
	if sent, seen := rg.obs.calls, rg.sim.Stats(); sent != totalCalls(seen) {
		t.Fatalf("worker made %d calls, simulator saw %d", sent, totalCalls(seen))
	}
	// A second run of the finished batch calls nothing.
	before := rg.sim.Stats()
	if err := rg.handler.ProcessTask(ctx, task("ok", 0)); err != nil {
		t.Fatal(err)
	}
	if after := rg.sim.Stats(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a finished batch called WeChat again: %v → %v", before, after)
	}
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{Pages: []string{"pages/other"}}, nil)
	ctx := context.Background()
	rg.create(t, "perm", "pages/unreleased", sceneList(10), 10)
	if err := rg.handler.ProcessTask(ctx, task("perm", 0)); err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	got, _ := rg.campaigns.Get(ctx, "perm")
	if got.Failed != 10 || rg.obs.calls != 10 || rg.obs.failed[41030] != 10 {
		t.Fatalf("campaign %+v, calls %d, failed %v: want 10 failed with 41030 in 10 calls", got, rg.obs.calls, rg.obs.failed)
	}
}

func TestRunAgainFindsStoredImages(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{}, nil)
	ctx := context.Background()
	c := rg.create(t, "again", "", sceneList(6), 6)
	// A run that stored scene 0's image and died before recording it.
	if _, err := rg.campaigns.MarkBatchStarted(ctx, "again", 0); err != nil {
		t.Fatal(err)
	}
	img := jpegOf(t)
	if _, err := rg.store.Put(ctx, storage.Key(c.Name, sceneList(6)[0], "jpg"), img, storage.Meta{Scene: sceneList(6)[0], AppID: c.AppID}); err != nil {
		t.Fatal(err)
	}
	if err := rg.handler.ProcessTask(ctx, task("again", 0)); err != nil {
		t.Fatal(err)
	}
	if rg.obs.calls != 5 {
		t.Fatalf("%d calls, want 5: the stored scene was paid for again", rg.obs.calls)
	}
	got, _ := rg.campaigns.Get(ctx, "again")
	if got.Succeeded != 6 {
		t.Fatalf("campaign %+v", got)
	}
}

func TestDrainHandsBack(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{LatencyMin: 50 * time.Millisecond, LatencyMax: 60 * time.Millisecond}, func(c *Config) { c.Parallel = 2 })
	ctx := context.Background()
	rg.create(t, "drain", "", sceneList(200), 200)
	done := make(chan error, 1)
	go func() { done <- rg.handler.ProcessTask(ctx, task("drain", 0)) }()
	for {
		got, _ := rg.campaigns.Get(ctx, "drain")
		if got.Succeeded >= 4 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rg.handler.Drain()
	err := <-done
	if !errors.Is(err, ErrHandedBack) || IsFailure(err) {
		t.Fatalf("err = %v, want a handed-back error that is no failure", err)
	}
	if d := RetryDelay(0, err, nil); d > time.Second {
		t.Fatalf("drained batch comes back after %s", d)
	}
	got, _ := rg.campaigns.Get(ctx, "drain")
	stats := rg.sim.Stats()
	t.Logf("after drain: %+v; simulator %+v", got, stats)
	if got.Succeeded == 0 || got.Pending() == 0 || got.Failed != 0 {
		t.Fatalf("campaign %+v: want some succeeded, the rest pending", got)
	}
	if int64(rg.obs.calls) != got.Succeeded {
		t.Fatalf("%d calls made, %d recorded: a call in flight was lost", rg.obs.calls, got.Succeeded)
	}
}

func TestCancelledCampaignIsSkipped(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{}, nil)
	ctx := context.Background()
	rg.create(t, "cx", "", sceneList(5), 5)
	if _, err := rg.campaigns.Cancel(ctx, "cx"); err != nil {
		t.Fatal(err)
	}
	if err := rg.handler.ProcessTask(ctx, task("cx", 0)); err != nil {
		t.Fatal(err)
	}
	if rg.obs.calls != 0 {
		t.Fatalf("%d calls for a cancelled campaign", rg.obs.calls)
	}
}

func jpegOf(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// totalCalls counts the interface-B calls the simulator answered, 5xx
// included.
func totalCalls(s simulator.Stats) int {
	n := s.ServerErrors["getwxacodeunlimit"] + s.Dropped["getwxacodeunlimit"]
	for _, c := range s.Calls["getwxacodeunlimit"] {
		n += c
	}
	return n
}
