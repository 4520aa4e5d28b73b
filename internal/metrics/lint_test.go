package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/metrics"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
	"github.com/wxacode/wxacode/worker"
)

// TestPromlint lints every metric wxacode serves, fleet and worker, as
// scraped from /metrics, with Prometheus's own linter, and checks that the
// app is labelled appid everywhere.
func TestPromlint(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	store := fleet(t, r.Client)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		metrics.NewFleetCollector(store, asynq.NewInspectorFromRedisClient(r.Client), 0),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	w := metrics.NewWorker(reg)
	w.Called("wx0123456789abcdef", 40*time.Millisecond, 0, worker.ClassNone)
	w.Called("wx0123456789abcdef", 40*time.Millisecond, 45009, worker.ClassRateLimited)
	w.Waited("wx0123456789abcdef", time.Second)
	w.Stored("spring")
	w.Failed("spring", 41030)
	w.TokenRefreshed("wx0123456789abcdef")

	body := scrape(t, metrics.Handler(reg))
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "wxacode_") && (strings.Contains(line, `{app="`) || strings.Contains(line, `,app="`)) {
			t.Errorf("series labelled app, not appid: %s", line)
		}
	}
	for _, name := range []string{"wxacode_calls_total", "wxacode_campaign_scenes", "wxacode_campaign_distinct_scenes", "wxacode_token_refreshes_total"} {
		if !strings.Contains(body, name+"{") || !strings.Contains(body, `appid="`) {
			t.Errorf("/metrics lacks %s with an appid label", name)
		}
	}
}

// TestFleetCollectorBadLabel: a campaign record whose appid is not UTF-8
// (written around the commands' checks) loses its own series, not the
// scrape.
func TestFleetCollectorBadLabel(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	store := fleet(t, r.Client)
	// Written straight to the store, around every check of the commands
	// and the API.
	bad := campaign.Campaign{Name: "hostile", AppID: "wx\xff\xfe", Queue: "wxacode-wx0123456789abcdef-low", BatchSize: 10, Options: wechat.CodeOptions{Page: "pages/index"}}
	if _, _, err := store.Create(context.Background(), bad, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewFleetCollector(store, asynq.NewInspectorFromRedisClient(r.Client), 0))
	body := scrape(t, metrics.Handler(reg))
	for _, want := range []string{
		`wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="succeeded"} 5`,
		`wxacode_campaign_distinct_scenes{appid="wx00000000000000a2",campaign="urgent"} 4`,
		`wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="pending"} 3`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "hostile") {
		t.Errorf("the hostile campaign's series were served:\n%s", body)
	}
	if n, err := testutil.GatherAndCount(reg, "wxacode_campaign_scenes"); err != nil || n != 6 {
		t.Errorf("wxacode_campaign_scenes series = %d (%v), want the 6 of the good campaigns", n, err)
	}
}
