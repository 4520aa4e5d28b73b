package producer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/wechat"
)

// Enqueuer is the part of an asynq client the producer uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// TaskLookup is the part of an asynq.Inspector that Retry uses to find
// the batches that have no live task.
type TaskLookup interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

// Config tunes a Producer. The zero value is usable.
type Config struct {
	// BatchSize is the number of scenes in one task. Default 200.
	BatchSize int
	// Parallel is the number of enqueue calls in flight. Default 16.
	Parallel int
	// MaxRetry is asynq's retry budget of a batch task. A batch waits for
	// the ceiling inside its handler and skips done scenes when run again,
	// so the budget only bounds how often a failing batch is run. Default
	// 1000.
	MaxRetry int
	// Timeout bounds one run of a batch task. Default 2h.
	Timeout time.Duration
	// Retention keeps a finished task's record, so that enqueueing the same
	// batch again is refused by its ID for that long. Default 7 days.
	Retention time.Duration
	// Progress, when set, is called after each batch is enqueued with the
	// batches done so far and the total.
	Progress func(done, total int)
	// CheckCancel is how many batches Enqueue enqueues between two looks
	// at the campaign's state: a cancel stops it there. Default 500.
	CheckCancel int
	// Tasks looks up batch tasks for Retry; required by Retry.
	Tasks TaskLookup
	// Blobs is the store holding finished campaigns' manifests, which
	// Retry reads back; nil makes Retry refuse an archived campaign.
	Blobs campaign.Blobs
	// Ledger reads the lifetime-quota ledgers of interfaces A and C
	// (wechat.QuotaLedger on the workers' Redis); required to enqueue a
	// campaign of A or C, which it checks against what is left.
	Ledger Ledger
	// QuotaLimit is the lifetime quota of interfaces A and C together per
	// app, in codes, as the workers' clients enforce it. Default
	// wechat.DefaultQuotaLimit (100,000).
	QuotaLimit int
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, 200)
	c.Parallel = cmp.Or(c.Parallel, 16)
	c.MaxRetry = cmp.Or(c.MaxRetry, 1000)
	c.Timeout = cmp.Or(c.Timeout, 2*time.Hour)
	c.Retention = cmp.Or(c.Retention, 7*24*time.Hour)
	c.CheckCancel = cmp.Or(c.CheckCancel, 500)
	c.QuotaLimit = cmp.Or(c.QuotaLimit, wechat.DefaultQuotaLimit)
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 0 || c.BatchSize > 100_000:
		return fmt.Errorf("BatchSize %d: want 1 to 100000", c.BatchSize)
	case c.Parallel < 0:
		return fmt.Errorf("Parallel %d: must not be negative", c.Parallel)
	case c.CheckCancel < 0:
		return fmt.Errorf("CheckCancel %d: must not be negative", c.CheckCancel)
	case c.QuotaLimit < 0:
		return fmt.Errorf("QuotaLimit %d: must not be negative", c.QuotaLimit)
	case c.Timeout < 0 || c.Timeout%time.Second != 0:
		return fmt.Errorf("Timeout %s: want whole seconds", c.Timeout)
	}
	return nil
}

// Producer records campaigns and enqueues their batches.
type Producer struct {
	store *campaign.Store
	q     Enqueuer
	cfg   Config
}

// New returns a Producer writing records to store and tasks to q.
func New(store *campaign.Store, q Enqueuer, cfg Config) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("producer config: %w", err)
	}
	return &Producer{store: store, q: q, cfg: cfg.withDefaults()}, nil
}

// BatchSize returns the batch size in force.
func (p *Producer) BatchSize() int { return p.cfg.BatchSize }

// Summary reports what Enqueue did.
type Summary struct {
	// Campaign is the stored record.
	Campaign campaign.Campaign
	// Created is false when the campaign existed (the same spec again).
	Created bool
	// Enqueued counts the tasks enqueued by this call; AlreadyQueued those
	// asynq already held under the same ID.
	Enqueued, AlreadyQueued int
	// Cancelled is true when the campaign was cancelled while this call
	// enqueued it: it stopped there, and a retry resumes the campaign.
	Cancelled bool
}

