package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/metrics"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/wechat"
	"github.com/wxacode/wxacode/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestWorkerCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	w := metrics.NewWorker(reg)
	w.Called("wx00000000000000a1", 31250*time.Microsecond, 0, worker.ClassNone)
	w.Called("wx00000000000000a1", 250*time.Millisecond, 0, worker.ClassNone)
	w.Called("wx00000000000000a1", 46875*time.Microsecond, 45009, worker.ClassRateLimited)
	w.Called("wx00000000000000a1", 46875*time.Microsecond, 45011, worker.ClassRateLimited)
	w.Called("wx00000000000000a2", 3*time.Second, 0, worker.ClassTransport)
	w.Called("wx00000000000000a2", 15625*time.Microsecond, -1, worker.ClassBusy)
	w.Waited("wx00000000000000a1", 1500*time.Millisecond)
	w.Waited("wx00000000000000a1", 500*time.Millisecond)
	w.Stored("spring")
	w.Stored("spring")
	w.Stored("autumn")
	w.Failed("spring", 40097)
	w.Failed("spring", 40097)
	w.Failed("spring", 0)
	w.TokenRefreshed("wx00000000000000a1")

	want := `
# HELP wxacode_calls_total Calls of WeChat interface B by appid, errcode (0: an image; empty: no errcode came back) and error class (none: an image; see worker.Class).
# TYPE wxacode_calls_total counter
wxacode_calls_total{appid="wx00000000000000a1",class="none",errcode="0"} 2
wxacode_calls_total{appid="wx00000000000000a1",class="rate_limited",errcode="45009"} 1
wxacode_calls_total{appid="wx00000000000000a1",class="rate_limited",errcode="45011"} 1
wxacode_calls_total{appid="wx00000000000000a2",class="busy",errcode="-1"} 1
wxacode_calls_total{appid="wx00000000000000a2",class="transport",errcode=""} 1
# HELP wxacode_rate_limited_total Calls WeChat answered with a minute limit (45009 or 45011).
# TYPE wxacode_rate_limited_total counter
wxacode_rate_limited_total{appid="wx00000000000000a1"} 2
# HELP wxacode_ceiling_wait_seconds_total Time spent waiting for a slot under the app's fleet-wide ceiling.
# TYPE wxacode_ceiling_wait_seconds_total counter
wxacode_ceiling_wait_seconds_total{appid="wx00000000000000a1"} 2
# HELP wxacode_codes_stored_total Scenes whose code was stored, by campaign.
# TYPE wxacode_codes_stored_total counter
wxacode_codes_stored_total{campaign="autumn"} 1
wxacode_codes_stored_total{campaign="spring"} 2
# HELP wxacode_codes_failed_total Scenes that failed, by campaign and errcode (0: a failure without one).
# TYPE wxacode_codes_failed_total counter
wxacode_codes_failed_total{campaign="spring",errcode="0"} 1
wxacode_codes_failed_total{campaign="spring",errcode="40097"} 2
# HELP wxacode_token_refreshes_total Access tokens fetched from WeChat or the token service, by appid.
# TYPE wxacode_token_refreshes_total counter
wxacode_token_refreshes_total{appid="wx00000000000000a1"} 1
# HELP wxacode_call_duration_seconds Latency of calls of WeChat interface B, whatever their answer.
# TYPE wxacode_call_duration_seconds histogram
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.005"} 0
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.01"} 0
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.025"} 0
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.05"} 3
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.1"} 3
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.2"} 3
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.3"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.5"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="0.75"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="1"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="2"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="5"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a1",le="+Inf"} 4
wxacode_call_duration_seconds_sum{appid="wx00000000000000a1"} 0.375
wxacode_call_duration_seconds_count{appid="wx00000000000000a1"} 4
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.005"} 0
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.01"} 0
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.025"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.05"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.1"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.2"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.3"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.5"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="0.75"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="1"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="2"} 1
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="5"} 2
wxacode_call_duration_seconds_bucket{appid="wx00000000000000a2",le="+Inf"} 2
wxacode_call_duration_seconds_sum{appid="wx00000000000000a2"} 3.015625
wxacode_call_duration_seconds_count{appid="wx00000000000000a2"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"wxacode_calls_total", "wxacode_rate_limited_total", "wxacode_ceiling_wait_seconds_total",
		"wxacode_codes_stored_total", "wxacode_codes_failed_total", "wxacode_token_refreshes_total",
		"wxacode_call_duration_seconds"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "wxacode_ceiling_wait_seconds"); err != nil || n != 1 {
		t.Errorf("wxacode_ceiling_wait_seconds series = %d (%v), want 1", n, err)
	}
}

// fleet enqueues two campaigns through the producer and ends some scenes.
func fleet(t *testing.T, rdb redis.UniversalClient) *campaign.Store {
	t.Helper()
	ctx := t.Context()
	store := campaign.NewStore(rdb, "")
	client := asynq.NewClientFromRedisClient(rdb)
	p, err := producer.New(store, client, producer.Config{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	scenes := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("sku%04d", i)
		}
		return out
	}
	spring, err := p.Enqueue(ctx, producer.Spec{Name: "spring", AppID: "wx00000000000000a1", Priority: "default", Options: wechat.CodeOptions{Page: "pages/index"}}, scenes(25))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Enqueue(ctx, producer.Spec{Name: "urgent", AppID: "wx00000000000000a2", Priority: "high", Options: wechat.CodeOptions{Page: "pages/index"}}, scenes(4)); err != nil {
		t.Fatal(err)
	}
	res := campaign.Result{ContentType: "image/png", Size: 100, SHA256: strings.Repeat("ab", 32)}
	for i := range int64(5) {
		if _, err := store.MarkSucceeded(ctx, spring.Campaign, i, res); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(20); i < 22; i++ {
		if _, err := store.MarkFailed(ctx, spring.Campaign, i, 41030, "invalid page"); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func TestFleetCollector(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	store := fleet(t, r.Client)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewFleetCollector(store, insp, 0))

	want := `
