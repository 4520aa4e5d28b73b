// Package limiter holds every worker of the fleet under one call ceiling per
// app, kept in Redis. For each key (an appid), at most N calls start in any
// sliding window of length Per, however many processes on however many hosts
// share the Redis, and the time is Redis's, never a host's.
//
// # How
//
// One Lua script hands each caller its own future slot, as rate.Limiter's
// Reserve does inside one process. The app's state in Redis holds the next
// free slot, tat. A caller gets slot = max(now, tat, pause_until), tat moves
// on to slot + s, and the caller sleeps until its slot. Callers are served in
// the order they reach Redis, so none starves. An admission is one round
// trip, also for a caller that has to wait: it sleeps until its slot on its
// own clock, counted from when the answer arrived (so never early), and
// starts if it woke within Margin/2 of the slot counted from when it asked
// (so never too late) and no pause it knows of covers the slot. Each
// admission's answer carries the app's pause, so a Limiter knows every pause
// as of its latest admission, and of its own Pause calls. When that
// knowledge is older than Margin/2 at wake-up, or the waiter woke late, it
// confirms its slot in a second round trip and queues again if a pause was
// declared meanwhile or it is too late to keep the spacing. A process that
// admits a call at least every Margin/2 (one busy worker at 5000/1m: every
// 12 ms against 300 ms) thus makes one round trip per call, and a pause
// declared anywhere holds its calls within Margin/2 of the declaration.
//
// In front of Redis, each Limiter paces its own callers per app with a
// rate.Limiter at the fleet's rate, so one process never asks for slots
// faster than the whole ceiling, and a thousand waiting goroutines do not
// reach Redis at once.
//
// # Arithmetic
//
// Slots are s = (Per+Margin)/N apart, rounded up to a whole microsecond.
// Slots k and k+N are N·s ≥ Per+Margin apart, so any window of length Per
// holds at most N calls as long as each call starts (or arrives upstream)
// somewhere between 0 and Margin after its slot. A waiter starts within
// Margin/2 of its slot or queues again; the other half of the margin absorbs
// the spread of delays between admission and arrival at WeChat (scheduling
// and network), so the ceiling holds where WeChat counts. There is no burst:
// a token bucket lets burst + rate·Per calls into a window, this lets in N.
//
// With enough queued work a window of length Per holds ⌊Per/s⌋ calls, a
// utilisation of Per/(Per+Margin): 99% at the default Margin of Per/100. For
// 5000/1m, s = 12.12ms and 4950 calls start a minute; for 300/5s, s =
// 16.834ms and 297 start every 5 s.
//
// # Pauses
//
// When WeChat answers 45009 or 45011 the worker calls Pause: no slot of that
// app starts before the pause ends, in any process, while other apps go on.
// Waiters that hold slots inside the pause queue after it: at once in the
// process that paused, and within Margin/2 in the others (see above).
//
// # Redis
//
// An app's state is one hash, Prefix + "{" + key + "}" (by default
// "wxacode:limiter:{APPID}"), so it lives in one Redis Cluster slot and every
// script is atomic. Its fields, in microseconds on Redis's clock: n, per and
// margin (the ceiling that wrote it), sp (the spacing), tat (the next free
// slot) and pause (no slot before it). Its TTL only collects idle
// apps: nothing relies on a key expiring, so the limiter is exact on servers
// whose TTLs do not tick with wall time (miniredis). When Redis cannot be
// reached, Wait fails and nothing is admitted. Scripts read TIME before they
// write, which needs Redis 5 or later. The guarantee spans a Redis
// restart only if the data survives it (persistence or a replica): a Redis
// that comes back empty has forgotten the calls of the last window.
//
// Every worker of an app must use the same ceiling; one that differs is
// refused with a *MismatchError while the fleet's state is in use (see
// Limiter.Check).
package limiter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// DefaultPrefix is the Redis key prefix when Config.Prefix is empty.
const DefaultPrefix = "wxacode:limiter:"

// MinMargin is the smallest Config.Margin: a waiter needs a little time to
// wake and confirm its slot, and may start up to half the margin late.
const MinMargin = 2 * time.Millisecond

// giveBackTimeout bounds the round trip that returns a cancelled waiter's
// slot: the waiter's own context is done by then.
const giveBackTimeout = time.Second

