package dashboard_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/internal/dashboard"
	"github.com/wxacode/wxacode/internal/testenv"
)

// do sends method to url with headers (Host among them) and returns the
// answer.
func do(t *testing.T, method, url string, hdr map[string]string, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func paused(t *testing.T, r *testenv.Redis, queue string) bool {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	info, err := insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	return info.Paused
}

// TestCrossOriginStateChanges sends asynqmon's "pause queue" as browsers
// send it from another site (a form or a no-cors fetch: text/plain, with
// Sec-Fetch-Site and Origin), and as the dashboard's own page sends it.
func TestCrossOriginStateChanges(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		auth  bool
		hdr   func(self string) map[string]string
		want  int
		pause bool
	}{
		{"cross-site fetch", false, func(string) map[string]string {
			return map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
		}, http.StatusForbidden, false},
		{"cross-site form, old browser without Sec-Fetch-Site", false, func(string) map[string]string {
			return map[string]string{"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}
		}, http.StatusForbidden, false},
		{"same-site, other port", false, func(string) map[string]string {
			return map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site", "Content-Type": "text/plain"}
		}, http.StatusForbidden, false},
		{"cross-site with a cached login", true, func(string) map[string]string {
			return map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Authorization": basic("ops", "pw")}
		}, http.StatusForbidden, false},
		// asynqmon answers 204 to a pause: "OK" below means any 2xx.
		{"the dashboard's own page", false, func(self string) map[string]string {
			return map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
		}, http.StatusOK, true},
		{"the dashboard's own page, logged in", true, func(self string) map[string]string {
			return map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin", "Authorization": basic("ops", "pw")}
		}, http.StatusOK, true},
		{"a script (no browser headers)", false, func(string) map[string]string { return nil }, http.StatusOK, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := dashboard.Config{}
			if tt.auth {
				cfg.Auth = dashboard.Auth{User: "ops", Password: "pw"}
			}
			r, srv := fixture(t, cfg)
			got := do(t, "POST", srv.URL+"/monitoring/api/queues/"+"wxacode-wx00000000000000a1-default"+":pause", tt.hdr(srv.URL), "x")
			if ok := got.code/100 == 2; got.code != tt.want && !(ok && tt.want == http.StatusOK) {
				t.Fatalf("POST pause = %d %q, want %d", got.code, got.body, tt.want)
			}
			if p := paused(t, r, "wxacode-wx00000000000000a1-default"); p != tt.pause {
				t.Fatalf("queue paused %v after the request, want %v", p, tt.pause)
			}
			// Deleting every pending batch task is refused or allowed alike.
			insp := asynq.NewInspectorFromRedisClient(r.Client)
			before, err := insp.GetQueueInfo("wxacode-wx00000000000000a2-high")
			if err != nil {
				t.Fatal(err)
			}
			got = do(t, "DELETE", srv.URL+"/monitoring/api/queues/"+"wxacode-wx00000000000000a2-high"+"/pending_tasks:delete_all", tt.hdr(srv.URL), "")
			after, err := insp.GetQueueInfo("wxacode-wx00000000000000a2-high")
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == http.StatusForbidden && (got.code != http.StatusForbidden || after.Pending != before.Pending) {
				t.Fatalf("cross-origin DELETE = %d; pending tasks %d → %d, want 403 and no change", got.code, before.Pending, after.Pending)
			}
			if tt.want == http.StatusOK && (got.code/100 != 2 || after.Pending != 0) {
				t.Fatalf("DELETE = %d %q; pending tasks %d → %d, want 200 and none left", got.code, got.body, before.Pending, after.Pending)
			}
		})
	}
}

