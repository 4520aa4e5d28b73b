package main

// Hostile and careless input against the built binary: every case is bad
// usage (exit 2) with a message naming the flag and variable, decided
// before any connection (Redis points at a closed port, so a command that
// reached it would exit 1), and no secret of the input shows.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

// deadRedis is a Redis URL nothing answers: reaching it is exit 1.
const deadRedis = "REDIS_URL=redis://:redis-pw-9Xq@127.0.0.1:1/0"

func TestHostileInput(t *testing.T) {
	t.Parallel()
	app := []string{deadRedis, "WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=app-secret-Hq2"}
	enq := []string{"enqueue", "--campaign", "c", "--page", "pages/p/index"}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	tests := []struct {
		name string
		env  []string
		args []string
		want []string // in stderr
	}{
		// Ranges at the edge of int64 and past the cap.
		{"range at the int64 edge", app, with(enq, "--range", "s%d", "--from", "9223372036854775800", "--to", "9223372036854775807", "--dry-run"), []string{"--to 9223372036854775807", "edge of int64"}},
		{"range of all int64", app, with(enq, "--range", "s%d", "--from", "0", "--to", "9223372036854775807", "--dry-run"), []string{"edge of int64"}},
		{"range past the cap", app, with(enq, "--range", "s%d", "--from", "1", "--to", "10000001", "--dry-run"), []string{"at most 10,000,000 scenes"}},
		{"range below zero", app, with(enq, "--range", "s%d", "--from", "-9223372036854775808", "--to", "3", "--dry-run"), []string{"0 <= from <= to"}},
		// Appids.
		{"appid not UTF-8", app, with(enq, "--appid", "wx\xff\xfe0123456789abcd", "--scenes", "-"), []string{"--appid/WECHAT_APPID", "16"}},
		{"appid too short", app, with(enq, "--appid", "wxa1", "--scenes", "-"), []string{"--appid/WECHAT_APPID"}},
		{"WECHAT_APPID for enqueue", []string{deadRedis, "WECHAT_APPID=wx0123456789ABCDEF"}, with(enq, "--scenes", "-"), []string{"--appid/WECHAT_APPID"}},
		{"WECHAT_APPID for worker", []string{deadRedis, "WECHAT_APPID=wx\"}1", "WECHAT_SECRET=s"}, []string{"worker"}, []string{"--appid/WECHAT_APPID"}},
		{"WECHAT_APPID for simulate", []string{"WECHAT_APPID=not-an-appid", "WECHAT_SECRET=s"}, []string{"simulate", "--addr", "127.0.0.1:0"}, []string{"WECHAT_APPID"}},
		{"simulate --app", nil, []string{"simulate", "--addr", "127.0.0.1:0", "--app", "wx1:other-secret-Zk"}, []string{"--app", "16"}},
		// Environment values that do not parse.
		{"read-only yes", []string{deadRedis, "WXACODE_SERVE_READ_ONLY=yes"}, []string{"serve", "--addr", "127.0.0.1:0"}, []string{"--read-only/WXACODE_SERVE_READ_ONLY", `"yes"`, "true or false"}},
		{"allowed hosts with a URL", []string{deadRedis, "WXACODE_ALLOWED_HOSTS=https://dash.example/"}, []string{"serve", "--addr", "127.0.0.1:0"}, []string{"WXACODE_ALLOWED_HOSTS"}},
		{"serve address", []string{deadRedis, "WXACODE_SERVE_ADDR=localhost"}, []string{"serve"}, []string{"--addr/WXACODE_SERVE_ADDR", "HOST:PORT"}},
		{"rate", with(app, "WXACODE_RATE=lots"), []string{"worker"}, []string{"--rate/WXACODE_RATE", `"lots"`}},
		{"rate for enqueue", with(app, "WXACODE_RATE=5000/0s"), with(enq, "--range", "s%d", "--from", "1", "--to", "2", "--dry-run"), []string{"--rate/WXACODE_RATE"}},
		{"rate margin", with(app, "WXACODE_RATE_MARGIN=soon"), []string{"worker"}, []string{"--rate-margin/WXACODE_RATE_MARGIN"}},
		{"metrics address", with(app, "WXACODE_METRICS_ADDR=9090"), []string{"worker"}, []string{"--metrics-addr/WXACODE_METRICS_ADDR"}},
		{"storage URL", with(app, "STORAGE_URL=ftp://codes"), []string{"worker"}, []string{"--storage/STORAGE_URL"}},
		{"path style", with(app, "STORAGE_URL=s3://codes", "S3_FORCE_PATH_STYLE=yes"), []string{"worker"}, []string{"S3_FORCE_PATH_STYLE", "true or false"}},
		{"log level for status", []string{deadRedis, "LOG_LEVEL=loud"}, []string{"status"}, []string{"--log-level/LOG_LEVEL", `"loud"`}},
		{"log format for enqueue", []string{deadRedis, "LOG_FORMAT=xml"}, with(enq, "--appid", simulator.DemoAppID, "--scenes", "-"), []string{"--log-format/LOG_FORMAT"}},
		{"simulate address", nil, []string{"simulate", "--addr", "8090"}, []string{"--addr", "HOST:PORT"}},
		// Worker flags out of range, before go-redis sees them.
		{"concurrency", app, []string{"worker", "--concurrency", "1000000000"}, []string{"--concurrency", "1 to 256"}},
		{"concurrency zero", app, []string{"worker", "--concurrency", "0"}, []string{"--concurrency"}},
		{"parallel", app, []string{"worker", "--parallel", "100000"}, []string{"--parallel", "1 to 1024"}},
		{"in flight", app, []string{"worker", "--concurrency", "256", "--parallel", "1024"}, []string{"at most 4096 calls in flight"}},
		{"shutdown timeout", app, []string{"worker", "--shutdown-timeout", "-1s"}, []string{"--shutdown-timeout", "-1s"}},
		// demo obeys serve's bind rule.
		{"demo on every interface", nil, []string{"demo", "--addr", "0.0.0.0:8080", "--keep"}, []string{"needs a credential", "WXACODE_DASHBOARD_TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := run(t, tt.env, "ok\n", tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2; stdout %q stderr %q", code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
			for _, secret := range []string{"redis-pw-9Xq", "app-secret-Hq2", "other-secret-Zk"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output shows the secret %q: %s", secret, stderr)
				}
			}
		})
	}
}

