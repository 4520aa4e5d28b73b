package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type env struct {
	base string
	r    *testenv.Redis
}

// newEnv serves the API over a real Redis database and a file store.
func newEnv(t *testing.T) env {
	t.Helper()
	r := testenv.NewRedis(t)
	store, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	campaigns := campaign.NewStore(r.Client, "")
	q := asynq.NewClientFromRedisClient(r.Client)
	prod, err := producer.New(campaigns, q, producer.Config{
		BatchSize: 10, Tasks: asynq.NewInspectorFromRedisClient(r.Client), Blobs: store,
		Ledger: wechat.QuotaLedger{Redis: r.Client},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Campaigns: campaigns, Producer: prod, Codes: store, AppID: simulator.DemoAppID, MaxScenes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return env{base: srv.URL, r: r}
}

// do sends a request and returns the status code and the body.
func (e env) do(t *testing.T, method, path, body string, header ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
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
	return resp.StatusCode, string(b)
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := newEnv(t)
	code, body := e.do(t, "GET", "/api/v1/openapi.json", "")
	if code != http.StatusOK {
		t.Fatalf("GET openapi.json = %d", code)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	for _, rt := range routes {
		served = append(served, rt.method+" "+rt.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if diff := cmp.Diff(served, documented); diff != "" {
		t.Errorf("openapi.json paths differ from the routes served (-served +documented):\n%s", diff)
	}
}

func status(t *testing.T, body string) campaign.Status {
	t.Helper()
	var st campaign.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status %q: %v", body, err)
	}
	return st
}

func TestCreateConflictCancelRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"page": "pages/p/index", "scenes": ["a1", "a2", "a1", "a3"], "options": {"width": 300}, "priority": "high"}`
	code, resp := e.do(t, "PUT", "/api/v1/campaigns/spring", body)
	if code != http.StatusCreated {
		t.Fatalf("first PUT = %d %s, want 201", code, resp)
	}
	st := status(t, resp)
	if st.Total != 3 || st.State != campaign.StateActive || st.AppID != simulator.DemoAppID || st.Queue != "wxacode-"+simulator.DemoAppID+"-high" || st.Page != "pages/p/index" {
		t.Errorf("created status %+v: want 3 distinct scenes, active, the server's appid, queue high", st)
	}
	if code, resp := e.do(t, "PUT", "/api/v1/campaigns/spring", body); code != http.StatusOK || status(t, resp).Total != 3 {
		t.Errorf("same PUT again = %d %s, want 200 with the status", code, resp)
	}
	other := strings.Replace(body, `"width": 300`, `"width": 400`, 1)
	if code, resp := e.do(t, "PUT", "/api/v1/campaigns/spring", other); code != http.StatusConflict || !strings.Contains(resp, `"error"`) {
		t.Errorf("PUT of another spec = %d %s, want 409 JSON", code, resp)
	}
	if code, resp := e.do(t, "GET", "/api/v1/campaigns/spring", ""); code != http.StatusOK || status(t, resp).Total != 3 {
		t.Errorf("GET = %d %s", code, resp)
	}
	code, resp = e.do(t, "GET", "/api/v1/campaigns", "")
	var list []campaign.Status
	if err := json.Unmarshal([]byte(resp), &list); code != http.StatusOK || err != nil || len(list) != 1 || list[0].Campaign != "spring" {
		t.Errorf("GET list = %d %s", code, resp)
	}
	if code, resp := e.do(t, "POST", "/api/v1/campaigns/spring/cancel", ""); code != http.StatusOK || status(t, resp).State != campaign.StateCancelled {
		t.Errorf("cancel = %d %s, want 200 cancelled", code, resp)
	}
	if code, resp := e.do(t, "POST", "/api/v1/campaigns/spring/retry", ""); code != http.StatusOK || status(t, resp).State != campaign.StateActive {
		t.Errorf("retry = %d %s, want 200 active", code, resp)
	}
	// A browser form (the dashboard's buttons) is sent back to the page.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.base+"/api/v1/campaigns/spring/cancel", nil)
	req.Header.Set("Accept", "text/html")
	resp2, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusSeeOther || resp2.Header.Get("Location") != "/campaigns/spring" {
		t.Errorf("form cancel = %d to %q, want 303 to /campaigns/spring", resp2.StatusCode, resp2.Header.Get("Location"))
	}
	for _, p := range []string{"/api/v1/campaigns/nope", "/api/v1/campaigns/nope/export", "/api/v1/campaigns/nope/codes/a1", "/api/v1/campaigns/nope/archive.zip"} {
		if code, resp := e.do(t, "GET", p, ""); code != http.StatusNotFound || !strings.Contains(resp, "campaign nope not found") {
			t.Errorf("GET %s = %d %s, want 404", p, code, resp)
		}
	}
	for _, p := range []string{"/api/v1/campaigns/nope/cancel", "/api/v1/campaigns/nope/retry"} {
		if code, resp := e.do(t, "POST", p, ""); code != http.StatusNotFound {
			t.Errorf("POST %s = %d %s, want 404", p, code, resp)
		}
	}
	if code, resp := e.do(t, "GET", "/api/v1/campaigns/spring/codes/a1", ""); code != http.StatusNotFound || !strings.Contains(resp, "not succeeded") {
		t.Errorf("code of a pending scene = %d %s, want 404", code, resp)
	}
	code, resp = e.do(t, "GET", "/api/v1/campaigns/spring/export?format=jsonl", "")
	if code != http.StatusOK || strings.Count(resp, `"status":"pending"`) != 3 {
		t.Errorf("export = %d %s, want 3 pending rows", code, resp)
	}
	if code, _ := e.do(t, "GET", "/api/v1/campaigns/spring/export?format=xml", ""); code != http.StatusBadRequest {
		t.Errorf("export as xml = %d, want 400", code)
	}
}

func TestCreateBadScenesWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := `{"scenes": ["ok1", "has space", "ok2", 5, "` + strings.Repeat("x", 33) + `", "ok1"], "page": ""}`
	code, resp := e.do(t, "PUT", "/api/v1/campaigns/bad", body)
	if code != http.StatusBadRequest {
		t.Fatalf("PUT = %d %s, want 400", code, resp)
	}
	var eb errorBody
	if err := json.Unmarshal([]byte(resp), &eb); err != nil {
		t.Fatal(err)
	}
	var idx []int64
	for _, se := range eb.Errors {
		idx = append(idx, se.Index)
		if se.Reason == "" {
			t.Errorf("scene error %+v has no reason", se)
		}
	}
	if !slices.Equal(idx, []int64{1, 3, 4}) || eb.Errors[0].Scene != "has space" {
		t.Errorf("bad scenes %+v, want indices 1, 3, 4", eb.Errors)
	}
	if n, err := e.r.Client.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Errorf("Redis holds %d keys (%v) after a refused create, want 0", n, err)
	}

	code, resp = e.do(t, "PUT", "/api/v1/campaigns/rng", `{"page": "p", "range": {"template": "s%d", "from": 8, "to": 12}}`)
	if code != http.StatusCreated || status(t, resp).Total != 5 {
		t.Errorf("range PUT = %d %s, want 201 with 5 scenes", code, resp)
	}
	code, resp = e.do(t, "PUT", "/api/v1/campaigns/rng2", `{"page": "p", "range": {"template": "s%040d", "from": 3, "to": 4}}`)
	if code != http.StatusBadRequest || !strings.Contains(resp, `"index":0`) || !strings.Contains(resp, `"index":1`) {
		t.Errorf("range of too-long scenes = %d %s, want 400 with indices 0 and 1", code, resp)
	}
}

func TestCreateBadFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, path, body, field string
	}{
		{"no page", "/api/v1/campaigns/c1", `{"scenes": ["a"]}`, "page"},
		{"no scenes", "/api/v1/campaigns/c1", `{"page": "p"}`, "scenes"},
		{"empty scenes", "/api/v1/campaigns/c1", `{"page": "p", "scenes": []}`, "scenes"},
		{"both", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "range": {"template": "s%d", "from": 1, "to": 2}}`, "scenes"},
		{"unknown field", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "colour": 1}`, "colour"},
		{"unknown option", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "options": {"widht": 300}}`, "options"},
		{"width", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "options": {"width": 100}}`, "width"},
		{"page", "/api/v1/campaigns/c1", `{"page": "/p?x=1", "scenes": ["a"]}`, "page"},
		{"appid", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "appid": "nope"}`, "appid"},
		{"priority", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "priority": "urgent"}`, "priority"},
		{"webhook", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"], "webhook": "ftp://x"}`, "webhook"},
		{"name", "/api/v1/campaigns/..", `{"page": "p", "scenes": ["a"]}`, ""},
		{"not JSON", "/api/v1/campaigns/c1", `page=p`, ""},
		{"trailing", "/api/v1/campaigns/c1", `{"page": "p", "scenes": ["a"]} {}`, ""},
		{"bad template", "/api/v1/campaigns/c1", `{"page": "p", "range": {"template": "s", "from": 1, "to": 2}}`, "range"},
		{"too many", "/api/v1/campaigns/c1", `{"page": "p", "range": {"template": "s%d", "from": 1, "to": 5000}}`, "range"},
		{"interface", "/api/v1/campaigns/c1", `{"interface": "d", "paths": ["p?x=1"]}`, "interface"},
		{"paths with b", "/api/v1/campaigns/c1", `{"page": "p", "paths": ["p?x=1"]}`, "paths"},
		{"page with a", "/api/v1/campaigns/c1", `{"interface": "a", "page": "p", "paths": ["p?x=1"]}`, "page"},
		{"scenes with c", "/api/v1/campaigns/c1", `{"interface": "c", "scenes": ["a"]}`, "scenes"},
		{"range with a", "/api/v1/campaigns/c1", `{"interface": "a", "range": {"template": "s%d", "from": 1, "to": 2}}`, "range"},
		{"no paths", "/api/v1/campaigns/c1", `{"interface": "a"}`, "paths"},
		{"check_path with a", "/api/v1/campaigns/c1", `{"interface": "a", "paths": ["p?x=1"], "options": {"check_path": false}}`, "check_path"},
		{"hyaline with c", "/api/v1/campaigns/c1", `{"interface": "c", "paths": ["p?x=1"], "options": {"is_hyaline": true}}`, "is_hyaline"},
		{"paths not strings", "/api/v1/campaigns/c1", `{"interface": "a", "paths": [["x"]]}`, "paths"},
	}
	for _, tc := range tests {
		code, resp := e.do(t, "PUT", tc.path, tc.body)
		if code/100 != 4 {
			t.Errorf("%s: PUT = %d %s, want 4xx", tc.name, code, resp)
			continue
		}
		var eb errorBody
		if err := json.Unmarshal([]byte(resp), &eb); code == http.StatusBadRequest && (err != nil || eb.Error == "" || (tc.field != "" && eb.Field != tc.field)) {
			t.Errorf("%s: answer %s, want an error naming field %q", tc.name, resp, tc.field)
		}
	}
	if n, err := e.r.Client.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Errorf("Redis holds %d keys (%v) after refused creates, want 0", n, err)
	}
}

