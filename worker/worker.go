// Package worker runs campaign batches: for each scene of a batch that has
// not ended, it takes a slot under the app's ceiling, calls WeChat, checks
// the image, stores it and records the scene.
//
// A campaign of interface B calls wxacode.getUnlimited with each scene; one
// of interface A or C calls wxacode.get or createQRCode with each path,
// under the same ceiling, and each call takes a unit of the app's
// lifetime-quota ledger first (see wechat.Client.Get): a path the ledger
// refuses, or that WeChat answers with 45029, fails at once (ClassQuota).
//
// What follows an error is one pure function, Policy.Decide (see its
// table): permanent WeChat errors fail the scene at once with its errcode;
// 45009 and 45011 pause the app for the whole fleet and retry the scene
// without counting a failure; token errors are retried at once with a new
// token, each call under its own slot; busy answers, HTTP and transport
// errors are retried with backoff, and so is the ceiling while Redis is
// away (it fails closed: no slot, no call). A scene still not done after a
// batch run's attempts stays pending and the batch is handed back to
// asynq, which runs it again later; a run skips scenes that ended, and a
// batch that ran before checks storage first, so nothing is paid for twice
// that was stored.
//
// A code paid for is never thrown away. When the store fails, a circuit
// opens: no scene of any batch takes a slot until the store answers a
// probe, and every image already paid for is kept and put again until it
// is stored. Only a shutdown that outlasts its timeout gives such an image
// up (the scene stays pending).
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// Limiter holds calls under the fleet-wide ceiling.
type Limiter interface {
	// Wait blocks until the app may make one call.
	Wait(ctx context.Context, app string) error
	// Pause holds every worker's calls for the app for d (0: to the end of
	// the current window).
	Pause(ctx context.Context, app string, d time.Duration) (time.Time, error)
}

// Codes makes codes: with interface B, and with interfaces A and C under
// the app's lifetime-quota ledger (*wechat.Client is one).
type Codes interface {
	GetUnlimited(ctx context.Context, req wechat.UnlimitedRequest) (wechat.Image, error)
	Get(ctx context.Context, req wechat.CodeRequest) (wechat.Image, error)
	CreateQRCode(ctx context.Context, req wechat.QRCodeRequest) (wechat.Image, error)
}

// Store keeps code images.
type Store interface {
	Put(ctx context.Context, key string, body []byte, meta storage.Meta) (storage.Object, error)
	Stat(ctx context.Context, key string) (storage.Object, error)
}

