package simulator

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestUnlimitedRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Pages: []string{"pages/index/index", "pages/item/item"}})
	tok := e.demoToken()
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"minimal", `{"scene":"a"}`, 0},
		{"all fields", `{"scene":"sku-1","page":"pages/item/item","check_path":true,"env_version":"trial","width":1280,"auto_color":false,"line_color":{"r":0,"g":0,"b":128},"is_hyaline":false}`, 0},
		{"every allowed character", `{"scene":"09AZaz!#$&'()*+,/:;=?@-._~"}`, 0},
		{"scene of 32", `{"scene":"` + strings.Repeat("a", 32) + `"}`, 0},
		{"scene of 33", `{"scene":"` + strings.Repeat("a", 33) + `"}`, codeSceneLength},
		{"scene empty", `{"scene":""}`, codeSceneLength},
		{"scene absent", `{"page":"pages/index/index"}`, codeSceneLength},
		{"scene with %", `{"scene":"a%20b"}`, codeSceneChars},
		{"scene in Chinese", `{"scene":"商品1"}`, codeSceneChars},
		{"scene with a space", `{"scene":"a b"}`, codeSceneChars},
		{"numeric scene", `{"scene":12345}`, 0},
		{"page with leading slash", `{"scene":"a","page":"/pages/index/index"}`, codeInvalidPage},
		{"page /x", `{"scene":"a","page":"/x"}`, codeInvalidPage},
		{"page with a query", `{"scene":"a","page":"pages/index/index?id=1"}`, codeInvalidPage},
		{"unreleased page, check_path absent", `{"scene":"a","page":"pages/new/new"}`, codeInvalidPage},
		{"unreleased page, check_path true", `{"scene":"a","page":"pages/new/new","check_path":true}`, codeInvalidPage},
		{"unreleased page, check_path false", `{"scene":"a","page":"pages/new/new","check_path":false}`, 0},
		{"scancode_time", `{"scene":"a","page":"pages/scancode_time","check_path":false}`, codeScancodeTime},
		{"width 279", `{"scene":"a","width":279}`, codeInvalidArgs},
		{"width 280", `{"scene":"a","width":280}`, 0},
		{"width 1281", `{"scene":"a","width":1281}`, codeInvalidArgs},
		{"width as a string", `{"scene":"a","width":"300"}`, 0},
		{"env_version prod", `{"scene":"a","env_version":"prod"}`, codeInvalidArgs},
		{"env_version develop", `{"scene":"a","env_version":"develop"}`, 0},
		{"line_color as strings", `{"scene":"a","line_color":{"r":"255","g":"0","b":"0"}}`, 0},
		{"line_color as numbers", `{"scene":"a","line_color":{"r":255,"g":0,"b":0}}`, 0},
		{"line_color out of range", `{"scene":"a","line_color":{"r":256,"g":0,"b":0}}`, codeInvalidArgs},
		{"line_color unknown key", `{"scene":"a","line_color":{"red":1}}`, codeDataFormat},
		{"unknown field", `{"scene":"a","widht":430}`, codeDataFormat},
		{"token in body", `{"scene":"a","access_token":"x"}`, codeDataFormat},
		{"check_path as a string", `{"scene":"a","check_path":"false"}`, codeDataFormat},
		{"not JSON", `scene=a`, codeDataFormat},
		{"JSON array", `["a"]`, codeDataFormat},
		{"empty body", ``, codeDataFormat},
		{"nulls are absent", `{"scene":"a","page":null,"width":null}`, 0},
	} {
		r := e.do(http.MethodPost, "/wxa/getwxacodeunlimit?access_token="+url.QueryEscape(tok), "application/json", []byte(tc.body))
		if got := r.errcode(t); got != tc.want {
			t.Errorf("%s: errcode %d, want %d (%s)", tc.name, got, tc.want, r.body)
		}
	}
}

