package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/api"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/httpserver"
	"github.com/wxacode/wxacode/internal/metrics"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

func init() { commands = append(commands, serveCommand) }

// defaultServeAddr keeps the dashboard to this host unless told otherwise.
const defaultServeAddr = "127.0.0.1:8080"

type serveOptions struct {
	redisURL   string
	storageURL string
	appid      string
	addr       string
	readOnly   bool
}

func serveCommand(a *app) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the dashboard: queues, campaign progress, metrics",
		Long: `Serve the operations dashboard over HTTP:

  /                       campaigns: progress bar, rate, ETA, failures by errcode
  /campaigns/NAME         one campaign
  /api/campaigns          every campaign as JSON (an array)
  /api/campaigns/NAME     one campaign as JSON (404 when unknown)
  /api/v1/                the producer API: create, status, cancel, retry,
                          export, codes, archive.zip (see /api/v1/openapi.json)
  /monitoring/            the asynq dashboard (asynqmon): queues, tasks, workers
  /metrics                Prometheus metrics of campaigns and queues
  /healthz                200 when Redis answers

The dashboard listens on 127.0.0.1:8080 by default, reachable from this host
only. To bind another address, set a credential in the environment, which
every route but /healthz then asks for (the command refuses to start without
one):

  WXACODE_DASHBOARD_TOKEN                            Authorization: Bearer TOKEN
  WXACODE_DASHBOARD_USER, WXACODE_DASHBOARD_PASSWORD basic auth (browsers prompt)

Without a credential, requests must name this host in their Host header: the
served address, localhost, 127.0.0.1, ::1, or a name listed, comma-separated,
in WXACODE_ALLOWED_HOSTS (421 otherwise), so that no web page can reach the
dashboard by pointing its own name at this host. With or without one,
state changes (asynqmon's pause, delete, run, archive) coming from another
web origin are refused (403): only the dashboard's own pages and scripts
without a browser's Origin or Sec-Fetch-Site headers may make them.

asynqmon can delete, run and archive tasks and pause queues (pausing a queue
is a safe way to hold a campaign). A deleted batch task leaves its scenes
pending until the batch is enqueued again: run the same 'wxacode enqueue'
again (it enqueues only the missing batches), or run an archived task from
asynqmon. Steer campaigns with 'wxacode cancel' and 'wxacode retry'; use
--read-only to make asynqmon view-only. No page or JSON shows the app
secret, tokens or the Redis password.`,
		Example: `  wxacode serve
  wxacode serve --addr 127.0.0.1:0 --read-only
  WXACODE_DASHBOARD_USER=ops WXACODE_DASHBOARD_PASSWORD=... wxacode serve --addr 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runServe(cmd.Context(), cmd.Flags(), o) },
	}
	fs := cmd.Flags()
	a.redisFlag(fs, &o.redisURL)
	a.storageFlag(fs, &o.storageURL)
	fs.StringVar(&o.appid, "appid", a.getenv("WECHAT_APPID"), "the app of campaigns created through the API without one (env WECHAT_APPID)")
	fs.StringVar(&o.addr, "addr", or(a.getenv("WXACODE_SERVE_ADDR"), defaultServeAddr), "listen address HOST:PORT (env WXACODE_SERVE_ADDR); port 0 picks a free port; a non-loopback host needs a credential")
	fs.BoolVar(&o.readOnly, "read-only", false, "make asynqmon view-only: no deleting, running or archiving tasks, no pausing queues (env WXACODE_SERVE_READ_ONLY: true or false)")
	return cmd
}

func (a *app) runServe(ctx context.Context, fs *pflag.FlagSet, o *serveOptions) error {
	log, err := a.logger()
	if err != nil {
		return err
	}
	if err := fromEnv(a, fs, setting{"read-only", "WXACODE_SERVE_READ_ONLY"}, parseBool, &o.readOnly); err != nil {
		return err
	}
	auth, hosts, err := a.dashboardGuard(o.addr, setting{"addr", "WXACODE_SERVE_ADDR"})
	if err != nil {
		return err
	}
	if o.appid != "" {
		if _, err := check(setting{"appid", "WECHAT_APPID"}, o.appid, parseAppID); err != nil {
			return err
		}
	}
	prefix, err := storage.KeyPrefix(o.storageURL)
	if err != nil {
		return usagef("--storage/STORAGE_URL: %v", err)
	}
	rdb, err := openRedis(ctx, o.redisURL, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store, err := storage.Open(ctx, o.storageURL, storage.Options{Getenv: a.getenv, Logger: log})
	if err != nil {
		return fmt.Errorf("--storage/STORAGE_URL: %w", err)
	}
	campaigns := campaign.NewStore(rdb, "")
	prod, err := producer.New(campaigns, asynq.NewClientFromRedisClient(rdb), producer.Config{
		Tasks: asynq.NewInspectorFromRedisClient(rdb), Blobs: store, Ledger: wechat.QuotaLedger{Redis: rdb},
	})
	if err != nil {
		return err
	}
	apiHandler, err := api.New(api.Config{
		Campaigns: campaigns, Producer: prod, Codes: store, KeyPrefix: prefix, AppID: o.appid, Logger: log,
	})
	if err != nil {
		return err
	}
	h, err := dashboard.New(dashboard.Config{Redis: rdb, ReadOnly: o.readOnly, Auth: auth, AllowedHosts: hosts, API: apiHandler, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(a.stdout, "dashboard on http://%s/\n", ln.Addr())
	log.Info().Str("addr", ln.Addr().String()).Bool("read_only", o.readOnly).Bool("auth", auth.Enabled()).Msg("dashboard started")
	err = serveListener(ctx, ln, h)
	log.Info().Msg("dashboard stopped")
	return err
}

// dashboardGuard reads what guards a dashboard served on addr: the
// credential of the environment (required off loopback) and, without one,
// the hosts requests may name: addr's own host and WXACODE_ALLOWED_HOSTS.
func (a *app) dashboardGuard(addr string, s setting) (dashboard.Auth, []string, error) {
	if _, err := check(s, addr, parseAddr); err != nil {
		return dashboard.Auth{}, nil, err
	}
	hosts, err := check(setting{env: "WXACODE_ALLOWED_HOSTS"}, a.getenv("WXACODE_ALLOWED_HOSTS"), parseHosts)
	if err != nil {
		return dashboard.Auth{}, nil, err
	}
	auth, err := dashboard.AuthFromEnv(a.getenv)
	if err != nil {
		return dashboard.Auth{}, nil, usagef("%v", err)
	}
	if err := dashboard.CheckBind(addr, auth); err != nil {
		return dashboard.Auth{}, nil, usageError{err}
	}
	if host, _, _ := net.SplitHostPort(addr); host != "" {
		hosts = append(hosts, host)
	}
	return auth, hosts, nil
}

// serveListener serves h on ln until ctx ends, then lets requests in flight
// finish (up to 5 s) and returns once the server has stopped.
func serveListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := httpserver.New(h, httpserver.Config{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("stop http: %w", err)
	}
	return nil
}

// serveWorkerMetrics serves a worker's /metrics (a new registry with the
// worker's counters and the Go runtime's) and /healthz (a PING of rdb) on
// addr. They stay up until stop is called, which waits for the server.
func serveWorkerMetrics(ctx context.Context, addr string, rdb redis.UniversalClient) (m *metrics.Worker, bound net.Addr, stop func() error, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m = metrics.NewWorker(reg)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mux.Handle("GET /healthz", metrics.Healthz(rdb))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	// The server outlives ctx: stop ends it, once the worker has stopped.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- serveListener(sctx, ln, mux) }()
	return m, ln.Addr(), func() error { cancel(); return <-done }, nil
}
