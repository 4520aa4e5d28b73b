package simulator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxBody bounds the request bodies read.
const maxBody = 1 << 20

// Server is the simulated WeChat API, an http.Handler. Create it with New;
// it is safe for concurrent use.
type Server struct {
	cfg     Config
	overlap time.Duration

	mu         sync.Mutex
	apps       map[string]*appState
	tokens     map[string]*token
	issued     int
	faultRand  *rand.Rand // draws of faults and latency
	tokenRand  *rand.Rand // token values and rids
	rids       uint32
	stats      Stats
	isReleased map[string]bool // nil: every page is released

	logMu sync.Mutex

	imagesMu sync.Mutex
	images   map[codeRequest][]byte // rendered codes, with Config.CacheImages
}

// appState is what the simulator knows of one app. Guarded by Server.mu.
type appState struct {
	secret     string
	classic    *token // the latest classic token
	stable     *token // the current stable token
	lastForced time.Time
	forced     []time.Time // forced refreshes in the last 24 hours
	window     window      // interface-B arrivals
	quotaUsed  int         // codes made through A and C
}

// Stats counts what the Server answered, for tests. Maps are copies.
type Stats struct {
	// Calls counts answers by API (getwxacodeunlimit, getwxacode,
	// createwxaqrcode, token, stable_token) and errcode (0: an image or a
	// token), HTTP 5xx and dropped connections excluded.
	Calls map[string]map[int]int
	// ServerErrors counts HTTP 503 answers by API.
	ServerErrors map[string]int
	// Dropped counts connections closed without an answer, by API.
	Dropped map[string]int
	// MaxWindow is, per appid, the most interface-B calls that arrived in
	// one sliding window of RatePer (rejected ones included).
	MaxWindow map[string]int
	// QuotaUsed is, per appid, the codes made through A and C.
	QuotaUsed map[string]int
}

// New checks cfg, fills its defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulator config: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		overlap:   Overlap(cfg.TokenLifetime),
		apps:      make(map[string]*appState, len(cfg.Apps)),
		tokens:    make(map[string]*token),
		faultRand: rand.New(rand.NewPCG(uint64(cfg.Seed), 1)),
		tokenRand: rand.New(rand.NewPCG(uint64(cfg.Seed), 2)),
		stats: Stats{
			Calls:        map[string]map[int]int{},
			ServerErrors: map[string]int{},
			Dropped:      map[string]int{},
			MaxWindow:    map[string]int{},
			QuotaUsed:    map[string]int{},
		},
	}
	for id, secret := range cfg.Apps {
		s.apps[id] = &appState{secret: secret}
	}
	if cfg.Pages != nil {
		s.isReleased = make(map[string]bool, len(cfg.Pages))
		for _, p := range cfg.Pages {
			s.isReleased[p] = true
		}
	}
	return s, nil
}

// Stats returns a copy of the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		Calls:        make(map[string]map[int]int, len(s.stats.Calls)),
		ServerErrors: copyMap(s.stats.ServerErrors),
		Dropped:      copyMap(s.stats.Dropped),
		MaxWindow:    copyMap(s.stats.MaxWindow),
		QuotaUsed:    copyMap(s.stats.QuotaUsed),
	}
	for api, m := range s.stats.Calls {
		out.Calls[api] = copyMap(m)
	}
	return out
}

func copyMap[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// released reports whether page is in the released version.
func (s *Server) released(page string) bool {
	return s.isReleased == nil || s.isReleased[page]
}

// faults are the random draws of one call, made at its arrival.
type faults struct {
	latency                               time.Duration
	drop, serverError, busy, tokenInvalid bool
}

func (s *Server) drawLocked() faults {
	var f faults
	r := s.faultRand
	if span := s.cfg.LatencyMax - s.cfg.LatencyMin; span > 0 {
		f.latency = s.cfg.LatencyMin + time.Duration(r.Int64N(int64(span)+1))
	} else {
		f.latency = s.cfg.LatencyMin
	}
	// One draw per fault, always, so a seed gives the same sequence
	// whatever the rates.
	f.drop = r.Float64() < s.cfg.DropRate
	f.serverError = r.Float64() < s.cfg.ServerErrorRate
	f.busy = r.Float64() < s.cfg.BusyRate
	f.tokenInvalid = r.Float64() < s.cfg.TokenInvalidRate
	return f
}

// call is one request in flight and its log entry.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	start   time.Time // real time, for latency
	now     time.Time // Config.Now at arrival
	entry   LogEntry
	faults  faults
	decided int // errcode settled at arrival (token, window), or 0
	app     *appState
	tok     *token
}