// Config wires a Handler. Campaigns, Limiter, Apps and Store are required.
type Config struct {
	// Campaigns is the campaign store.
	Campaigns *campaign.Store
	// Limiter is the fleet-wide ceiling.
	Limiter Limiter
	// Apps maps an appid to its WeChat client. A batch of an app the worker
	// has no client for is handed back for another worker.
	Apps map[string]Codes
	// Store is where images go.
	Store Store
	// Parallel is the number of scenes of one batch in flight at once.
	// Default 32: one batch alone keeps 5000 calls a minute going at up to
	// ~380 ms of API latency, so a small campaign is not slower.
	Parallel int
	// Attempts bounds the tries of one scene in one batch run for
	// temporary errors (45009 and 45011 do not count). Default 6.
	Attempts int
	// UnknownAttempts bounds the tries of a scene that keeps getting an
	// errcode wxacode does not know, across runs of its batch; then the
	// scene fails with that code. Default 3.
	UnknownAttempts int
	// Backoff is the first pause after a temporary error; it doubles up to
	// MaxBackoff, with jitter. Defaults 200ms and 10s.
	Backoff, MaxBackoff time.Duration
	// RedisAttempts bounds the tries of a scene in one batch run while
	// Redis (the ceiling) cannot be reached; they are spaced by the backoff,
	// at most ProbeInterval apart. Default 60.
	RedisAttempts int
	// PutTimeout bounds one put; a store that hangs counts as failing.
	// Default 10s.
	PutTimeout time.Duration
	// ProbeInterval is how often, while the store fails, it is probed and
	// the images already paid for are put again. Default 500ms.
	ProbeInterval time.Duration
	// CheckCancel is how often a running batch looks for a cancel and
	// renews its run lease. Default 1s.
	CheckCancel time.Duration
	// Lease is how long a batch's run lease lasts without renewal: a
	// worker that dies holds the batch that long at most. Default 30s.
	Lease time.Duration
	// Blobs, when set, receives the manifest of each campaign that ends:
	// its per-scene results leave Redis (campaign.Store.Archive). Nil
	// keeps them in Redis.
	Blobs campaign.Blobs
	// OnDone, when set, is called once a batch run finds its campaign done
	// (after the manifest is written): the webhook's Notifier.Done. An
	// error makes the batch run again, which calls it again.
	OnDone func(ctx context.Context, c campaign.Campaign) error
	// Metrics, when set, is told about every call and scene.
	Metrics Observer
	// Logger logs one line per batch and per failed scene.
	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	c.Parallel = cmp.Or(c.Parallel, 32)
	c.Attempts = cmp.Or(c.Attempts, 6)
	c.UnknownAttempts = cmp.Or(c.UnknownAttempts, 3)
	c.Backoff = cmp.Or(c.Backoff, 200*time.Millisecond)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 10*time.Second)
	c.RedisAttempts = cmp.Or(c.RedisAttempts, 60)
	c.ProbeInterval = cmp.Or(c.ProbeInterval, 500*time.Millisecond)
	c.PutTimeout = cmp.Or(c.PutTimeout, 10*time.Second)
	c.CheckCancel = cmp.Or(c.CheckCancel, time.Second)
	c.Lease = max(cmp.Or(c.Lease, 30*time.Second), 3*c.CheckCancel) // renewed every CheckCancel
	if c.Metrics == nil {
		c.Metrics = nopObserver{}
	}
	return c
}

// Validate reports the first missing or bad field.
func (c Config) Validate() error {
	switch {
	case c.Campaigns == nil:
		return errors.New("Campaigns is required")
	case c.Limiter == nil:
		return errors.New("Limiter is required")
	case len(c.Apps) == 0:
		return errors.New("Apps needs at least one app")
	case c.Store == nil:
		return errors.New("Store is required")
	case c.Parallel < 0 || c.Parallel > 1024:
		return fmt.Errorf("Parallel %d: want 1 to 1024", c.Parallel)
	case c.Attempts < 0 || c.UnknownAttempts < 0 || c.RedisAttempts < 0:
		return errors.New("Attempts, UnknownAttempts and RedisAttempts must not be negative")
	case c.Lease < 0 || c.CheckCancel < 0:
		return errors.New("Lease and CheckCancel must not be negative")
	case c.ProbeInterval < 0 || c.PutTimeout < 0:
		return errors.New("ProbeInterval and PutTimeout must not be negative")
	}
	return nil
}

// Observer receives the events metrics count. Implementations must be safe
// for concurrent use.
type Observer interface {
	// Called records one call of WeChat (interface B, A or C; a call the
	// quota ledger refused was not sent and is not recorded): its latency, its WeChat
	// errcode (0 when none) and the Class of its error (ClassNone for an
	// image).
	Called(app string, latency time.Duration, errcode int, class Class)
	// Waited records time spent waiting on the ceiling.
	Waited(app string, d time.Duration)
	// Stored and Failed record a scene's end.
	Stored(campaign string)
	Failed(campaign string, errcode int)
}

type nopObserver struct{}

func (nopObserver) Called(string, time.Duration, int, Class) {}
func (nopObserver) Waited(string, time.Duration)             {}
func (nopObserver) Stored(string)                            {}
func (nopObserver) Failed(string, int)                       {}

// Handler is the asynq handler of batch tasks.
type Handler struct {
	cfg     Config
	policy  Policy
	circuit *circuit
	drain   chan struct{}
	drained sync.Once
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	cfg = cfg.withDefaults()
	return &Handler{
		cfg:     cfg,
		policy:  Policy{Attempts: cfg.Attempts, UnknownAttempts: cfg.UnknownAttempts, RedisAttempts: cfg.RedisAttempts},
		circuit: newCircuit(cfg.Store, cfg.ProbeInterval),
		drain:   make(chan struct{}),
	}, nil
}

