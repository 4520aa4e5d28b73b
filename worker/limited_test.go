package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

func (rg *rig) createLimited(t *testing.T, name string, iface campaign.Interface, opts wechat.CodeOptions, paths []string, batch int) campaign.Campaign {
	t.Helper()
	c, _, err := rg.campaigns.Create(context.Background(), campaign.Campaign{Name: name, AppID: simulator.DemoAppID, Interface: iface, Options: opts, Queue: demoQueue, BatchSize: batch}, paths)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pathList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("pages/item/item?id=%d&from=box/%d", i, i)
	}
	return out
}

// TestLimitedInterfaces: batches of A and C campaigns call their
// interface; every code is stored under its path's key with the path in
// its metadata, and reads back as the path.
func TestLimitedInterfaces(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{}, nil)
	ctx := context.Background()
	long := "pages/p/p?q=" + strings.Repeat("x", 1012)
	aPaths := append(pathList(4), long)
	for _, tc := range []struct {
		name  string
		iface campaign.Interface
		opts  wechat.CodeOptions
		paths []string
		api   string
	}{
		{"kind-a", campaign.InterfaceA, wechat.CodeOptions{Width: 1280, IsHyaline: true}, aPaths, "getwxacode"},
		{"kind-c", campaign.InterfaceC, wechat.CodeOptions{Width: 430}, pathList(3), "createwxaqrcode"},
	} {
		c := rg.createLimited(t, tc.name, tc.iface, tc.opts, tc.paths, 10)
		if err := rg.handler.ProcessTask(ctx, task(tc.name, 0)); err != nil {
			t.Fatalf("%s: ProcessTask: %v", tc.name, err)
		}
		got, _ := rg.campaigns.Get(ctx, tc.name)
		if got.Succeeded != int64(len(tc.paths)) {
			t.Fatalf("%s: campaign %+v, want %d succeeded", tc.name, got, len(tc.paths))
		}
		if n := rg.sim.Stats().Calls[tc.api][0]; n != len(tc.paths) {
			t.Errorf("%s: simulator made %d codes of %s, want %d", tc.name, n, tc.api, len(tc.paths))
		}
		ext := "jpg"
		if tc.opts.IsHyaline {
			ext = "png"
		}
		for _, p := range tc.paths {
			key := storage.Key(c.Name, p, ext)
			body, obj, err := rg.store.Get(ctx, key)
			if err != nil {
				t.Fatalf("%s: %s: %v", tc.name, key, err)
			}
			if obj.Meta.Path != p || obj.Meta.Scene != "" {
				t.Errorf("%s: %s: meta %+v, want path %q", tc.name, key, obj.Meta, p)
			}
			if text, err := simulator.DecodeImageText(body); err != nil || text != p {
				t.Errorf("%s: %s reads %.40q, %v; want the path", tc.name, key, text, err)
			}
		}
	}
	if k := storage.Key("kind-a", long, "png"); !strings.HasPrefix(k, "kind-a/_sha256/") {
		t.Errorf("long path's key %q: want the digest form", k)
	}
	if used, _ := rg.redis.Client.Get(ctx, wechat.QuotaKey(simulator.DemoAppID)).Int(); used != len(aPaths)+3 {
		t.Errorf("ledger counts %d, want %d", used, len(aPaths)+3)
	}
}

// TestLedgerRefusesPastLimit: a campaign that got past the check at
// enqueue (the ledger moved after) makes exactly the calls left; the rest
// fail at once with the quota's reason and never reach WeChat.
func TestLedgerRefusesPastLimit(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{}, nil)
	ctx := context.Background()
	rg.createLimited(t, "past", campaign.InterfaceC, wechat.CodeOptions{Width: 430}, pathList(12), 12)
	const left = 5
	if err := rg.redis.Client.Set(ctx, wechat.QuotaKey(simulator.DemoAppID), wechat.DefaultQuotaLimit-left, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rg.handler.ProcessTask(ctx, task("past", 0)); err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	got, _ := rg.campaigns.Get(ctx, "past")
	if got.Succeeded != left || got.Failed != 12-left {
		t.Fatalf("campaign %+v: want %d succeeded, %d failed", got, left, 12-left)
	}
	st := rg.sim.Stats()
	if n := st.Calls["createwxaqrcode"]; len(n) != 1 || n[0] != left {
		t.Errorf("simulator saw %v calls of C, want exactly %d codes", n, left)
	}
	if rg.obs.calls != left {
		t.Errorf("worker counted %d calls, want %d (refusals are not calls)", rg.obs.calls, left)
	}
	if used, _ := rg.redis.Client.Get(ctx, wechat.QuotaKey(simulator.DemoAppID)).Int(); used != wechat.DefaultQuotaLimit {
		t.Errorf("ledger counts %d, want the limit %d", used, wechat.DefaultQuotaLimit)
	}
	var reasons []string
	err := rg.campaigns.Export(ctx, got, nil, func(r campaign.ExportRow) error {
		if r.Status == campaign.Failed {
			reasons = append(reasons, r.Error)
			if r.ErrCode != 0 || !strings.Contains(r.Error, "lifetime quota of interfaces A and C used up") {
				t.Errorf("path %s failed with %d %q, want the ledger's refusal", r.Path, r.ErrCode, r.Error)
			}
		}
		return nil
	})
	if err != nil || len(reasons) != 12-left {
		t.Fatalf("export: %d failed rows, %v", len(reasons), err)
	}
}

// TestQuota45029FailsAtOnce: WeChat's own 45029 (its count ahead of the
// ledger's) fails the path at once, with no retry.
func TestQuota45029FailsAtOnce(t *testing.T) {
	t.Parallel()
	rg := newRig(t, simulator.Config{QuotaAC: 2}, nil)
	ctx := context.Background()
	rg.createLimited(t, "sim-quota", campaign.InterfaceA, wechat.CodeOptions{Width: 430}, pathList(5), 5)
	if err := rg.handler.ProcessTask(ctx, task("sim-quota", 0)); err != nil {
		t.Fatalf("ProcessTask: %v", err)
	}
	got, _ := rg.campaigns.Get(ctx, "sim-quota")
	st := rg.sim.Stats()
	// Calls in flight together may all meet 45029; one sent after it is
	// refused by the ledger, which the 45029 raised to the limit.
	q, refused := rg.obs.failed[wechat.CodeLifetimeQuotaUsed], rg.obs.failed[0]
	if got.Succeeded != 2 || got.Failed != 3 || q < 1 || q+refused != 3 || st.Calls["getwxacode"][wechat.CodeLifetimeQuotaUsed] != q {
		t.Fatalf("campaign %+v, failed %v, calls %v: want 2 stored, 3 failed by the quota and no retry", got, rg.obs.failed, st.Calls)
	}
	// The ledger was raised to the limit by the 45029: nothing more is sent.
	if used, _ := rg.redis.Client.Get(ctx, wechat.QuotaKey(simulator.DemoAppID)).Int(); used != wechat.DefaultQuotaLimit {
		t.Errorf("ledger counts %d after 45029, want the limit", used)
	}
}
