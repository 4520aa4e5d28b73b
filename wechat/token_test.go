package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
)

// tokensConcurrently calls Token from n goroutines spread over srcs, all
// released at once, and returns the tokens and errors.
func tokensConcurrently(t *testing.T, srcs []TokenSource, n int) ([]string, []error) {
	t.Helper()
	toks := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = srcs[i%len(srcs)].Token(t.Context())
		})
	}
	close(start)
	wg.Wait()
	return toks, errs
}

func TestStableTokenOneFetchForTheFleet(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	// The fetch stays open until every goroutine has had time to ask.
	gate := make(chan struct{})
	f.set(func(f *fakeWeChat) { f.fetchGate = gate })
	var srcs []TokenSource
	var onFetch atomic.Int64
	for range 3 {
		srcs = append(srcs, newStable(t, f, r, nil, func(c *StableTokenConfig) { c.OnFetch = func() { onFetch.Add(1) } }))
	}
	opened := make(chan struct{})
	defer func() { <-opened }()
	go func() {
		defer close(opened)
		// Let the first fetch through once it has arrived, so every other
		// caller has found the lease taken.
		for f.fetches.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		close(gate)
	}()
	toks, errs := tokensConcurrently(t, srcs, 50)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Token %d: %v", i, err)
		}
		if toks[i] != toks[0] || toks[i] == "" {
			t.Fatalf("Token %d = %q, want %q", i, toks[i], toks[0])
		}
	}
	if got := f.fetches.Load(); got != 1 {
		t.Errorf("stable_token fetches = %d, want 1", got)
	}
	if got := onFetch.Load(); got != 1 {
		t.Errorf("OnFetch called %d times, want 1", got)
	}
	if got := f.forced.Load(); got != 0 {
		t.Errorf("%d fetches asked for force_refresh", got)
	}
	// Later calls, from any process, read Redis.
	_, errs = tokensConcurrently(t, srcs, 30)
	if errors.Join(errs...) != nil || f.fetches.Load() != 1 {
		t.Errorf("later calls: %v, fetches %d", errors.Join(errs...), f.fetches.Load())
	}
}