// Enqueue validates the spec, records the campaign with its distinct
// scenes (the paths of interfaces A and C) and enqueues every batch. The
// name is claimed with the spec's digest before anything else is written:
// with another spec under the name it fails with campaign.ErrExists having
// written nothing; the same spec again enqueues only what is missing. A
// cancel while it runs stops it and sticks.
//
// A new campaign of interface A or C with more paths than its app has left
// of the lifetime quota is refused with *QuotaError before anything is
// written (see Config.Ledger).
func (p *Producer) Enqueue(ctx context.Context, spec Spec, scenes []string) (Summary, error) {
	if err := spec.Validate(); err != nil {
		return Summary{}, err
	}
	iface, _ := campaign.ParseInterface(string(spec.Interface)) // checked by Validate
	items := "scenes"
	if iface.Limited() {
		items = "paths"
	}
	if len(scenes) == 0 {
		return Summary{}, &FieldError{Field: items, Err: fmt.Errorf("no %s", items)}
	}
	opts := spec.Options
	if iface.Limited() {
		opts = limitedOptions(iface, opts)
		if err := validPaths(iface, scenes); err != nil {
			return Summary{}, err
		}
		if err := p.checkQuota(ctx, spec, len(scenes)); err != nil {
			return Summary{}, err
		}
	}
	queue, _ := campaign.QueueFor(spec.AppID, spec.Priority) // checked by Validate
	rec := campaign.Campaign{
		Name: spec.Name, AppID: spec.AppID, Interface: iface, Options: opts, Queue: queue,
		BatchSize: p.cfg.BatchSize, KeyPrefix: spec.KeyPrefix, Webhook: spec.Webhook,
	}
	c, created, err := p.store.Create(ctx, rec, scenes)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Campaign: c, Created: created}
	if c.State == campaign.StateCancelled {
		sum.Cancelled = true
		return sum, nil
	}
	tasks := make([]campaign.BatchTask, c.Batches)
	for b := range tasks {
		tasks[b] = campaign.BatchTask{Campaign: c.Name, Batch: b}
	}
	for from := 0; from < len(tasks); from += p.cfg.CheckCancel {
		if from > 0 {
			st, err := p.store.State(ctx, c.Name)
			if err != nil {
				return sum, err
			}
			if st == campaign.StateCancelled {
				sum.Cancelled = true
				sum.Campaign.State = st
				return sum, nil
			}
		}
		enq, dup, err := p.enqueueTasks(ctx, c.Queue, tasks[from:min(from+p.cfg.CheckCancel, len(tasks))], from, len(tasks))
		sum.Enqueued += enq
		sum.AlreadyQueued += dup
		if err != nil {
			return sum, err
		}
	}
	st, err := p.store.Activate(ctx, c.Name)
	if err != nil {
		return sum, err
	}
	sum.Campaign.State = st
	sum.Cancelled = st == campaign.StateCancelled
	return sum, nil
}

// RetrySummary reports what Retry did.
type RetrySummary struct {
	// Run is the retry run's number; 0 when there was nothing to retry.
	Run int
	// Reset counts the failed scenes turned back to pending.
	Reset int64
	// Batches counts the batches that hold a pending scene.
	Batches int
	// Enqueued counts the tasks this call enqueued; Live those batches
	// that had a live task already, which runs their scenes.
	Enqueued, Live int
	// Restored is true when the campaign's rows were read back from its
	// manifest.
	Restored bool
	// Status is the campaign's status after the retry.
	Status campaign.Status
}

