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
)

// Enqueuer is the part of an asynq client the producer uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
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
}

func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, 200)
	c.Parallel = cmp.Or(c.Parallel, 16)
	c.MaxRetry = cmp.Or(c.MaxRetry, 1000)
	c.Timeout = cmp.Or(c.Timeout, 2*time.Hour)
	c.Retention = cmp.Or(c.Retention, 7*24*time.Hour)
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 0 || c.BatchSize > 100_000:
		return fmt.Errorf("BatchSize %d: want 1 to 100000", c.BatchSize)
	case c.Parallel < 0:
		return fmt.Errorf("Parallel %d: must not be negative", c.Parallel)
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
	// Created is false when the campaign existed (the same command run
	// again).
	Created bool
	// Enqueued counts the tasks enqueued by this call; AlreadyQueued those
	// asynq already held under the same ID.
	Enqueued, AlreadyQueued int
}

// Enqueue records the campaign spec (Name, AppID, Options, Queue) with
// its distinct scenes and enqueues every batch. Running it again with the
// same scenes and settings enqueues nothing twice; with others it fails
// with campaign.ErrExists.
func (p *Producer) Enqueue(ctx context.Context, spec campaign.Campaign, scenes []string) (Summary, error) {
	if len(scenes) == 0 {
		return Summary{}, errors.New("enqueue: no scenes")
	}
	spec.BatchSize = p.cfg.BatchSize
	c, created, err := p.store.Create(ctx, spec, scenes)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Campaign: c, Created: created}
	tasks := make([]campaign.BatchTask, c.Batches)
	for b := range tasks {
		tasks[b] = campaign.BatchTask{Campaign: c.Name, Batch: b}
	}
	sum.Enqueued, sum.AlreadyQueued, err = p.enqueueTasks(ctx, c.Queue, tasks)
	if err != nil {
		return sum, err
	}
	if c.State == campaign.StateEnqueuing {
		if err := p.store.SetState(ctx, c.Name, campaign.StateActive); err != nil {
			return sum, err
		}
		sum.Campaign.State = campaign.StateActive
	}
	return sum, nil
}

// Retry turns a campaign's failed scenes back to pending and enqueues the
// batches that hold them. It returns the number of scenes reset and of
// tasks enqueued.
func (p *Producer) Retry(ctx context.Context, name string) (scenes int64, tasks int, err error) {
	c, err := p.store.Get(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	retry, batches, n, err := p.store.ResetFailed(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	ts := make([]campaign.BatchTask, len(batches))
	for i, b := range batches {
		ts[i] = campaign.BatchTask{Campaign: name, Batch: b, Retry: retry}
	}
	enq, _, err := p.enqueueTasks(ctx, c.Queue, ts)
	return n, enq, err
}

func (p *Producer) enqueueTasks(ctx context.Context, queue string, tasks []campaign.BatchTask) (enqueued, already int, err error) {
	var (
		enq, dup atomic.Int64
		done     int
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
					p.cfg.Progress(done, len(tasks))
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
