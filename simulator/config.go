package simulator

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"
)

// The built-in demo app, served when Config.Apps is empty. Its secret is
// public: it only opens this simulator.
const (
	DemoAppID  = "wx0123456789abcdef"
	DemoSecret = "0123456789abcdef0123456789abcdef"
)

// Defaults of Config.
const (
	DefaultRateN         = 5000
	DefaultRatePer       = time.Minute
	DefaultTokenLifetime = 7200 * time.Second
	DefaultQuotaAC       = 100000
)

// Config sets up a Server. The zero value serves the demo app with
// WeChat's limits and no faults.
type Config struct {
	// Apps maps each served appid to its secret. Empty means the demo app
	// alone (DemoAppID, DemoSecret).
	Apps map[string]string

	// RateN and RatePer are interface B's per-app ceiling: at most RateN
	// calls arrive in any sliding window of RatePer; past it calls answer
	// 45009 with HTTP 200. Every call whose token names an app counts,
	// whatever its answer (45009 ones included), as WeChat counts calls
	// that arrive. Defaults 5000 and 1 minute; a negative RateN lifts the
	// ceiling.
	RateN   int
	RatePer time.Duration

	// Pages lists the pages of the released version. With check_path true
	// (WeChat's default) interface B answers 41030 for any other page. Nil
	// means every page is released; an empty, non-nil slice means none.
	Pages []string

	// TokenLifetime is how long an access token lives (expires_in).
	// Default 7200 s. Old and new tokens overlap for Overlap() of it.
	TokenLifetime time.Duration

	// LatencyMin and LatencyMax delay every call by a uniform random time
	// in [LatencyMin, LatencyMax]. Default none.
	LatencyMin time.Duration
	LatencyMax time.Duration

	// BusyRate is the share of calls (0 to 1) answered errcode -1, system
	// busy. Default 0.
	BusyRate float64
	// ServerErrorRate is the share of calls answered HTTP 503 with a
	// non-JSON body. Default 0.
	ServerErrorRate float64
	// TokenInvalidRate is the share of code calls (A, B, C) answered 40001
	// whose token, and the app's current stable token, are really
	// invalidated at that moment: the next normal-mode stable_token fetch
	// returns a new token. Default 0.
	TokenInvalidRate float64
	// DropRate is the share of calls whose connection is closed without
	// an answer. Default 0.
	DropRate float64
	// PlainTextErrors sends error bodies (still JSON) as text/plain, as
	// WeChat sometimes does. Default false: application/json; charset=utf-8.
	PlainTextErrors bool

	// QuotaAC is the lifetime number of codes interfaces A and C together
	// create per app; past it they answer 45029. Default 100,000.
	QuotaAC int

	// CacheImages keeps every code rendered and answers the same request
	// again with the same bytes without drawing it anew: WeChat draws its
	// codes on its own machines, so capacity benchmarks that run the
	// simulator beside wxacode use it to keep the drawing off the shared
	// CPU. Memory grows with every distinct request. Default false.
	CacheImages bool

	// Seed seeds the randomness of faults and tokens: the same seed and
	// the same sequence of calls give the same answers.
	Seed int64

	// Log receives one JSON line per call (see LogEntry). Nil logs nothing.
	// Writes are serialised by the Server.
	Log io.Writer

	// Now is the clock for tokens and windows. Default time.Now. Injected
	// latency always sleeps in real time.
	Now func() time.Time
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if len(c.Apps) == 0 {
		c.Apps = map[string]string{DemoAppID: DemoSecret}
	}
	c.RateN = cmp.Or(c.RateN, DefaultRateN)
	c.RatePer = cmp.Or(c.RatePer, DefaultRatePer)
	c.TokenLifetime = cmp.Or(c.TokenLifetime, DefaultTokenLifetime)
	c.QuotaAC = cmp.Or(c.QuotaAC, DefaultQuotaAC)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first field of c (after defaults) that is out of
// range, naming it.
func (c Config) Validate() error {
	c = c.withDefaults()
	for id, secret := range c.Apps {
		if id == "" || strings.ContainsAny(id, " \t\r\n") {
			return fmt.Errorf("Apps: appid %q is empty or has spaces", id)
		}
		if secret == "" {
			return fmt.Errorf("Apps: app %s has an empty secret", id)
		}
	}
	if c.RatePer < 0 {
		return fmt.Errorf("RatePer %v: must be positive", c.RatePer)
	}
	if c.TokenLifetime < time.Second {
		return fmt.Errorf("TokenLifetime %v: must be at least 1s", c.TokenLifetime)
	}
	if c.LatencyMin < 0 {
		return fmt.Errorf("LatencyMin %v: must not be negative", c.LatencyMin)
	}
	if c.LatencyMax < c.LatencyMin {
		return fmt.Errorf("LatencyMax %v: must not be below LatencyMin %v", c.LatencyMax, c.LatencyMin)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"BusyRate", c.BusyRate}, {"ServerErrorRate", c.ServerErrorRate}, {"TokenInvalidRate", c.TokenInvalidRate}, {"DropRate", c.DropRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s %v: must be from 0 to 1", r.name, r.v)
		}
	}
	if c.QuotaAC < 0 {
		return fmt.Errorf("QuotaAC %d: must not be negative", c.QuotaAC)
	}
	for _, p := range c.Pages {
		if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
			return fmt.Errorf("Pages: %q is not a page path (no leading /, no query)", p)
		}
	}
	return nil
}

// Overlap is how long an old token stays valid after a new one replaces
// it, and how long before expiry a stable token rotates:
// min(5 minutes, lifetime/4). At WeChat's 7200 s it is 300 s, as WeChat
// documents; a 20 s lifetime gives 5 s, so a stable token handed out
// always has at least a quarter of its life left.
func Overlap(lifetime time.Duration) time.Duration {
	return min(5*time.Minute, lifetime/4)
}
