package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/client"
	"github.com/wxacode/wxacode/internal/api"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
)

// serverURL is the API the example talks to: the real handler on a real
// Redis, started by TestMain.
var serverURL string

func TestMain(m *testing.M) {
	code, err := runWithServer(m)
	testenv.StopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func runWithServer(m *testing.M) (int, error) {
	srv, err := testenv.StartRedis()
	if err != nil {
		return 0, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 1})
	defer rdb.Close()
	dir, err := os.MkdirTemp("", "wxacode-client-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	store, err := storage.NewFile(dir)
	if err != nil {
		return 0, err
	}
	campaigns := campaign.NewStore(rdb, "")
	prod, err := producer.New(campaigns, asynq.NewClientFromRedisClient(rdb), producer.Config{
		Tasks: asynq.NewInspectorFromRedisClient(rdb), Blobs: store,
	})
	if err != nil {
		return 0, err
	}
	h, err := api.New(api.Config{Campaigns: campaigns, Producer: prod, Codes: store, AppID: simulator.DemoAppID})
	if err != nil {
		return 0, err
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	serverURL = ts.URL
	return m.Run(), nil
}

func Example() {
	ctx := context.Background()
	c := client.New(serverURL, "", nil) // the token of WXACODE_DASHBOARD_TOKEN, when set

	st, created, err := c.Create(ctx, "spring", client.Campaign{
		Page:    "pages/product/index",
		Scenes:  []string{"sku001", "sku002", "sku002", "a/b"},
		Webhook: "https://example.com/hooks/wxacode",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("created:", created, "scenes:", st.Total, "state:", st.State)

	// The same campaign again is harmless; another under the name is 409.
	_, created, _ = c.Create(ctx, "spring", client.Campaign{Page: "pages/product/index", Scenes: []string{"sku001", "sku002", "sku002", "a/b"}})
	fmt.Println("created again:", created)
	_, _, err = c.Create(ctx, "spring", client.Campaign{Page: "pages/other/index", Scenes: []string{"sku001"}})
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		fmt.Println("another spec:", apiErr.StatusCode)
	}

	// Bad scenes come back all at once, by index; nothing is written.
	_, _, err = c.Create(ctx, "summer", client.Campaign{Page: "", Scenes: []string{"ok", "no spaces", "ok2"}})
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusBadRequest {
		for _, bad := range apiErr.Scenes {
			fmt.Printf("scene %d %q: %s\n", bad.Index, bad.Scene, bad.Reason)
		}
	}

	st, _ = c.Cancel(ctx, "spring")
	fmt.Println("after cancel:", st.State)
	st, _ = c.Retry(ctx, "spring")
	fmt.Println("after retry:", st.State)

	// A code is 404 until its scene has succeeded.
	_, err = c.Code(ctx, "spring", "a/b")
	fmt.Println("code of a/b:", errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound)

	// Output:
	// created: true scenes: 3 state: active
	// created again: false
	// another spec: 409
	// scene 1 "no spaces": scene has a space at character 3: allowed are 0-9 A-Z a-z and !#$&'()*+,/:;=?@-._~
	// after cancel: cancelled
	// after retry: active
	// code of a/b: true
}

func ExampleVerifySignature() {
	secret := []byte("the WXACODE_WEBHOOK_SECRET of the workers")
	body := []byte(`{"event":"campaign.done","campaign":"spring","done":true}`)
	// What a worker sends in X-Wxacode-Signature for this body:
	sig := "sha256=" + hmacHex(secret, body)
	fmt.Println(client.VerifySignature(secret, body, sig))
	fmt.Println(client.VerifySignature(secret, append(body, ' '), sig))
	// Output:
	// true
	// false
}