// TestHostGuard asks for the dashboard under names an attacker could point
// at 127.0.0.1 (DNS rebinding).
func TestHostGuard(t *testing.T) {
	t.Parallel()
	_, open := fixture(t, dashboard.Config{AllowedHosts: []string{"dash.internal", "ops.example:8443"}})
	_, locked := fixture(t, dashboard.Config{Auth: dashboard.Auth{Token: "tok"}})
	port := open.URL[strings.LastIndex(open.URL, ":")+1:]
	for _, tt := range []struct {
		name string
		srv  *httptest.Server
		host string
		auth string
		want int
	}{
		{"evil name", open, "evil.example", "", http.StatusMisdirectedRequest},
		{"evil name with the port", open, "evil.example:" + port, "", http.StatusMisdirectedRequest},
		{"a subdomain of an allowed one", open, "x.dash.internal", "", http.StatusMisdirectedRequest},
		{"allowed name, another port", open, "ops.example:9000", "", http.StatusMisdirectedRequest},
		{"127.0.0.1", open, "127.0.0.1:" + port, "", http.StatusOK},
		{"localhost", open, "localhost:" + port, "", http.StatusOK},
		{"LOCALHOST.", open, "LOCALHOST.:" + port, "", http.StatusOK},
		{"::1", open, "[::1]:" + port, "", http.StatusOK},
		{"127.0.0.2", open, "127.0.0.2", "", http.StatusOK},
		{"allowed name", open, "dash.internal:" + port, "", http.StatusOK},
		{"allowed name and port", open, "ops.example:8443", "", http.StatusOK},
		{"credential: any name", locked, "wxacode-dashboard.svc:8080", "Bearer tok", http.StatusOK},
		{"credential: any name, none given", locked, "evil.example", "", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/api/campaigns", "/monitoring/api/queues", "/metrics", "/"} {
				hdr := map[string]string{"Host": tt.host}
				if tt.auth != "" {
					hdr["Authorization"] = tt.auth
				}
				got := do(t, "GET", tt.srv.URL+path, hdr, "")
				if got.code != tt.want {
					t.Errorf("GET %s with Host %q = %d, want %d", path, tt.host, got.code, tt.want)
				}
				if tt.want == http.StatusMisdirectedRequest && (strings.Contains(got.body, "spring") || !strings.Contains(got.body, dashboard.EnvAllowedHosts)) {
					t.Errorf("GET %s with Host %q answered %q: want no campaign and a hint at %s", path, tt.host, got.body, dashboard.EnvAllowedHosts)
				}
			}
		})
	}
}

// TestBrowserCrossSite has headless Chromium load a page that posts
// asynqmon's "pause queue" to the dashboard, as a hostile page would: from
// another origin (localhost against 127.0.0.1) it is refused and the queue
// stays running; the same page served from the dashboard's origin pauses
// it.
func TestBrowserCrossSite(t *testing.T) {
	bin := chromium(t)
	r, dash := fixture(t, dashboard.Config{})
	// The dashboard behind a recorder of the state changes that reach it,
	// and with the page mounted on it for the same-origin run.
	var mu sync.Mutex
	var seen []string
	page := func(target string) string {
		return `<!doctype html><title>t</title><body><p id=s>sending</p><script>
fetch(` + "`" + target + `/monitoring/api/queues/` + "wxacode-wx00000000000000a1-default" + `:pause` + "`" + `, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "x"})
  .then(() => document.getElementById("s").textContent = "sent", e => document.getElementById("s").textContent = "error " + e);
</script>`
	}
	target, err := url.Parse(dash.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/page.html" {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, page(""))
			return
		}
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		proxy.ServeHTTP(rec, req)
		if req.Method != "GET" {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, rec.code))
			mu.Unlock()
		}
	}))
	t.Cleanup(front.Close)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page(front.URL))
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site

	dom := headless(t, bin, evilURL+"/", "--dump-dom")
	mu.Lock()
	got := strings.Join(seen, "; ")
	seen = nil
	mu.Unlock()
	if !strings.Contains(dom, "sent") || got != "POST /monitoring/api/queues/"+"wxacode-wx00000000000000a1-default"+":pause 403" {
		t.Fatalf("cross-site page: dom %q, requests %q; want the POST sent and refused with 403", dom, got)
	}
	if paused(t, r, "wxacode-wx00000000000000a1-default") {
		t.Fatal("a cross-site page paused the queue")
	}

	headless(t, bin, front.URL+"/page.html", "--dump-dom")
	mu.Lock()
	got = strings.Join(seen, "; ")
	mu.Unlock()
	if got != "POST /monitoring/api/queues/"+"wxacode-wx00000000000000a1-default"+":pause 204" || !paused(t, r, "wxacode-wx00000000000000a1-default") {
		t.Fatalf("same-origin page: requests %q, paused %v; want the POST accepted and the queue paused", got, paused(t, r, "wxacode-wx00000000000000a1-default"))
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}
