// Package dashboard serves wxacode's operations surface over HTTP: the
// asynq dashboard (asynqmon) under /monitoring/, campaign progress as JSON
// under /api/campaigns and as a small page at /, Prometheus metrics of the
// fleet at /metrics and a Redis health check at /healthz.
//
// Nothing it serves carries a secret: campaign records hold no app secret
// or token, task payloads name only a campaign and a batch, and errors from
// Redis are logged, not shown.
package dashboard

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/metrics"
)

// MonitoringPath is where asynqmon is mounted.
const MonitoringPath = "/monitoring"

// Config wires a dashboard. Redis is required.
type Config struct {
	// Redis holds the campaigns and the asynq queues: a *redis.Client (for
	// example redis.NewClient(&redis.Options{Addr: addr, DB: db}), which
	// fits miniredis too), a *redis.ClusterClient, or any other
	// UniversalClient. The dashboard does not close it.
	Redis redis.UniversalClient
	// Prefix is the campaign store's key prefix; "" means
	// campaign.DefaultPrefix, as the other commands use.
	Prefix string
	// ReadOnly makes asynqmon view-only: it refuses to delete, run,
	// archive or cancel tasks and to pause queues. Default false.
	ReadOnly bool
	// Auth, when enabled, is asked of every request but /healthz. Default
	// none: bind to loopback then (see CheckBind).
	Auth Auth
	// AllowedHosts are the host names (or HOST:PORT) that requests may
	// name in their Host header when Auth is not enabled, besides the
	// loopback names (localhost, 127.0.0.0/8, ::1): give the served
	// address's host and WXACODE_ALLOWED_HOSTS. Other hosts are answered
	// 421, so that a page rebinding its own name to this host reads
	// nothing. With Auth, the credential is the guard and Host is not
	// checked.
	AllowedHosts []string
	// Refresh is how often the campaign pages reload themselves. Default
	// 5s.
	Refresh time.Duration
	// Timeout bounds the Redis reads of one API request, page or scrape.
	// Default 10s.
	Timeout time.Duration
	// Metrics, when set, is served at /metrics besides the fleet's own
	// metrics (the demo adds its worker's there).
	Metrics prometheus.Gatherer
	// API, when set, is served under /api/v1/ behind Auth: the producer
	// API (internal/api).
	API http.Handler
	// Logger logs errors reading Redis, which the responses do not show.
	Logger zerolog.Logger
}

// Validate reports the first missing or bad field.
func (c Config) Validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("Redis is required")
	case c.Refresh < 0:
		return errors.New("Refresh must not be negative")
	case c.Timeout < 0:
		return errors.New("Timeout must not be negative")
	case (c.Auth.User == "") != (c.Auth.Password == ""):
		return errors.New("Auth needs both User and Password, or neither")
	}
	return nil
}

// Handler is the dashboard's http.Handler. Close it when done, to release
// asynqmon's Redis connections.
type Handler struct {
	cfg   Config
	store *campaign.Store
	mon   *asynqmon.HTTPHandler
	root  http.Handler
}