func TestStableTokenExpiresMidRun(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	f.set(func(f *fakeWeChat) { f.lifetime = 600 })
	clock := newFakeClock()
	c := newTestClient(t, f, r, newStable(t, f, r, clock))
	ctx := t.Context()
	used := map[string]bool{}
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		used[r.URL.Query().Get("access_token")] = true
		f.mu.Unlock()
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(jpegBytes)
	})
	for i := range 20 {
		if i == 10 {
			// The token expires: WeChat stops accepting it and hands out a
			// new one.
			clock.Add(601 * time.Second)
			f.rotate(true)
		}
		if _, err := c.GetUnlimited(ctx, okRequest(fmt.Sprint("s", i))); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := f.fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
	if got := f.calls.Load(); got != 20 {
		t.Errorf("calls = %d, want 20 (the expired token was never sent)", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(used) != 2 {
		t.Errorf("%d tokens used, want 2", len(used))
	}
}

func TestStableTokenRefreshAhead(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	f.set(func(f *fakeWeChat) { f.lifetime = 1000 }) // refresh margin: max(60 s, 100 s) = 100 s
	clock := newFakeClock()
	src := newStable(t, f, r, clock)
	other := newStable(t, f, r, clock)
	ctx := t.Context()

	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(899 * time.Second) // 101 s left: no refresh yet
	if tok, _ := other.Token(ctx); tok != first || f.fetches.Load() != 1 {
		t.Fatalf("Token before the margin = %q with %d fetches", tok, f.fetches.Load())
	}

	// Inside the margin, a failed refresh keeps the current token and is
	// not retried until the error hold has passed.
	clock.Add(2 * time.Second)
	f.mu.Lock()
	f.tokenErr = -1
	f.mu.Unlock()
	for range 5 {
		tok, err := other.Token(ctx)
		if err != nil || tok != first {
			t.Fatalf("Token during a failed refresh = %q, %v; want the current token", tok, err)
		}
	}
	if got := f.fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (one failed refresh)", got)
	}

	// After the hold, the refresh succeeds and everyone moves on.
	clock.Add(DefaultErrorHold)
	f.mu.Lock()
	f.tokenErr = 0
	f.mu.Unlock()
	f.rotate(false)
	second, err := src.Token(ctx)
	if err != nil || second == first {
		t.Fatalf("Token after the hold = %q, %v; want a new token", second, err)
	}
	if tok, _ := other.Token(ctx); tok != second || f.fetches.Load() != 3 {
		t.Fatalf("other source: %q with %d fetches", tok, f.fetches.Load())
	}
}

func TestStableTokenInvalidateOnlyTheBadOne(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	a, b := newStable(t, f, r, nil), newStable(t, f, r, nil)
	ctx := t.Context()
	old, _ := a.Token(ctx)
	f.rotate(true)
	// Both processes see 40001 with the old token; only the first report
	// drops it.
	if err := a.Invalidate(ctx, old); err != nil {
		t.Fatal(err)
	}
	fresh, err := a.Token(ctx)
	if err != nil || fresh == old {
		t.Fatalf("Token after Invalidate = %q, %v", fresh, err)
	}
	if err := b.Invalidate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if tok, _ := b.Token(ctx); tok != fresh {
		t.Errorf("second Invalidate of the old token dropped the new one: %q", tok)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
}

func TestStableTokenWrongSecret(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	clock := newFakeClock()
	const wrong = "wrong-secret-0123456789abcdef"
	var srcs []TokenSource
	for range 3 {
		srcs = append(srcs, newStable(t, f, r, clock, func(c *StableTokenConfig) { c.Secret = wrong }))
	}
	_, errs := tokensConcurrently(t, srcs, 50)
	for i, err := range errs {
		if !errors.Is(err, ErrCredentials) || !IsPermanent(err) {
			t.Fatalf("Token %d = %v; want a permanent ErrCredentials", i, err)
		}
		if strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "40125") || !strings.Contains(err.Error(), testAppID) {
			t.Fatalf("error %q: want appid and errcode, no secret", err)
		}
		var we *Error
		if errors.As(err, &we) {
			t.Fatalf("credentials error %v is an *Error (callers would take 40001 for a stale token)", err)
		}
	}
	if got := f.fetches.Load(); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
	// Remembered for the hold, by every process.
	_, errs = tokensConcurrently(t, srcs, 10)
	if !errors.Is(errs[0], ErrCredentials) || f.fetches.Load() != 1 {
		t.Errorf("during the hold: %v with %d fetches", errs[0], f.fetches.Load())
	}
	// After the hold, one more try.
	clock.Add(DefaultCredentialsHold)
	_, errs = tokensConcurrently(t, srcs, 10)
	if !errors.Is(errs[0], ErrCredentials) || f.fetches.Load() != 2 {
		t.Errorf("after the hold: %v with %d fetches, want 2", errs[0], f.fetches.Load())
	}
	// A process with the right secret does not wait for the hold.
	good := newStable(t, f, r, clock)
	if _, err := good.Token(t.Context()); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	if got := f.fetches.Load(); got != 3 {
		t.Errorf("fetches = %d, want 3", got)
	}
}

func mustToken(t *testing.T, s TokenSource) string {
	t.Helper()
	tok, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestStableTokenTemporaryFailure(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	clock := newFakeClock()
	f.set(func(f *fakeWeChat) { f.tokenHTTP = 502 })
	srcs := []TokenSource{newStable(t, f, r, clock), newStable(t, f, r, clock)}
	_, errs := tokensConcurrently(t, srcs, 20)
	for _, err := range errs {
		if !IsTemporary(err) || errors.Is(err, ErrCredentials) {
			t.Fatalf("Token = %v, want a temporary error", err)
		}
	}
	if got := f.fetches.Load(); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
	f.mu.Lock()
	f.tokenHTTP = 0
	f.tokenErr = 45009
	f.mu.Unlock()
	clock.Add(DefaultErrorHold)
	_, err := srcs[0].Token(t.Context())
	if !IsRateLimited(err) {
		t.Errorf("Token = %v, want rate limited", err)
	}
	_, err = srcs[1].Token(t.Context())
	if !IsRateLimited(err) || f.fetches.Load() != 2 {
		t.Errorf("remembered: %v with %d fetches", err, f.fetches.Load())
	}
	f.mu.Lock()
	f.tokenErr = 0
	f.mu.Unlock()
	clock.Add(DefaultErrorHold)
	if _, err := srcs[1].Token(t.Context()); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

func TestStableTokenWaiterGivesUp(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	gate := make(chan struct{})
	f.set(func(f *fakeWeChat) { f.fetchGate = gate })
	a, b := newStable(t, f, r, nil), newStable(t, f, r, nil)
	done := make(chan error, 1)
	go func() {
		_, err := a.Token(t.Context())
		done <- err
	}()
	for f.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter = %v, want its deadline", err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Errorf("fetcher: %v", err)
	}
}

func TestURLTokenSource(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	var mu sync.Mutex
	answer := `{"access_token":"CENTRAL-TOKEN-1","expires_in":600}`
	status := 200
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer central-key" {
			w.WriteHeader(401)
			return
		}
		<-gate
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	set := func(s string, code int) {
		mu.Lock()
		defer mu.Unlock()
		answer, status = s, code
	}
	clock := newFakeClock()
	src, err := NewURLTokenSource(URLTokenConfig{
		URL:    srv.URL + "/token?key=URLSECRET",
		Header: http.Header{"Authorization": {"Bearer central-key"}},
		Now:    clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	defer func() { <-opened }()
	go func() {
		defer close(opened)
		for hits.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		close(gate)
	}()
	toks, errs := tokensConcurrently(t, []TokenSource{src}, 50)
	for i := range toks {
		if errs[i] != nil || toks[i] != "CENTRAL-TOKEN-1" {
			t.Fatalf("Token %d = %q, %v", i, toks[i], errs[i])
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("requests = %d, want 1", hits.Load())
	}

	// Near expiry (margin 60 s of 600 s), it asks again; plain text works.
	set("CENTRAL-TOKEN-2\n", 200)
	clock.Add(539 * time.Second)
	if tok := mustToken(t, src); tok != "CENTRAL-TOKEN-1" {
		t.Fatalf("before the margin: %q", tok)
	}
	clock.Add(2 * time.Second)
	if tok := mustToken(t, src); tok != "CENTRAL-TOKEN-2" || hits.Load() != 2 {
		t.Fatalf("inside the margin: %q after %d requests", tok, hits.Load())
	}

	// Invalidate drops only the token it names.
	if err := src.Invalidate(t.Context(), "CENTRAL-TOKEN-1"); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, src); tok != "CENTRAL-TOKEN-2" || hits.Load() != 2 {
		t.Fatalf("after a stale Invalidate: %q after %d requests", tok, hits.Load())
	}
	set(`{"access_token":"CENTRAL-TOKEN-3"}`, 200)
	_ = src.Invalidate(t.Context(), "CENTRAL-TOKEN-2")
	if tok := mustToken(t, src); tok != "CENTRAL-TOKEN-3" || hits.Load() != 3 {
		t.Fatalf("after Invalidate: %q after %d requests", tok, hits.Load())
	}

	// Failures are temporary, remembered for the hold, and keep secrets out.
	set("oops", 500)
	_ = src.Invalidate(t.Context(), "CENTRAL-TOKEN-3")
	_, err1 := src.Token(t.Context())
	_, err2 := src.Token(t.Context())
	if !IsTemporary(err1) || !IsTemporary(err2) || hits.Load() != 4 {
		t.Fatalf("failures: %v, %v after %d requests", err1, err2, hits.Load())
	}
	if strings.Contains(err1.Error(), "URLSECRET") || strings.Contains(err1.Error(), "central-key") {
		t.Errorf("error shows a secret: %v", err1)
	}
	set("bad answer here", 200)
	clock.Add(DefaultErrorHold)
	if _, err := src.Token(t.Context()); err == nil || strings.Contains(err.Error(), "bad answer") {
		t.Errorf("bad plain text answer: %v", err)
	}
}

func TestURLTokenSourceWithClient(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	stable := newStable(t, f, r, nil)
	// The central service hands out WeChat's current token.
	central := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok, err := stable.Token(req.Context())
		if err != nil {
			w.WriteHeader(500)
			return
		}
		_, _ = w.Write([]byte(tok))
	}))
	defer central.Close()
	src, err := NewURLTokenSource(URLTokenConfig{URL: central.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, f, r, src)
	if _, err := c.GetUnlimited(t.Context(), okRequest("x")); err != nil {
		t.Fatal(err)
	}
	// WeChat revokes the token and the central service moves on; the
	// client's cached copy is refused, dropped, and the service asked again.
	old := mustToken(t, src)
	f.rotate(true)
	if err := stable.Invalidate(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetUnlimited(t.Context(), okRequest("y")); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
}

// TestStableTokenKeptInProcess checks that a process serves its token
// without reading Redis until the refresh point, drops it when told that
// WeChat refused it, and reads the fleet's token again after the refresh
// point.
func TestStableTokenKeptInProcess(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	f.set(func(f *fakeWeChat) { f.lifetime = 1000 }) // refresh 100 s before expiry
	clock := newFakeClock()
	var trips testenv.Trips
	src := newStable(t, f, r, clock, func(c *StableTokenConfig) { c.Redis.AddHook(&trips) })
	other := newStable(t, f, r, clock)
	ctx := t.Context()

	first := mustToken(t, src)
	trips.Store(0)
	for range 100 {
		if tok := mustToken(t, src); tok != first {
			t.Fatalf("Token = %q, want %q", tok, first)
		}
	}
	clock.Add(899 * time.Second) // 101 s left: still before the refresh point
	if tok := mustToken(t, src); tok != first {
		t.Fatalf("Token before the refresh point = %q, want %q", tok, first)
	}
	if n := trips.Load(); n != 0 {
		t.Errorf("%d Redis round trips for 101 calls with a token in the process, want 0", n)
	}

	// Refused by WeChat: dropped from the process, a new one fetched.
	f.rotate(true)
	if err := src.Invalidate(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := mustToken(t, src)
	if second == first || f.fetches.Load() != 2 {
		t.Fatalf("Token after Invalidate = %q with %d fetches; want a new token, 2 fetches", second, f.fetches.Load())
	}
	// Another process replaces it at its refresh point: this one reads
	// the new token from Redis once past that point.
	clock.Add(901 * time.Second)
	f.rotate(false)
	third := mustToken(t, other)
	if third == second {
		t.Fatalf("other process's refresh kept %q", third)
	}
	if tok := mustToken(t, src); tok != third || f.fetches.Load() != 3 {
		t.Errorf("Token after the refresh point = %q with %d fetches; want %q, 3 fetches", tok, f.fetches.Load(), third)
	}
}
