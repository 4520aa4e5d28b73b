package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/httpserver"
	"github.com/wxacode/wxacode/internal/metrics"
	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
	"github.com/wxacode/wxacode/worker"
)

func init() { commands = append(commands, demoCommand) }

type demoOptions struct {
	out      string
	scenes   int
	rate     string
	addr     string
	workers  int
	campaign string
	keep     bool
}

func demoCommand(a *app) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Generate a few hundred codes end to end, with nothing to set up",
		Long: `Run the whole pipeline in one process on embedded defaults: an embedded
Redis, the WeChat simulator (a fake of the API, so no WeChat account is
needed), two workers sharing one ceiling, and the dashboard. It enqueues a
campaign of a few hundred scenes, shows a progress bar, writes the codes into
a local folder and says where they are and what rate it reached against the
(demo) ceiling. The codes are real QR codes that carry their page and scene.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runDemo(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.out, "out", "./wxacodes", "folder the codes are written to")
	fs.IntVar(&o.scenes, "scenes", 300, "number of scenes")
	fs.StringVar(&o.rate, "rate", "300/10s", "the demo ceiling, N/DURATION")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "dashboard address (a free port is taken if it is busy); a non-loopback host needs a credential, as for serve")
	fs.IntVar(&o.workers, "workers", 2, "workers in the process")
	fs.StringVar(&o.campaign, "campaign", "demo", "campaign name")
	fs.BoolVar(&o.keep, "keep", false, "keep the dashboard running after the campaign is done, until Ctrl-C")
	return cmd
}

func (a *app) runDemo(ctx context.Context, o *demoOptions) error {
	log, err := a.logger()
	if err != nil {
		return err
	}
	// The demo's own progress bar is the interesting output; quiet logs.
	if !flagSetEnv(a, "LOG_LEVEL") {
		log = log.Level(zerolog.WarnLevel)
	}
	limit, err := check(setting{flag: "rate"}, o.rate, parseRate)
	if err != nil {
		return err
	}
	// The same bind rule as serve: the demo's dashboard can pause queues
	// and delete tasks.
	auth, hosts, err := a.dashboardGuard(o.addr, setting{flag: "addr"})
	if err != nil {
		return err
	}
	if o.scenes < 1 || o.scenes > 100_000 {
		return usagef("--scenes %d: want 1 to 100000", o.scenes)
	}
	if o.workers < 1 || o.workers > 16 {
		return usagef("--workers %d: want 1 to 16", o.workers)
	}
	if err := campaign.ValidateName(o.campaign); err != nil {
		return usagef("--campaign: %v", err)
	}
	outDir, err := filepath.Abs(o.out)
	if err != nil {
		return usagef("--out: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Embedded Redis.
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: 64})
	defer rdb.Close()

	// The WeChat simulator.
	sim, err := simulator.New(simulator.Config{RateN: limit.N, RatePer: limit.Per, LatencyMin: 20 * time.Millisecond, LatencyMax: 120 * time.Millisecond})
	if err != nil {
		return err
	}
	simSrv, simURL, err := serveHTTP("127.0.0.1:0", sim)
	simURL = strings.TrimSuffix(simURL, "/")
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	defer simSrv.Close()

	// The dashboard, with the workers' metrics beside the fleet's.
	reg := prometheus.NewRegistry()
	observer := metrics.NewWorker(reg)
	board, err := dashboard.New(dashboard.Config{Redis: rdb, Metrics: reg, Refresh: 2 * time.Second, Auth: auth, AllowedHosts: hosts, Logger: log})
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	defer board.Close()
	dash, dashURL, err := serveHTTP(o.addr, board)
	if err != nil {
		dash, dashURL, err = serveHTTP("127.0.0.1:0", board)
	}
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	defer dash.Close()

	store, err := storage.Open(ctx, "file://"+outDir, storage.Options{Logger: log})
	if err != nil {
		return err
	}
	campaigns := campaign.NewStore(rdb, "")

	// Enqueue.
	sc, err := producer.Range("demo%04d", 1, int64(o.scenes))
	if err != nil {
		return err
	}
	p, err := producer.New(campaigns, asynq.NewClientFromRedisClient(rdb), producer.Config{BatchSize: 25})
	if err != nil {
		return err
	}
	opts := wechat.DefaultCodeOptions()
	opts.Page = "pages/index/index"
	sum, err := p.Enqueue(ctx, producer.Spec{Name: o.campaign, AppID: simulator.DemoAppID, Options: opts}, sc.List)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "wxacode demo: %d scenes in %d batches, %d workers, ceiling %s\n", sum.Campaign.Total, sum.Campaign.Batches, o.workers, limit)
	fmt.Fprintf(a.stdout, "dashboard: %s (asynq queues at %smonitoring/)\n", dashURL, dashURL)

	// Workers, each with its own limiter, sharing the ceiling through Redis.
	var wg sync.WaitGroup
	workerCtx, stopWorkers := context.WithCancel(ctx)
	defer func() { stopWorkers(); wg.Wait() }()
	for i := range o.workers {
		lim, err := limiter.New(rdb, limiter.Config{Limit: limit})
		if err != nil {
			return err
		}
		codes, err := newWeChat(rdb, wechatSetup{appid: simulator.DemoAppID, secret: simulator.DemoSecret, apiBase: simURL, onFetch: func() { observer.TokenRefreshed(simulator.DemoAppID) }}, log)
		if err != nil {
			return err
		}
		h, err := worker.New(worker.Config{
			Campaigns: campaigns, Limiter: lim, Store: store, Blobs: store,
			Apps:    map[string]worker.Codes{simulator.DemoAppID: codes},
			Metrics: observer,
			Logger:  log.With().Int("worker", i+1).Logger(),
		})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := worker.Serve(workerCtx, h, worker.ServerConfig{Redis: rdb, Concurrency: 2, Logger: log, ShutdownTimeout: 5 * time.Second}); err != nil {
				log.Error().Err(err).Msg("demo worker")
			}
		}()
	}

	// Watch the campaign.
	start := time.Now()
	tty := isTerminal(a.stdout)
	line := &liveLine{w: a.stdout}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var c campaign.Campaign
	lastPrint := time.Time{}
	for {
		if c, err = campaigns.Get(ctx, o.campaign); err != nil {
			return err
		}
		text := "codes " + bar(c.Succeeded+c.Failed, c.Total, 30)
		if tty {
			line.draw(text, c.Done())
		} else if time.Since(lastPrint) >= 2*time.Second || c.Done() {
			fmt.Fprintln(a.stdout, text)
			lastPrint = time.Now()
		}
		if c.Done() {
			break
		}
		select {
		case <-ctx.Done():
			if tty {
				line.end()
			}
			return errors.New("demo interrupted")
		case <-t.C:
		}
	}
	if tty {
		line.end()
	}
	took := time.Since(start)
	rate := c.Rate()
	ceiling := float64(limit.N) / limit.Per.Seconds()
	fmt.Fprintf(a.stdout, "done in %s: %d codes stored, %d failed\n", took.Round(10*time.Millisecond), c.Succeeded, c.Failed)
	fmt.Fprintf(a.stdout, "rate: %.1f codes/s against a ceiling of %s (%.1f/s): %.1f%%\n", rate, limit, ceiling, 100*rate/ceiling)
	fmt.Fprintf(a.stdout, "codes: %s\n", filepath.Join(outDir, strings.TrimSuffix(storage.Key(o.campaign, "x", "jpg"), "x.jpg")))
	if o.keep {
		fmt.Fprintf(a.stdout, "dashboard still at %s; Ctrl-C to stop\n", dashURL)
		<-ctx.Done()
	}
	if c.Failed > 0 {
		return fmt.Errorf("%d codes failed", c.Failed)
	}
	return nil
}

// flagSetEnv reports whether an environment variable is set.
func flagSetEnv(a *app, name string) bool { return a.getenv(name) != "" }

// serveHTTP serves h on addr and returns the server and its base URL.
func serveHTTP(addr string, h http.Handler) (*http.Server, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := httpserver.New(h, httpserver.Config{})
	go func() { _ = srv.Serve(l) }()
	return srv, "http://" + l.Addr().String() + "/", nil
}
