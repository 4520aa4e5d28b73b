package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxacode/wxacode/simulator"
)

func TestParseSimulateRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in  string
		n   int
		per time.Duration
		ok  bool
	}{
		{"5000/1m", 5000, time.Minute, true},
		{"600/10s", 600, 10 * time.Second, true},
		{"100/s", 100, time.Second, true},
		{" 7 / 2h ", 7, 2 * time.Hour, true},
		{"5000", 0, 0, false},
		{"0/1m", 0, 0, false},
		{"-5/1m", 0, 0, false},
		{"x/1m", 0, 0, false},
		{"5/0s", 0, 0, false},
		{"5/soon", 0, 0, false},
	} {
		n, per, err := parseSimulateRate(tc.in)
		if (err == nil) != tc.ok || n != tc.n || per != tc.per {
			t.Errorf("parseSimulateRate(%q) = %d, %v, %v", tc.in, n, per, err)
		}
	}
}

func TestParseSimulateLatency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		min, max time.Duration
		ok       bool
	}{
		{"", 0, 0, true},
		{"5ms-80ms", 5 * time.Millisecond, 80 * time.Millisecond, true},
		{"20ms", 20 * time.Millisecond, 20 * time.Millisecond, true},
		{"80ms-5ms", 0, 0, false},
		{"fast", 0, 0, false},
	} {
		lo, hi, err := parseSimulateLatency(tc.in)
		if (err == nil) != tc.ok || lo != tc.min || hi != tc.max {
			t.Errorf("parseSimulateLatency(%q) = %v, %v, %v", tc.in, lo, hi, err)
		}
	}
}

func TestSimulateBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"simulate", "--rate", "fast"},
		{"simulate", "--busy-rate", "2"},
		{"simulate", "--latency", "9ms-1ms"},
		{"simulate", "--app", "wxonly"},
		{"simulate", "--pages", "/pages/a"},
		{"simulate", "--token-lifetime", "1ms"},
	} {
		var out, errOut strings.Builder
		code := Main(args, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
		if code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut.String())
		}
		flag := args[1]
		if !strings.Contains(errOut.String(), flag) {
			t.Errorf("%v: message %q does not name %s", args, errOut.String(), flag)
		}
	}
}

// simulateLineWriter collects output and signals when a line matches.
type simulateLineWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	re    *regexp.Regexp
	found chan string
	once  sync.Once
}

func (w *simulateLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := w.re.FindString(w.buf.String()); m != "" {
		w.once.Do(func() { w.found <- m })
	}
	return len(p), nil
}

func TestSimulateServes(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WECHAT_APPID": "wx00112233445566aa", "WECHAT_SECRET": "topsecret", "WXACODE_RATE": "2/1m"}
	stdout := &simulateLineWriter{re: regexp.MustCompile(`simulator listening on (http://127\.0\.0\.1:[0-9]+)\n`), found: make(chan string, 1)}
	var stderr strings.Builder
	a := &app{stdin: strings.NewReader(""), stdout: stdout, stderr: &simulateSink{b: &stderr}, getenv: func(k string) string { return env[k] }}
	root := a.rootCommand()
	root.SetArgs([]string{"simulate", "--addr", "127.0.0.1:0", "--log-format", "json"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	var base string
	select {
	case line := <-stdout.found:
		base = strings.TrimSpace(strings.TrimPrefix(line, "simulator listening on "))
	case err := <-done:
		t.Fatalf("simulate returned %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("simulate did not say where it listens")
	}

	// The env app is served, the demo app is not, and WXACODE_RATE holds.
	tok := simulateStableToken(t, base, "wx00112233445566aa", "topsecret")
	if code := simulateStableErrcode(t, base, simulator.DemoAppID, simulator.DemoSecret); code != 40013 {
		t.Errorf("demo app with WECHAT_APPID set: errcode %d, want 40013", code)
	}
	var codes []int
	for range 3 {
		resp, err := http.Post(base+"/wxa/getwxacodeunlimit?access_token="+tok, "application/json", strings.NewReader(`{"scene":"a"}`))
		if err != nil {
			t.Fatal(err)
		}
		code := 0
		if resp.Header.Get("Content-Type") != "image/jpeg" {
			var e struct{ Errcode int }
			json.NewDecoder(resp.Body).Decode(&e)
			code = e.Errcode
		}
		resp.Body.Close()
		codes = append(codes, code)
	}
	if codes[0] != 0 || codes[1] != 0 || codes[2] != 45009 {
		t.Errorf("three calls under 2/1m answered %v, want [0 0 45009]", codes)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("simulate after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("simulate did not stop")
	}
}

// simulateSink is a goroutine-safe writer into a strings.Builder.
type simulateSink struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (s *simulateSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func simulateStableErrcode(t *testing.T, base, appid, secret string) int {
	t.Helper()
	body := `{"grant_type":"client_credential","appid":"` + appid + `","secret":"` + secret + `"}`
	resp, err := http.Post(base+"/cgi-bin/stable_token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Errcode int }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Errcode
}

func simulateStableToken(t *testing.T, base, appid, secret string) string {
	t.Helper()
	body := `{"grant_type":"client_credential","appid":"` + appid + `","secret":"` + secret + `"}`
	resp, err := http.Post(base+"/cgi-bin/stable_token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.AccessToken == "" {
		t.Fatalf("stable token: %v", err)
	}
	return v.AccessToken
}