# HELP wxacode_campaign_scenes Scenes of a campaign by status: succeeded, failed or pending.
# TYPE wxacode_campaign_scenes gauge
wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="failed"} 2
wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="pending"} 18
wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="succeeded"} 5
wxacode_campaign_scenes{appid="wx00000000000000a2",campaign="urgent",status="failed"} 0
wxacode_campaign_scenes{appid="wx00000000000000a2",campaign="urgent",status="pending"} 4
wxacode_campaign_scenes{appid="wx00000000000000a2",campaign="urgent",status="succeeded"} 0
# HELP wxacode_campaign_distinct_scenes Distinct scenes of a campaign (succeeded, failed and pending together).
# TYPE wxacode_campaign_distinct_scenes gauge
wxacode_campaign_distinct_scenes{appid="wx00000000000000a1",campaign="spring"} 25
wxacode_campaign_distinct_scenes{appid="wx00000000000000a2",campaign="urgent"} 4
# HELP wxacode_queue_tasks Batch tasks in an asynq queue by state.
# TYPE wxacode_queue_tasks gauge
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="active"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="archived"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="completed"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="pending"} 3
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="retry"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="scheduled"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="active"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="archived"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="completed"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="pending"} 1
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="retry"} 0
wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="scheduled"} 0
# HELP wxacode_queue_paused 1 when an asynq queue is paused.
# TYPE wxacode_queue_paused gauge
wxacode_queue_paused{queue="wxacode-wx00000000000000a1-default"} 1
wxacode_queue_paused{queue="wxacode-wx00000000000000a2-high"} 0
# HELP wxacode_campaign_unserved 1 when a campaign has scenes to make and no live worker serves its app.
# TYPE wxacode_campaign_unserved gauge
wxacode_campaign_unserved{appid="wx00000000000000a1",campaign="spring"} 1
wxacode_campaign_unserved{appid="wx00000000000000a2",campaign="urgent"} 0
# HELP wxacode_app_workers Live workers that serve an app, for every app a campaign names or a worker serves.
# TYPE wxacode_app_workers gauge
wxacode_app_workers{appid="wx00000000000000a1"} 0
wxacode_app_workers{appid="wx00000000000000a2"} 2
wxacode_app_workers{appid="wx00000000000000a3"} 1
# HELP wxacode_scrape_error 1 when the last scrape could not read a source (campaigns or queues) from Redis; its metrics are then missing.
# TYPE wxacode_scrape_error gauge
wxacode_scrape_error{source="campaigns"} 0
wxacode_scrape_error{source="queues"} 0
`
	if err := insp.PauseQueue("wxacode-wx00000000000000a1-default"); err != nil {
		t.Fatal(err)
	}
	// Two live workers serve a2 (one also a3), and one that stopped
	// served a1: a1's campaign is unserved.
	for _, w := range []struct {
		name string
		apps []string
	}{{"w1", []string{"wx00000000000000a2"}}, {"w2", []string{"wx00000000000000a2", "wx00000000000000a3"}}, {"gone", []string{"wx00000000000000a1"}}} {
		if err := store.Register(t.Context(), w.name, w.apps, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Deregister(t.Context(), "gone", []string{"wx00000000000000a1"}); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"wxacode_campaign_scenes", "wxacode_campaign_distinct_scenes", "wxacode_queue_tasks", "wxacode_queue_paused",
		"wxacode_campaign_unserved", "wxacode_app_workers", "wxacode_scrape_error"); err != nil {
		t.Error(err)
	}

	// Progress shows at the next scrape.
	c, err := store.Get(t.Context(), "urgent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MarkSucceeded(t.Context(), c, 3, campaign.Result{ContentType: "image/jpeg", Size: 9, SHA256: strings.Repeat("cd", 32)}); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, metrics.Handler(reg))
	for _, line := range []string{
		`wxacode_campaign_scenes{appid="wx00000000000000a2",campaign="urgent",status="succeeded"} 1`,
		`wxacode_campaign_scenes{appid="wx00000000000000a2",campaign="urgent",status="pending"} 3`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("scrape lacks %q:\n%s", line, body)
		}
	}
}

func TestFleetCollectorRedisDown(t *testing.T) {
	t.Parallel()
	const password = "redis-pass-Zq81x"
	// Nothing listens on the port: every read fails.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: password, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewFleetCollector(campaign.NewStore(dead, ""), asynq.NewInspectorFromRedisClient(dead), time.Second))
	want := `
