package dashboard_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// accessToken must never show on a page or in JSON. It is planted where a
// careless dashboard might pick it up: the shared token cache in Redis and
// the message of failed scenes (which the dashboard does not show).
const accessToken = "ACCESS_TOKEN-93xQ-never-shown"

// fixture enqueues campaign spring (25 scenes in 3 batches on the default
// queue: 5 succeeded, 2 failed with 41030, 1 with 40129) and campaign
// urgent (4 scenes on the high queue), and serves a dashboard on them.
func fixture(t *testing.T, cfg dashboard.Config) (*testenv.Redis, *httptest.Server) {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx := t.Context()
	if err := r.Client.HSet(ctx, wechat.TokenKey("wx00000000000000a1"), "token", accessToken).Err(); err != nil {
		t.Fatal(err)
	}
	store := campaign.NewStore(r.Client, "")
	client := asynq.NewClientFromRedisClient(r.Client)
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
	spring, err := p.Enqueue(ctx, producer.Spec{Name: "spring", AppID: "wx00000000000000a1", Priority: "default", Options: wechat.CodeOptions{Page: "pages/item"}}, scenes(25))
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
	for i, code := range map[int64]int{20: 41030, 21: 41030, 22: 40129} {
		if _, err := store.MarkFailed(ctx, spring.Campaign, i, code, "refused with "+accessToken); err != nil {
			t.Fatal(err)
		}
	}
	// A client from an address and a DB alone, as the demo builds for
	// miniredis.
	cfg.Redis = redis.NewClient(&redis.Options{Addr: r.Server.Addr, DB: r.DB})
	t.Cleanup(func() { _ = cfg.Redis.Close() })
	h, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return r, srv
}

type response struct {
	code   int
	header http.Header
	body   string
}

func get(t *testing.T, url string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func TestCampaignsJSON(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{})

	resp := get(t, srv.URL+"/api/campaigns", nil)
	if resp.code != http.StatusOK || !strings.HasPrefix(resp.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/campaigns = %d %s:\n%s", resp.code, resp.header.Get("Content-Type"), resp.body)
	}
	// The shape, field by field, as clients read it.
	var raw []map[string]any
	if err := json.Unmarshal([]byte(resp.body), &raw); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, resp.body)
	}
	if len(raw) != 2 {
		t.Fatalf("%d campaigns, want 2:\n%s", len(raw), resp.body)
	}
	for _, field := range []string{"campaign", "appid", "interface", "page", "state", "total", "succeeded", "failed", "pending", "done", "rate_per_second", "eta_seconds", "created", "failures_by_errcode"} {
		if _, ok := raw[0][field]; !ok {
			t.Errorf("campaign object lacks %q:\n%s", field, resp.body)
		}
	}

	var got []campaign.Status
	if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].Created.IsZero() || time.Since(got[i].Created) > time.Minute {
			t.Errorf("%s created %v, want just now", got[i].Campaign, got[i].Created)
		}
		got[i].Created = time.Time{}
	}
	want := []campaign.Status{
		{Campaign: "spring", AppID: "wx00000000000000a1", Interface: campaign.InterfaceB, Page: "pages/item", Queue: "wxacode-wx00000000000000a1-default", State: campaign.StateActive,
			Total: 25, Succeeded: 5, Failed: 3, Pending: 17, RatePerSecond: got[0].RatePerSecond, ETASeconds: got[0].ETASeconds,
			FailuresByErrcode: map[int]int64{41030: 2, 40129: 1}, Unserved: true},
		{Campaign: "urgent", AppID: "wx00000000000000a2", Interface: campaign.InterfaceB, Page: "pages/index", Queue: "wxacode-wx00000000000000a2-high", State: campaign.StateActive,
			Total: 4, Pending: 4, FailuresByErrcode: map[int]int64{}, Unserved: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /api/campaigns (-want +got):\n%s", diff)
	}
	if r := got[0]; r.RatePerSecond > 0 && (r.ETASeconds <= 0 || r.ETASeconds != float64(r.Pending)/r.RatePerSecond) {
		t.Errorf("spring: rate %v/s, eta %vs: want pending/rate", r.RatePerSecond, r.ETASeconds)
	}
	if !strings.Contains(resp.body, `"41030": 2`) {
		t.Errorf("failures_by_errcode not keyed by errcode:\n%s", resp.body)
	}

	one := get(t, srv.URL+"/api/campaigns/urgent", nil)
	var u campaign.Status
	if err := json.Unmarshal([]byte(one.body), &u); one.code != http.StatusOK || err != nil || u.Campaign != "urgent" || u.Total != 4 {
		t.Errorf("GET /api/campaigns/urgent = %d %v:\n%s", one.code, err, one.body)
	}
}

