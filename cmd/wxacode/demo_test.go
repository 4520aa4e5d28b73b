package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxacode/wxacode/simulator"
	"github.com/wxacode/wxacode/storage"
)

func TestDemoCodesDecodeToTheirScenes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Main([]string{"demo", "--out", dir, "--addr", "127.0.0.1:0", "--scenes", "120", "--rate", "600/10s"}, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	t.Logf("demo took %s:\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	if code != 0 {
		t.Fatalf("demo exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"120 codes stored, 0 failed", "dashboard: http://127.0.0.1:", "codes: " + filepath.Join(dir, "demo")} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "demo", "*.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 120 {
		t.Fatalf("%d images written, want 120", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		page, scene, err := simulator.DecodeImage(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		_, want, _, err := storage.DecodeKey("demo/" + filepath.Base(f))
		if err != nil || scene != want || page != "pages/index/index" {
			t.Fatalf("%s decodes to page %q scene %q, want scene %q (%v)", f, page, scene, want, err)
		}
	}
}
