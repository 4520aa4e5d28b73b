package dashboard_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/wechat"
)

// TestMiniredis serves the dashboard on an in-process miniredis given by
// its address alone, as `wxacode demo` does.
func TestMiniredis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store := campaign.NewStore(rdb, "")
	p, err := producer.New(store, asynq.NewClientFromRedisClient(rdb), producer.Config{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	scenes := make([]string, 30)
	for i := range scenes {
		scenes[i] = fmt.Sprintf("s%d", i)
	}
	if _, err := p.Enqueue(t.Context(), producer.Spec{Name: "demo", AppID: "wx000000000000de70", Priority: "default", Options: wechat.CodeOptions{Page: "pages/index"}}, scenes); err != nil {
		t.Fatal(err)
	}
	h, err := dashboard.New(dashboard.Config{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, tc := range []struct{ path, want string }{
		{"/api/campaigns/demo", `"total": 30`},
		{"/", "0 of 30 scenes ended"},
		{"/monitoring/api/queues", `"queue":"wxacode-wx000000000000de70-default"`},
		{"/monitoring/", `<div id="root">`},
		{"/metrics", `wxacode_queue_tasks{queue="wxacode-wx000000000000de70-default",state="pending"} 3`},
		{"/metrics", `wxacode_scrape_error{source="queues"} 0`},
		{"/healthz", "ok"},
	} {
		resp := get(t, srv.URL+tc.path, nil)
		if resp.code != http.StatusOK || !strings.Contains(resp.body, tc.want) {
			t.Errorf("GET %s = %d, lacks %q:\n%.1500s", tc.path, resp.code, tc.want, resp.body)
		}
	}
}
