// Package worker runs campaign batches: for each scene of a batch that has
// not ended, it takes a slot under the app's ceiling, calls WeChat, checks
// the image, stores it and records the scene.
//
// Retry policy (DESIGN.md guarantee 4): permanent WeChat errors fail the
// scene at once with its errcode; 45009 and 45011 pause the app for the
// whole fleet and retry the scene without counting a failure; token errors
// (the client dropped the refused token) are retried at once with a new
// token, each call under its own slot; every other error (busy, HTTP 5xx, timeouts, storage or Redis
// outages) is retried with backoff. A scene still not done after a batch
// run's attempts stays pending and the batch is handed back to asynq, which
// runs it again later; a run skips scenes that ended, and a batch that ran
// before checks storage first, so nothing is paid for twice that was
// stored.
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

// Codes makes codes with interface B.
type Codes interface {
	GetUnlimited(ctx context.Context, req wechat.UnlimitedRequest) (wechat.Image, error)
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
	case c.Attempts < 0 || c.UnknownAttempts < 0:
		return errors.New("Attempts and UnknownAttempts must not be negative")
	case c.Lease < 0 || c.CheckCancel < 0:
		return errors.New("Lease and CheckCancel must not be negative")
	}
	return nil
}

// Observer receives the events metrics count. Implementations must be safe
// for concurrent use.
type Observer interface {
	// Called records one call of interface B: its latency and outcome
	// (errcode 0 for an image, -2 for a transport or HTTP error).
	Called(app string, latency time.Duration, errcode int)
	// Waited records time spent waiting on the ceiling.
	Waited(app string, d time.Duration)
	// Stored and Failed record a scene's end.
	Stored(campaign string)
	Failed(campaign string, errcode int)
}

type nopObserver struct{}

func (nopObserver) Called(string, time.Duration, int) {}
func (nopObserver) Waited(string, time.Duration)      {}
func (nopObserver) Stored(string)                     {}
func (nopObserver) Failed(string, int)                {}

// Handler is the asynq handler of batch tasks.
type Handler struct {
	cfg     Config
	drain   chan struct{}
	drained sync.Once
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	return &Handler{cfg: cfg.withDefaults(), drain: make(chan struct{})}, nil
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
	err = run.run(ctx)
	if err == nil && h.cfg.Blobs != nil {
		h.archive(context.WithoutCancel(ctx), log, c.Name)
	}
	return err
}

// archive moves a campaign that has ended out of Redis into its manifest.
// A failure is logged and left: the next batch that ends, or export, still
// finds the rows in Redis.
func (h *Handler) archive(ctx context.Context, log zerolog.Logger, name string) {
	c, err := h.cfg.Campaigns.Get(ctx, name)
	if err != nil || !c.Done() || c.Manifest > 0 {
		return
	}
	ok, err := h.cfg.Campaigns.Archive(ctx, name, h.cfg.Blobs)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("campaign done: manifest not written, results stay in Redis")
	case ok:
		log.Info().Msg("campaign done: results moved to its manifest in storage")
	}
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

