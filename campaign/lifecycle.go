package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrIncomplete is returned by BeginRetry for a campaign whose create was
// cut short before every scene was written: only the same enqueue run
// again can finish it.
var ErrIncomplete = errors.New("campaign was not completely enqueued: run the same enqueue again")

// ErrArchived is returned by BeginRetry when the campaign's rows moved to
// its manifest since the caller read it: Restore them, then begin again.
var ErrArchived = errors.New("campaign was archived meanwhile: restore it first")

// transitionScript changes a campaign's state if it is one of the states
// allowed: KEYS meta; ARGV new state, then the states it may come from.
// It returns {1, old} when it changed the state, {0, old} when the state
// was not one of them, {-1, ""} when the campaign does not exist.
var transitionScript = redis.NewScript(`
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return {-1, ''} end
for i = 2, #ARGV do
  if ARGV[i] == s then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return {1, s}
  end
end
return {0, s}
`)

// transition sets a campaign's state to `to` if it is one of from, in
// one step. It returns the state the campaign had and whether it changed.
func (s *Store) transition(ctx context.Context, name string, to State, from ...State) (State, bool, error) {
	args := make([]any, 0, len(from)+1)
	args = append(args, string(to))
	for _, f := range from {
		args = append(args, string(f))
	}
	res, err := transitionScript.Run(ctx, s.rdb, []string{s.key(name, "meta")}, args...).Slice()
	if err != nil {
		return "", false, fmt.Errorf("set state of %s: %w", name, err)
	}
	code, prev, err := scriptPair(res)
	if err != nil {
		return "", false, fmt.Errorf("set state of %s: %w", name, err)
	}
	if code < 0 {
		return "", false, fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	}
	return State(prev), code == 1, nil
}

// scriptPair reads a {number, string} script reply.
func scriptPair(res []any) (int64, string, error) {
	if len(res) != 2 {
		return 0, "", fmt.Errorf("script reply %v: want two values", res)
	}
	n, ok1 := res[0].(int64)
	str, ok2 := res[1].(string)
	if !ok1 || !ok2 {
		return 0, "", fmt.Errorf("script reply %v: want a number and a string", res)
	}
	return n, str, nil
}

// Activate marks a campaign whose batches are all enqueued active. It
// changes only an enqueuing campaign: a cancel that came first sticks. It
// reports the state the campaign is in afterwards.
func (s *Store) Activate(ctx context.Context, name string) (State, error) {
	prev, changed, err := s.transition(ctx, name, StateActive, StateEnqueuing)
	if err != nil {
		return "", err
	}
	if changed {
		return StateActive, nil
	}
	return prev, nil
}

// Cancel stops a campaign at any moment, also while it is still being
// enqueued: workers finish the calls in flight and leave its remaining
// scenes pending. Only a retry makes it active again. Cancelling a
// cancelled campaign changes nothing. It returns the campaign's status.
func (s *Store) Cancel(ctx context.Context, name string) (Status, error) {
	if err := ValidateName(name); err != nil {
		return Status{}, fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	}
	if _, _, err := s.transition(ctx, name, StateCancelled, StateEnqueuing, StateActive); err != nil {
		return Status{}, err
	}
	return s.Status(ctx, name)
}

// beginRetryScript starts a retry run: KEYS meta, fail, errors; ARGV the
// manifest parts the caller put back into Redis (0: none). It refuses a
// campaign whose scenes are not all written; otherwise, in one step, it
// drops the manifest pointer when the caller restored those parts, turns
// every failed scene back to pending, counts a new retry run and makes the
// campaign active. Reply: {run, scenes reset}; {-1} missing, {-2} not
// written, {-3} archived and not restored by the caller.
var beginRetryScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HGET', KEYS[1], 'written') ~= '1' then return {-2, 0} end
local mf = redis.call('HGET', KEYS[1], 'manifest')
if mf then
  if mf ~= ARGV[1] then return {-3, 0} end
  redis.call('HDEL', KEYS[1], 'manifest')
