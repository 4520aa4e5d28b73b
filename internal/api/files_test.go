package api

import (
	"archive/zip"
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// A campaign whose codes are stored: one code with its ETag (and 304 for
// it), and an archive that holds every code, in export order, and the
// manifest.
func TestCodeAndArchive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	store, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	campaigns := campaign.NewStore(e.r.Client, "")
	prod, err := producer.New(campaigns, asynq.NewClientFromRedisClient(e.r.Client), producer.Config{BatchSize: 7, Ledger: wechat.QuotaLedger{Redis: e.r.Client}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Campaigns: campaigns, Producer: prod, Codes: store})
	if err != nil {
		t.Fatal(err)
	}
	var scenes []string
	for i := range 30 {
		scenes = append(scenes, fmt.Sprintf("s%02d", i))
	}
	scenes[3] = "a/b"
	sum, err := prod.Enqueue(ctx, producer.Spec{Name: "zip", AppID: simulator.DemoAppID, Options: wechat.CodeOptions{Page: "p"}}, scenes)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for i, s := range scenes[:29] { // the last stays pending
		img := image.NewGray(image.Rect(0, 0, 8+i, 8))
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		obj, err := store.Put(ctx, storage.Key("zip", s, "png"), b.Bytes(), storage.Meta{Scene: s})
		if err != nil {
			t.Fatal(err)
		}
		sums[obj.Name] = obj.SHA256
		if _, err := campaigns.MarkSucceeded(ctx, sum.Campaign, int64(i), campaign.Result{ContentType: obj.ContentType, Size: obj.Size, SHA256: obj.SHA256}); err != nil {
			t.Fatal(err)
		}
	}

	serve := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result(), rec.Body.Bytes()
	}
	resp, body := serve("/api/v1/campaigns/zip/codes/a%2Fb")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || etag != `"`+sums[storage.Key("zip", "a/b", "png")]+`"` || len(body) == 0 {
		t.Fatalf("code of a/b = %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := serve("/api/v1/campaigns/zip/codes/a%2Fb", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("code with its ETag = %d, want 304", resp.StatusCode)
	}
	if resp, _ := serve("/api/v1/campaigns/zip/codes/s29"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("code of a pending scene = %d, want 404", resp.StatusCode)
	}

	// A code of interface A is found by its path, percent-encoded.
	path := "pages/item/item?id=42&from=box"
	asum, err := prod.Enqueue(ctx, producer.Spec{Name: "vip", AppID: simulator.DemoAppID, Interface: campaign.InterfaceA}, []string{path, "pages/x"})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := store.Put(ctx, storage.Key("vip", path, "jpg"), []byte("\xff\xd8\xff\xe0 a jpeg"), storage.Meta{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := campaigns.MarkSucceeded(ctx, asum.Campaign, 0, campaign.Result{ContentType: obj.ContentType, Size: obj.Size, SHA256: obj.SHA256}); err != nil {
		t.Fatal(err)
	}
	if resp, body := serve("/api/v1/campaigns/vip/codes/" + url.PathEscape(path)); resp.StatusCode != 200 || resp.Header.Get("ETag") != `"`+obj.SHA256+`"` || !bytes.HasPrefix(body, []byte("\xff\xd8")) {
		t.Errorf("code of path %s = %d %v", path, resp.StatusCode, resp.Header)
	}
	if resp, _ := serve("/api/v1/campaigns/vip/codes/pages%2Fx"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("code of a pending path = %d, want 404", resp.StatusCode)
	}

	resp, body = serve("/api/v1/campaigns/zip/archive.zip")
	if resp.StatusCode != 200 {
		t.Fatalf("archive = %d %s", resp.StatusCode, body)
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "manifest.csv" {
			rc, _ := f.Open()
			m, _ := io.ReadAll(rc)
			rc.Close()
			if n := strings.Count(string(m), "\n"); n != 31 || !strings.Contains(string(m), "s29,,pending") {
				t.Errorf("manifest.csv has %d lines, want a header and 30 rows:\n%s", n, m)
			}
			continue
		}
		if _, ok := sums[f.Name]; !ok {
			t.Errorf("archive entry %s is no stored code", f.Name)
		}
	}
	if len(names) != 30 || names[0] != storage.Key("zip", "s00", "png") || names[3] != storage.Key("zip", "a/b", "png") || names[29] != "manifest.csv" {
		t.Errorf("archive entries %q: want the 29 codes in export order, then manifest.csv", names)
	}
}
