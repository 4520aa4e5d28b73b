package simulator

import (
	"sync"
	"testing"
	"time"
)

func TestStableTokenSharedByConcurrentCallers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	const n = 16
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = e.stable(DemoAppID, DemoSecret, false).AccessToken })
	}
	wg.Wait()
	for i, tok := range got {
		if tok == "" || tok != got[0] {
			t.Fatalf("caller %d got %q, caller 0 %q: want one shared token", i, tok, got[0])
		}
	}
	if len(got[0]) < 64 {
		t.Errorf("token %d characters long: WeChat's are over 100", len(got[0]))
	}
}

func TestStableTokenRotationOverlap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{TokenLifetime: 20 * time.Second}) // overlap 5 s
	first := e.stable(DemoAppID, DemoSecret, false)
	if first.ExpiresIn != 20 {
		t.Fatalf("expires_in %d, want 20", first.ExpiresIn)
	}
	e.clock.Advance(10 * time.Second)
	again := e.stable(DemoAppID, DemoSecret, false)
	if again.AccessToken != first.AccessToken || again.ExpiresIn != 10 {
		t.Fatalf("at 10 s: got %v, want the same token with 10 s left", again)
	}
	e.clock.Advance(6 * time.Second) // 4 s left: inside the overlap
	next := e.stable(DemoAppID, DemoSecret, false)
	if next.AccessToken == first.AccessToken || next.ExpiresIn != 20 {
		t.Fatalf("at 16 s: got %v, want a new token with 20 s", next)
	}
	if again := e.stable(DemoAppID, DemoSecret, false); again.AccessToken != next.AccessToken {
		t.Fatal("a second caller in the overlap got yet another token")
	}
	// Old and new both work during the overlap.
	for _, tok := range []string{first.AccessToken, next.AccessToken} {
		if code := e.unlimited(tok, map[string]any{"scene": "a"}).errcode(t); code != 0 {
			t.Fatalf("during overlap: errcode %d", code)
		}
	}
	e.clock.Advance(4 * time.Second) // the old one's natural end
	if code := e.unlimited(first.AccessToken, map[string]any{"scene": "a"}).errcode(t); code != codeTokenExpired {
		t.Fatalf("old token after expiry: errcode %d, want 42001", code)
	}
	if code := e.unlimited(next.AccessToken, map[string]any{"scene": "a"}).errcode(t); code != 0 {
		t.Fatalf("new token: errcode %d", code)
	}
	e.clock.Advance(20 * time.Second)
	if code := e.unlimited(next.AccessToken, map[string]any{"scene": "a"}).errcode(t); code != codeTokenExpired {
		t.Fatalf("new token after its lifetime: errcode %d, want 42001", code)
	}
}

func TestStableTokenForcedRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	old := e.stable(DemoAppID, DemoSecret, false).AccessToken
	forced := e.stable(DemoAppID, DemoSecret, true).AccessToken
	if forced == old || forced == "" {
		t.Fatalf("forced refresh gave %q (old %q)", forced, old)
	}
	if code := e.unlimited(old, map[string]any{"scene": "a"}).errcode(t); code != codeInvalidToken {
		t.Fatalf("old token after forced refresh: errcode %d, want 40001", code)
	}
	if got := e.stable(DemoAppID, DemoSecret, false).AccessToken; got != forced {
		t.Fatal("normal mode after a forced refresh did not return the new token")
	}
	// Within 30 s a forced call does not refresh.
	e.clock.Advance(10 * time.Second)
	if got := e.stable(DemoAppID, DemoSecret, true).AccessToken; got != forced {
		t.Fatal("a forced refresh 10 s after the last one refreshed")
	}
	e.clock.Advance(20 * time.Second)
	if got := e.stable(DemoAppID, DemoSecret, true).AccessToken; got == forced {
		t.Fatal("a forced refresh 30 s after the last one did not refresh")
	}
	// At most 20 in a day.
	for range 18 {
		e.clock.Advance(31 * time.Second)
		if tr := e.stable(DemoAppID, DemoSecret, true); tr.Errcode != 0 {
			t.Fatalf("forced refresh: errcode %d", tr.Errcode)
		}
	}
	e.clock.Advance(31 * time.Second)
	if tr := e.stable(DemoAppID, DemoSecret, true); tr.Errcode != codeFrequency {
		t.Fatalf("21st forced refresh in a day: errcode %d, want 45009", tr.Errcode)
	}
}

func TestStableTokenErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		name  string
		body  any
		want  int
		ctype string
	}{
		{"wrong secret", map[string]any{"grant_type": "client_credential", "appid": DemoAppID, "secret": "nope"}, codeInvalidSecret, ""},
		{"unknown appid", map[string]any{"grant_type": "client_credential", "appid": "wx00000000000000ff", "secret": DemoSecret}, codeInvalidAppID, ""},
		{"no grant_type", map[string]any{"appid": DemoAppID, "secret": DemoSecret}, codeInvalidGrant, ""},
		{"no appid", map[string]any{"grant_type": "client_credential", "secret": DemoSecret}, codeAppIDMissing, ""},
		{"no secret", map[string]any{"grant_type": "client_credential", "appid": DemoAppID}, codeSecretMissing, ""},
	} {
		if got := e.stable2(tc.body); got != tc.want {
			t.Errorf("%s: errcode %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := e.do("GET", "/cgi-bin/stable_token", "", nil).errcode(t); got != codePostOnly {
		t.Errorf("GET: errcode %d, want 43002", got)
	}
}

func (e *env) stable2(body any) int {
	e.t.Helper()
	return e.postJSON("/cgi-bin/stable_token", body).errcode(e.t)
}

func TestClassicToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}) // overlap 300 s
	a := e.classic(DemoAppID, DemoSecret)
	if a.AccessToken == "" || a.ExpiresIn != 7200 {
		t.Fatalf("classic token: %+v", a)
	}
	e.clock.Advance(time.Minute)
	b := e.classic(DemoAppID, DemoSecret)
	if b.AccessToken == a.AccessToken {
		t.Fatal("a second classic call returned the same token")
	}
	// Classic and stable tokens are apart: fetching stable ones changes nothing.
	e.stable(DemoAppID, DemoSecret, true)
	e.clock.Advance(299 * time.Second)
	for name, tok := range map[string]string{"previous": a.AccessToken, "latest": b.AccessToken} {
		if code := e.unlimited(tok, map[string]any{"scene": "x"}).errcode(t); code != 0 {
			t.Fatalf("%s token within the overlap: errcode %d", name, code)
		}
	}
	e.clock.Advance(time.Second)
	if code := e.unlimited(a.AccessToken, map[string]any{"scene": "x"}).errcode(t); code != codeInvalidToken {
		t.Fatalf("previous token after the overlap: errcode %d, want 40001", code)
	}
	if code := e.unlimited(b.AccessToken, map[string]any{"scene": "x"}).errcode(t); code != 0 {
		t.Fatalf("latest token: errcode %d", code)
	}
	if tr := e.classic(DemoAppID, "wrong"); tr.Errcode != codeInvalidToken {
		t.Errorf("wrong secret: errcode %d, want 40001", tr.Errcode)
	}
	if tr := e.classic("wx1111111111111111", DemoSecret); tr.Errcode != codeInvalidAppID {
		t.Errorf("unknown appid: errcode %d, want 40013", tr.Errcode)
	}
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{7200 * time.Second, 300 * time.Second},
		{20 * time.Second, 5 * time.Second},
		{time.Hour, 300 * time.Second},
		{10 * time.Minute, 150 * time.Second},
	} {
		if got := Overlap(tc.lifetime); got != tc.want {
			t.Errorf("Overlap(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}