// Drain makes running batches stop starting new scenes: calls in flight
// finish and are recorded, and each batch is handed back with its pending
// scenes. Call it on SIGTERM before shutting the asynq server down.
func (h *Handler) Drain() { h.drained.Do(func() { close(h.drain) }) }

// ErrHandedBack is returned by a batch run that stopped with scenes still
// pending (a drain, or errors that outlasted its attempts). asynq runs the
// batch again; IsFailure does not count it.
var ErrHandedBack = errors.New("batch handed back with pending scenes")

// IsFailure is the asynq Config.IsFailure of workers: handing a batch back
// is not a failure.
func IsFailure(err error) bool { return !errors.Is(err, ErrHandedBack) }

// RetryDelay is the asynq Config.RetryDelayFunc of workers: a drained
// batch comes back at once, one that another worker runs a few seconds
// later, others after a growing delay.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	switch {
	case errors.Is(err, errDrained):
		return time.Second
	case errors.Is(err, errBusy):
		return 5 * time.Second
	}
	return min(time.Duration(n+1)*5*time.Second, time.Minute)
}

var (
	errDrained = fmt.Errorf("%w: worker shutting down", ErrHandedBack)
	errBusy    = fmt.Errorf("%w: another worker runs the batch", ErrHandedBack)
)

// ProcessTask runs one batch.
func (h *Handler) ProcessTask(ctx context.Context, task *asynq.Task) error {
	bt, err := campaign.ParseBatchTask(task.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := h.cfg.Logger.With().Str("campaign", bt.Campaign).Int("batch", bt.Batch).Logger()
	c, err := h.cfg.Campaigns.Get(ctx, bt.Campaign)
	if errors.Is(err, campaign.ErrNotFound) {
		log.Warn().Msg("batch of a campaign that no longer exists: dropped")
		return nil
	}
	if err != nil {
		return err
	}
	if c.State == campaign.StateCancelled {
		log.Info().Msg("campaign cancelled: batch skipped")
		return nil
	}
	codes, ok := h.cfg.Apps[c.AppID]
	if !ok {
		return fmt.Errorf("%w: no WeChat client for appid %s on this worker", ErrHandedBack, c.AppID)
	}
	lease, err := h.cfg.Campaigns.LeaseBatch(ctx, c.Name, bt.Batch, h.cfg.Lease)
	if err != nil {
		return err
	}
	if lease == nil {
		log.Debug().Msg("batch runs on another worker: handed back")
		return errBusy
	}
	defer func() {
		if err := lease.Release(context.WithoutCancel(ctx)); err != nil {
			log.Warn().Err(err).Msg("release batch lease")
		}
	}()
	run := &batchRun{h: h, c: c, batch: bt.Batch, codes: codes, log: log, lease: lease}
	if err = run.run(ctx); err != nil {
		return err
	}
	return h.finish(context.WithoutCancel(ctx), log, c.Name)
}

// finish looks whether the campaign is done after a batch run: then it
// moves the campaign's results out of Redis into its manifest and tells
// OnDone. A manifest that cannot be written is logged and left: the rows
// stay in Redis, where export finds them.
func (h *Handler) finish(ctx context.Context, log zerolog.Logger, name string) error {
	if h.cfg.Blobs == nil && h.cfg.OnDone == nil {
		return nil
	}
	c, err := h.cfg.Campaigns.Get(ctx, name)
	if err != nil || !c.Done() {
		return err
	}
	if h.cfg.Blobs != nil && c.Manifest == 0 {
		ok, err := h.cfg.Campaigns.Archive(ctx, name, h.cfg.Blobs)
		switch {
		case err != nil:
			log.Warn().Err(err).Msg("campaign done: manifest not written, results stay in Redis")
		case ok:
			log.Info().Msg("campaign done: results moved to its manifest in storage")
		}
	}
	if h.cfg.OnDone == nil {
		return nil
	}
	return h.cfg.OnDone(ctx, c)
}

// batchRun is one run of one batch.
type batchRun struct {
	h     *Handler
	c     campaign.Campaign
	batch int
	codes Codes
	log   zerolog.Logger
	lease *campaign.BatchLease

	mu                                 sync.Mutex
	succeeded, failed, skipped, stored int
	pending                            int
	lastErr                            error
}

// maxPasses bounds the passes of one batch run: a pass runs the batch's
// pending scenes, and the run looks again after it in case a retry turned
// failed scenes back to pending meanwhile.
const maxPasses = 4

func (r *batchRun) run(ctx context.Context) error {
	start := time.Now()
	ranBefore, err := r.h.cfg.Campaigns.MarkBatchStarted(ctx, r.c.Name, r.batch)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// waitCtx ends waits on the ceiling when the run halts; calls already
	// admitted go on under ctx.
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	stop := make(chan struct{}) // closed when the run must start no new scene
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop); cancelWait() }) }
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		r.watch(ctx, halt)
	}()
	defer watch.Wait()
	defer cancel()

	var scenes []string
	for pass := 0; pass < maxPasses && r.pending == 0; pass++ {
		status, err := r.h.cfg.Campaigns.BatchStatus(ctx, r.c, r.batch)
		if err != nil {
			return err
		}
		if countPending(status) == 0 {
			break
		}
		if scenes == nil {
			if scenes, err = r.h.cfg.Campaigns.BatchScenes(ctx, r.c.Name, r.batch); err != nil {
				return err
			}
			if len(scenes) != len(status) {
				return fmt.Errorf("batch %d of %s holds %d scenes, expected %d: %w", r.batch, r.c.Name, len(scenes), len(status), asynq.SkipRetry)
			}
		}
		r.pass(ctx, waitCtx, stop, scenes, status, ranBefore || pass > 0, pass == 0)
	}
	cancel()
	watch.Wait()

	ev := r.log.Info()
	if r.pending > 0 {
		ev = r.log.Warn()
	}
	ev.Int("succeeded", r.succeeded).Int("failed", r.failed).Int("skipped", r.skipped).
		Int("found_stored", r.stored).Int("pending", r.pending).
		Dur("took", time.Since(start)).Msg("batch run")
	if r.pending == 0 {
		return nil
	}
	select {
	case <-r.h.drain:
		return errDrained
	default:
	}
	if st, _ := r.h.cfg.Campaigns.State(context.WithoutCancel(ctx), r.c.Name); st == campaign.StateCancelled {
		return nil
	}
	return fmt.Errorf("%w: %d pending, last error: %w", ErrHandedBack, r.pending, r.lastErr)
}

