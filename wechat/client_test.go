package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/internal/testenv"
)

func okRequest(scene string) UnlimitedRequest {
	return UnlimitedRequest{Scene: scene, CodeOptions: DefaultCodeOptions()}
}

func TestGetUnlimitedAnswers(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	ctx := t.Context()

	raw := func(status int, ctype string, body []byte) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}
	}
	errJSON := func(code int) []byte {
		return []byte(`{"errcode":` + strconv.Itoa(code) + `,"errmsg":"something rid: 6646d3a1-77"}`)
	}
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		ctype  string // image content type wanted; "" for an error
		code   int    // *Error code wanted
		class  Class
	}{
		{"jpeg", raw(200, "image/jpeg", jpegBytes), "image/jpeg", 0, ClassNone},
		{"jpeg served as text/plain", raw(200, "text/plain", jpegBytes), "image/jpeg", 0, ClassNone},
		{"png served as json", raw(200, "application/json", pngBytes), "image/png", 0, ClassNone},
		{"error json served as image/jpeg", raw(200, "image/jpeg", errJSON(40169)), "", 40169, ClassPermanent},
		{"error json served as text/plain", raw(200, "text/plain", errJSON(41030)), "", 41030, ClassPermanent},
		{"busy", raw(200, "application/json; charset=utf-8", errJSON(-1)), "", -1, ClassTemporary},
		{"rate limited", raw(200, "application/json", errJSON(45009)), "", 45009, ClassRateLimited},
		{"unknown code", raw(200, "application/json", errJSON(61234)), "", 61234, ClassTemporary},
		{"html page", raw(200, "text/html", []byte("<html>gateway</html>")), "", 0, ClassTemporary},
		{"empty body", raw(200, "image/jpeg", nil), "", 0, ClassTemporary},
		{"errcode 0 json", raw(200, "application/json", []byte(`{"errcode":0,"errmsg":"ok"}`)), "", 0, ClassTemporary},
		{"http 502", raw(502, "text/html", []byte("bad gateway")), "", 0, ClassTemporary},
		{"http 500 with a jpeg", raw(500, "image/jpeg", jpegBytes), "", 0, ClassTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.setAnswer(tt.answer)
			img, err := c.GetUnlimited(ctx, okRequest("sku000123"))
			if tt.ctype != "" {
				if err != nil {
					t.Fatalf("GetUnlimited: %v", err)
				}
				if img.ContentType != tt.ctype || len(img.Data) == 0 {
					t.Fatalf("image %q of %d bytes, want %q", img.ContentType, len(img.Data), tt.ctype)
				}
				return
			}
			if err == nil || img.Data != nil || img.ContentType != "" {
				t.Fatalf("GetUnlimited = %d bytes %q, %v; want an error and no image", len(img.Data), img.ContentType, err)
			}
			if got := Classify(err); got != tt.class {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.class)
			}
			var we *Error
			if tt.code != 0 {
				if !errors.As(err, &we) || we.Code != tt.code || we.RID != "6646d3a1-77" || we.Msg != "something" {
					t.Errorf("error %v: want *Error code %d with rid", err, tt.code)
				}
			} else if errors.As(err, &we) {
				t.Errorf("error %v: want no *Error", err)
			}
		})
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestGetUnlimitedWire(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	ctx := t.Context()

	req := UnlimitedRequest{Scene: "a=1&b=2", CodeOptions: CodeOptions{
		Page: "pages/item/item", CheckPath: false, EnvVersion: EnvTrial, Width: 280,
		LineColor: Color{R: 255, G: 0, B: 10}, IsHyaline: true,
	}}
	if _, err := c.GetUnlimited(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := f.lastBody()
	want := map[string]any{
		"scene": "a=1&b=2", "page": "pages/item/item", "check_path": false, "env_version": "trial",
		"width": json.Number("280"), "auto_color": false, "is_hyaline": true,
		"line_color": map[string]any{"r": json.Number("255"), "g": json.Number("0"), "b": json.Number("10")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body of interface B (-want +got):\n%s", diff)
	}

	// WeChat's defaults are sent explicitly; page is left out for the home page.
	if _, err := c.GetUnlimited(ctx, okRequest("x")); err != nil {
		t.Fatal(err)
	}
	got = f.lastBody()
	if diff := cmp.Diff([]string{"auto_color", "check_path", "env_version", "is_hyaline", "line_color", "scene", "width"}, keys(got)); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if got["check_path"] != true || got["env_version"] != "release" || got["width"] != json.Number("430") {
		t.Errorf("defaults not sent: %v", got)
	}
}

func TestGetUnlimitedValidatesFirst(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	for _, req := range []UnlimitedRequest{
		okRequest(""),
		okRequest(strings.Repeat("a", 33)),
		okRequest("100%"),
		{Scene: "ok", CodeOptions: CodeOptions{Page: "/pages/index/index", CheckPath: true}},
		{Scene: "ok", CodeOptions: CodeOptions{Width: 1281}},
	} {
		_, err := c.GetUnlimited(t.Context(), req)
		if !errors.Is(err, ErrInvalidRequest) || !IsPermanent(err) {
			t.Errorf("GetUnlimited(%+v) = %v; want ErrInvalidRequest", req, err)
		}
	}
	if n, m := f.calls.Load(), f.fetches.Load(); n != 0 || m != 0 {
		t.Errorf("%d calls and %d token fetches made for invalid requests", n, m)
	}
}

func TestTokenRefusedRefreshesOnce(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	ctx := t.Context()
	if _, err := c.GetUnlimited(ctx, okRequest("first")); err != nil {
		t.Fatal(err)
	}
	f.rotate(true) // someone forced a refresh: the shared token is dead

	img, err := c.GetUnlimited(ctx, okRequest("second"))
	if err != nil || img.ContentType != "image/jpeg" {
		t.Fatalf("GetUnlimited after 40001 = %v", err)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Errorf("token fetches = %d, want 2 (one refresh)", got)
	}
	if got := f.calls.Load(); got != 3 {
		t.Errorf("calls = %d, want 3 (first, refused, retried)", got)
	}
}

func TestTokenRefusedTwiceIsReturned(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	// Every call is refused with a token error.
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/json", map[string]any{"errcode": 42001, "errmsg": "access_token expired rid: 1-2"})
	})

	_, err := c.GetUnlimited(t.Context(), okRequest("x"))
	if !IsTokenInvalid(err) {
		t.Fatalf("err = %v, want a token error", err)
	}
	if got := f.calls.Load(); got != 2 {
		t.Errorf("calls = %d, want 2 (no loop)", got)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Errorf("token fetches = %d, want 2", got)
	}
}