// scene takes one scene to its end, or leaves it pending.
func (r *batchRun) scene(ctx, waitCtx context.Context, stop <-chan struct{}, index int64, scene string, ranBefore bool) {
	req := wechat.UnlimitedRequest{Scene: scene, CodeOptions: r.c.Options}
	if err := req.Validate(); err != nil {
		r.fail(ctx, index, scene, 0, "", err.Error())
		return
	}
	meta := storage.Meta{Scene: scene, Page: r.c.Options.Page, AppID: r.c.AppID}
	if ranBefore {
		// A run that was cut short may have stored the image without
		// recording it: look before paying again.
		if obj, ok := r.findStored(ctx, scene); ok {
			r.succeed(ctx, index, obj, true)
			return
		}
	}
	unknown := 0
	for attempt := 0; ; {
		select {
		case <-stop:
			r.leave(nil)
			return
		default:
		}
		waitStart := time.Now()
		if err := r.h.cfg.Limiter.Wait(waitCtx, r.c.AppID); err != nil {
			if waitCtx.Err() != nil {
				err = nil // halted: not an error of the scene
			} else {
				err = fmt.Errorf("ceiling: %w", err)
			}
			r.leave(err)
			return
		}
		r.h.cfg.Metrics.Waited(r.c.AppID, time.Since(waitStart))
		// The call and the upload finish even when a drain starts: the
		// slot is spent and WeChat may already be generating the code.
		callCtx := context.WithoutCancel(ctx)
		callStart := time.Now()
		img, err := r.codes.GetUnlimited(callCtx, req)
		var we *wechat.Error
		code := 0
		if errors.As(err, &we) {
			code = we.Code
		} else if err != nil {
			code = -2
		}
		if !errors.Is(err, wechat.ErrNoToken) { // nothing was sent without a token
			r.h.cfg.Metrics.Called(r.c.AppID, time.Since(callStart), code)
		}
		if err == nil {
			obj, perr := r.put(callCtx, stop, scene, img, meta)
			if perr != nil {
				r.leave(perr)
				return
			}
			r.succeed(ctx, index, obj, false)
			return
		}
		switch {
		case errors.Is(err, wechat.ErrCredentials):
			// A configuration fault, not the scene's: every scene would
			// fail the same way. Hand the batch back and say so.
			r.log.Error().Err(err).Msg("WeChat refused the app's credentials")
			r.leave(err)
			return
		case wechat.IsPermanent(err):
			rid := ""
			if we != nil {
				rid = we.RID
			}
			r.fail(ctx, index, scene, code, rid, errMessage(err))
			return
		case wechat.IsRateLimited(err):
			until, perr := r.h.cfg.Limiter.Pause(ctx, r.c.AppID, 0)
			r.log.Warn().Int("errcode", code).Str("scene", scene).Str("rid", we.RID).Time("paused_until", until).AnErr("pause_error", perr).Msg("WeChat rate limit: app paused")
			continue // not an attempt: the pause holds the next try
		}
		if wechat.IsTokenInvalid(err) {
			// The client dropped the refused token: try again at once with
			// a new one, under a new slot (the client makes no call of its
			// own, see wechat.Config.NoTokenRetry).
			attempt++
			if attempt >= r.h.cfg.Attempts {
				r.leave(err)
				return
			}
			continue
		}
		if we != nil && !we.Known() {
			unknown++
			if unknown >= r.h.cfg.UnknownAttempts {
				r.fail(ctx, index, scene, code, we.RID, errMessage(err))
				return
			}
		}
		attempt++
		if attempt >= r.h.cfg.Attempts {
			r.leave(err)
			return
		}
		r.log.Debug().Err(err).Str("scene", scene).Int("attempt", attempt).Msg("temporary error: retrying")
		if !sleep(ctx, stop, r.backoff(attempt)) {
			r.leave(err)
			return
		}
	}
}

// put stores the image, retrying a failing store with backoff.
func (r *batchRun) put(ctx context.Context, stop <-chan struct{}, scene string, img wechat.Image, meta storage.Meta) (storage.Object, error) {
	key := storage.Key(r.c.Name, scene, imagetype.Ext(img.ContentType))
	var err error
	for attempt := 1; ; attempt++ {
		var obj storage.Object
		obj, err = r.h.cfg.Store.Put(ctx, key, img.Data, meta)
		if err == nil {
			return obj, nil
		}
		if attempt >= r.h.cfg.Attempts {
			break
		}
		r.log.Warn().Err(err).Str("scene", scene).Int("attempt", attempt).Msg("store failed: retrying")
		// A drain does not cut this short: the code is paid for.
		if !sleep(ctx, nil, r.backoff(attempt)) {
			break
		}
	}
	return storage.Object{}, fmt.Errorf("store %s: %w", key, err)
}

// findStored looks for the scene's image under either extension.
func (r *batchRun) findStored(ctx context.Context, scene string) (storage.Object, bool) {
	exts := []string{"jpg", "png"}
	if r.c.Options.IsHyaline {
		exts = []string{"png", "jpg"}
	}
	for _, ext := range exts {
		obj, err := r.h.cfg.Store.Stat(ctx, storage.Key(r.c.Name, scene, ext))
		if err == nil && obj.Meta.Scene == scene && obj.SHA256 != "" {
			return obj, true
		}
	}
	return storage.Object{}, false
}

func (r *batchRun) succeed(ctx context.Context, index int64, obj storage.Object, found bool) {
	ctx = context.WithoutCancel(ctx)
	res := campaign.Result{ContentType: obj.ContentType, Size: obj.Size, SHA256: obj.SHA256}
	changed, err := r.h.cfg.Campaigns.MarkSucceeded(ctx, r.c, index, res)
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

func (r *batchRun) fail(ctx context.Context, index int64, scene string, code int, rid, msg string) {
	ctx = context.WithoutCancel(ctx)
	changed, err := r.h.cfg.Campaigns.MarkFailed(ctx, r.c, index, code, msg)
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
	d := r.h.cfg.Backoff << min(attempt-1, 16)
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