// pass takes every pending scene of the batch to its end, or leaves it
// pending when the run halts.
func (r *batchRun) pass(ctx, waitCtx context.Context, stop <-chan struct{}, scenes []string, status []campaign.SceneStatus, ranBefore, first bool) {
	from, _ := r.c.BatchRange(r.batch)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(r.h.cfg.Parallel, countPending(status)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				r.scene(ctx, waitCtx, stop, from+int64(i), scenes[i], ranBefore)
			}
		}()
	}
feed:
	for i, st := range status {
		if st != campaign.Pending {
			if first {
				r.skipped++
			}
			continue
		}
		select {
		case jobs <- i:
		case <-stop:
			r.mu.Lock()
			r.pending += countPending(status[i:])
			r.mu.Unlock()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
}

func countPending(st []campaign.SceneStatus) int {
	n := 0
	for _, s := range st {
		if s == campaign.Pending {
			n++
		}
	}
	return n
}

// watch halts the run on a drain, a cancelled campaign or the end of ctx.
func (r *batchRun) watch(ctx context.Context, halt func()) {
	t := time.NewTicker(r.h.cfg.CheckCancel)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			halt()
			return
		case <-r.h.drain:
			halt()
			return
		case <-t.C:
			if held, err := r.lease.Renew(ctx); err == nil && !held {
				r.log.Warn().Msg("batch lease lost: batch stops")
				halt()
				return
			}
			if st, err := r.h.cfg.Campaigns.State(ctx, r.c.Name); err == nil && st == campaign.StateCancelled {
				r.log.Info().Msg("campaign cancelled: batch stops")
				halt()
				return
			}
		}
	}
}

// maker makes one code: one call of the campaign's interface.
type maker func(ctx context.Context) (wechat.Image, error)

