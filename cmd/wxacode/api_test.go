package main

// End-to-end tests of the producer API: the built binary's serve and
// worker against real Redis, real MinIO and the simulator, driven through
// package client over real HTTP.

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxacode/wxacode/client"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

// hookReceiver records webhook deliveries; it answers 500 to the first.
type hookReceiver struct {
	mu    sync.Mutex
	got   []hookDelivery
	calls chan struct{}
}

type hookDelivery struct {
	header http.Header
	body   []byte
	code   int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	code := http.StatusOK
	if len(h.got) == 0 {
		code = http.StatusInternalServerError
	}
	h.got = append(h.got, hookDelivery{r.Header.Clone(), b, code})
	h.mu.Unlock()
	w.WriteHeader(code)
	h.calls <- struct{}{}
}

func (h *hookReceiver) deliveries() []hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookDelivery(nil), h.got...)
}

func TestProducerAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	t.Parallel()
	r := testenv.NewRedis(t)
	m := testenv.NewMinIO(t)
	_, base, _ := startSimulator(t, "", "--rate", "3000/10s")
	const token, secret = "api-token-1", "hook-secret-1"
	env := append(m.Env(),
		"STORAGE_URL=s3://"+m.Bucket+"/codes",
		"REDIS_URL="+r.URL,
		"WECHAT_APPID="+simulator.DemoAppID,
		"WECHAT_SECRET="+simulator.DemoSecret,
		"WECHAT_API_BASE="+base,
		"WXACODE_RATE=3000/10s",
		"WXACODE_DASHBOARD_TOKEN="+token,
		"WXACODE_WEBHOOK_SECRET="+secret,
	)
	server := startURL(t, env, "serve", "--addr", "127.0.0.1:0")
	start(t, env, "worker", "--concurrency", "2", "--parallel", "8")

	hooks := &hookReceiver{calls: make(chan struct{}, 16)}
	receiver := httptest.NewServer(hooks)
	t.Cleanup(receiver.Close)

	ctx := t.Context()
	c := client.New(server, token, nil)

	// Auth: without the token every API route is refused.
	if _, err := client.New(server, "", nil).List(ctx); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("List without the token: %v, want 401", err)
	}
	if _, err := client.New(server, "wrong", nil).Status(ctx, "x"); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("Status with a wrong token: %v, want 401", err)
	}

	// A bad scene at a known index: 400, nothing written.
	_, _, err := c.Create(ctx, "api", client.Campaign{Page: "pages/p/index", Scenes: []string{"s1", "s2", "bad scene", "s3"}})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || len(apiErr.Scenes) != 1 || apiErr.Scenes[0].Index != 2 {
		t.Fatalf("Create with a bad scene at index 2: %v %+v", err, apiErr)
	}
	if _, err := c.Status(ctx, "api"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("Status after a refused create: %v, want 404", err)
	}

	scenes := []string{"a/b", "x=1&y=2", "..", "sku.001"}
	for i := range 36 {
		scenes = append(scenes, fmt.Sprintf("api%03d", i))
	}
	want := client.Campaign{Page: "pages/p/index", Scenes: scenes, Webhook: receiver.URL + "/hook?k=v"}
	st, created, err := c.Create(ctx, "api", want)
	if err != nil || !created || st.Total != int64(len(scenes)) {
		t.Fatalf("Create = %+v, %v, %v; want created with %d scenes", st, created, err, len(scenes))
	}
	if _, created, err := c.Create(ctx, "api", want); err != nil || created {
		t.Errorf("the same Create again: created %v, %v; want found", created, err)
	}
	other := want
	other.Page = "pages/other/index"
	if _, _, err := c.Create(ctx, "api", other); !isStatus(err, http.StatusConflict) {
		t.Errorf("Create of another spec under the name: %v, want 409", err)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for !st.Done {
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done in 2 minutes: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
		if st, err = c.Status(ctx, "api"); err != nil {
			t.Fatal(err)
		}
	}
	if st.Succeeded != int64(len(scenes)) {
		t.Fatalf("final status %+v: want every scene succeeded", st)
	}

	// The export, and codes whose bytes match their rows.
	var jl bytes.Buffer
	if err := c.Export(ctx, "api", "jsonl", &jl); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Scene, Status, Key, ContentType, SHA256 string
		Size                                    int64
	}
	rows := map[string]row{}
	sc := bufio.NewScanner(&jl)
	for sc.Scan() {
		var x struct {
			Scene       string `json:"scene"`
			Status      string `json:"status"`
			Key         string `json:"key"`
			ContentType string `json:"content_type"`
			Size        int64  `json:"size"`
			SHA256      string `json:"sha256"`
		}
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatal(err)
		}
		rows[x.Scene] = row{x.Scene, x.Status, x.Key, x.ContentType, x.SHA256, x.Size}
	}
	if len(rows) != len(scenes) {
		t.Fatalf("export has %d rows, want %d", len(rows), len(scenes))
	}
	for _, s := range []string{"a/b", "x=1&y=2", "..", "api007"} {
		code, err := c.Code(ctx, "api", s)
		if err != nil {
			t.Fatalf("Code(%q): %v", s, err)
		}
		sum := sha256.Sum256(code.Body)
		rw := rows[s]
		if hex.EncodeToString(sum[:]) != rw.SHA256 || code.SHA256 != rw.SHA256 || code.ContentType != rw.ContentType || int64(len(code.Body)) != rw.Size {
			t.Errorf("code of %q: sha256 %x, ETag %s, %s, %d bytes; export row %+v", s, sum, code.SHA256, code.ContentType, len(code.Body), rw)
		}
	}
	if _, err := c.Code(ctx, "api", "not-a-scene-here"); !isStatus(err, http.StatusNotFound) {
		t.Errorf("Code of an unknown scene: %v, want 404", err)
	}

	// The archive: one entry per succeeded row, under its key, with its
	// bytes; manifest.csv equal to the CSV export.
	var zbuf, csvExport bytes.Buffer
	if err := c.Archive(ctx, "api", &zbuf); err != nil {
		t.Fatal(err)
	}
	if err := c.Export(ctx, "api", "csv", &csvExport); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zbuf.Bytes()), int64(zbuf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]row{}
	for _, rw := range rows {
		byKey[strings.TrimPrefix(rw.Key, "codes/")] = rw
	}
	var manifest []byte
	codes := 0
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == "manifest.csv" {
			manifest = b
			continue
		}
		rw, ok := byKey[f.Name]
		sum := sha256.Sum256(b)
		if !ok || hex.EncodeToString(sum[:]) != rw.SHA256 {
			t.Errorf("archive entry %s (sha256 %x) matches no export row", f.Name, sum)
		}
		codes++
	}
	if codes != len(scenes) || !bytes.Equal(manifest, csvExport.Bytes()) {
		t.Errorf("archive: %d codes (want %d); manifest.csv equal to the export: %v", codes, len(scenes), bytes.Equal(manifest, csvExport.Bytes()))
	}
	if recs, err := csv.NewReader(bytes.NewReader(manifest)).ReadAll(); err != nil || len(recs) != len(scenes)+1 {
		t.Errorf("manifest.csv: %d records, %v", len(recs), err)
	}

	// The webhook: refused once with 500, delivered again, signed.
	for range 2 {
		select {
		case <-hooks.calls:
		case <-time.After(90 * time.Second):
			t.Fatalf("webhook deliveries so far: %d, want 2", len(hooks.deliveries()))
		}
	}
	ds := hooks.deliveries()
	if ds[0].code != 500 || ds[1].code != 200 {
		t.Fatalf("deliveries answered %d then %d", ds[0].code, ds[1].code)
	}
	for i, d := range ds {
		if !client.VerifySignature([]byte(secret), d.body, d.header.Get(client.HeaderSignature)) {
			t.Errorf("delivery %d: signature %q does not verify", i, d.header.Get(client.HeaderSignature))
		}
		if client.VerifySignature([]byte("other"), d.body, d.header.Get(client.HeaderSignature)) {
			t.Errorf("delivery %d verifies under another secret", i)
		}
		if d.header.Get(client.HeaderEvent) != "campaign.done" || d.header.Get(client.HeaderDelivery) == "" {
			t.Errorf("delivery %d headers %v", i, d.header)
		}
		var ev client.Event
		if err := json.Unmarshal(d.body, &ev); err != nil || ev.Event != "campaign.done" || ev.Campaign != "api" || !ev.Done || ev.Succeeded != int64(len(scenes)) {
			t.Errorf("delivery %d body %s (%v)", i, d.body, err)
		}
	}
	if ds[0].header.Get(client.HeaderDelivery) != ds[1].header.Get(client.HeaderDelivery) || !bytes.Equal(ds[0].body, ds[1].body) {
		t.Error("the redelivery differs from the first attempt: want the same delivery ID and body")
	}
	time.Sleep(2 * time.Second)
	if n := len(hooks.deliveries()); n != 2 {
		t.Errorf("%d deliveries, want 2 (one event, delivered once after one refusal)", n)
	}

	// enqueue --webhook does the same from the command line.
	if out, errOut, code := run(t, env, "c1\nc2\n", "enqueue", "--campaign", "cli", "--page", "pages/p/index", "--scenes", "-", "--webhook", receiver.URL+"/cli"); code != 0 {
		t.Fatalf("enqueue --webhook: exit %d %s %s", code, out, errOut)
	}
	select {
	case <-hooks.calls:
	case <-time.After(90 * time.Second):
		t.Fatal("no delivery for the campaign enqueued with --webhook")
	}
	if ds := hooks.deliveries(); len(ds) != 3 || !strings.Contains(string(ds[2].body), `"campaign":"cli"`) || ds[2].code != 200 {
		t.Errorf("deliveries %d; the last %s", len(ds), ds[len(ds)-1].body)
	}

	// The README's producer section, run as written.
	runReadme(t, server, token)
}

func isStatus(err error, code int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.StatusCode == code
}

// runReadme runs the first sh block of README.md's producer API section
// with bash against the server.
func runReadme(t *testing.T, server, token string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### The producer API")
	_, block, ok2 := strings.Cut(section, "```sh\n")
	block, _, ok3 := strings.Cut(block, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no sh block in its producer API section")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WXACODE_URL=" + strings.TrimRight(server, "/"), "WXACODE_DASHBOARD_TOKEN=" + token}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README's curl calls failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"campaign":"readme"`, `"state":"cancelled"`, `"scene":"a/b"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README's curl calls printed no %s:\n%s", want, out)
		}
	}
}