# HELP wxacode_scrape_error 1 when the last scrape could not read a source (campaigns or queues) from Redis; its metrics are then missing.
# TYPE wxacode_scrape_error gauge
wxacode_scrape_error{source="campaigns"} 1
wxacode_scrape_error{source="queues"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wxacode_scrape_error"); err != nil {
		t.Error(err)
	}
	body := scrape(t, metrics.Handler(reg))
	if strings.Contains(body, password) {
		t.Errorf("scrape shows the Redis password:\n%s", body)
	}
	if n, err := testutil.GatherAndCount(reg, "wxacode_campaign_scenes", "wxacode_queue_tasks"); err != nil || n != 0 {
		t.Errorf("%d campaign or queue series from a dead Redis (%v), want 0", n, err)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	for _, tc := range []struct {
		name string
		rdb  redis.UniversalClient
		code int
		body string
	}{
		{"up", r.Client, http.StatusOK, "ok\n"},
		{"down", dead, http.StatusServiceUnavailable, "redis unavailable\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			metrics.Healthz(tc.rdb).ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), "GET", "/healthz", nil))
			if rec.Code != tc.code || rec.Body.String() != tc.body {
				t.Errorf("GET /healthz = %d %q, want %d %q", rec.Code, rec.Body.String(), tc.code, tc.body)
			}
		})
	}
}

// scrape GETs /metrics from h as Prometheus would.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d:\n%s", resp.StatusCode, b)
	}
	return string(b)
}