// request returns the call that makes an item's code (a scene for
// interface B, a path for A and C) and the metadata stored with it, or
// why the item cannot be asked for.
func (r *batchRun) request(item string) (maker, storage.Meta, error) {
	o := r.c.Options
	switch r.c.Interface {
	case campaign.InterfaceA:
		req := wechat.CodeRequest{Path: item, Width: o.Width, AutoColor: o.AutoColor, LineColor: o.LineColor, IsHyaline: o.IsHyaline, EnvVersion: o.EnvVersion}
		meta := storage.Meta{Path: storage.MetaPath(item), AppID: r.c.AppID}
		return func(ctx context.Context) (wechat.Image, error) { return r.codes.Get(ctx, req) }, meta, req.Validate()
	case campaign.InterfaceC:
		req := wechat.QRCodeRequest{Path: item, Width: o.Width}
		meta := storage.Meta{Path: storage.MetaPath(item), AppID: r.c.AppID}
		return func(ctx context.Context) (wechat.Image, error) { return r.codes.CreateQRCode(ctx, req) }, meta, req.Validate()
	case campaign.InterfaceB:
		req := wechat.UnlimitedRequest{Scene: item, CodeOptions: o}
		meta := storage.Meta{Scene: item, Page: o.Page, AppID: r.c.AppID}
		return func(ctx context.Context) (wechat.Image, error) { return r.codes.GetUnlimited(ctx, req) }, meta, req.Validate()
	}
	return nil, storage.Meta{}, fmt.Errorf("campaign %s: unknown interface %q", r.c.Name, r.c.Interface)
}

// scene takes one scene (or path) to its end, or leaves it pending. What
// follows an error is Policy.Decide's to say.
func (r *batchRun) scene(ctx, waitCtx context.Context, stop <-chan struct{}, index int64, scene string, ranBefore bool) {
	req, meta, err := r.request(scene)
	if err != nil {
		r.fail(ctx, index, scene, 0, "", err.Error())
		return
	}
	// A run that was cut short may have stored the image without
	// recording it: look before paying again.
	checked := !ranBefore
	var n Attempts
	for {
		select {
		case <-stop:
			r.leave(nil)
			return
		default:
		}
		// No slot is taken while the store fails: the code could not be
		// kept.
		if !r.h.circuit.wait(waitCtx, stop) {
			r.leave(nil)
			return
		}
		if !checked {
			obj, found, err := r.findStored(ctx, scene, meta)
			if err != nil && r.h.circuit.isOpen() {
				continue // the store is down: look again when it is back
			}
			// A store that cannot tell while puts work (some refuse a
			// look-up of a missing key) counts as "not stored".
			checked = true
			if found {
				r.succeed(ctx, index, obj, true)
				return
			}
		}
		img, code, err := r.call(ctx, waitCtx, req)
		if errors.Is(err, ErrRedis) && waitCtx.Err() != nil {
			// Halted while waiting for a slot: not an error of the scene.
			r.leave(nil)
			return
		}
		if errors.Is(err, errNotCalled) {
			continue // the store failed meanwhile: the slot goes unused
		}
		if err == nil {
			// The image is paid for: it is kept until stored, whatever
			// the store does, and a drain does not cut this short.
			r.keep(ctx, index, scene, img, meta)
			return
		}
		act := r.h.policy.Decide(err, n)
		n = n.Add(Classify(err))
		switch act {
		case FailNow:
			rid := ""
			var we *wechat.Error
			if errors.As(err, &we) {
				rid = we.RID
			}
			r.fail(ctx, index, scene, code, rid, errMessage(err))
			return
		case HandBack:
			if Classify(err) == ClassCredentials {
				// A configuration fault, not the scene's: every scene
				// would fail the same way. Hand the batch back and say so.
				r.log.Error().Err(err).Msg("WeChat refused the app's credentials")
			}
			r.leave(err)
			return
		case PauseApp:
			until, perr := r.h.cfg.Limiter.Pause(ctx, r.c.AppID, 0)
			r.log.Warn().Int("errcode", code).Str("scene", scene).Time("paused_until", until).AnErr("pause_error", perr).Msg("WeChat rate limit: app paused")
		case RetryNewToken:
			// The client dropped the refused token: try again at once with
			// a new one, under a new slot (the client makes no call of its
			// own, see wechat.Config.NoTokenRetry).
		case BackOff:
			var d time.Duration
			if Classify(err) == ClassRedis {
				d = min(r.backoff(n.Redis), r.h.cfg.ProbeInterval)
			} else {
				d = r.backoff(n.Tries)
			}
			r.log.Debug().Err(err).Str("scene", scene).Int("attempt", n.Tries).Msg("temporary error: retrying")
			if !sleep(ctx, stop, d) {
				r.leave(err)
				return
			}
		}
	}
}

