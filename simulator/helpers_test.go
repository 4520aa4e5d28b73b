package simulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Server behind a real HTTP server, on a fake clock.
type env struct {
	t     *testing.T
	s     *Server
	url   string
	clock *clock
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	c := newClock()
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &env{t: t, s: s, url: hs.URL, clock: c}
}

// reply is an HTTP answer.
type reply struct {
	status int
	ctype  string
	body   []byte
}

// errcode reads the errcode of a JSON answer; 0 for an image.
func (r reply) errcode(t *testing.T) int {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", r.status, r.body)
	}
	if len(r.body) > 2 && r.body[0] == 0xFF && r.body[1] == 0xD8 || bytes.HasPrefix(r.body, []byte("\x89PNG")) {
		return 0
	}
	var e struct {
		Errcode *int `json:"errcode"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Errcode == nil {
		t.Fatalf("not an image nor an error: %q", r.body)
	}
	return *e.Errcode
}

func (e *env) do(method, path, ctype string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b}
}

func (e *env) postJSON(path string, v any) reply {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(http.MethodPost, path, "application/json", b)
}

// tokenReply is a token answer, or an error.
type tokenReply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	Errcode     int    `json:"errcode"`
}

func decodeToken(t *testing.T, r reply) tokenReply {
	t.Helper()
	var tr tokenReply
	if err := json.Unmarshal(r.body, &tr); err != nil {
		t.Fatalf("token answer %q: %v", r.body, err)
	}
	return tr
}

func (e *env) stable(appid, secret string, force bool) tokenReply {
	e.t.Helper()
	return decodeToken(e.t, e.postJSON("/cgi-bin/stable_token", map[string]any{
		"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": force,
	}))
}

func (e *env) classic(appid, secret string) tokenReply {
	e.t.Helper()
	q := url.Values{"grant_type": {"client_credential"}, "appid": {appid}, "secret": {secret}}
	return decodeToken(e.t, e.do(http.MethodGet, "/cgi-bin/token?"+q.Encode(), "", nil))
}

// demoToken fetches the demo app's stable token.
func (e *env) demoToken() string {
	e.t.Helper()
	tr := e.stable(DemoAppID, DemoSecret, false)
	if tr.AccessToken == "" {
		e.t.Fatalf("no stable token: errcode %d", tr.Errcode)
	}
	return tr.AccessToken
}

// unlimited calls interface B with body v.
func (e *env) unlimited(tok string, v any) reply {
	e.t.Helper()
	return e.postJSON("/wxa/getwxacodeunlimit?access_token="+url.QueryEscape(tok), v)
}

func decodeTokenBody(tb testing.TB, b []byte) string {
	tb.Helper()
	var tr tokenReply
	if err := json.Unmarshal(b, &tr); err != nil || tr.AccessToken == "" {
		tb.Fatalf("token answer %q: %v", b, err)
	}
	return tr.AccessToken
}
