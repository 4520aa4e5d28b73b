package worker

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
)

// ServerConfig tunes the asynq server that runs a Handler.
type ServerConfig struct {
	// Redis is where the queues are.
	Redis redis.UniversalClient
	// Concurrency is the number of batches run at once. With the
	// Handler's default Parallel of 32 scenes per batch, the default 4
	// keeps up to 128 calls in flight: enough for 5000 calls a minute at
	// up to ~1.5 s of API latency. Default 4.
	Concurrency int
	// Queues maps queue names to weights. Default campaign.QueueWeights.
	Queues map[string]int
	// ShutdownTimeout bounds a graceful stop: after a drain, running
	// batches finish their calls in flight and hand the rest back; asynq
	// requeues whatever is still running then. Default 20s.
	ShutdownTimeout time.Duration
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

// Serve runs h on an asynq server until ctx ends, then drains h and shuts
// the server down gracefully. It returns when the server has stopped.
func Serve(ctx context.Context, h *Handler, cfg ServerConfig) error {
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 4)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 20*time.Second)
	if cfg.Queues == nil {
		cfg.Queues = campaign.QueueWeights
	}
	server := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency: cfg.Concurrency,
		Queues:      cfg.Queues,
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
	mux := asynq.NewServeMux()
	mux.Handle(campaign.TaskType, h)
	for typ, th := range cfg.Tasks {
		mux.Handle(typ, th.Handler)
	}
	if err := server.Start(mux); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	<-ctx.Done()
	h.Drain()
	server.Shutdown()
	return nil
}

// asynqLogger writes asynq's log lines through zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