func TestUnknownCampaign(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{})
	for _, tc := range []struct {
		name, path string
		code       int
		want       string
	}{
		{"json", "/api/campaigns/nosuch", http.StatusNotFound, `{"error":"campaign nosuch not found"}`},
		{"json bad name", "/api/campaigns/%7Bx%7D", http.StatusNotFound, `{"error":"campaign {x} not found"}`},
		{"page", "/campaigns/nosuch", http.StatusNotFound, "campaign nosuch not found"},
		{"other path", "/nosuch", http.StatusNotFound, "404 page not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, srv.URL+tc.path, nil)
			body := resp.body
			if strings.HasPrefix(tc.want, "{") {
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, body)
				}
				b, _ := json.Marshal(v)
				body = string(b)
			}
			if resp.code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s = %d:\n%s\nwant %d with %q", tc.path, resp.code, body, tc.code, tc.want)
			}
		})
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{Refresh: 3 * time.Second})
	index := get(t, srv.URL+"/", nil)
	if index.code != http.StatusOK || !strings.HasPrefix(index.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", index.code, index.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<a href="/campaigns/spring">spring</a>`,
		`<a href="/campaigns/urgent">urgent</a>`,
		`<b>32.0%</b> · 8 of 25 scenes ended`, // 5 + 3 of 25
		`5 succeeded`, `3 failed`, `17 pending`,
		`style="width: 20.0%"`, `style="width: 12.0%"`, // the bar's two parts
		`<td>41030</td><td>permanent: page does not exist or is not published</td><td class="n">2</td>`,
		`<meta http-equiv="refresh" content="3">`,
		`href="/monitoring/"`,
		// No worker serves either app.
		`<b>Unserved:</b> no running worker serves app wx00000000000000a1.`,
		`app wx00000000000000a2 (0 workers) · page pages/index`,
	} {
		if !strings.Contains(index.body, want) {
			t.Errorf("GET / lacks %q:\n%s", want, index.body)
		}
	}
	if csp := index.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("GET / Content-Security-Policy %q", csp)
	}
	one := get(t, srv.URL+"/campaigns/spring", nil)
	if one.code != http.StatusOK || !strings.Contains(one.body, "Campaign spring") || strings.Contains(one.body, "urgent") ||
		!strings.Contains(one.body, "wxacode retry spring") {
		t.Errorf("GET /campaigns/spring = %d:\n%s", one.code, one.body)
	}
}