// TestURLUserInfoRedacted gives URLs with credentials in their user info
// to every setting that takes a URL: the messages show the URL without
// them.
func TestURLUserInfoRedacted(t *testing.T) {
	t.Parallel()
	app := []string{deadRedis, "WECHAT_APPID=" + simulator.DemoAppID, "WECHAT_SECRET=s"}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"API base", app, []string{"worker", "--api-base", "http://user:pass-Wq7@127.0.0.1:9"}, "--api-base/WECHAT_API_BASE"},
		{"API base from env", append(app, "WECHAT_API_BASE=https://user:pass-Wq7@api.example?access_token=tok-Wq7"), []string{"worker"}, "--api-base/WECHAT_API_BASE"},
		{"token service", append(app, "WECHAT_TOKEN_URL=ftp://svc:pass-Wq7@tokens.example/t"), []string{"worker"}, "--token-url/WECHAT_TOKEN_URL"},
		{"storage with keys", app, []string{"worker", "--storage", "s3://AKIA:pass-Wq7@Bad_Bucket"}, "--storage/STORAGE_URL"},
		{"storage endpoint", append(app, "STORAGE_URL=s3://codes", "AWS_ENDPOINT_URL_S3=ftp://minio:pass-Wq7@minio:9000"), []string{"worker"}, "AWS_ENDPOINT_URL_S3"},
		{"Redis", []string{"REDIS_URL=redis://:pass-Wq7@127.0.0.1:1/0"}, []string{"status"}, "redis://REDACTED@127.0.0.1:1/0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := run(t, tt.env, "", tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want a failure naming %q", code, stderr, tt.want)
			}
			if strings.Contains(stdout+stderr, "Wq7") {
				t.Fatalf("output shows a credential: %s", stderr)
			}
		})
	}
}

// TestServeGuards runs the built `serve` without a credential and sends
// it what a hostile page would: a Host of its own name (DNS rebinding)
// and a cross-site POST to asynqmon.
func TestServeGuards(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if _, err := asynq.NewClientFromRedisClient(r.Client).Enqueue(asynq.NewTask("batch", nil), asynq.Queue(demoQueue)); err != nil {
		t.Fatal(err)
	}
	base := startURL(t, []string{"REDIS_URL=" + r.URL, "WXACODE_ALLOWED_HOSTS=dash.internal, ops.example:8443"}, "serve", "--addr", "127.0.0.1:0")
	send := func(method, path string, hdr map[string]string) int {
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	isPaused := func() bool {
		info, err := insp.GetQueueInfo(demoQueue)
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}
	pause := "/monitoring/api/queues/" + demoQueue + ":pause"
	for _, tt := range []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		want   int
	}{
		{"rebound name", "GET", "/api/campaigns", map[string]string{"Host": "evil.example"}, http.StatusMisdirectedRequest},
		{"rebound name, asynqmon", "GET", "/monitoring/api/queues", map[string]string{"Host": "evil.example:8080"}, http.StatusMisdirectedRequest},
		{"allowed name", "GET", "/api/campaigns", map[string]string{"Host": "dash.internal"}, http.StatusOK},
		{"allowed name and port", "GET", "/api/campaigns", map[string]string{"Host": "ops.example:8443"}, http.StatusOK},
		{"cross-site POST", "POST", pause, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, http.StatusForbidden},
		{"cross-origin POST, Origin only", "POST", pause, map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, http.StatusForbidden},
	} {
		if got := send(tt.method, tt.path, tt.hdr); got != tt.want {
			t.Errorf("%s: %s %s = %d, want %d", tt.name, tt.method, tt.path, got, tt.want)
		}
	}
	if isPaused() {
		t.Fatal("a refused request paused the queue")
	}
	if got := send("POST", pause, map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"}); got/100 != 2 || !isPaused() {
		t.Fatalf("same-origin POST = %d, paused %v; want 2xx and the queue paused", got, isPaused())
	}
}

// TestStalledBodyIsCut sends the built simulator a request whose body
// stops after a few bytes: the server cuts it within 30 s.
func TestStalledBodyIsCut(t *testing.T) {
	t.Parallel()
	_, base, _ := startSimulator(t, "")
	addr := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /wxa/getwxacodeunlimit?access_token=x HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"scene\":", addr)
	start := time.Now()
	// The deadline only bounds the test; the server must close first.
	_ = conn.SetReadDeadline(time.Now().Add(45 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	if err != nil {
		t.Fatalf("connection still open after %s: %v", time.Since(start).Round(time.Second), err)
	}
	if took := time.Since(start); took > 31*time.Second {
		t.Fatalf("stalled body cut after %s, want within 30 s", took.Round(time.Second))
	}
}