// New returns the dashboard of cfg. Routes:
//
//	/                        campaigns with progress, rate, ETA and failures
//	/campaigns/{name}        one campaign
//	/api/campaigns           every campaign as a JSON array
//	/api/campaigns/{name}    one campaign as a JSON object (404 when unknown)
//	/api/v1/                 the producer API, when Config.API is set
//	/monitoring/             asynqmon: queues, tasks, servers, Redis
//	/metrics                 Prometheus metrics of campaigns and queues
//	/healthz                 200 "ok" when Redis answers (never asks for Auth)
//
// Every route, asynqmon's included, refuses cross-origin state changes
// (403) and, without Auth, requests naming a host not allowed (421).
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard config: %w", err)
	}
	cfg.Refresh = cmp.Or(cfg.Refresh, 5*time.Second)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	h := &Handler{cfg: cfg, store: campaign.NewStore(cfg.Redis, cfg.Prefix)}
	h.mon = asynqmon.New(asynqmon.Options{
		RootPath:     MonitoringPath,
		RedisConnOpt: connOpt{cfg.Redis},
		ReadOnly:     cfg.ReadOnly,
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewFleetCollector(h.store, asynq.NewInspectorFromRedisClient(cfg.Redis), cfg.Timeout).WithLogger(cfg.Logger),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var gatherer prometheus.Gatherer = reg
	if cfg.Metrics != nil {
		gatherer = prometheus.Gatherers{reg, cfg.Metrics}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.indexPage)
	mux.HandleFunc("GET /campaigns/{name}", h.campaignPage)
	mux.HandleFunc("GET /api/campaigns", h.listJSON)
	mux.HandleFunc("GET /api/campaigns/{name}", h.getJSON)
	mux.Handle(MonitoringPath+"/", h.mon)
	mux.Handle("GET /metrics", metrics.Handler(gatherer))

	outer := http.NewServeMux()
	outer.Handle("GET /healthz", metrics.Healthz(cfg.Redis))
	outer.Handle("/", requireAuth(cfg.Auth, mux))
	var routes http.Handler = outer
	if cfg.API != nil {
		routes = apiFirst{api: requireAuth(cfg.Auth, cfg.API), rest: outer}
	}
	// Cross-origin state changes are refused with or without a
	// credential: a browser sends a cached basic-auth login along.
	h.root = crossOrigin(routes)
	if !cfg.Auth.Enabled() {
		h.root = hostGuard(cfg.AllowedHosts, h.root)
	}
	return h, nil
}

// apiFirst sends /api/v1/ to the API before a ServeMux sees it: a mux
// cleans the decoded path, which would turn a code's scene such as ".."
// or "a//b" (sent percent-encoded as one segment) into a redirect.
type apiFirst struct{ api, rest http.Handler }

func (a apiFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.EscapedPath(), "/api/v1/") {
		a.api.ServeHTTP(w, r)
		return
	}
	a.rest.ServeHTTP(w, r)
}

// ServeHTTP serves the dashboard's routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.root.ServeHTTP(w, r)
}

// Close releases asynqmon's Redis connections; the Config's client stays
// open.
func (h *Handler) Close() error { return h.mon.Close() }

// connOpt hands asynqmon a client of the dashboard's Redis. asynqmon
// closes what it is given and shows Redis INFO only for a *redis.Client
// or *redis.ClusterClient, so those get a client of their own, connected
// the same way (a copy of the live options would share their push
// notification state); any other client is shared behind a Close that
// does nothing.
type connOpt struct{ rdb redis.UniversalClient }

// MakeRedisClient implements asynq.RedisConnOpt.
func (o connOpt) MakeRedisClient() any {
	switch c := o.rdb.(type) {
	case *redis.Client:
		opt := c.Options()
		return redis.NewClient(&redis.Options{
			Network:                      opt.Network,
			Addr:                         opt.Addr,
			Dialer:                       opt.Dialer,
			Protocol:                     opt.Protocol,
			Username:                     opt.Username,
			Password:                     opt.Password,
			CredentialsProvider:          opt.CredentialsProvider,
			CredentialsProviderContext:   opt.CredentialsProviderContext,
			StreamingCredentialsProvider: opt.StreamingCredentialsProvider,
			DB:                           opt.DB,
			TLSConfig:                    opt.TLSConfig,
			DialTimeout:                  opt.DialTimeout,
			ReadTimeout:                  opt.ReadTimeout,
			WriteTimeout:                 opt.WriteTimeout,
			PoolSize:                     4,
		})
	case *redis.ClusterClient:
		opt := c.Options()
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                        opt.Addrs,
			MaxRedirects:                 opt.MaxRedirects,
			Dialer:                       opt.Dialer,
			Protocol:                     opt.Protocol,
			Username:                     opt.Username,
			Password:                     opt.Password,
			CredentialsProvider:          opt.CredentialsProvider,
			CredentialsProviderContext:   opt.CredentialsProviderContext,
			StreamingCredentialsProvider: opt.StreamingCredentialsProvider,
			TLSConfig:                    opt.TLSConfig,
			DialTimeout:                  opt.DialTimeout,
			ReadTimeout:                  opt.ReadTimeout,
			WriteTimeout:                 opt.WriteTimeout,
			PoolSize:                     4,
		})
	}
	return sharedClient{o.rdb}
}

// sharedClient is a client asynqmon may use but not close.
type sharedClient struct{ redis.UniversalClient }

// Close does nothing: the client belongs to the dashboard's caller.
func (sharedClient) Close() error { return nil }