// rediser is what the limiter needs of a Redis client to run its scripts;
// *redis.Client, *redis.ClusterClient and *redis.Ring have it.
type rediser interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
}

// Config configures a Limiter.
type Config struct {
	// Limit is the ceiling each app is held to. Required. Every worker of
	// an app must use the same Limit and Margin.
	Limit Limit

	// Margin is added to the window when spacing slots, to absorb delays
	// between admission and the call's arrival upstream (see the package
	// doc). Zero means Limit.Per/100, and at least MinMargin; a margin set
	// below MinMargin is an error. Utilisation is Per/(Per+Margin). The
	// command line reads it from WXACODE_RATE_MARGIN (a duration).
	Margin time.Duration

	// Prefix is put before every Redis key. Empty means DefaultPrefix.
	Prefix string

	// Logger receives the limiter's notices (a stale ceiling replaced, a
	// slot that could not be given back). The zero value logs nothing.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	c.Margin = cmp.Or(c.Margin, max(c.Limit.Per/100, MinMargin))
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
}

// Validate reports the first field that cannot be used, after defaults.
func (c *Config) validate() error {
	if err := c.Limit.validate(); err != nil {
		return fmt.Errorf("config Limit: %w", err)
	}
	if c.Margin < MinMargin {
		return fmt.Errorf("config Margin: %s is less than %s", c.Margin, MinMargin)
	}
	return nil
}

// Limiter holds each app (a key) to one ceiling shared, through Redis, by
// every Limiter of the fleet. Most callers want Wait before each call, and
// Pause when the upstream says the ceiling was hit. A Limiter is safe for
// concurrent use; make one per process and ceiling with New.
type Limiter struct {
	rdb    rediser
	limit  Limit
	margin time.Duration
	prefix string
	log    zerolog.Logger

	// The ceiling as the scripts see it, in microseconds.
	n, per, marginUS, spacing, late, gcMS int64

	mu   sync.Mutex
	apps map[string]*app
}

// app is what a Limiter keeps in the process for one app: its local pacer
// and the app's pause as of the latest answer from Redis.
type app struct {
	pacer *rate.Limiter

	mu    sync.Mutex
	pause int64     // no slot before it, µs on Redis's clock; 0: none known
	asOf  time.Time // when the freshest answer that told pause was asked for
}

// learn records a pause told by an answer to a request sent at sent.
func (a *app) learn(pause int64, sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pause = max(a.pause, pause)
	if sent.After(a.asOf) {
		a.asOf = sent
	}
}

// knows tells whether the slot may start at now, as far as the process
// knows: no known pause covers it and that knowledge is at most fresh old.
func (a *app) knows(slot int64, now time.Time, fresh time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slot >= a.pause && now.Sub(a.asOf) <= fresh
}

// New returns a Limiter for cfg using rdb, which may be a *redis.Client, a
// *redis.ClusterClient or a *redis.Ring. It does not talk to Redis; call
// Check to learn whether the fleet's ceiling is compatible.
func New(rdb rediser, cfg Config) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("new limiter: nil redis client")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new limiter: %w", err)
	}
	l := &Limiter{
		rdb:    rdb,
		limit:  cfg.Limit,
		margin: cfg.Margin,
		prefix: cfg.Prefix,
		log:    cfg.Logger,
		apps:   make(map[string]*app),
	}
	l.n = int64(cfg.Limit.N)
	l.per = cfg.Limit.Per.Microseconds()
	l.marginUS = cfg.Margin.Microseconds()
	l.spacing = (l.per + l.marginUS + l.n - 1) / l.n
	l.late = l.marginUS / 2
	// State outlives its last slot or pause by two windows, then goes.
	l.gcMS = 2 * (l.per + l.marginUS + 999) / 1000
	return l, nil
}

// Limit returns the ceiling the Limiter holds each app to.
func (l *Limiter) Limit() Limit { return l.limit }

// Margin returns the margin in use, after defaults.
func (l *Limiter) Margin() time.Duration { return l.margin }