func TestUnlimitedTransport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.demoToken()
	path := "/wxa/getwxacodeunlimit?access_token=" + url.QueryEscape(tok)
	form := url.Values{"scene": {"a"}}.Encode()
	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"form post", http.MethodPost, path, "application/x-www-form-urlencoded", form, codeDataFormat},
		{"JSON labelled as a form", http.MethodPost, path, "application/x-www-form-urlencoded", `{"scene":"a"}`, 0},
		{"JSON without a label", http.MethodPost, path, "", `{"scene":"a"}`, 0},
		{"token only in the body", http.MethodPost, "/wxa/getwxacodeunlimit", "application/json", `{"scene":"a","access_token":"` + tok + `"}`, codeTokenMissing},
		{"unknown token", http.MethodPost, "/wxa/getwxacodeunlimit?access_token=nope", "application/json", `{"scene":"a"}`, codeInvalidToken},
		{"GET", http.MethodGet, path, "", "", codePostOnly},
	} {
		if got := e.do(tc.method, tc.path, tc.ctype, []byte(tc.body)).errcode(t); got != tc.want {
			t.Errorf("%s: errcode %d, want %d", tc.name, got, tc.want)
		}
	}
	r := e.do(http.MethodPost, path, "application/json", []byte(`{"scene":"%"}`))
	if r.ctype != "application/json; charset=utf-8" {
		t.Errorf("error Content-Type %q", r.ctype)
	}
	if !bytes.Contains(r.body, []byte(" rid: ")) {
		t.Errorf("errmsg without a rid: %s", r.body)
	}
	if e.do(http.MethodGet, "/cgi-bin/nothing", "", nil).status != http.StatusNotFound {
		t.Error("unknown path: want HTTP 404")
	}
}

func TestImages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	tok := e.demoToken()
	for _, tc := range []struct {
		name    string
		body    map[string]any
		page    string
		png     bool
		minSide int
	}{
		{"JPEG, home page", map[string]any{"scene": "sku000123"}, "", false, 430},
		{"JPEG, page and colour", map[string]any{"scene": "id=7&k=v/x?y#z", "page": "pages/item/item", "width": 280, "line_color": map[string]any{"r": "0", "g": "0", "b": "160"}}, "pages/item/item", false, 280},
		{"JPEG, widest", map[string]any{"scene": strings.Repeat("Z", 32), "width": 1280, "auto_color": true}, "", false, 1280},
		{"hyaline PNG", map[string]any{"scene": "~!$'()*+,;:@", "page": "pages/index/index", "is_hyaline": true}, "pages/index/index", true, 430},
	} {
		r := e.unlimited(tok, tc.body)
		if r.status != http.StatusOK || r.ctype != "image/jpeg" {
			t.Fatalf("%s: HTTP %d, Content-Type %q: %s", tc.name, r.status, r.ctype, r.body)
		}
		if tc.png {
			if !bytes.HasPrefix(r.body, []byte("\x89PNG\r\n\x1a\n")) {
				t.Fatalf("%s: not a PNG: % x", tc.name, r.body[:8])
			}
		} else if !bytes.HasPrefix(r.body, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0}) {
			t.Fatalf("%s: not a JFIF JPEG: % x", tc.name, r.body[:12])
		}
		page, scene, err := DecodeImage(r.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if page != tc.page || scene != tc.body["scene"] {
			t.Errorf("%s: decoded page %q scene %q, want %q %q", tc.name, page, scene, tc.page, tc.body["scene"])
		}
		if again := e.unlimited(tok, tc.body); !bytes.Equal(again.body, r.body) {
			t.Errorf("%s: the same request gave different bytes", tc.name)
		}
	}
}

func TestDecodeContent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, page, scene string
		ok              bool
	}{
		{"pages/a/b?scene=x?scene=y", "pages/a/b", "x?scene=y", true},
		{"?scene=abc", "", "abc", true},
		{"pages/a/b?id=1", "", "", false},
	} {
		page, scene, ok := DecodeContent(tc.in)
		if page != tc.page || scene != tc.scene || ok != tc.ok {
			t.Errorf("DecodeContent(%q) = %q, %q, %v; want %q, %q, %v", tc.in, page, scene, ok, tc.page, tc.scene, tc.ok)
		}
	}
}

func TestACQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{QuotaAC: 3})
	tok := e.demoToken()
	a := "/wxa/getwxacode?access_token=" + url.QueryEscape(tok)
	c := "/cgi-bin/wxaapp/createwxaqrcode?access_token=" + url.QueryEscape(tok)

	// Rules first: they spend no quota.
	for _, tc := range []struct {
		name, path string
		body       any
		want       int
	}{
		{"A empty path", a, map[string]any{"path": ""}, codePathLength},
		{"A no path", a, map[string]any{"width": 430}, codePathLength},
		{"A path of 1025", a, map[string]any{"path": strings.Repeat("p", 1025)}, codePathLength},
		{"C path of 129", c, map[string]any{"path": strings.Repeat("p", 129)}, codePathLength},
		{"C with a B field", c, map[string]any{"path": "pages/a", "scene": "x"}, codeDataFormat},
		{"A scancode_time", a, map[string]any{"path": "pages/a?scancode_time=1"}, codeScancodeTime},
		{"A width 2000", a, map[string]any{"path": "pages/a", "width": 2000}, codeInvalidArgs},
	} {
		if got := e.postJSON(tc.path, tc.body).errcode(t); got != tc.want {
			t.Errorf("%s: errcode %d, want %d", tc.name, got, tc.want)
		}
	}

	r := e.postJSON(a, map[string]any{"path": "pages/item/item?id=42&from=box", "is_hyaline": true})
	if r.errcode(t) != 0 {
		t.Fatalf("A: %s", r.body)
	}
	if text, err := DecodeImageText(r.body); err != nil || text != "pages/item/item?id=42&from=box" {
		t.Fatalf("A code reads %q, %v", text, err)
	}
	r = e.postJSON(c, map[string]any{"path": "pages/index/index?id=1", "width": 300})
	if r.errcode(t) != 0 || r.ctype != "image/jpeg" {
		t.Fatalf("C: %s", r.body)
	}
	if text, err := DecodeImageText(r.body); err != nil || text != "pages/index/index?id=1" {
		t.Fatalf("C code reads %q, %v", text, err)
	}
	if got := e.postJSON(a, map[string]any{"path": "pages/a"}).errcode(t); got != 0 {
		t.Fatalf("third code: errcode %d", got)
	}
	for _, p := range []string{a, c} {
		if got := e.postJSON(p, map[string]any{"path": "pages/a"}).errcode(t); got != codeQuotaAC {
			t.Errorf("past the quota: errcode %d, want 45029", got)
		}
	}
	if got := e.s.Stats().QuotaUsed[DemoAppID]; got != 3 {
		t.Errorf("QuotaUsed %d, want 3", got)
	}
	// B is not limited by it.
	if got := e.unlimited(tok, map[string]any{"scene": "a"}).errcode(t); got != 0 {
		t.Errorf("B after the A/C quota: errcode %d", got)
	}
}

func TestRateWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RateN: 5, RatePer: 10 * time.Second})
	tok := e.demoToken()
	call := func() int { return e.unlimited(tok, map[string]any{"scene": "s"}).errcode(t) }
	for i := range 5 {
		if got := call(); got != 0 {
			t.Fatalf("call %d: errcode %d", i+1, got)
		}
		e.clock.Advance(time.Second)
	}
	// t=5s: 5 calls in the window.
	r := e.unlimited(tok, map[string]any{"scene": "s"})
	if r.status != http.StatusOK || r.errcode(t) != codeFrequency {
		t.Fatalf("6th call in the window: HTTP %d %s, want 45009 with HTTP 200", r.status, r.body)
	}
	// Calls that are not images count too: a bad scene at t=5s.
	if got := e.unlimited(tok, map[string]any{"scene": "%"}).errcode(t); got != codeFrequency {
		t.Fatalf("7th call: errcode %d, want 45009", got)
	}
	// t=10s: the call at 0 s left the window, but the refused ones at 5 s
	// still count: a client that keeps calling stays refused.
	e.clock.Advance(5 * time.Second)
	if got := call(); got != codeFrequency {
		t.Fatalf("t=10s: errcode %d, want 45009", got)
	}
	e.clock.Advance(5 * time.Second) // t=15s: only the call at 10 s is left
	for i := range 4 {
		if got := call(); got != 0 {
			t.Fatalf("t=15s, call %d: errcode %d", i+1, got)
		}
	}
	if got := call(); got != codeFrequency {
		t.Fatalf("t=15s, window full again: errcode %d, want 45009", got)
	}
	st := e.s.Stats()
	if got := st.Calls[apiUnlimited][codeFrequency]; got != 4 {
		t.Errorf("45009 answers %d, want 4", got)
	}
	if got := st.MaxWindow[DemoAppID]; got != 7 {
		t.Errorf("MaxWindow %d, want 7", got)
	}
}

func TestRateWindowPerApp(t *testing.T) {
	t.Parallel()
	const other, otherSecret = "wx00000000000000aa", "s3cr3t"
	e := newEnv(t, Config{RateN: 1, RatePer: time.Minute, Apps: map[string]string{DemoAppID: DemoSecret, other: otherSecret}})
	a, b := e.demoToken(), e.stable(other, otherSecret, false).AccessToken
	for _, tok := range []string{a, b} {
		if got := e.unlimited(tok, map[string]any{"scene": "s"}).errcode(t); got != 0 {
			t.Fatalf("first call of an app: errcode %d", got)
		}
	}
	if got := e.unlimited(a, map[string]any{"scene": "s"}).errcode(t); got != codeFrequency {
		t.Fatalf("second call: errcode %d, want 45009", got)
	}
}