// Retry reconciles a campaign with its queue and resumes it: its failed
// scenes turn back to pending and a cancelled campaign becomes active (one
// step, campaign.Store.BeginRetry), then every batch that holds a pending
// scene and has no live task (pending, scheduled, retry or active) is
// enqueued again: tasks deleted in the dashboard, archived, lost with
// Redis, or skipped while the campaign was cancelled. A retry killed
// halfway leaves pending scenes that the next finds, and two at once
// enqueue a batch at most twice, whose runs never overlap (the batch
// lease): running it again always finishes the job. A finished campaign
// whose rows moved to its manifest is read back first.
func (p *Producer) Retry(ctx context.Context, name string) (RetrySummary, error) {
	var sum RetrySummary
	if p.cfg.Tasks == nil {
		return sum, errors.New("retry: producer has no task lookup (Config.Tasks)")
	}
	var (
		c       campaign.Campaign
		batches []int
		err     error
	)
	// A worker may archive the campaign between the look and the retry's
	// first step; BeginRetry refuses then, and the retry looks again.
	for range 3 {
		if c, err = p.store.Get(ctx, name); err != nil {
			return sum, err
		}
		if !c.Written {
			return sum, fmt.Errorf("retry %s: %w", name, campaign.ErrIncomplete)
		}
		if batches, err = p.store.UnfinishedBatches(ctx, c); err != nil {
			return sum, err
		}
		if len(batches) == 0 && c.State != campaign.StateCancelled {
			break
		}
		restored := 0
		if restored, err = p.store.Restore(ctx, c, p.cfg.Blobs); err != nil {
			return sum, err
		}
		sum.Restored = restored > 0
		sum.Run, sum.Reset, err = p.store.BeginRetry(ctx, name, restored)
		if errors.Is(err, campaign.ErrArchived) {
			continue
		}
		if err != nil {
			return sum, err
		}
		c.Retries = sum.Run
		break
	}
	if err != nil {
		return sum, err
	}
	sum.Batches = len(batches)
	var todo []campaign.BatchTask
	for _, b := range batches {
		live, err := p.liveTask(c, b)
		if err != nil {
			return sum, err
		}
		if live {
			sum.Live++
			continue
		}
		todo = append(todo, campaign.BatchTask{Campaign: name, Batch: b, Retry: sum.Run})
	}
	sum.Enqueued, _, err = p.enqueueTasks(ctx, c.Queue, todo, 0, len(todo))
	if err != nil {
		return sum, err
	}
	sum.Status, err = p.store.Status(ctx, name)
	return sum, err
}

// liveTask reports whether a batch has a task that will still run: one
// of the IDs of the enqueue and of every retry run until c.Retries, pending,
// scheduled, waiting to retry or running.
func (p *Producer) liveTask(c campaign.Campaign, batch int) (bool, error) {
	for run := c.Retries; run >= 0; run-- {
		id := campaign.BatchTask{Campaign: c.Name, Batch: batch, Retry: run}.ID()
		info, err := p.cfg.Tasks.GetTaskInfo(c.Queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("look up task %s: %w", id, err)
		}
		switch info.State {
		case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateActive:
			return true, nil
		}
	}
	return false, nil
}

// enqueueTasks enqueues tasks, done of total before them for Progress.
func (p *Producer) enqueueTasks(ctx context.Context, queue string, tasks []campaign.BatchTask, done, total int) (enqueued, already int, err error) {
	var (
		enq, dup atomic.Int64
		progress sync.Mutex
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		next     = make(chan campaign.BatchTask)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(p.cfg.Parallel, max(len(tasks), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				_, err := p.q.EnqueueContext(ctx, asynq.NewTask(campaign.TaskType, t.Marshal()),
					asynq.TaskID(t.ID()), asynq.Queue(queue), asynq.MaxRetry(p.cfg.MaxRetry),
					asynq.Timeout(p.cfg.Timeout), asynq.Retention(p.cfg.Retention))
				switch {
				case err == nil:
					enq.Add(1)
				case errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask):
					dup.Add(1)
				default:
					errOnce.Do(func() { firstErr = fmt.Errorf("enqueue %s: %w", t.ID(), err); cancel() })
					continue
				}
				if p.cfg.Progress != nil {
					progress.Lock()
					done++
					p.cfg.Progress(done, total)
					progress.Unlock()
				}
			}
		}()
	}
feed:
	for _, t := range tasks {
		select {
		case next <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return int(enq.Load()), int(dup.Load()), firstErr
}

// ETA is how long n calls take at n per per.
func ETA(calls int64, n int, per time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(float64(calls) / float64(n) * float64(per)).Round(time.Second)
}
