package wechat

import (
	"errors"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

// exerciseRedis runs the token source and the quota ledger on rdb: every
// Lua script, with all of an app's keys in one hash slot.
func exerciseRedis(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx := t.Context()
	f := newFakeWeChat(t)
	clock := newFakeClock()
	src, err := NewStableTokenSource(StableTokenConfig{BaseURL: f.srv.URL, AppID: testAppID, Secret: testSecret, Redis: rdb, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(Config{BaseURL: f.srv.URL, AppID: testAppID, Tokens: src, Redis: rdb, QuotaLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetUnlimited(ctx, okRequest("a")); err != nil {
		t.Fatal(err)
	}
	f.rotate(true) // 40001: Invalidate, fetch, retry
	if _, err := c.Get(ctx, CodeRequest{Path: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateQRCode(ctx, QRCodeRequest{Path: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, CodeRequest{Path: "p"}); !errors.Is(err, ErrQuotaExhausted) {
		t.Fatalf("over the limit: %v", err)
	}
	clock.Add(7200e9) // expired: fetched again, whatever the key's TTL says
	f.rotate(false)
	if _, err := c.GetUnlimited(ctx, okRequest("b")); err != nil {
		t.Fatal(err)
	}
	if got := f.fetches.Load(); got != 3 {
		t.Errorf("fetches = %d, want 3", got)
	}
	// A refused secret is remembered.
	f.set(func(f *fakeWeChat) { f.secret = "other" })
	f.rotate(true)
	for range 3 {
		if _, err := c.GetUnlimited(ctx, okRequest("c")); !errors.Is(err, ErrCredentials) {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	if got := f.fetches.Load(); got != 4 {
		t.Errorf("fetches = %d, want 4", got)
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.NewRedisCluster(t)
	exerciseRedis(t, cluster.Client(t))
}

// The demo runs on miniredis, whose TTLs do not tick by themselves.
func TestMiniredis(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	exerciseRedis(t, rdb)
}
