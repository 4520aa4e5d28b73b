package worker

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
)

// ServerConfig tunes the asynq servers that run a Handler.
type ServerConfig struct {
	// Redis is where the queues are.
	Redis redis.UniversalClient
	// Concurrency is the number of batches of each app run at once. With
	// the Handler's default Parallel of 32 scenes per batch, 4 keeps up to
	// 128 calls of an app in flight: enough for 5000 calls a minute at up
	// to ~1.5 s of API latency. Default 4.
	Concurrency int
	// Priorities maps priorities (high, default, low) to the weights the
	// app's queues are served with. Default campaign.PriorityWeights.
	Priorities map[string]int
	// ShutdownTimeout bounds a graceful stop: after a drain, running
	// batches finish their calls in flight and hand the rest back; asynq
	// requeues whatever is still running then. Default 20s.
	ShutdownTimeout time.Duration
	// Register is how often the worker renews its entry in the fleet
	// registry (campaign.Store.Register); the entry lapses after three
	// times that. Default 5s.
	Register time.Duration
	// Logger receives asynq's own log lines.
	Logger zerolog.Logger
	// Tasks serves other task types beside batches (webhook deliveries),
	// each with its own retry delay.
	Tasks map[string]TaskHandler
}

// TaskHandler serves one more task type on a worker's server.
type TaskHandler struct {
	Handler asynq.Handler
	// RetryDelay is its tasks' delay before another attempt; nil means
	// RetryDelay.
	RetryDelay asynq.RetryDelayFunc
}

// Serve runs h until ctx ends, then drains h and shuts down gracefully. It
// returns when every server has stopped.
//
// Each app of h (Config.Apps) gets an asynq server of its own on the app's
// queues (campaign.Queues), with Concurrency batches at once: a worker
// pulls only batches of apps it serves, and every app with queued work
// has its own batches running, whatever the other apps have queued. While
// it runs, the worker keeps its apps in the fleet registry, so that status
// can tell a campaign whose app no worker serves.
func Serve(ctx context.Context, h *Handler, cfg ServerConfig) error {
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 4)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 20*time.Second)
	cfg.Register = cmp.Or(cfg.Register, 5*time.Second)
	if cfg.Priorities == nil {
		cfg.Priorities = campaign.PriorityWeights
	}
	mux := asynq.NewServeMux()
	mux.Handle(campaign.TaskType, h)
	for typ, th := range cfg.Tasks {
		mux.Handle(typ, th.Handler)
	}
	apps := slices.Sorted(maps.Keys(h.cfg.Apps))
	var servers []*asynq.Server
	defer func() {
		// Every server drains at once: the stop takes one shutdown
		// timeout, not one per app.
		h.Drain()
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Shutdown()
			}()
		}
		wg.Wait()
	}()
	for _, app := range apps {
		queues := campaign.Queues(app, cfg.Priorities)
		if len(queues) == 0 {
			return errors.New("start worker: no priority has a positive weight")
		}
		s := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
			Concurrency: cfg.Concurrency,
			Queues:      queues,
			IsFailure:   IsFailure,
			RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
				if th, ok := cfg.Tasks[t.Type()]; ok && th.RetryDelay != nil {
					return th.RetryDelay(n, err, t)
				}
				return RetryDelay(n, err, t)
			},
			ShutdownTimeout: cfg.ShutdownTimeout,
			Logger:          asynqLogger{cfg.Logger},
			LogLevel:        asynq.WarnLevel,
			ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
				cfg.Logger.Debug().Err(err).Msg("batch will run again")
			}),
		})
		if err := s.Start(mux); err != nil {
			return fmt.Errorf("start worker for %s: %w", app, err)
		}
		servers = append(servers, s)
	}
	register(ctx, h.cfg.Campaigns, apps, cfg.Register, cfg.Logger)
	return nil
}

// register keeps apps in the fleet registry under a name of this process
// until ctx ends, then takes them out.
func register(ctx context.Context, store *campaign.Store, apps []string, every time.Duration, log zerolog.Logger) {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	name := fmt.Sprintf("%s:%d:%x", host, os.Getpid(), b)
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := store.Register(ctx, name, apps, 3*every)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Warn().Err(err).Msg("fleet registry: not renewed; status may show this worker's apps unserved")
			failing = true
		case err == nil && failing:
			log.Info().Msg("fleet registry renewed")
			failing = false
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := store.Deregister(dctx, name, apps); err != nil {
				log.Warn().Err(err).Msg("fleet registry: not deregistered; the entry lapses by itself")
			}
			return
		case <-t.C:
		}
	}
}

// asynqLogger writes asynq's log lines through zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