// errNotCalled is returned by call when a slot was granted but the call
// was not made, because the store failed meanwhile.
var errNotCalled = errors.New("call not made: the store fails")

// call takes a slot and makes one call. code is the WeChat errcode of err
// (0 when none). Calls of interfaces A and C take their slots under the
// same ceiling as B's.
func (r *batchRun) call(ctx, waitCtx context.Context, req maker) (wechat.Image, int, error) {
	waitStart := time.Now()
	if err := r.h.cfg.Limiter.Wait(waitCtx, r.c.AppID); err != nil {
		return wechat.Image{}, 0, fmt.Errorf("%w: ceiling: %w", ErrRedis, err)
	}
	r.h.cfg.Metrics.Waited(r.c.AppID, time.Since(waitStart))
	if r.h.circuit.isOpen() {
		return wechat.Image{}, 0, errNotCalled
	}
	// The call finishes even when a drain starts: the slot is spent and
	// WeChat may already be generating the code.
	callStart := time.Now()
	img, err := req(context.WithoutCancel(ctx))
	code := 0
	var we *wechat.Error
	if errors.As(err, &we) {
		code = we.Code
	}
	// Nothing was sent without a token, or when the quota ledger refused.
	if !errors.Is(err, wechat.ErrNoToken) && !errors.Is(err, wechat.ErrQuotaExhausted) {
		r.h.cfg.Metrics.Called(r.c.AppID, time.Since(callStart), code, Classify(err))
	}
	return img, code, err
}

// keep stores a paid image. While the store fails it opens the circuit
// (so no new call is paid for) and puts again every ProbeInterval, until
// the store takes it or ctx ends (the worker's shutdown timeout): only
// then is the image given up and the scene left pending.
func (r *batchRun) keep(ctx context.Context, index int64, scene string, img wechat.Image, meta storage.Meta) {
	key := storage.Key(r.c.Name, scene, imagetype.Ext(img.ContentType))
	for tries := 1; ; tries++ {
		pctx, cancel := context.WithTimeout(ctx, r.h.cfg.PutTimeout)
		obj, err := r.h.cfg.Store.Put(pctx, key, img.Data, meta)
		cancel()
		if err == nil {
			if d := r.h.circuit.reset(); d > 0 {
				r.log.Info().Dur("held_for", d).Msg("store answers again: calls resume")
			}
			r.succeed(ctx, index, obj, false)
			return
		}
		err = fmt.Errorf("%w: put %s: %w", ErrStorage, key, err)
		if ctx.Err() != nil {
			r.log.Warn().Err(err).Str("scene", scene).Int("tries", tries).Msg("store still failing at shutdown: paid image given up, scene left pending")
			r.leave(err)
			return
		}
		r.storeFailed(err) // Policy.Decide: KeepImageWaitStorage

		sleep(ctx, nil, r.h.cfg.ProbeInterval)
	}
}

// storeFailed opens the circuit, saying so the first time.
func (r *batchRun) storeFailed(err error) {
	if r.h.circuit.trip() {
		r.log.Warn().Err(err).Msg("store failing: no new calls until it answers; paid images kept")
	}
}

// findStored looks for the scene's image under either extension, made
// from what meta says (its scene, or its path). An error means the store
// could not tell.
func (r *batchRun) findStored(ctx context.Context, scene string, meta storage.Meta) (storage.Object, bool, error) {
	exts := []string{"jpg", "png"}
	if r.c.Options.IsHyaline {
		exts = []string{"png", "jpg"}
	}
	for _, ext := range exts {
		key := storage.Key(r.c.Name, scene, ext)
		obj, err := r.h.cfg.Store.Stat(ctx, key)
		if err == nil && sameItem(obj.Meta, meta, scene) && obj.SHA256 != "" {
			return obj, true, nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return storage.Object{}, false, fmt.Errorf("%w: stat %s: %w", ErrStorage, key, err)
		}
	}
	return storage.Object{}, false, nil
}

