package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/wechat"
)

// chromium finds the browser scripts/test-deps.sh installs. A missing
// browser fails the test, on CI and locally alike: it is never skipped.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatalf("chromium not found on PATH: install the test dependencies with `make test-deps` (scripts/test-deps.sh)")
	return ""
}

// headless runs chromium on url with extra flags and returns its stdout.
func headless(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
		// asynqmon is a React app: let it fetch and render before the dump.
		"--virtual-time-budget=8000",
	}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return stdout.String()
}

// artifacts is the folder the screenshots go to: $WXACODE_ARTIFACTS when
// set (CI keeps it), else the test's temporary folder.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WXACODE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserFixture is a fleet mid-run: campaign spring-posters (2,000 scenes,
// 1,237 ended a minute after the first) on the default queue and
// urgent-tickets (300 scenes, none ended) on the high queue.
func browserFixture(t *testing.T) *httptest.Server {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx := t.Context()
	store := campaign.NewStore(r.Client, "")
	p, err := producer.New(store, asynq.NewClientFromRedisClient(r.Client), producer.Config{BatchSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	scenes := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%06d", prefix, i)
		}
		return out
	}
	spring, err := p.Enqueue(ctx, producer.Spec{Name: "spring-posters", AppID: "wx8d2f61c7a0b3e945", Priority: "default", Options: wechat.CodeOptions{Page: "pages/product/detail"}}, scenes("sku", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Enqueue(ctx, producer.Spec{Name: "urgent-tickets", AppID: "wx8d2f61c7a0b3e945", Priority: "high", Options: wechat.CodeOptions{Page: "pages/ticket/index"}}, scenes("t", 300)); err != nil {
		t.Fatal(err)
	}
	res := campaign.Result{ContentType: "image/png", Size: 6120, SHA256: strings.Repeat("5e", 32)}
	for i := range int64(1200) {
		if _, err := store.MarkSucceeded(ctx, spring.Campaign, i, res); err != nil {
			t.Fatal(err)
		}
	}
	for i := range int64(37) {
		code := wechat.CodeInvalidPage
		if i%5 == 0 {
			code = wechat.CodeInvalidScene
		}
		if _, err := store.MarkFailed(ctx, spring.Campaign, 1200+i, code, "refused"); err != nil {
			t.Fatal(err)
		}
	}
	// The store stamps first_done with the time of the first scene; move it
	// a minute back so that the page shows a steady rate and an ETA.
	meta := campaign.DefaultPrefix + "campaign:{spring-posters}:meta"
	first := time.Now().Add(-time.Minute).UnixMilli()
	if err := r.Client.HSet(ctx, meta, "first_done", strconv.FormatInt(first, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Server.Addr, DB: r.DB})
	t.Cleanup(func() { _ = rdb.Close() })
	h, err := dashboard.New(dashboard.Config{Redis: rdb, Refresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestBrowser loads the campaign page and asynqmon in headless Chromium
// against real Redis and finds the campaign's progress and the queues in
// the rendered DOM; it saves a screenshot of each.
func TestBrowser(t *testing.T) {
	bin := chromium(t)
	srv := browserFixture(t)
	dir := artifacts(t)

	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"campaign", "/campaigns/spring-posters", []string{
			"Campaign spring-posters",
			"1,237 of 2,000 scenes ended",
			"1,200 succeeded", "37 failed", "763 pending",
			"ETA ",
			"page does not exist or is not published",
		}},
		{"campaigns", "/", []string{"spring-posters", "urgent-tickets", "0 of 300 scenes ended"}},
		// asynqmon's dashboard lists every queue with its task counts.
		{"monitoring", "/monitoring/", []string{"wxacode-wx8d2f61c7a0b3e945-default", "wxacode-wx8d2f61c7a0b3e945-high", "Queues"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dom := headless(t, bin, srv.URL+tc.path, "--dump-dom")
			for _, w := range tc.want {
				if !strings.Contains(dom, w) {
					t.Errorf("rendered %s lacks %q:\n%.3000s", tc.path, w, dom)
				}
			}
			shot := filepath.Join(dir, "dashboard-"+tc.name+".png")
			headless(t, bin, srv.URL+tc.path, "--screenshot="+shot, "--window-size=1280,900")
			b, err := os.ReadFile(shot)
			if err != nil {
				t.Fatalf("screenshot of %s: %v", tc.path, err)
			}
			if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10_000 {
				t.Errorf("screenshot %s: %d bytes, not a PNG of a page", shot, len(b))
			}
			t.Logf("screenshot of %s: %s", tc.path, shot)
		})
	}
}
