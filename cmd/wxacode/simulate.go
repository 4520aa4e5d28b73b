package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/internal/httpserver"
	"github.com/wxacode/wxacode/simulator"
)

func init() { commands = append(commands, simulateCommand) }

// simulateOptions are the flags of `wxacode simulate`.
type simulateOptions struct {
	addr          string
	rate          string
	latency       string
	busyRate      float64
	serverErrRate float64
	tokenInvalid  float64
	dropRate      float64
	textErrors    bool
	tokenLifetime time.Duration
	pages         []string
	apps          []string
	quotaAC       int
	logPath       string
	seed          int64
}

// simulateShutdownTimeout bounds the wait for calls in flight on SIGINT
// or SIGTERM.
const simulateShutdownTimeout = 10 * time.Second

func simulateCommand(a *app) *cobra.Command {
	var o simulateOptions
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Serve a faithful fake of the WeChat API, for dry runs and tests",
		Long: `simulate serves a fake of the WeChat API that wxacode (and other clients)
call, with WeChat's rules, errcodes and limits:

  GET  /cgi-bin/token                   classic token: every call issues a new one,
                                        the previous one lives on for the overlap
  POST /cgi-bin/stable_token            stable token: one shared token, renewed when
                                        less than the overlap is left; force_refresh
                                        revokes it at once (30 s apart, 20 a day)
  POST /wxa/getwxacodeunlimit           interface B: scene and page rules, a per-app
                                        sliding window (--rate) answering 45009
  POST /wxa/getwxacode                  interface A (path up to 1024)
  POST /cgi-bin/wxaapp/createwxaqrcode  interface C (path up to 128); A and C share
                                        a lifetime quota per app (45029)

The overlap of old and new tokens is min(5 minutes, lifetime/4). Codes are
real QR codes of the requested width carrying PAGE?scene=SCENE (the path for
A and C): JFIF JPEG, PNG with a transparent background for is_hyaline, both
labelled image/jpeg. Errors are JSON with HTTP 200.

The app served is WECHAT_APPID with its secret from WECHAT_SECRET or the file
WECHAT_SECRET_FILE names; when WECHAT_APPID is unset, the built-in demo app
(appid ` + simulator.DemoAppID + `, secret ` + simulator.DemoSecret + `).
--app adds more. Pages are all taken as released unless --pages lists them.

Faults are all off by default; --seed makes them reproducible. The call log
(--log) has one JSON object a line: time, app, api, scene, page, errcode,
status, bytes, sha256, latency_ms, fault, rid. It never holds a token or a
secret.

It prints the address it listens on, then serves until SIGINT or SIGTERM.`,
		Example: `  wxacode simulate
  wxacode simulate --addr 127.0.0.1:0 --rate 600/10s --log calls.jsonl
  wxacode simulate --latency 50ms-300ms --busy-rate 0.02 --5xx-rate 0.01 --seed 7
  WECHAT_APPID=wx1234567890abcdef WECHAT_SECRET_FILE=secret.txt wxacode simulate --pages pages/index/index,pages/item/item`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runSimulate(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8090", "address to listen on, HOST:PORT (port 0 picks a free one, printed at start)")
	fs.StringVar(&o.rate, "rate", or(a.getenv("WXACODE_RATE"), "5000/1m"), "interface B's per-app ceiling, N/DURATION such as 5000/1m or 600/10s: past N calls in any sliding window it answers 45009 (env WXACODE_RATE)")
	fs.StringVar(&o.latency, "latency", "", "delay every call by a uniform random time in MIN-MAX, such as 5ms-80ms (or one fixed duration)")
	fs.Float64Var(&o.busyRate, "busy-rate", 0, "share of calls, 0 to 1, answered errcode -1 (system busy)")
	fs.Float64Var(&o.serverErrRate, "5xx-rate", 0, "share of calls, 0 to 1, answered HTTP 503 with an HTML body")
	fs.Float64Var(&o.serverErrRate, "server-error-rate", 0, "the same as --5xx-rate")
	fs.Float64Var(&o.tokenInvalid, "token-invalid-rate", 0, "share of code calls, 0 to 1, answered 40001 with their token (and the app's stable token) really invalidated")
	fs.Float64Var(&o.dropRate, "drop-rate", 0, "share of calls, 0 to 1, whose connection is closed without an answer")
	fs.BoolVar(&o.textErrors, "text-errors", false, "label error bodies text/plain instead of application/json")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", simulator.DefaultTokenLifetime, "lifetime of access tokens (expires_in); a short one such as 20s exercises rotation")
	fs.StringSliceVar(&o.pages, "pages", nil, "released pages, comma-separated (such as pages/index/index,pages/item/item); with check_path true others answer 41030 (default: every page is released)")
	fs.StringArrayVar(&o.apps, "app", nil, "serve one more app, APPID:SECRET (repeatable)")
	fs.IntVar(&o.quotaAC, "quota-ac", simulator.DefaultQuotaAC, "lifetime codes per app through interfaces A and C together, then 45029")
	fs.StringVar(&o.logPath, "log", "", "append the call log, JSON lines, to FILE (- for standard output)")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the faults' and tokens' randomness: the same seed and calls give the same answers")
	return cmd
}

// simulateConfig turns the flags and environment into a simulator.Config.
// Every error is bad usage and names its flag or variable.
func (a *app) simulateConfig(o simulateOptions) (simulator.Config, error) {
	cfg := simulator.Config{
		TokenLifetime:    o.tokenLifetime,
		BusyRate:         o.busyRate,
		ServerErrorRate:  o.serverErrRate,
		TokenInvalidRate: o.tokenInvalid,
		DropRate:         o.dropRate,
		PlainTextErrors:  o.textErrors,
		QuotaAC:          o.quotaAC,
		Seed:             o.seed,
		Pages:            o.pages,
		Apps:             map[string]string{},
	}
	var err error
	if _, err := check(setting{flag: "addr"}, o.addr, parseAddr); err != nil {
		return cfg, err
	}
	if cfg.RateN, cfg.RatePer, err = parseSimulateRate(o.rate); err != nil {
		return cfg, usagef("--rate/WXACODE_RATE %q: %v", o.rate, err)
	}
	if cfg.LatencyMin, cfg.LatencyMax, err = parseSimulateLatency(o.latency); err != nil {
		return cfg, usagef("--latency %q: %v", o.latency, err)
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--busy-rate", o.busyRate}, {"--5xx-rate", o.serverErrRate}, {"--token-invalid-rate", o.tokenInvalid}, {"--drop-rate", o.dropRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return cfg, usagef("%s %v: want a share from 0 to 1", r.flag, r.v)
		}
	}
	if o.tokenLifetime < time.Second {
		return cfg, usagef("--token-lifetime %v: want at least 1s", o.tokenLifetime)
	}
	if o.quotaAC <= 0 {
		return cfg, usagef("--quota-ac %d: want a positive number", o.quotaAC)
	}
	for _, p := range o.pages {
		if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
			return cfg, usagef("--pages: %q is not a page path (no leading /, no query)", p)
		}
	}

	appid := a.getenv("WECHAT_APPID")
	if appid != "" {
		if _, err := check(setting{env: "WECHAT_APPID"}, appid, parseAppID); err != nil {
			return cfg, err
		}
	}
	secret, err := a.simulateSecret()
	if err != nil {
		return cfg, err
	}
	switch {
	case appid != "" && secret == "":
		return cfg, usagef("WECHAT_APPID is set but neither WECHAT_SECRET nor WECHAT_SECRET_FILE gives its secret")
	case appid != "":
		cfg.Apps[appid] = secret
	default:
		cfg.Apps[simulator.DemoAppID] = simulator.DemoSecret
	}
	for _, s := range o.apps {
		id, sec, ok := strings.Cut(s, ":")
		if !ok || id == "" || sec == "" {
			return cfg, usagef("--app: want APPID:SECRET (the value is not shown: it may hold a secret)")
		}
		if _, err := check(setting{flag: "app"}, id, parseAppID); err != nil {
			return cfg, err
		}
		cfg.Apps[id] = sec
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// simulateSecret reads the served app's secret from WECHAT_SECRET_FILE or
// WECHAT_SECRET.
func (a *app) simulateSecret() (string, error) {
	file := a.getenv("WECHAT_SECRET_FILE")
	if file == "" {
		return a.getenv("WECHAT_SECRET"), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("WECHAT_SECRET_FILE: %v", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", usagef("WECHAT_SECRET_FILE %s is empty", file)
	}
	return s, nil
}

// parseSimulateRate reads N/DURATION ("5000/1m", "600/10s", "100/s") as
// every command reads WXACODE_RATE.
func parseSimulateRate(s string) (int, time.Duration, error) {
	l, err := parseRate(s)
	return l.N, l.Per, err
}

// parseSimulateLatency reads MIN-MAX ("5ms-80ms") or one duration; empty
// means none.
func parseSimulateLatency(s string) (time.Duration, time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	minD, err1 := time.ParseDuration(strings.TrimSpace(lo))
	maxD, err2 := time.ParseDuration(strings.TrimSpace(hi))
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, errors.New("want MIN-MAX such as 5ms-80ms, or one duration")
	case minD < 0 || maxD < minD:
		return 0, 0, errors.New("want 0 <= MIN <= MAX")
	}
	return minD, maxD, nil
}

// runSimulate serves the simulator until ctx ends, then shuts down
// gracefully.
func (a *app) runSimulate(ctx context.Context, o simulateOptions) error {
	log, err := a.logger()
	if err != nil {
		return err
	}
	cfg, err := a.simulateConfig(o)
	if err != nil {
		return err
	}
	switch o.logPath {
	case "":
	case "-":
		cfg.Log = a.stdout
	default:
		f, err := os.OpenFile(o.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return usagef("--log: %v", err)
		}
		defer f.Close()
		cfg.Log = f
	}
	sim, err := simulator.New(cfg)
	if err != nil {
		return usagef("%v", err)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	srv := httpserver.New(sim, httpserver.Config{})
	appids := make([]string, 0, len(cfg.Apps))
	for id := range cfg.Apps {
		appids = append(appids, id)
	}
	log.Info().Strs("apps", appids).Int("rate_n", cfg.RateN).Dur("rate_per", cfg.RatePer).
		Int("pages", len(cfg.Pages)).Dur("token_lifetime", cfg.TokenLifetime).
		Dur("latency_min", cfg.LatencyMin).Dur("latency_max", cfg.LatencyMax).
		Float64("busy_rate", cfg.BusyRate).Float64("server_error_rate", cfg.ServerErrorRate).
		Float64("token_invalid_rate", cfg.TokenInvalidRate).Float64("drop_rate", cfg.DropRate).
		Bool("text_errors", cfg.PlainTextErrors).Int64("seed", cfg.Seed).
		Msg("simulator starting")
	fmt.Fprintf(a.stdout, "simulator listening on http://%s\n", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), simulateShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	log.Info().Msg("simulator stopped")
	return nil
}