// sameItem reports whether a stored code was made from the item: the same
// scene, or the same path. A file store without extended attributes knows
// only the scene its key decodes to, which for A and C is the path.
func sameItem(stored, want storage.Meta, item string) bool {
	if want.Path == "" {
		return stored.Scene == item
	}
	return stored.Path == want.Path || (stored.Path == "" && stored.Scene == item)
}

func (r *batchRun) succeed(ctx context.Context, index int64, obj storage.Object, found bool) {
	wctx := context.WithoutCancel(ctx)
	res := campaign.Result{ContentType: obj.ContentType, Size: obj.Size, SHA256: obj.SHA256}
	var changed bool
	err := r.record(ctx, func() (err error) {
		changed, err = r.h.cfg.Campaigns.MarkSucceeded(wctx, r.c, index, res)
		return err
	})
	if err != nil {
		// Stored but not recorded: the next run finds it in storage.
		r.leave(err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if found {
		r.stored++
	} else {
		r.succeeded++
	}
	if changed {
		r.h.cfg.Metrics.Stored(r.c.Name)
	}
}

// record runs a write of the campaign store, again while Redis is away
// (RedisAttempts tries, ProbeInterval apart) unless ctx ends: a scene
// stored but not recorded would wait for its batch's next run.
func (r *batchRun) record(ctx context.Context, write func() error) error {
	err := write()
	for n := 1; err != nil && n < r.h.cfg.RedisAttempts; n++ {
		if !sleep(ctx, nil, r.h.cfg.ProbeInterval) {
			break
		}
		err = write()
	}
	return err
}

func (r *batchRun) fail(ctx context.Context, index int64, scene string, code int, rid, msg string) {
	wctx := context.WithoutCancel(ctx)
	var changed bool
	err := r.record(ctx, func() (err error) {
		changed, err = r.h.cfg.Campaigns.MarkFailed(wctx, r.c, index, code, msg)
		return err
	})
	if err != nil {
		r.leave(err)
		return
	}
	r.log.Warn().Str("scene", scene).Int("errcode", code).Str("rid", rid).Str("error", msg).Msg("scene failed")
	r.mu.Lock()
	r.failed++
	r.mu.Unlock()
	if changed {
		r.h.cfg.Metrics.Failed(r.c.Name, code)
	}
}

// leave leaves a scene pending for a later run.
func (r *batchRun) leave(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending++
	if err != nil {
		r.lastErr = err
	}
}

func (r *batchRun) backoff(attempt int) time.Duration {
	d := r.h.cfg.Backoff << min(max(attempt-1, 0), 16)
	d = min(d, r.h.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d; it reports false if ctx ended or stop closed first.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// errMessage is what a failed scene records: WeChat's errmsg when there
// is one.
func errMessage(err error) string {
	var we *wechat.Error
	if errors.As(err, &we) && we.Msg != "" {
		return we.Msg
	}
	return err.Error()
}

// AppLimiters is a Limiter that holds each app to a limiter of its own
// (apps with different ceilings need different limiters).
type AppLimiters map[string]Limiter

func (l AppLimiters) of(app string) (Limiter, error) {
	lim, ok := l[app]
	if !ok {
		return nil, fmt.Errorf("no ceiling for appid %s on this worker", app)
	}
	return lim, nil
}

// Wait waits on the app's limiter.
func (l AppLimiters) Wait(ctx context.Context, app string) error {
	lim, err := l.of(app)
	if err != nil {
		return err
	}
	return lim.Wait(ctx, app)
}

// Pause pauses the app on its limiter.
func (l AppLimiters) Pause(ctx context.Context, app string, d time.Duration) (time.Time, error) {
	lim, err := l.of(app)
	if err != nil {
		return time.Time{}, err
	}
	return lim.Pause(ctx, app, d)
}