func TestNoTokenRetryInvalidatesAndReturns(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil), func(c *Config) { c.NoTokenRetry = true })
	ctx := t.Context()
	if _, err := c.GetUnlimited(ctx, okRequest("first")); err != nil {
		t.Fatal(err)
	}
	f.rotate(true)
	if _, err := c.GetUnlimited(ctx, okRequest("second")); !IsTokenInvalid(err) {
		t.Fatalf("err = %v, want the token error back without a retry", err)
	}
	if got := f.calls.Load(); got != 2 {
		t.Errorf("calls = %d, want 2 (no call the caller did not make)", got)
	}
	// The refused token was dropped: the caller's own retry gets a new one.
	if _, err := c.GetUnlimited(ctx, okRequest("second")); err != nil {
		t.Fatalf("caller's retry: %v", err)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Errorf("token fetches = %d, want 2", got)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	var logs syncBuffer
	log := zerolog.New(&logs).Level(zerolog.DebugLevel)
	src := newStable(t, f, r, nil, func(c *StableTokenConfig) { c.Logger = log })
	c := newTestClient(t, f, r, src, func(c *Config) { c.Logger = log; c.CallTimeout = 200 * time.Millisecond })
	ctx := t.Context()

	var errs []error
	call := func() {
		_, err := c.GetUnlimited(ctx, okRequest("x"))
		errs = append(errs, err)
	}
	call()         // success
	f.rotate(true) // 40001, refresh, retry
	call()         //
	release := make(chan struct{})
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		select { // hang until the client's timeout
		case <-r.Context().Done():
		case <-release:
		}
	})
	call() // timeout
	close(release)
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		// Drop the connection without an answer.
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		_ = conn.Close()
	})
	call() // connection error
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		// An answer echoing the query, token included.
		w.WriteHeader(503)
		_, _ = w.Write([]byte("upstream said " + r.URL.RawQuery))
	})
	call()
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("weird " + r.URL.Query().Get("access_token")))
	})
	call()
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/json", map[string]any{"errcode": 40097, "errmsg": "bad " + r.URL.Query().Get("access_token") + " rid: 1"})
	})
	call()
	// The token endpoint refusing the secret.
	f.mu.Lock()
	f.secret = "another"
	f.mu.Unlock()
	f.rotate(true)
	call()

	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("first calls failed: %v", errs[:2])
	}
	for i, err := range errs[2:] {
		if err == nil {
			t.Fatalf("call %d: no error", i+2)
		}
		if !IsTemporary(err) && i+2 != 6 && i+2 != 7 {
			t.Errorf("call %d: %v is not temporary", i+2, err)
		}
	}
	if !errors.Is(errs[2], context.DeadlineExceeded) {
		t.Errorf("timeout error %v does not wrap context.DeadlineExceeded", errs[2])
	}
	if !errors.Is(errs[7], ErrCredentials) || !IsPermanent(errs[7]) {
		t.Errorf("wrong secret error %v: want ErrCredentials", errs[7])
	}
	var text strings.Builder
	for _, err := range errs {
		if err != nil {
			text.WriteString(err.Error() + "\n")
		}
	}
	text.WriteString(logs.String())
	all := text.String()
	var tokens []string
	f.tokenSeen.Range(func(k, _ any) bool { tokens = append(tokens, k.(string)); return true })
	if len(tokens) < 2 {
		t.Fatalf("only %d tokens issued", len(tokens))
	}
	for _, s := range append(tokens, testSecret) {
		if strings.Contains(all, s) {
			t.Errorf("secret %q found in errors or logs:\n%s", s, all)
		}
	}
	for _, want := range []string{"access_token=REDACTED", "access token refused", "access token fetched"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "stable_token") {
		t.Errorf("stable_token request logged:\n%s", all)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	src := newStable(t, f, r, nil)
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Tokens: src, Redis: r.Client}, "AppID"},
		{Config{AppID: "wx{x}", Tokens: src, Redis: r.Client}, "AppID"},
		{Config{AppID: "wx1", Redis: r.Client}, "Tokens"},
		{Config{AppID: "wx1", Tokens: src}, "Redis"},
		{Config{AppID: "wx1", Tokens: src, Redis: r.Client, BaseURL: "ftp://x"}, "BaseURL"},
		{Config{AppID: "wx1", Tokens: src, Redis: r.Client, QuotaLimit: -1}, "QuotaLimit"},
		{Config{AppID: "wx1", Tokens: src, Redis: r.Client, CallTimeout: -1}, "CallTimeout"},
	}
	for _, tt := range tests {
		_, err := NewClient(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewClient(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
	stable := []struct {
		cfg  StableTokenConfig
		want string
	}{
		{StableTokenConfig{Secret: "s", Redis: r.Client}, "AppID"},
		{StableTokenConfig{AppID: "wx1", Redis: r.Client}, "Secret"},
		{StableTokenConfig{AppID: "wx1", Secret: "s"}, "Redis"},
		{StableTokenConfig{AppID: "wx1", Secret: "s", Redis: r.Client, PollInterval: -1}, "PollInterval"},
	}
	for _, tt := range stable {
		_, err := NewStableTokenSource(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewStableTokenSource = %v, want an error naming %s", err, tt.want)
		}
	}
	if _, err := NewURLTokenSource(URLTokenConfig{}); err == nil || !strings.Contains(err.Error(), "URL") {
		t.Errorf("NewURLTokenSource(empty) = %v, want an error naming URL", err)
	}
}

// failingTokens is a token source whose every fetch fails.
type failingTokens struct{ err error }

func (f failingTokens) Token(context.Context) (string, error)    { return "", f.err }
func (f failingTokens) Invalidate(context.Context, string) error { return nil }

func TestNoTokenNoCall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, failingTokens{err: &Error{Code: CodeBusy, Msg: "system error"}})
	_, err := c.GetUnlimited(t.Context(), okRequest("x"))
	if !errors.Is(err, ErrNoToken) || !IsTemporary(err) {
		t.Fatalf("err = %v, want ErrNoToken, temporary", err)
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("%d calls sent without a token", n)
	}
}
