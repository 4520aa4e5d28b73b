package simulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// retryToken fetches the demo app's stable token through injected faults.
func (e *env) retryToken() string {
	e.t.Helper()
	body := []byte(`{"grant_type":"client_credential","appid":"` + DemoAppID + `","secret":"` + DemoSecret + `"}`)
	for range 100 {
		resp, err := http.Post(e.url+"/cgi-bin/stable_token", "application/json", bytes.NewReader(body))
		if err != nil {
			continue
		}
		var tr tokenReply
		err = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if err == nil && tr.AccessToken != "" {
			return tr.AccessToken
		}
	}
	e.t.Fatal("no token in 100 tries")
	return ""
}

func TestBusyRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{BusyRate: 0.3, Seed: 7})
	tok := e.retryToken()
	const n = 400
	busy := 0
	// A refused scene keeps the calls cheap: busy is decided before the
	// body is read.
	for range n {
		switch code := e.unlimited(tok, map[string]any{"scene": "%"}).errcode(t); code {
		case codeBusy:
			busy++
		case codeSceneChars:
		default:
			t.Fatalf("errcode %d", code)
		}
	}
	if share := float64(busy) / n; share < 0.22 || share > 0.38 {
		t.Errorf("busy share %.3f, want about 0.3", share)
	}
	if got := e.s.Stats().Calls[apiUnlimited][codeBusy]; got != busy {
		t.Errorf("Stats counts %d busy answers, the client saw %d", got, busy)
	}

	// The same seed and calls give the same answers.
	e2 := newEnv(t, Config{BusyRate: 0.3, Seed: 7})
	tok2 := e2.retryToken()
	busy2 := 0
	for range n {
		if e2.unlimited(tok2, map[string]any{"scene": "%"}).errcode(t) == codeBusy {
			busy2++
		}
	}
	if busy2 != busy {
		t.Errorf("seed 7 gave %d busy answers, then %d", busy, busy2)
	}
}

func TestServerErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ServerErrorRate: 0.5, Seed: 3})
	tok := e.retryToken()
	const n = 200
	five := 0
	for range n {
		r := e.unlimited(tok, map[string]any{"scene": "%"})
		switch {
		case r.status == http.StatusServiceUnavailable:
			five++
		case r.errcode(t) != codeSceneChars:
			t.Fatalf("errcode %d", r.errcode(t))
		}
	}
	if five < 70 || five > 130 {
		t.Errorf("%d of %d calls answered 503, want about half", five, n)
	}
	if got := e.s.Stats().ServerErrors[apiUnlimited]; got != five {
		t.Errorf("Stats counts %d, want %d", got, five)
	}
}

func TestPlainTextErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{PlainTextErrors: true})
	tok := e.demoToken()
	r := e.unlimited(tok, map[string]any{"scene": "%"})
	if r.ctype != "text/plain" || r.errcode(t) != codeSceneChars {
		t.Errorf("Content-Type %q, body %s", r.ctype, r.body)
	}
	if r := e.unlimited(tok, map[string]any{"scene": "a"}); r.ctype != "image/jpeg" {
		t.Errorf("success Content-Type %q", r.ctype)
	}
}

func TestTokenInvalidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{TokenInvalidRate: 0.5, Seed: 11})
	for range 20 {
		tok := e.demoToken()
		r := e.unlimited(tok, map[string]any{"scene": "a"})
		if r.errcode(t) != codeInvalidToken {
			continue
		}
		// Really invalid, not only answered so: the server's own record
		// says so, and normal mode hands out a new token.
		e.s.mu.Lock()
		code := e.s.tokens[tok].check(e.clock.Now())
		e.s.mu.Unlock()
		if code != codeInvalidToken {
			t.Fatalf("token after a 40001 fault checks %d", code)
		}
		if next := e.demoToken(); next == tok {
			t.Fatal("normal-mode stable_token returned the invalidated token")
		}
		return
	}
	t.Fatal("no 40001 fault in 20 calls at rate 0.5")
}

func TestDroppedConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{DropRate: 1})
	_, err := http.Post(e.url+"/cgi-bin/stable_token", "application/json", strings.NewReader(`{}`))
	if err == nil {
		t.Fatal("a dropped connection answered")
	}
	if got := e.s.Stats().Dropped[apiStable]; got != 1 {
		t.Errorf("Dropped %d, want 1", got)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	var log syncBuffer
	e := newEnv(t, Config{LatencyMin: 20 * time.Millisecond, LatencyMax: 30 * time.Millisecond, Log: &log})
	start := time.Now()
	e.demoToken()
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("answered in %v, want at least 20ms", d)
	}
	var entry LogEntry
	if err := json.Unmarshal(log.Bytes(), &entry); err != nil {
		t.Fatal(err)
	}
	if entry.LatencyMS < 20 {
		t.Errorf("logged latency %.1f ms, want at least 20", entry.LatencyMS)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's and the test's
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func TestCallLog(t *testing.T) {
	t.Parallel()
	var log syncBuffer
	e := newEnv(t, Config{Log: &log, BusyRate: 0.2, Seed: 5})
	classic := e.classic(DemoAppID, DemoSecret)
	tok := e.retryToken()
	var images [][]byte
	for i := range 20 {
		r := e.unlimited(tok, map[string]any{"scene": "log" + string(rune('a'+i)), "page": "pages/index/index"})
		if r.errcode(t) == 0 {
			images = append(images, r.body)
		}
	}
	e.unlimited(classic.AccessToken, map[string]any{"scene": "%"})
	e.do(http.MethodGet, "/cgi-bin/token?grant_type=client_credential&appid="+DemoAppID+"&secret=wrong", "", nil)

	text := string(log.Bytes())
	secrets := []string{DemoSecret, tok, "wrong", "secret="}
	if classic.AccessToken != "" {
		secrets = append(secrets, classic.AccessToken)
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("call log holds %q", s)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	lines, sums := 0, map[string]bool{}
	for sc.Scan() {
		lines++
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("line %d: %v: %s", lines, err, sc.Bytes())
		}
		for _, k := range []string{"time", "api", "errcode", "status", "bytes", "latency_ms"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("line %d has no %q: %s", lines, k, sc.Bytes())
			}
		}
		var entry LogEntry
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339Nano, raw["time"].(string)); err != nil {
			t.Errorf("time %v: %v", raw["time"], err)
		}
		if entry.API == apiUnlimited && entry.Errcode == 0 {
			if entry.App != DemoAppID || entry.Page != "pages/index/index" || !strings.HasPrefix(entry.Scene, "log") || entry.SHA256 == "" {
				t.Errorf("success line: %s", sc.Bytes())
			}
			sums[entry.SHA256] = true
		}
		if entry.Errcode != 0 && entry.RID == "" {
			t.Errorf("error line without rid: %s", sc.Bytes())
		}
	}
	if min := 20 + 2; lines < min {
		t.Errorf("%d log lines, want at least %d", lines, min)
	}
	if len(sums) != len(images) {
		t.Errorf("%d distinct image hashes logged, %d images received", len(sums), len(images))
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{BusyRate: 1.5}, "BusyRate"},
		{Config{DropRate: -0.1}, "DropRate"},
		{Config{LatencyMin: time.Second, LatencyMax: time.Millisecond}, "LatencyMax"},
		{Config{TokenLifetime: time.Millisecond}, "TokenLifetime"},
		{Config{Apps: map[string]string{"wx1": ""}}, "Apps"},
		{Config{Pages: []string{"/pages/a"}}, "Pages"},
		{Config{QuotaAC: -1}, "QuotaAC"},
		{Config{RatePer: -time.Second}, "RatePer"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := New(Config{}); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}