end
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if redis.call('SETBIT', KEYS[2], tonumber(f), 0) == 1 then n = n + 1 end
end
redis.call('DEL', KEYS[3])
if n > 0 then redis.call('HINCRBY', KEYS[1], 'failed', -n) end
redis.call('HSET', KEYS[1], 'state', 'active')
return {redis.call('HINCRBY', KEYS[1], 'retries', 1), n}
`)

// BeginRetry starts a retry run of a campaign: in one step every failed
// scene turns back to pending, a cancelled campaign becomes active and the
// run is counted. It returns the run's number and the scenes reset.
// restored is the number of manifest parts the caller put back into Redis
// (Restore), 0 when the campaign had none.
//
// The caller then enqueues every batch with a pending scene and no live
// task; a retry that dies before it has leaves pending scenes that the
// next retry finds, and a batch whose task is running when its scenes are
// reset runs them before it ends (the worker looks again).
func (s *Store) BeginRetry(ctx context.Context, name string, restored int) (run int, reset int64, err error) {
	keys := []string{s.key(name, "meta"), s.key(name, "fail"), s.key(name, "errors")}
	res, err := beginRetryScript.Run(ctx, s.rdb, keys, restored).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("retry %s: %w", name, err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("retry %s: script reply %v", name, res)
	}
	switch res[0] {
	case -1:
		return 0, 0, fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	case -2:
		return 0, 0, fmt.Errorf("retry %s: %w", name, ErrIncomplete)
	case -3:
		return 0, 0, fmt.Errorf("retry %s: %w", name, ErrArchived)
	}
	return int(res[0]), res[1], nil
}

// UnfinishedBatches returns the batches that hold a scene not succeeded
// (pending or failed), in order. It reads the campaign's bitmaps whole:
// two round trips whatever its size.
func (s *Store) UnfinishedBatches(ctx context.Context, c Campaign) ([]int, error) {
	ok, err := s.rdb.Get(ctx, s.key(c.Name, "ok")).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("batches of %s: %w", c.Name, err)
	}
	var out []int
	for b := 0; b < c.Batches; b++ {
		from, to := c.BatchRange(b)
		for i := from; i < to; i++ {
			off := i / 8
			if off >= int64(len(ok)) || ok[off]&(0x80>>(i%8)) == 0 {
				out = append(out, b)
				break
			}
		}
	}
	return out, nil
}

// BatchLease is a batch's run lease: while a worker holds it, no other
// worker runs the batch, so two tasks of one batch (an enqueue's and a
// retry's) never pay for one scene twice.
type BatchLease struct {
	s     *Store
	key   string
	token string
	ttl   time.Duration
}

// renewScript extends a lease still held by the caller: KEYS lock; ARGV
// token, ttl in ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes a lease still held by the caller: KEYS lock; ARGV
// token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// LeaseBatch takes the run lease of a batch for ttl; it returns nil, nil
// when another worker holds it. Renew it while the run lasts (every ttl/3)
// and Release it at the end; a worker that dies lets it lapse after ttl.
func (s *Store) LeaseBatch(ctx context.Context, name string, batch int, ttl time.Duration) (*BatchLease, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	l := &BatchLease{s: s, key: s.batchKey(name, "lock", batch), token: hex.EncodeToString(b[:]), ttl: ttl}
	ok, err := s.rdb.SetNX(ctx, l.key, l.token, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("lease %s batch %d: %w", name, batch, err)
	}
	if !ok {
		return nil, nil
	}
	return l, nil
}

// Renew extends the lease; it reports false when the lease was lost (it
// lapsed and another worker took it).
func (l *BatchLease) Renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, l.s.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	return n == 1, nil
}

// Release gives the lease up, if it is still held.
func (l *BatchLease) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.s.rdb, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Status is a campaign as every surface reports it: `wxacode status
// --json`, the dashboard and the HTTP API all serve this one type.
type Status struct {
	Campaign string `json:"campaign"`
	AppID    string `json:"appid"`
	// Interface is b (scenes), a or c (paths).
	Interface Interface `json:"interface"`
	Page      string    `json:"page"`
	Queue     string    `json:"queue"`
	// State is enqueuing, active or cancelled.
	State     State `json:"state"`
	Total     int64 `json:"total"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Pending   int64 `json:"pending"`
	// Done is true when succeeded + failed == total.
	Done bool `json:"done"`
	// RatePerSecond is scenes ended per second between the first and the
	// latest that ended; 0 until two have.
	RatePerSecond float64 `json:"rate_per_second"`
	// ETASeconds is the time left at that rate; 0 when done, cancelled or
	// unknown.
	ETASeconds float64 `json:"eta_seconds"`
	// Retries counts the retry runs.
	Retries int       `json:"retries"`
	Created time.Time `json:"created"`
	// Archived is true once the per-scene results moved to the manifest in
	// storage.
	Archived bool `json:"archived"`
	// FailuresByErrcode counts failed scenes by WeChat errcode (0: a
	// failure without one).
	FailuresByErrcode map[int]int64 `json:"failures_by_errcode"`
	// Workers is the number of live workers that serve the campaign's app
	// (see Store.Served).
	Workers int `json:"workers"`
	// Unserved is true when the campaign has scenes to make and no live
	// worker serves its app: it waits for one to start.
	Unserved bool `json:"unserved"`
}

// StatusOf is the status of a campaign record with its failures by
// errcode (nil: none).
func StatusOf(c Campaign, failures map[int]int64) Status {
	st := Status{
		Campaign: c.Name, AppID: c.AppID, Interface: c.Interface, Page: c.Options.Page, Queue: c.Queue, State: c.State,
		Total: c.Total, Succeeded: c.Succeeded, Failed: c.Failed, Pending: c.Pending(),
		Done: c.Done(), RatePerSecond: c.Rate(), Retries: c.Retries, Created: c.Created,
		Archived: c.Manifest > 0, FailuresByErrcode: failures,
	}
	if st.FailuresByErrcode == nil {
		st.FailuresByErrcode = map[int]int64{}
	}
	st.ETASeconds = st.ETA(st.RatePerSecond)
	return st
}

// WithWorkers sets Workers to the number of live workers serving the app,
// and Unserved when the campaign waits for one: active or enqueuing, not
// done, and no worker.
func (st Status) WithWorkers(served map[string]int) Status {
	st.Workers = served[st.AppID]
	st.Unserved = st.Workers == 0 && !st.Done && st.State != StateCancelled
	return st
}

// ETA is the seconds left at rate scenes a second: 0 when done, cancelled
// or unknown.
func (st Status) ETA(rate float64) float64 {
	if rate <= 0 || st.Done || st.State == StateCancelled {
		return 0
	}
	return float64(st.Pending) / rate
}

// Status returns one campaign's status, or ErrNotFound.
func (s *Store) Status(ctx context.Context, name string) (Status, error) {
	if ValidateName(name) != nil {
		return Status{}, fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	}
	c, err := s.Get(ctx, name)
	if err != nil {
		return Status{}, err
	}
	served, err := s.Served(ctx)
	if err != nil {
		return Status{}, err
	}
	return s.statusOf(ctx, c, served)
}

// Statuses returns every campaign's status, oldest first.
func (s *Store) Statuses(ctx context.Context) ([]Status, error) {
	cs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	served, err := s.Served(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(cs))
	for i, c := range cs {
		if out[i], err = s.statusOf(ctx, c, served); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) statusOf(ctx context.Context, c Campaign, served map[string]int) (Status, error) {
	var failures map[int]int64
	if c.Failed > 0 {
		f, err := s.Failures(ctx, c.Name)
		if err != nil {
			return Status{}, err
		}
		failures = f
	}
	return StatusOf(c, failures).WithWorkers(served), nil
}
