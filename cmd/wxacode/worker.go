package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/webhook"
	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
	"github.com/wxacode/wxacode/worker"
)

func init() { commands = append(commands, workerCommand) }

type workerOptions struct {
	redisURL, storageURL, rate, margin string
	appid, secretFile, tokenURL        string
	appsFile                           string
	apiBase                            string
	concurrency, parallel              int
	concurrencySet                     bool
	queues                             []string
	createBucket                       bool
	shutdownTimeout                    time.Duration
	metricsAddr                        string
}

// Bounds of the worker's flags: a worker runs at most maxInFlight calls at
// once (one Redis connection each), which keeps 5000 calls a minute full
// up to about 50 s of API latency.
const (
	maxConcurrency = 256
	maxParallel    = 1024
	maxInFlight    = 4096
	// defaultConcurrency is the batches of each app run at once when
	// --concurrency is not given, as long as maxInFlight allows.
	defaultConcurrency = 4
)

func workerCommand(a *app) *cobra.Command {
	o := &workerOptions{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Generate the codes of enqueued campaigns",
		Long: `Run a worker: it takes batches of scenes from the queues of the apps it
serves, waits for a slot under the app's ceiling (shared through Redis by every
worker on every host), calls WeChat, checks that the answer is an image, stores
it and records the scene. Run as many workers as you like, on any hosts,
against the same Redis: together they stay under each app's ceiling.

A worker serves the app of WECHAT_APPID, every app listed in the file named by
WXACODE_APPS (or --apps), or both. Each app has queues of its own (one per
priority, served 6:3:1), so a worker pulls only batches of apps it serves, and
each app runs its own batches at its own ceiling whatever the others have
queued. The apps file is YAML:

  apps:
    - appid: wx0123456789abcdef
      secret_file: /run/secrets/wx0123456789abcdef  # or secret_env: NAME, or token_url: URL
      rate: 5000/1m                                 # optional; default --rate

The app secret of WECHAT_APPID comes from WECHAT_SECRET or from the file named
by --secret-file (or WECHAT_SECRET_FILE), never from a flag value. Companies
with a central token service give its URL with --token-url (or
WECHAT_TOKEN_URL) instead.

While it runs, the worker keeps its apps in the fleet registry in Redis:
status, the dashboard and /metrics show a campaign whose app no live worker
serves as unserved.

On SIGINT or SIGTERM the worker stops starting calls, finishes and records the
calls in flight, hands the rest of its batches back and exits 0.

When the store fails, the worker stops taking slots within a second, keeps
every code it has paid for and stores it when the store answers again; while
Redis is away no call is made (the ceiling fails closed) and the worker
reconnects when it is back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.concurrencySet = cmd.Flags().Changed("concurrency")
			return a.runWorker(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	a.redisFlag(fs, &o.redisURL)
	a.storageFlag(fs, &o.storageURL)
	fs.StringVar(&o.rate, "rate", or(a.getenv("WXACODE_RATE"), defaultRate), "the per-app ceiling of interface B, N/DURATION (env WXACODE_RATE); the apps file may set one per app; every worker of an app must use the same")
	fs.StringVar(&o.margin, "rate-margin", a.getenv("WXACODE_RATE_MARGIN"), "extra spacing kept for delays between admission and WeChat (env WXACODE_RATE_MARGIN; default 1% of the window)")
	fs.StringVar(&o.appid, "appid", a.getenv("WECHAT_APPID"), "a Mini Program's appid (env WECHAT_APPID)")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the app secret of --appid (env WECHAT_SECRET_FILE; or set WECHAT_SECRET)")
	fs.StringVar(&o.tokenURL, "token-url", a.getenv("WECHAT_TOKEN_URL"), "central token service answering the access token of --appid (env WECHAT_TOKEN_URL); replaces the secret")
	fs.StringVar(&o.appsFile, "apps", a.getenv("WXACODE_APPS"), "YAML file of the apps to serve (env WXACODE_APPS), see above")
	fs.StringVar(&o.apiBase, "api-base", or(a.getenv("WECHAT_API_BASE"), defaultAPIBase), "WeChat API base URL (env WECHAT_API_BASE)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "batches of each app run at once, 1 to 256 (default 4, fewer when many apps would pass 4096 calls in flight)")
	fs.IntVar(&o.parallel, "parallel", 32, "scenes of one batch in flight at once, 1 to 1024 (calls in flight: apps × concurrency × parallel, at most 4096)")
	fs.StringSliceVar(&o.queues, "queues", []string{"high:6", "default:3", "low:1"}, "priorities to serve with their weights, PRIORITY:WEIGHT, comma-separated (high, default, low)")
	fs.BoolVar(&o.createBucket, "create-bucket", false, "create the S3 bucket if it is missing")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a stop waits for calls in flight, and for a failing store to take the codes already paid for, 1s to 10m")
	fs.StringVar(&o.metricsAddr, "metrics-addr", a.getenv("WXACODE_METRICS_ADDR"), "serve /metrics and /healthz on this address (env WXACODE_METRICS_ADDR; off when empty)")
	return cmd
}

// parseQueues reads PRIORITY:WEIGHT pairs.
func parseQueues(list []string) (map[string]int, error) {
	out := map[string]int{}
	for _, q := range list {
		name, w, found := strings.Cut(q, ":")
		weight := 1
		if found {
			n, err := strconv.Atoi(w)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--queues %q: weight must be a positive integer", q)
			}
			weight = n
		}
		if campaign.PriorityWeights[name] == 0 {
			return nil, fmt.Errorf("--queues %q: want a priority (%s) with a weight, such as high:6", q, strings.Join(campaign.Priorities, ", "))
		}
		out[name] = weight
	}
	if len(out) == 0 {
		return nil, errors.New("--queues: at least one priority")
	}
	return out, nil
}

// wechatSetup is what a worker needs to call WeChat for one app.
type wechatSetup struct {
	appid, secret, tokenURL, apiBase string
	// onFetch is told of every access token fetched from WeChat.
	onFetch func()
}

// workerApps gathers the apps a worker serves: those of the apps file and
// the one of --appid, each checked, with its secret read.
func (a *app) workerApps(o *workerOptions, limit limiter.Limit) ([]appSetup, error) {
	var apps []appSetup
	if o.appsFile != "" {
		var err error
		if apps, err = a.loadApps(o.appsFile, limit); err != nil {
			return nil, err
		}
	}
	if o.appid != "" {
		if _, err := check(setting{"appid", "WECHAT_APPID"}, o.appid, parseAppID); err != nil {
			return nil, err
		}
		for _, s := range apps {
			if s.appid == o.appid {
				return nil, usagef("appid %s is both --appid/WECHAT_APPID and in %s: give it once", o.appid, s.from)
			}
		}
		if o.tokenURL != "" {
			if err := checkURL(setting{"token-url", "WECHAT_TOKEN_URL"}, o.tokenURL, nil); err != nil {
				return nil, err
			}
		}
		secret, err := a.readSecret(o.secretFile)
		if err != nil {
			return nil, err
		}
		if secret == "" && o.tokenURL == "" {
			return nil, usagef("worker: set WECHAT_SECRET (or --secret-file / WECHAT_SECRET_FILE), or --token-url, for %s", o.appid)
		}
		apps = append(apps, appSetup{appid: o.appid, secret: secret, tokenURL: o.tokenURL, limit: limit, from: "WECHAT_APPID"})
	}
	if len(apps) == 0 {
		return nil, usagef("worker: no app to serve: set WECHAT_APPID (or --appid) with its secret, or WXACODE_APPS (or --apps) to a file of apps")
	}
	return apps, nil
}

func (a *app) runWorker(ctx context.Context, o *workerOptions) error {
	log, err := a.logger()
	if err != nil {
		return err
	}
	// Every setting is checked before any connection.
	limit, err := check(setting{"rate", "WXACODE_RATE"}, o.rate, parseRate)
	if err != nil {
		return err
	}
	var margin time.Duration
	if o.margin != "" {
		if margin, err = check(setting{"rate-margin", "WXACODE_RATE_MARGIN"}, o.margin, durationIn(0, time.Hour)); err != nil {
			return err
		}
	}
	priorities, err := parseQueues(o.queues)
	if err != nil {
		return usagef("%v", err)
	}
	if o.metricsAddr != "" {
		if _, err := check(setting{"metrics-addr", "WXACODE_METRICS_ADDR"}, o.metricsAddr, parseAddr); err != nil {
			return err
		}
	}
	if err := checkInt(setting{flag: "parallel"}, o.parallel, 1, maxParallel); err != nil {
		return err
	}
	if err := checkDuration(setting{flag: "shutdown-timeout"}, o.shutdownTimeout, time.Second, 10*time.Minute); err != nil {
		return err
	}
	if err := checkURL(setting{"api-base", "WECHAT_API_BASE"}, o.apiBase, noUserInfo); err != nil {
		return err
	}
	if err := a.checkStorage(o.storageURL); err != nil {
		return err
	}
	apps, err := a.workerApps(o, limit)
	if err != nil {
		return err
	}
	concurrency := o.concurrency
	if !o.concurrencySet {
		// Sized from the number of apps: each gets its own batches.
		concurrency = min(defaultConcurrency, maxInFlight/(len(apps)*o.parallel))
		if concurrency == 0 {
			return usagef("%d apps × --parallel %d: more than %d calls in flight per worker; lower --parallel or split the apps among workers", len(apps), o.parallel, maxInFlight)
		}
	}
	if err := checkInt(setting{flag: "concurrency"}, concurrency, 1, maxConcurrency); err != nil {
		return err
	}
	if inFlight := len(apps) * concurrency * o.parallel; inFlight > maxInFlight {
		return usagef("%d apps × --concurrency %d × --parallel %d: at most %d calls in flight per worker (run more workers instead)", len(apps), concurrency, o.parallel, maxInFlight)
	}
	// Redis connections: one per scene in flight, plus asynq's own (a
	// server per app).
	rdb, err := openRedis(ctx, o.redisURL, len(apps)*(concurrency*o.parallel+8)+32)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// One attempt per put: the worker keeps a paid image and puts it again
	// itself, and the SDK's own retries would only delay noticing that the
	// store is down (and so keep paying for calls meanwhile).
	store, err := storage.Open(ctx, o.storageURL, storage.Options{CreateBucket: o.createBucket, MaxAttempts: 1, Getenv: a.getenv, Logger: log})
	if err != nil {
		return fmt.Errorf("--storage/STORAGE_URL: %w", err)
	}
	// One limiter per ceiling in use; each app is checked against the
	// fleet's state of its own.
	byLimit := map[limiter.Limit]*limiter.Limiter{}
	limiters := worker.AppLimiters{}
	for _, s := range apps {
		lim, ok := byLimit[s.limit]
		if !ok {
			if lim, err = limiter.New(rdb, limiter.Config{Limit: s.limit, Margin: margin, Logger: log}); err != nil {
				return usagef("ceiling of %s (%s): %v", s.appid, s.from, err)
			}
			byLimit[s.limit] = lim
		}
		if err := lim.Check(ctx, s.appid); err != nil {
			return fmt.Errorf("ceiling of %s: %w", s.appid, err)
		}
		limiters[s.appid] = lim
	}
	var (
		observer worker.Observer
		metrics  interface{ TokenRefreshed(string) }
	)
	if o.metricsAddr != "" {
		m, addr, stop, err := serveWorkerMetrics(ctx, o.metricsAddr, rdb)
		if err != nil {
			return err
		}
		// Stopped after the worker, so the last counts can still be scraped
		// while it drains.
		defer func() {
			if err := stop(); err != nil {
				log.Warn().Err(err).Msg("metrics server")
			}
		}()
		observer, metrics = m, m
		log.Info().Stringer("addr", addr).Msg("serving /metrics and /healthz")
	}
	clients := map[string]worker.Codes{}
	for _, s := range apps {
		var onFetch func()
		if metrics != nil {
			onFetch = func() { metrics.TokenRefreshed(s.appid) }
		}
		codes, err := newWeChat(rdb, wechatSetup{appid: s.appid, secret: s.secret, tokenURL: s.tokenURL, apiBase: o.apiBase, onFetch: onFetch}, log)
		if err != nil {
			return usagef("%s (%s): %v", s.appid, s.from, err)
		}
		clients[s.appid] = codes
	}
	hookSecret, err := a.webhookSecret()
	if err != nil {
		return err
	}
	campaigns := campaign.NewStore(rdb, "")
	hooks, err := webhook.NewDeliverer(webhook.Config{Campaigns: campaigns, Secret: hookSecret, Logger: log})
	if err != nil {
		return err
	}
	h, err := worker.New(worker.Config{
		Campaigns: campaigns,
		OnDone:    webhook.Notifier{Campaigns: campaigns, Queue: asynq.NewClientFromRedisClient(rdb)}.Done,
		Limiter:   limiters,
		Apps:      clients,
		Store:     store,
		Blobs:     store,
		Parallel:  o.parallel,
		Metrics:   observer,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	ev := log.Info().Int("apps", len(apps)).Str("storage", store.String()).
		Int("concurrency", concurrency).Int("parallel", o.parallel)
	if len(apps) == 1 {
		ev = ev.Str("appid", apps[0].appid).Stringer("ceiling", apps[0].limit)
	}
	ev.Msg("worker started")
	for _, s := range apps {
		log.Debug().Str("appid", s.appid).Stringer("ceiling", s.limit).Str("from", s.from).Msg("serving app")
	}
	err = worker.Serve(ctx, h, worker.ServerConfig{
		Redis: rdb, Concurrency: concurrency, Priorities: priorities,
		ShutdownTimeout: o.shutdownTimeout, Logger: log,
		Tasks: map[string]worker.TaskHandler{webhook.TaskType: {Handler: hooks, RetryDelay: webhook.RetryDelay}},
	})
	log.Info().Msg("worker stopped")
	return err
}

// newWeChat builds the interface-B client of one app, with a stable token
// shared through Redis, or the company's token service.
func newWeChat(rdb redis.UniversalClient, s wechatSetup, log zerolog.Logger) (*wechat.Client, error) {
	var tokens wechat.TokenSource
	var err error
	if s.tokenURL != "" {
		tokens, err = wechat.NewURLTokenSource(wechat.URLTokenConfig{URL: s.tokenURL, Logger: log})
	} else {
		tokens, err = wechat.NewStableTokenSource(wechat.StableTokenConfig{BaseURL: s.apiBase, AppID: s.appid, Secret: s.secret, Redis: rdb, OnFetch: s.onFetch, Logger: log})
	}
	if err != nil {
		return nil, err
	}
	// NoTokenRetry: the worker retries a refused token itself, under a new
	// slot of the ceiling, so that every call sent is counted.
	return wechat.NewClient(wechat.Config{BaseURL: s.apiBase, AppID: s.appid, Tokens: tokens, Redis: rdb, NoTokenRetry: true, Logger: log})
}
