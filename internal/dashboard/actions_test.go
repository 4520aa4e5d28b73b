package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/api"
	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// The campaign page has retry and cancel buttons that post to the API
// behind the dashboard's credential, an archive link, and a script allowed
// by its nonce alone; a cross-site post is refused.
func TestCampaignPageActions(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	store, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	campaigns := campaign.NewStore(r.Client, "")
	p, err := producer.New(campaigns, asynq.NewClientFromRedisClient(r.Client), producer.Config{Tasks: asynq.NewInspectorFromRedisClient(r.Client), Blobs: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Enqueue(t.Context(), producer.Spec{Name: "spring", AppID: "wx00000000000000a1", Options: wechat.CodeOptions{Page: "pages/item"}}, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Campaigns: campaigns, Producer: p, Codes: store})
	if err != nil {
		t.Fatal(err)
	}
	h, err := dashboard.New(dashboard.Config{Redis: r.Client, API: a, Auth: dashboard.Auth{User: "ops", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	auth := map[string]string{"Authorization": basic("ops", "pw")}

	page := get(t, srv.URL+"/campaigns/spring", auth)
	for _, want := range []string{
		`<form method="post" action="/api/v1/campaigns/spring/retry">`,
		`<form method="post" action="/api/v1/campaigns/spring/cancel">`,
		`href="/api/v1/campaigns/spring/archive.zip"`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("campaign page lacks %s", want)
		}
	}
	nonce := regexp.MustCompile(`<script nonce="([^"]+)">`).FindStringSubmatch(page.body)
	csp := page.header.Get("Content-Security-Policy")
	if nonce == nil || !strings.Contains(csp, "script-src 'nonce-"+nonce[1]+"'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("script nonce %v, CSP %q: want the script allowed by its nonce only, forms to this origin", nonce, csp)
	}
	if strings.Contains(page.body, `http-equiv="refresh"`) {
		t.Error("the campaign page reloads itself: want its figures fetched instead")
	}

	post := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+path, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("/api/v1/campaigns/spring/cancel", map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "text/html"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cancel without the credential = %d, want 401", resp.StatusCode)
	}
	if resp := post("/api/v1/campaigns/spring/cancel", map[string]string{"Authorization": basic("ops", "pw"), "Sec-Fetch-Site": "cross-site", "Accept": "text/html"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site cancel = %d, want 403", resp.StatusCode)
	}
	if st, _ := campaigns.Status(t.Context(), "spring"); st.State != campaign.StateActive {
		t.Fatalf("state %s after refused cancels, want active", st.State)
	}
	resp := post("/api/v1/campaigns/spring/cancel", map[string]string{"Authorization": basic("ops", "pw"), "Sec-Fetch-Site": "same-origin", "Accept": "text/html"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/campaigns/spring" {
		t.Errorf("the page's cancel = %d to %q, want 303 back to the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if st, _ := campaigns.Status(t.Context(), "spring"); st.State != campaign.StateCancelled {
		t.Errorf("state %s after the page's cancel, want cancelled", st.State)
	}
}