// TestCreateLimited: campaigns of interfaces A and C through the API: bad
// paths by index (C's 128-byte limit applied whatever the field order),
// the lifetime quota checked with its figures, nothing written when
// refused.
func TestCreateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	long := strings.Repeat("p", 129)
	body := `{"paths": ["pages/a?x=1", "` + long + `", "has space", "pages/a?x=1"], "interface": "c"}`
	code, resp := e.do(t, "PUT", "/api/v1/campaigns/bad", body)
	var eb errorBody
	if err := json.Unmarshal([]byte(resp), &eb); err != nil || code != http.StatusBadRequest || eb.Field != "paths" {
		t.Fatalf("PUT C with bad paths = %d %s, want 400 on paths", code, resp)
	}
	if len(eb.Errors) != 2 || eb.Errors[0].Index != 1 || eb.Errors[1].Index != 2 || !strings.Contains(eb.Errors[0].Reason, "at most 128") {
		t.Errorf("bad paths %+v, want indices 1 (over 128 bytes) and 2", eb.Errors)
	}
	// The same long path is fine for A.
	code, resp = e.do(t, "PUT", "/api/v1/campaigns/ok-a", `{"interface": "a", "paths": ["pages/a?x=1", "`+long+`", "pages/a?x=1"], "options": {"is_hyaline": true}}`)
	if st := status(t, resp); code != http.StatusCreated || st.Total != 2 || st.Interface != campaign.InterfaceA || st.Page != "" {
		t.Fatalf("PUT A = %d %s, want 201 with 2 paths, interface a", code, resp)
	}
	// 100,000 - 99,990 used - 2 pending in ok-a = 8 left.
	if err := e.r.Client.Set(t.Context(), wechat.QuotaKey(simulator.DemoAppID), 99_990, 0).Err(); err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 9)
	for i := range paths {
		paths[i] = fmt.Sprintf("%q", fmt.Sprintf("pages/b?id=%d", i))
	}
	code, resp = e.do(t, "PUT", "/api/v1/campaigns/too-many", `{"interface": "c", "paths": [`+strings.Join(paths, ",")+`]}`)
	eb = errorBody{}
	if err := json.Unmarshal([]byte(resp), &eb); err != nil || code != http.StatusBadRequest || eb.Field != "paths" || eb.Quota == nil {
		t.Fatalf("PUT past the quota = %d %s, want 400 on paths with the figures", code, resp)
	}
	if want := (quotaFigures{Asked: 9, Remaining: 8, Limit: 100_000, Used: 99_990, Pending: 2}); *eb.Quota != want || !strings.Contains(eb.Error, "9 codes asked, 8 of 100,000 remain") {
		t.Errorf("quota refusal %s, want figures %+v", resp, want)
	}
	if keys, _ := e.r.Client.Keys(t.Context(), "*too-many*").Result(); len(keys) > 0 {
		t.Errorf("refused campaign left %q in Redis", keys)
	}
	code, resp = e.do(t, "PUT", "/api/v1/campaigns/fits", `{"interface": "c", "paths": [`+strings.Join(paths[:8], ",")+`]}`)
	if code != http.StatusCreated {
		t.Errorf("PUT of exactly what is left = %d %s, want 201", code, resp)
	}
}

func TestCrossSiteStateChangeRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if code, _ := e.do(t, "PUT", "/api/v1/campaigns/x", `{"page": "p", "scenes": ["a"]}`, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site PUT = %d, want 403", code)
	}
	if code, _ := e.do(t, "POST", "/api/v1/campaigns/x/cancel", "", "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("cross-origin POST = %d, want 403", code)
	}
	if code, _ := e.do(t, "GET", "/api/v1/campaigns", "", "Sec-Fetch-Site", "cross-site"); code != http.StatusOK {
		t.Errorf("cross-site GET = %d, want 200 (reads change nothing)", code)
	}
}

func TestDistinctKeepsFirstSeenOrder(t *testing.T) {
	got := distinct([]string{"b", "a", "b", "c", "a", "a", "d"})
	if want := []string{"b", "a", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("distinct = %q, want %q", got, want)
	}
	if got := distinct(nil); len(got) != 0 {
		t.Errorf("distinct(nil) = %q", got)
	}
}
