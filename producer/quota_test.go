package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
)

const quotaApp = "wx0123456789abcdef"

func TestReadPaths(t *testing.T) {
	t.Parallel()
	long := "pages/p/p?x=" + strings.Repeat("y", 1012) // 1024 bytes
	in := strings.Join([]string{
		"pages/a/a?id=1&ref=x/y",
		"",
		"pages/a/a?id=1&ref=x/y",
		long,
		long + "z",
		"pages/a/a?scancode_time=1",
		"pages/a b",
		"pages/商品/index?名=值",
	}, "\r\n")
	_, err := ReadPaths(strings.NewReader(in), campaign.InterfaceA)
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("A: err = %v, want *InvalidError", err)
	}
	msg := err.Error()
	for _, want := range []string{"3 invalid path(s), nothing enqueued", "5: path is 1025 bytes long: at most 1024", "6: path", "scancode_time is reserved", "7: path has a space"} {
		if !strings.Contains(msg, want) {
			t.Errorf("A: message lacks %q:\n%s", want, msg)
		}
	}
	good := strings.Join([]string{"pages/a/a?id=1", long, "pages/a/a?id=1", "pages/商品/index?名=值"}, "\n")
	got, err := ReadPaths(strings.NewReader(good), campaign.InterfaceA)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Scenes{List: []string{"pages/a/a?id=1", long, "pages/商品/index?名=值"}, Duplicates: 1}, got); diff != "" {
		t.Errorf("A (-want +got):\n%s", diff)
	}
	// C takes 128 bytes at most.
	_, err = ReadPaths(strings.NewReader("pages/a/a?id=1\n"+strings.Repeat("p", 129)), campaign.InterfaceC)
	if !errors.As(err, &inv) || len(inv.Lines) != 1 || inv.Lines[0].Line != 2 || !strings.Contains(err.Error(), "at most 128") {
		t.Errorf("C: err = %v, want line 2 over 128 bytes", err)
	}
}

func TestQuotaLeft(t *testing.T) {
	t.Parallel()
	c := func(name, app string, iface campaign.Interface, state campaign.State, total, ok, failed int64) campaign.Campaign {
		return campaign.Campaign{Name: name, AppID: app, Interface: iface, State: state, Total: total, Succeeded: ok, Failed: failed}
	}
	other := "wxfedcba9876543210"
	all := []campaign.Campaign{
		c("a1", quotaApp, campaign.InterfaceA, campaign.StateActive, 100, 30, 10), // 60 pending
		c("c1", quotaApp, campaign.InterfaceC, campaign.StateEnqueuing, 20, 0, 0), // 20 pending
		c("b1", quotaApp, campaign.InterfaceB, campaign.StateActive, 500, 0, 0),   // B: not counted
		c("x1", other, campaign.InterfaceA, campaign.StateActive, 70, 0, 0),       // other app
		c("k1", quotaApp, campaign.InterfaceA, campaign.StateCancelled, 40, 0, 0), // cancelled
		c("d1", quotaApp, campaign.InterfaceA, campaign.StateActive, 50, 45, 5),   // done
		c("self", quotaApp, campaign.InterfaceA, campaign.StateActive, 9, 0, 0),   // the campaign itself
	}
	for _, tc := range []struct {
		name                 string
		limit, used          int64
		wantLeft, wantPendng int64
	}{
		{"room", 100_000, 1000, 100_000 - 1000 - 80, 80},
		{"exact", 1080, 1000, 0, 80},
		{"overdrawn", 1000, 990, 0, 80},
	} {
		left, pending := quotaLeft(tc.limit, tc.used, all, quotaApp, "self")
		if left != tc.wantLeft || pending != tc.wantPendng {
			t.Errorf("%s: left %d pending %d, want %d %d", tc.name, left, pending, tc.wantLeft, tc.wantPendng)
		}
	}
}

// TestEnqueueQuota: on real Redis, a campaign of A or C past what is left
// is refused with the figures and nothing written; the same campaign
// enqueued again is not counted against itself.
func TestEnqueueQuota(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	client := asynq.NewClientFromRedisClient(r.Client)
	store := campaign.NewStore(r.Client, "")
	p, err := New(store, client, Config{BatchSize: 10, Ledger: wechat.QuotaLedger{Redis: r.Client}, QuotaLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	paths := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("pages/item/item?id=%d", i)
		}
		return out
	}
	if err := r.Client.Set(ctx, wechat.QuotaKey(quotaApp), 50, 0).Err(); err != nil {
		t.Fatal(err)
	}
	first := Spec{Name: "first", AppID: quotaApp, Interface: campaign.InterfaceA, Options: wechat.CodeOptions{Width: 430}}
	sum, err := p.Enqueue(ctx, first, paths(30))
	if err != nil || !sum.Created || sum.Campaign.Interface != campaign.InterfaceA {
		t.Fatalf("Enqueue 30 of 50 left = %+v, %v", sum, err)
	}
	// 100 - 50 used - 30 pending in "first" = 20 left.
	second := Spec{Name: "second", AppID: quotaApp, Interface: campaign.InterfaceC, Options: wechat.CodeOptions{Width: 430}}
	_, err = p.Enqueue(ctx, second, paths(21))
	var qe *QuotaError
	if !errors.As(err, &qe) {
		t.Fatalf("Enqueue 21 of 20 left: %v, want *QuotaError", err)
	}
	if diff := cmp.Diff(QuotaError{AppID: quotaApp, Asked: 21, Remaining: 20, Limit: 100, Used: 50, Pending: 30}, *qe); diff != "" {
		t.Errorf("QuotaError (-want +got):\n%s", diff)
	}
	if want := "quota: 21 codes asked, 20 of 100 remain for " + quotaApp; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to start %q", err, want)
	}
	if _, err := store.Get(ctx, "second"); !errors.Is(err, campaign.ErrNotFound) {
		t.Errorf("refused campaign: Get = %v, want ErrNotFound (nothing written)", err)
	}
	if n, _ := r.Client.Keys(ctx, "*{second}*").Result(); len(n) > 0 {
		t.Errorf("refused campaign left keys %q", n)
	}
	// Exactly what is left passes; the first campaign again is recognised,
	// not refused for counting itself.
	if _, err := p.Enqueue(ctx, second, paths(20)); err != nil {
		t.Fatalf("Enqueue 20 of 20 left: %v", err)
	}
	again, err := p.Enqueue(ctx, first, paths(30))
	if err != nil || again.Created {
		t.Fatalf("first again = %+v, %v; want recognised", again, err)
	}
	// Options the interface does not take are refused, naming them.
	for _, tc := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Name: "x", AppID: quotaApp, Interface: campaign.InterfaceA, Options: wechat.CodeOptions{Page: "pages/a/a"}}, "page"},
		{Spec{Name: "x", AppID: quotaApp, Interface: campaign.InterfaceC, Options: wechat.CodeOptions{IsHyaline: true}}, "is_hyaline"},
		{Spec{Name: "x", AppID: quotaApp, Interface: campaign.InterfaceC, Options: wechat.CodeOptions{EnvVersion: wechat.EnvTrial}}, "env_version"},
		{Spec{Name: "x", AppID: quotaApp, Interface: "d"}, "interface"},
	} {
		var fe *FieldError
		if _, err := p.Enqueue(ctx, tc.spec, paths(1)); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: %v, want a FieldError on %s", tc.spec, err, tc.field)
		}
	}
}