// Wait blocks until the caller may start one call for the app key, and
// returns nil then: the call must be made at once, and counts whatever its
// answer. Slots are handed out in the order callers reach Redis.
//
// Wait fails at once, reserving nothing, when ctx's deadline would pass
// before the slot; that error wraps context.DeadlineExceeded. When ctx is
// done while waiting it returns ctx's error and gives the slot back if no
// later one was handed out. It returns a *MismatchError when the fleet uses
// another ceiling for key, and an error, admitting nothing, when Redis cannot
// be reached.
func (l *Limiter) Wait(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("limiter: wait: empty key")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("limiter: wait %s: %w", key, err)
	}
	if err := l.pace(ctx, key); err != nil {
		return fmt.Errorf("limiter: wait %s: %w", key, err)
	}
	k := l.redisKey(key)
	a := l.app(key)
	late := usDuration(l.late)
	var held int64 // the slot this caller holds, in µs; 0 before the first
	for {
		sent := time.Now()
		r, err := l.acquire(ctx, k, held, maxWait(ctx))
		if err != nil {
			return fmt.Errorf("limiter: wait %s: %w", key, err)
		}
		switch r.status {
		case statusRefused:
			return fmt.Errorf("limiter: wait %s: next slot in %s would exceed the context deadline: %w",
				key, usDuration(r.wait), context.DeadlineExceeded)
		case statusMismatch:
			return l.mismatch(key, r)
		case statusReplaced:
			l.log.Warn().Str("app", key).
				Str("old_limit", Limit{N: int(r.a), Per: usDuration(r.b)}.String()).
				Dur("old_margin", usDuration(r.c)).
				Str("limit", l.limit.String()).Dur("margin", l.margin).
				Msg("limiter: replaced the idle state of another ceiling")
		}
		a.learn(r.pause, sent)
		if r.wait == 0 {
			return nil
		}
		held = r.slot
		// The slot is wait after the script ran, which was between sent
		// and now: sleeping from now never starts early.
		if err := sleep(ctx, usDuration(r.wait)); err != nil {
			l.giveBack(ctx, key, k, held)
			return fmt.Errorf("limiter: wait %s: %w", key, err)
		}
		// Counted from sent, the slot is at its earliest: within late of
		// it, the call starts in time.
		now := time.Now()
		if now.Sub(sent.Add(usDuration(r.wait))) <= late && a.knows(held, now, late) {
			return nil
		}
		// Woken late, or the pauses known are stale: confirm in Redis.
	}
}

// pace waits for the process's own turn at the fleet's rate, failing at
// once if ctx's deadline comes first.
func (l *Limiter) pace(ctx context.Context, key string) error {
	now := time.Now()
	r := l.app(key).pacer.ReserveN(now, 1) // burst is 1: always OK
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		r.CancelAt(now)
		return fmt.Errorf("local turn in %s would exceed the context deadline: %w", d, context.DeadlineExceeded)
	}
	if err := sleep(ctx, d); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

func (l *Limiter) app(key string) *app {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.apps[key]
	if !ok {
		every := time.Duration(l.spacing) * time.Microsecond
		a = &app{pacer: rate.NewLimiter(rate.Every(every), 1)}
		l.apps[key] = a
	}
	return a
}

// giveBack returns a cancelled waiter's slot. It is best effort: a slot
// that cannot be given back is only a slot unused.
func (l *Limiter) giveBack(ctx context.Context, key, k string, slot int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
	defer cancel()
	if err := cancelScript.Run(ctx, l.rdb, []string{k}, slot).Err(); err != nil {
		l.log.Debug().Err(err).Str("app", key).Msg("limiter: slot not given back")
	}
}

// Pause holds every call of the app key, in every process, until d from now
// on Redis's clock, or, when d is 0, until the end of the current window
// (windows of length Per counted from the Unix epoch, so a 1m ceiling pauses
// to the next whole minute, as 45011 asks). It never shortens a pause
// already set, and reports when the pause ends. Call it when WeChat answers
// 45009 or 45011; other apps are not affected.
func (l *Limiter) Pause(ctx context.Context, key string, d time.Duration) (until time.Time, err error) {
	if key == "" {
		return time.Time{}, errors.New("limiter: pause: empty key")
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("limiter: pause %s: negative duration %s", key, d)
	}
	us := d.Microseconds()
	if d > 0 && us == 0 {
		us = 1
	}
	sent := time.Now()
	v, err := pauseScript.Run(ctx, l.rdb, []string{l.redisKey(key)}, us, l.per, l.gcMS).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("limiter: pause %s: %w", key, err)
	}
	r, err := ints(v, 2)
	if err != nil {
		return time.Time{}, fmt.Errorf("limiter: pause %s: %w", key, err)
	}
	// This process's waiters learn it at once.
	l.app(key).learn(r[0], sent)
	return time.UnixMicro(r[0]), nil
}

