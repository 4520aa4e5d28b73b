package wechat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	testAppID  = "wxtestapp0001"
	testSecret = "s3cr3t-0123456789abcdef0123456789"
)

// jpegBytes is the start of a JFIF file: enough for magic-byte detection.
var jpegBytes = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0xFF, 0xD9}

// pngBytes is the PNG signature and a little more.
var pngBytes = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'}

// fakeWeChat is a small stand-in for WeChat in these tests: stable_token
// and the three code interfaces, with counters.
type fakeWeChat struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	secret    string
	lifetime  int             // expires_in handed out, seconds
	current   string          // token stable_token hands out; "" mints a new one
	seq       int             // tokens minted
	valid     map[string]bool // tokens the code interfaces accept
	tokenErr  int             // errcode answered by stable_token when not 0
	tokenHTTP int             // HTTP status answered by stable_token when not 0
	bodies    []map[string]any
	answer    func(w http.ResponseWriter, r *http.Request) // code interfaces, after the token check
	// fetchGate, when set, is received from before a token answer.
	fetchGate chan struct{}

	fetches   atomic.Int64 // stable_token requests
	calls     atomic.Int64 // code interface requests
	forced    atomic.Int64 // stable_token requests with force_refresh true
	tokenSeen sync.Map     // every token handed out
}

func newFakeWeChat(t testing.TB) *fakeWeChat {
	f := &fakeWeChat{t: t, secret: testSecret, lifetime: 7200, valid: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cgi-bin/stable_token", f.stableToken)
	for _, p := range []string{pathUnlimited, pathCode, pathQRCode} {
		mux.HandleFunc("POST "+p, f.code)
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, ctype string, v any) {
	w.Header().Set("Content-Type", ctype)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeWeChat) stableToken(w http.ResponseWriter, r *http.Request) {
	f.fetches.Add(1)
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh *bool  `json:"force_refresh"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, "application/json", map[string]any{"errcode": 47001, "errmsg": "data format error rid: x"})
		return
	}
	if req.ForceRefresh == nil || *req.ForceRefresh {
		f.forced.Add(1)
	}
	f.mu.Lock()
	gate := f.fetchGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.tokenHTTP != 0:
		http.Error(w, "bad gateway", f.tokenHTTP)
		return
	case f.tokenErr != 0:
		writeJSON(w, "application/json", map[string]any{"errcode": f.tokenErr, "errmsg": "stable token refused rid: 6646d3a1-tok"})
		return
	case req.GrantType != "client_credential" || req.AppID != testAppID || req.Secret != f.secret:
		writeJSON(w, "application/json", map[string]any{"errcode": 40125, "errmsg": "invalid appsecret rid: 6646d3a1-5aed2e3b"})
		return
	}
	if f.current == "" {
		f.seq++
		f.current = fmt.Sprintf("ACCESS-TOKEN-%d-%d", f.seq, time.Now().UnixNano())
		f.valid[f.current] = true
		f.tokenSeen.Store(f.current, true)
	}
	writeJSON(w, "application/json", map[string]any{"access_token": f.current, "expires_in": f.lifetime})
}

// rotate makes stable_token hand out a new token next time; when revoke,
// the current one stops working at once.
func (f *fakeWeChat) rotate(revoke bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if revoke {
		delete(f.valid, f.current)
	}
	f.current = ""
}

func (f *fakeWeChat) code(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if r.Header.Get("Content-Type") != "application/json" || dec.Decode(&m) != nil {
		writeJSON(w, "application/json", map[string]any{"errcode": 47001, "errmsg": "data format error rid: x"})
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, m)
	ok := f.valid[r.URL.Query().Get("access_token")]
	answer := f.answer
	f.mu.Unlock()
	if !ok {
		writeJSON(w, "application/json; encoding=utf-8", map[string]any{
			"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest rid: 6646d3a1-0bad",
		})
		return
	}
	if answer != nil {
		answer(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	_, _ = w.Write(jpegBytes)
}

// set changes the fake's settings under its lock.
func (f *fakeWeChat) set(change func(f *fakeWeChat)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeWeChat) lastBody() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		f.t.Fatal("no request body recorded")
	}
	return f.bodies[len(f.bodies)-1]
}

func (f *fakeWeChat) setAnswer(a func(w http.ResponseWriter, r *http.Request)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = a
}

// fakeClock is a settable clock shared by the sources of a test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_750_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newRedisClient returns another client of the test's database, as another
// process would have.
func newRedisClient(t testing.TB, r *testenv.Redis) *redis.Client {
	c := redis.NewClient(r.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newStable returns a stable token source on the fake, with a fresh Redis
// client of r.
func newStable(t testing.TB, f *fakeWeChat, r *testenv.Redis, clock *fakeClock, mod ...func(*StableTokenConfig)) *StableTokenSource {
	t.Helper()
	cfg := StableTokenConfig{
		BaseURL:      f.srv.URL,
		AppID:        testAppID,
		Secret:       testSecret,
		Redis:        newRedisClient(t, r),
		PollInterval: 2 * time.Millisecond,
	}
	if clock != nil {
		cfg.Now = clock.Now
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := NewStableTokenSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestClient returns a client on the fake with a stable token source.
func newTestClient(t testing.TB, f *fakeWeChat, r *testenv.Redis, tokens TokenSource, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: f.srv.URL, AppID: testAppID, Tokens: tokens, Redis: newRedisClient(t, r)}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
