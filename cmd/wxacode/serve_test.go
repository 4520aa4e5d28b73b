package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/worker"
)

// serveStart runs `wxacode args...` in-process with env until the test's
// cancel, and returns the first line of stdout and a wait for the command's
// error.
func serveStart(t *testing.T, env map[string]string, args ...string) (firstLine string, stop func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	a := &app{stdin: strings.NewReader(""), stdout: pw, stderr: io.Discard, getenv: func(k string) string { return env[k] }}
	root := a.rootCommand()
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not stop within 10s of its context's end")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(pr)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("wxacode %v printed nothing: %v", args, stop())
		}
		return l, stop
	case <-time.After(15 * time.Second):
		t.Fatalf("wxacode %v printed nothing within 15s", args)
	}
	return "", stop
}

func serveGet(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	r := testenv.NewRedis(t)
	line, stop := serveStart(t, map[string]string{"REDIS_URL": r.URL, "STORAGE_URL": "file://" + t.TempDir(), "WXACODE_DASHBOARD_TOKEN": "tok-1"}, "serve", "--addr", "127.0.0.1:0", "--read-only")
	base, ok := strings.CutPrefix(line, "dashboard on ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0/") || !strings.HasSuffix(base, "/") {
		t.Fatalf("first line %q, want dashboard on http://127.0.0.1:PORT/", line)
	}
	if code, body := serveGet(t, base+"api/campaigns", "Bearer tok-1"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /api/campaigns = %d %q, want 200 []", code, body)
	}
	if code, _ := serveGet(t, base+"api/campaigns", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/campaigns without the token = %d, want 401", code)
	}
	if code, body := serveGet(t, base+"healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("serve ended with %v, want nil", err)
	}
	if _, err := http.Get(base + "healthz"); err == nil {
		t.Error("dashboard still answers after serve returned")
	}
}

func TestServeBadUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"all interfaces without credential", nil, []string{"serve", "--addr", "0.0.0.0:0"}, "WXACODE_DASHBOARD_TOKEN"},
		{"empty host without credential", nil, []string{"serve", "--addr", ":8080"}, "needs a credential"},
		{"env address without credential", map[string]string{"WXACODE_SERVE_ADDR": "10.0.0.1:8080"}, []string{"serve"}, "needs a credential"},
		{"user without password", map[string]string{"WXACODE_DASHBOARD_USER": "ops"}, []string{"serve", "--addr", "0.0.0.0:0"}, "WXACODE_DASHBOARD_PASSWORD"},
		{"bad address", nil, []string{"serve", "--addr", "8080"}, "want HOST:PORT"},
		{"arguments", nil, []string{"serve", "extra"}, "unknown command"},
		{"bad appid", map[string]string{"WECHAT_APPID": "wxNOPE"}, []string{"serve", "--addr", "127.0.0.1:0"}, "WECHAT_APPID"},
		{"bad storage", nil, []string{"serve", "--addr", "127.0.0.1:0", "--storage", "ftp://x"}, "--storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0"}
			for k, v := range tc.env {
				env[k] = v
			}
			var stdout, stderr strings.Builder
			code := Main(tc.args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
			if code != exitUsage || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
				t.Errorf("wxacode %v = %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
			}
		})
	}
}

func TestWorkerMetricsServer(t *testing.T) {
	r := testenv.NewRedis(t)
	m, addr, stop, err := serveWorkerMetrics(t.Context(), "127.0.0.1:0", r.Client)
	if err != nil {
		t.Fatal(err)
	}
	m.Called("wxa1", 80*time.Millisecond, 45009, worker.ClassRateLimited)
	m.Stored("spring")
	base := "http://" + addr.String()
	code, body := serveGet(t, base+"/metrics", "")
	for _, want := range []string{
		`wxacode_calls_total{appid="wxa1",class="rate_limited",errcode="45009"} 1`,
		`wxacode_rate_limited_total{appid="wxa1"} 1`,
		`wxacode_codes_stored_total{campaign="spring"} 1`,
		`go_goroutines `,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET /metrics = %d, lacks %q", code, want)
		}
	}
	if code, body := serveGet(t, base+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("stop = %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("metrics server still answers after stop")
	}
}