// TestPagesServedAndLimited: a campaign whose app a live worker serves is
// not marked unserved, and one of interface A shows its interface, not a
// page.
func TestPagesServedAndLimited(t *testing.T) {
	t.Parallel()
	r, srv := fixture(t, dashboard.Config{})
	store := campaign.NewStore(r.Client, "")
	if err := store.Register(t.Context(), "w1", []string{"wx00000000000000a1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	p, err := producer.New(store, asynq.NewClientFromRedisClient(r.Client), producer.Config{Ledger: wechat.QuotaLedger{Redis: r.Client}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Enqueue(t.Context(), producer.Spec{Name: "vip", AppID: "wx00000000000000a1", Interface: campaign.InterfaceA}, []string{"pages/item/item?id=42"}); err != nil {
		t.Fatal(err)
	}
	spring := get(t, srv.URL+"/campaigns/spring", nil)
	if !strings.Contains(spring.body, "app wx00000000000000a1 (1 worker) · page pages/item") || strings.Contains(spring.body, "Unserved") {
		t.Errorf("GET /campaigns/spring with a worker serving its app:\n%s", spring.body)
	}
	vip := get(t, srv.URL+"/campaigns/vip", nil)
	if !strings.Contains(vip.body, "interface a (paths, lifetime quota)") {
		t.Errorf("GET /campaigns/vip does not show interface a:\n%s", vip.body)
	}
}

func TestMonitoringAndMetrics(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{ReadOnly: true})
	ui := get(t, srv.URL+"/monitoring/", nil)
	if ui.code != http.StatusOK || !strings.Contains(ui.body, "<div id=\"root\">") {
		t.Errorf("GET /monitoring/ = %d:\n%.500s", ui.code, ui.body)
	}
	// asynqmon's API sees our queues through the dashboard's Redis.
	qs := get(t, srv.URL+"/monitoring/api/queues", nil)
	if qs.code != http.StatusOK || !strings.Contains(qs.body, `"queue":"wxacode-wx00000000000000a1-default"`) || !strings.Contains(qs.body, `"queue":"wxacode-wx00000000000000a2-high"`) {
		t.Errorf("GET /monitoring/api/queues = %d:\n%s", qs.code, qs.body)
	}
	info := get(t, srv.URL+"/monitoring/api/redis_info", nil)
	if info.code != http.StatusOK || !strings.Contains(info.body, `"redis_version"`) {
		t.Errorf("GET /monitoring/api/redis_info = %d:\n%.300s", info.code, info.body)
	}
	// Read-only: asynqmon refuses to change anything.
	req, _ := http.NewRequestWithContext(t.Context(), "DELETE", srv.URL+"/monitoring/api/queues/wxacode-wx00000000000000a1-default/pending_tasks:delete_all", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("read-only DELETE = %d, want 405", resp.StatusCode)
	}

	m := get(t, srv.URL+"/metrics", nil)
	for _, want := range []string{
		`wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="succeeded"} 5`,
		`wxacode_campaign_scenes{appid="wx00000000000000a1",campaign="spring",status="failed"} 3`,
		`wxacode_campaign_distinct_scenes{appid="wx00000000000000a1",campaign="spring"} 25`,
		`wxacode_queue_tasks{queue="wxacode-wx00000000000000a1-default",state="pending"} 3`,
		`wxacode_queue_tasks{queue="wxacode-wx00000000000000a2-high",state="pending"} 1`,
		`wxacode_scrape_error{source="queues"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(m.body, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
	if h := get(t, srv.URL+"/healthz", nil); h.code != http.StatusOK || h.body != "ok\n" {
		t.Errorf("GET /healthz = %d %q", h.code, h.body)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{Auth: dashboard.Auth{Token: "tok-123", User: "ops", Password: "pw-456"}})
	paths := []string{"/", "/campaigns/spring", "/api/campaigns", "/api/campaigns/spring", "/monitoring/", "/monitoring/api/queues", "/metrics"}
	for _, p := range paths {
		for _, tc := range []struct {
			name string
			hdr  map[string]string
			code int
		}{
			{"none", nil, http.StatusUnauthorized},
			{"wrong token", map[string]string{"Authorization": "Bearer tok-124"}, http.StatusUnauthorized},
			{"token prefix", map[string]string{"Authorization": "Bearer tok-12"}, http.StatusUnauthorized},
			{"wrong password", map[string]string{"Authorization": basic("ops", "pw-45")}, http.StatusUnauthorized},
			{"wrong user", map[string]string{"Authorization": basic("root", "pw-456")}, http.StatusUnauthorized},
			{"token", map[string]string{"Authorization": "Bearer tok-123"}, http.StatusOK},
			{"basic", map[string]string{"Authorization": basic("ops", "pw-456")}, http.StatusOK},
		} {
			resp := get(t, srv.URL+p, tc.hdr)
			if resp.code != tc.code {
				t.Errorf("GET %s with %s = %d, want %d", p, tc.name, resp.code, tc.code)
			}
			if resp.code == http.StatusUnauthorized && !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("GET %s with %s: WWW-Authenticate %q, want Basic (browsers prompt)", p, tc.name, resp.header.Get("WWW-Authenticate"))
			}
		}
	}
	// Health checks stay open.
	if h := get(t, srv.URL+"/healthz", nil); h.code != http.StatusOK {
		t.Errorf("GET /healthz without credential = %d, want 200", h.code)
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestCheckBind(t *testing.T) {
	t.Parallel()
	token := dashboard.Auth{Token: "t"}
	for _, tc := range []struct {
		addr string
		auth dashboard.Auth
		ok   bool
	}{
		{"127.0.0.1:8080", dashboard.Auth{}, true},
		{"127.0.0.2:0", dashboard.Auth{}, true},
		{"[::1]:8080", dashboard.Auth{}, true},
		{"localhost:8080", dashboard.Auth{}, true},
		{"0.0.0.0:8080", dashboard.Auth{}, false},
		{":8080", dashboard.Auth{}, false},
		{"[::]:8080", dashboard.Auth{}, false},
		{"10.1.2.3:8080", dashboard.Auth{}, false},
		{"dash.example.com:8080", dashboard.Auth{}, false},
		{"0.0.0.0:8080", token, true},
		{":8080", dashboard.Auth{User: "u", Password: "p"}, true},
	} {
		err := dashboard.CheckBind(tc.addr, tc.auth)
		if (err == nil) != tc.ok {
			t.Errorf("CheckBind(%q, enabled=%v) = %v, want ok=%v", tc.addr, tc.auth.Enabled(), err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), dashboard.EnvToken) {
			t.Errorf("CheckBind error %q does not say what to set", err)
		}
	}
	env := map[string]string{dashboard.EnvUser: "ops"}
	if _, err := dashboard.AuthFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("AuthFromEnv with a user and no password: no error")
	}
}

// TestNoSecrets reads every route and asserts the access token planted in
// Redis shows on none. (TestRedisDown covers the Redis password.)
func TestNoSecrets(t *testing.T) {
	t.Parallel()
	_, srv := fixture(t, dashboard.Config{})
	for _, p := range []string{"/", "/campaigns/spring", "/api/campaigns", "/api/campaigns/spring", "/monitoring/",
		"/monitoring/api/queues", "/monitoring/api/queues/wxacode-wx00000000000000a1-default/pending_tasks", "/monitoring/api/redis_info",
		"/monitoring/api/servers", "/metrics", "/healthz"} {
		resp := get(t, srv.URL+p, nil)
		if resp.code != http.StatusOK {
			t.Errorf("GET %s = %d", p, resp.code)
		}
		if strings.Contains(resp.body, accessToken) {
			t.Errorf("GET %s shows the access token", p)
		}
	}
}

// TestRedisDown: pages and JSON answer 503 without the Redis error's
// detail, and /healthz answers 503.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	const password = "redis-pw-Hk29"
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: password, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	h, err := dashboard.New(dashboard.Config{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, p := range []string{"/", "/api/campaigns", "/api/campaigns/spring", "/healthz"} {
		resp := get(t, srv.URL+p, nil)
		if resp.code != http.StatusServiceUnavailable || strings.Contains(resp.body, password) || strings.Contains(resp.body, "127.0.0.1:1") {
			t.Errorf("GET %s with Redis down = %d:\n%s", p, resp.code, resp.body)
		}
	}
	if m := get(t, srv.URL+"/metrics", nil); m.code != http.StatusOK || !strings.Contains(m.body, `wxacode_scrape_error{source="campaigns"} 1`) {
		t.Errorf("GET /metrics with Redis down = %d:\n%s", m.code, m.body)
	}
}