// ServeHTTP answers the WeChat API paths the simulator knows; any other
// path is HTTP 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api := ""
	switch r.URL.Path {
	case "/cgi-bin/token":
		api = apiToken
	case "/cgi-bin/stable_token":
		api = apiStable
	case "/wxa/getwxacodeunlimit":
		api = apiUnlimited
	case "/wxa/getwxacode":
		api = apiCode
	case "/cgi-bin/wxaapp/createwxaqrcode":
		api = apiQRCode
	default:
		http.NotFound(w, r)
		return
	}
	c := &call{w: w, r: r, start: time.Now(), now: s.cfg.Now()}
	c.entry = LogEntry{Time: c.now, API: api}

	s.mu.Lock()
	c.faults = s.drawLocked()
	if api != apiToken && api != apiStable {
		s.arriveLocked(c)
	}
	s.mu.Unlock()

	if c.faults.latency > 0 {
		t := time.NewTimer(c.faults.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			c.entry.Fault = "canceled"
			s.finish(c)
			return
		}
	}
	switch {
	case c.faults.drop:
		s.drop(c)
		return
	case c.faults.serverError:
		s.serverError(c)
		return
	}
	switch api {
	case apiToken:
		s.serveToken(c)
	case apiStable:
		s.serveStable(c)
	default:
		s.serveCode(c, api)
	}
}

// arriveLocked settles what a code call's arrival decides: its token's
// verdict and, for interface B, its place in the app's window. s.mu must
// be held.
func (s *Server) arriveLocked(c *call) {
	value := c.r.URL.Query().Get("access_token")
	if value == "" {
		c.decided = codeTokenMissing
		return
	}
	t := s.tokens[value]
	if t == nil {
		c.decided = codeInvalidToken
		return
	}
	c.entry.App = t.app
	c.app = s.apps[t.app]
	c.tok = t
	if c.entry.API == apiUnlimited && s.cfg.RateN >= 0 {
		n := c.app.window.arrive(c.now.UnixNano(), int64(s.cfg.RatePer))
		s.stats.MaxWindow[t.app] = max(s.stats.MaxWindow[t.app], n)
		if code := t.check(c.now); code != codeOK {
			c.decided = code
		} else if n > s.cfg.RateN {
			c.decided = codeFrequency
		}
		return
	}
	c.decided = t.check(c.now)
}

// serveCode answers interfaces A, B and C.
func (s *Server) serveCode(c *call, api string) {
	if c.r.Method != http.MethodPost {
		s.fail(c, codePostOnly, "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil {
		s.fail(c, codeDataFormat, "")
		return
	}
	c.entry.Scene, c.entry.Page = peekScene(body)
	if c.decided != codeOK {
		s.fail(c, c.decided, "")
		return
	}
	if c.faults.busy {
		s.fail(c, codeBusy, "busy")
		return
	}
	if c.faults.tokenInvalid {
		s.mu.Lock()
		c.tok.revokeAt(c.now)
		if st := c.app.stable; st != nil {
			st.revokeAt(c.now)
		}
		s.mu.Unlock()
		s.fail(c, codeInvalidToken, "token_invalid")
		return
	}
	req, code := parseCode(api, body, s.released)
	if code != codeOK {
		s.fail(c, code, "")
		return
	}
	if api != apiUnlimited {
		s.mu.Lock()
		over := c.app.quotaUsed >= s.cfg.QuotaAC
		if !over {
			c.app.quotaUsed++
			s.stats.QuotaUsed[c.entry.App] = c.app.quotaUsed
		}
		s.mu.Unlock()
		if over {
			s.fail(c, codeQuotaAC, "")
			return
		}
	}
	img, err := s.render(req)
	if err != nil {
		s.fail(c, codeBusy, "")
		return
	}
	sum := sha256.Sum256(img)
	c.entry.SHA256 = hex.EncodeToString(sum[:])
	// WeChat labels its codes image/jpeg, and real clients compare that
	// header exactly; the PNG of is_hyaline carries the same label
	// (WeChat's own label for it is unconfirmed). Tell them by their bytes.
	c.entry.Status, c.entry.Bytes = http.StatusOK, len(img)
	s.finish(c)
	h := c.w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(img)))
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(img) //nolint:errcheck // the client is gone; nothing to do
}

// serveToken answers cgi-bin/token, the classic token. Its query carries
// the secret: nothing of it but the appid is logged.
func (s *Server) serveToken(c *call) {
	q := c.r.URL.Query()
	appid, secret := q.Get("appid"), q.Get("secret")
	c.entry.App = appid
	if c.faults.busy {
		s.fail(c, codeBusy, "busy")
		return
	}
	switch {
	case q.Get("grant_type") != "client_credential":
		s.fail(c, codeInvalidGrant, "")
		return
	case appid == "":
		s.fail(c, codeAppIDMissing, "")
		return
	case secret == "":
		s.fail(c, codeSecretMissing, "")
		return
	}
	s.mu.Lock()
	st := s.apps[appid]
	var (
		value   string
		expires int
		code    = codeOK
	)
	switch {
	case st == nil:
		code = codeInvalidAppID
	case st.secret != secret:
		code = codeInvalidToken // what WeChat answers here for a wrong secret
	default:
		value, expires = s.classicTokenLocked(st, appid, c.now)
	}
	s.mu.Unlock()
	if code != codeOK {
		s.fail(c, code, "")
		return
	}
	s.tokenAnswer(c, value, expires)
}