// Check reports whether this Limiter's ceiling may be used for the app key:
// nil when the fleet's state has the same ceiling, or none, or one unused
// for a window (the first Wait replaces it); a *MismatchError while another
// ceiling is in use. A worker calls it at start and refuses to run on a
// mismatch. It changes nothing in Redis.
func (l *Limiter) Check(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("limiter: check: empty key")
	}
	v, err := checkScript.Run(ctx, l.rdb, []string{l.redisKey(key)}, l.n, l.per, l.marginUS).Result()
	if err != nil {
		return fmt.Errorf("limiter: check %s: %w", key, err)
	}
	r, err := parseReply(v, 1)
	if err != nil {
		return fmt.Errorf("limiter: check %s: %w", key, err)
	}
	if r.status == statusMismatch {
		return l.mismatch(key, r)
	}
	return nil
}

func (l *Limiter) mismatch(key string, r reply) error {
	return &MismatchError{
		Key:         key,
		Limit:       l.limit,
		Margin:      l.margin,
		FleetLimit:  Limit{N: int(r.a), Per: usDuration(r.b)},
		FleetMargin: usDuration(r.c),
		StaleIn:     usDuration(r.wait),
	}
}

func (l *Limiter) redisKey(key string) string { return l.prefix + "{" + key + "}" }

// The statuses of acquireScript's reply.
const (
	statusOK       = 0
	statusReplaced = 1
	statusRefused  = -1
	statusMismatch = -2
)

// reply is acquireScript's (and checkScript's) answer; times in µs.
type reply struct {
	status     int64
	wait, slot int64
	a, b, c    int64 // a ceiling: n, per, margin
	pause      int64 // the app's pause (admissions only)
}

func (l *Limiter) acquire(ctx context.Context, k string, held, maxWait int64) (reply, error) {
	v, err := acquireScript.Run(ctx, l.rdb, []string{k},
		l.n, l.per, l.marginUS, l.spacing, l.gcMS, maxWait, held, l.late).Result()
	if err != nil {
		return reply{}, err
	}
	return parseReply(v, 4)
}

// parseReply reads a reply of acquireScript or checkScript; okLen is how
// many integers a status-0 reply carries (4 and 1).
func parseReply(v any, okLen int) (reply, error) {
	r, err := ints(v, 1)
	if err != nil {
		return reply{}, err
	}
	want := map[int64]int{statusOK: okLen, statusRefused: 3, statusReplaced: 7, statusMismatch: 6}
	n, ok := want[r[0]]
	if !ok || len(r) < n {
		return reply{}, fmt.Errorf("unexpected script reply %v", v)
	}
	var out reply
	fields := []*int64{&out.status, &out.wait, &out.slot, &out.a, &out.b, &out.c}
	switch {
	case r[0] == statusOK && okLen == 4:
		fields = []*int64{&out.status, &out.wait, &out.slot, &out.pause}
	case r[0] == statusReplaced:
		fields = append(fields, &out.pause)
	}
	for i := range min(len(r), len(fields)) {
		*fields[i] = r[i]
	}
	if out.wait < 0 {
		return reply{}, fmt.Errorf("unexpected negative wait in script reply %v", v)
	}
	return out, nil
}

// ints reads a script's reply: an array of at least n integers.
func ints(v any, n int) ([]int64, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < n {
		return nil, fmt.Errorf("unexpected script reply %v (%T)", v, v)
	}
	out := make([]int64, len(arr))
	for i, x := range arr {
		xi, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("unexpected script reply %v: element %d is %T", v, i, x)
		}
		out[i] = xi
	}
	return out, nil
}

// maxWait is how long, in µs, a slot may lie ahead for the caller to meet
// ctx's deadline; -1 when ctx has none.
func maxWait(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return max(0, time.Until(dl).Microseconds())
}

func usDuration(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
