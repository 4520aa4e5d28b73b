package wechat

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wxacode/wxacode/internal/testenv"
)

func TestQuotaLedgerSmallLimit(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	src := newStable(t, f, r, nil)
	limit := func(c *Config) { c.QuotaLimit = 3 }
	c := newTestClient(t, f, r, src, limit)
	ctx := t.Context()

	if _, err := c.Get(ctx, CodeRequest{Path: "pages/a/a?id=1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateQRCode(ctx, QRCodeRequest{Path: "pages/a/a?id=2"}); err != nil {
		t.Fatal(err)
	}
	// An errcode answer made no code: its unit is given back.
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/json", map[string]any{"errcode": 40159, "errmsg": "invalid path rid: 1"})
	})
	if _, err := c.Get(ctx, CodeRequest{Path: "pages/a/a?id=3"}); !IsPermanent(err) {
		t.Fatalf("40159: %v", err)
	}
	f.setAnswer(nil)
	if _, err := c.Get(ctx, CodeRequest{Path: "pages/a/a?id=4"}); err != nil {
		t.Fatal(err)
	}
	if used, lim, err := c.Quota(ctx); used != 3 || lim != 3 || err != nil {
		t.Fatalf("Quota = %d, %d, %v; want 3, 3", used, lim, err)
	}
	calls := f.calls.Load()
	_, err := c.Get(ctx, CodeRequest{Path: "pages/a/a?id=5"})
	if !errors.Is(err, ErrQuotaExhausted) || !IsPermanent(err) {
		t.Fatalf("call over the limit: %v; want ErrQuotaExhausted", err)
	}
	if f.calls.Load() != calls {
		t.Error("a call over the limit was sent")
	}

	// A restart: a new client on the same Redis remembers.
	c2 := newTestClient(t, f, r, newStable(t, f, r, nil), limit)
	if used, _, _ := c2.Quota(ctx); used != 3 {
		t.Errorf("after restart Quota used = %d, want 3", used)
	}
	if _, err := c2.CreateQRCode(ctx, QRCodeRequest{Path: "p"}); !errors.Is(err, ErrQuotaExhausted) {
		t.Errorf("after restart: %v; want ErrQuotaExhausted", err)
	}
	if f.calls.Load() != calls {
		t.Error("a call over the limit was sent after the restart")
	}
	// Interface B is not counted.
	if _, err := c2.GetUnlimited(ctx, okRequest("b")); err != nil {
		t.Errorf("interface B refused: %v", err)
	}
}

func TestQuotaLedgerDefaultLimit(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	ctx := t.Context()
	if err := r.Client.Set(ctx, QuotaKey(testAppID), 99_999, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, CodeRequest{Path: "pages/a/a"}); err != nil {
		t.Fatalf("call 100,000: %v", err)
	}
	_, err := c.CreateQRCode(ctx, QRCodeRequest{Path: "pages/a/a"})
	if !errors.Is(err, ErrQuotaExhausted) {
		t.Fatalf("call 100,001: %v; want ErrQuotaExhausted", err)
	}
	if !strings.Contains(err.Error(), "100000 of 100000") {
		t.Errorf("error %q does not say the count", err)
	}
	if used, lim, _ := c.Quota(ctx); used != 100_000 || lim != DefaultQuotaLimit {
		t.Errorf("Quota = %d, %d", used, lim)
	}
	if got := f.calls.Load(); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
}

func TestQuotaLedger45029(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil), func(c *Config) { c.QuotaLimit = 50 })
	ctx := t.Context()
	f.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/json", map[string]any{"errcode": 45029, "errmsg": "reach max api daily quota limit rid: 2"})
	})
	if _, err := c.Get(ctx, CodeRequest{Path: "p"}); !IsPermanent(err) {
		t.Fatalf("45029: %v", err)
	}
	// WeChat knows best: the ledger is full now.
	if used, _, _ := c.Quota(ctx); used != 50 {
		t.Errorf("Quota used = %d after 45029, want 50", used)
	}
	if _, err := c.Get(ctx, CodeRequest{Path: "p"}); !errors.Is(err, ErrQuotaExhausted) {
		t.Errorf("after 45029: %v", err)
	}
}

func TestLimitedWire(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	f := newFakeWeChat(t)
	c := newTestClient(t, f, r, newStable(t, f, r, nil))
	ctx := t.Context()
	if _, err := c.Get(ctx, CodeRequest{Path: "pages/a/a?id=1&x=y", Width: 300, IsHyaline: true, EnvVersion: EnvDevelop}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"path": "pages/a/a?id=1&x=y", "width": json.Number("300"), "auto_color": false, "is_hyaline": true,
		"env_version": "develop", "line_color": map[string]any{"r": json.Number("0"), "g": json.Number("0"), "b": json.Number("0")},
	}
	if diff := cmp.Diff(want, f.lastBody()); diff != "" {
		t.Errorf("body of interface A (-want +got):\n%s", diff)
	}
	if _, err := c.CreateQRCode(ctx, QRCodeRequest{Path: "pages/a/a?id=2"}); err != nil {
		t.Fatal(err)
	}
	want = map[string]any{"path": "pages/a/a?id=2", "width": json.Number("430")}
	if diff := cmp.Diff(want, f.lastBody()); diff != "" {
		t.Errorf("body of interface C (-want +got):\n%s", diff)
	}
}

func TestLimitedValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		ok   bool
	}{
		{"A ok", CodeRequest{Path: "pages/a/a?id=1"}.Validate(), true},
		{"A 1024", CodeRequest{Path: strings.Repeat("p", 1024)}.Validate(), true},
		{"A 1025", CodeRequest{Path: strings.Repeat("p", 1025)}.Validate(), false},
		{"A empty", CodeRequest{}.Validate(), false},
		{"A scancode_time", CodeRequest{Path: "pages/a/a?scancode_time=1"}.Validate(), false},
		{"A width", CodeRequest{Path: "p", Width: 279}.Validate(), false},
		{"A env", CodeRequest{Path: "p", EnvVersion: "prod"}.Validate(), false},
		{"A space", CodeRequest{Path: "pages/a a"}.Validate(), false},
		{"C 128", QRCodeRequest{Path: strings.Repeat("p", 128)}.Validate(), true},
		{"C 129", QRCodeRequest{Path: strings.Repeat("p", 129)}.Validate(), false},
		{"C width", QRCodeRequest{Path: "p", Width: 1281}.Validate(), false},
	}
	for _, tt := range tests {
		if (tt.err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v, want ok %v", tt.name, tt.err, tt.ok)
		}
	}
}