// serveStable answers cgi-bin/stable_token.
func (s *Server) serveStable(c *call) {
	if c.r.Method != http.MethodPost {
		s.fail(c, codePostOnly, "")
		return
	}
	if c.faults.busy {
		s.fail(c, codeBusy, "busy")
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil || json.Unmarshal(body, &req) != nil {
		s.fail(c, codeDataFormat, "")
		return
	}
	c.entry.App = req.AppID
	switch {
	case req.GrantType != "client_credential":
		s.fail(c, codeInvalidGrant, "")
		return
	case req.AppID == "":
		s.fail(c, codeAppIDMissing, "")
		return
	case req.Secret == "":
		s.fail(c, codeSecretMissing, "")
		return
	}
	s.mu.Lock()
	st := s.apps[req.AppID]
	var (
		value   string
		expires int
		code    = codeOK
	)
	switch {
	case st == nil:
		code = codeInvalidAppID
	case st.secret != req.Secret:
		code = codeInvalidSecret // stable_token's documented answer to a wrong secret
	default:
		value, expires, code = s.stableTokenLocked(st, req.AppID, req.ForceRefresh, c.now)
	}
	s.mu.Unlock()
	if code != codeOK {
		s.fail(c, code, "")
		return
	}
	s.tokenAnswer(c, value, expires)
}

func (s *Server) tokenAnswer(c *call, value string, expiresIn int) {
	b, _ := json.Marshal(struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}{value, expiresIn})
	c.entry.Status, c.entry.Bytes = http.StatusOK, len(b)
	s.finish(c)
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b) //nolint:errcheck // the client is gone; nothing to do
}

// fail answers errcode code as WeChat does: HTTP 200, a JSON body whose
// errmsg ends with a rid, labelled application/json (or text/plain with
// Config.PlainTextErrors).
func (s *Server) fail(c *call, code int, fault string) {
	s.mu.Lock()
	s.rids++
	rid := fmt.Sprintf("%08x-%08x-%08x", uint32(c.now.Unix()), s.rids, s.tokenRand.Uint32())
	s.mu.Unlock()
	b, _ := json.Marshal(struct {
		Errcode int    `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}{code, errmsgs[code] + " rid: " + rid})
	ct := "application/json; charset=utf-8"
	if s.cfg.PlainTextErrors {
		ct = "text/plain"
	}
	c.entry.Errcode, c.entry.RID, c.entry.Fault = code, rid, fault
	c.entry.Status, c.entry.Bytes = http.StatusOK, len(b)
	s.finish(c)
	c.w.Header().Set("Content-Type", ct)
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b) //nolint:errcheck // the client is gone; nothing to do
}

// serverError answers HTTP 503 with an HTML body, as a gateway would.
func (s *Server) serverError(c *call) {
	const body = "<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>\n"
	c.entry.Status, c.entry.Bytes, c.entry.Fault = http.StatusServiceUnavailable, len(body), "server_error"
	s.finish(c)
	c.w.Header().Set("Content-Type", "text/html")
	c.w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(c.w, body) //nolint:errcheck // the client is gone; nothing to do
}

// drop closes the connection without an answer.
func (s *Server) drop(c *call) {
	c.entry.Fault = "dropped"
	s.finish(c)
	if hj, ok := c.w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// Not hijackable (HTTP/2): abort the stream instead.
	panic(http.ErrAbortHandler)
}

// finish counts the call and writes its log line, before the answer is
// sent: a client that has its answer finds it counted and logged.
func (s *Server) finish(c *call) {
	e := &c.entry
	e.LatencyMS = float64(time.Since(c.start).Microseconds()) / 1000
	s.mu.Lock()
	switch {
	case e.Fault == "dropped":
		s.stats.Dropped[e.API]++
	case e.Fault == "canceled":
	case e.Status == http.StatusServiceUnavailable:
		s.stats.ServerErrors[e.API]++
	default:
		m := s.stats.Calls[e.API]
		if m == nil {
			m = map[int]int{}
			s.stats.Calls[e.API] = m
		}
		m[e.Errcode]++
	}
	s.mu.Unlock()
	if s.cfg.Log == nil {
		return
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.cfg.Log.Write(line) //nolint:errcheck // a failing log must not fail the call
}

// render draws the code of req, or takes it from the cache when
// Config.CacheImages is set.
func (s *Server) render(req codeRequest) ([]byte, error) {
	if !s.cfg.CacheImages {
		return renderCode(req)
	}
	s.imagesMu.Lock()
	img, ok := s.images[req]
	s.imagesMu.Unlock()
	if ok {
		return img, nil
	}
	img, err := renderCode(req)
	if err != nil {
		return nil, err
	}
	s.imagesMu.Lock()
	if s.images == nil {
		s.images = map[codeRequest][]byte{}
	}
	s.images[req] = img
	s.imagesMu.Unlock()
	return img, nil
}
