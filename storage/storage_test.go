package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wxacode/wxacode/internal/testenv"
)

func TestMain(m *testing.M) {
	warmMinIO()
	testenv.Main(m)
}

// warmMinIO starts the shared MinIO server before the tests and waits until
// it creates buckets. Its health check can pass while its S3 API still
// answers 503 XMinioServerNotInitialized, which fails the first
// testenv.NewMinIO; testing.Benchmark gives a throwaway testing.TB whose
// failure is only a signal to try again.
func warmMinIO() {
	for range 100 {
		r := testing.Benchmark(func(b *testing.B) {
			if b.N == 1 {
				testenv.NewMinIO(b)
			}
		})
		if r.N > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testImage draws a small real image, different for each seed.
func testImage(t testing.TB, format string, seed int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 24, 24))
	for y := 0; y < 24; y++ {
		for x := 0; x < 24; x++ {
			img.Set(x, y, color.RGBA{uint8(x * seed), uint8(y + seed), uint8(seed >> 8), 255})
		}
	}
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	default:
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// envFunc serves a test's environment list to Options.Getenv, so tests
// running in parallel never touch the process environment.
func envFunc(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// backend opens a fresh, empty store of one kind for a test.
type backend struct {
	name string
	open func(t *testing.T) Store
}

func backends() []backend {
	return []backend{
		{"file", func(t *testing.T) Store {
			s, err := Open(testCtx(t, 10*time.Second), "file://"+t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"minio", func(t *testing.T) Store {
			m := testenv.NewMinIO(t)
			s, err := Open(testCtx(t, 20*time.Second), "s3://"+m.Bucket, Options{Getenv: envFunc(m.Env())})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

// TestStore runs the same behaviour tests on every backend.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range storeTests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, be.open(t))
				})
			}
		})
	}
}

var storeTests = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"RoundTrip", testRoundTrip},
	{"RefusesWhatIsNotAnImage", testRefusesNonImage},
	{"RefusesUnsafeKeys", testRefusesUnsafeKeys},
	{"NotFound", testNotFound},
	{"IdempotentPut", testIdempotentPut},
	{"ConcurrentPuts", testConcurrentPuts},
	{"ListPrefix", testListPrefix},
	{"TrickyScenes", testTrickyScenes},
	{"Paths", testPaths},
}

// testPaths stores codes of interfaces A and C: paths with query syntax,
// UTF-8, and one too long to stay readable, under a store prefix too.
func testPaths(t *testing.T, s Store) {
	ctx := testCtx(t, 30*time.Second)
	body := testImage(t, "png", 3)
	long := "pages/item/item?" + strings.Repeat("k=v&", 251) + "end=1" // 1025 bytes before trimming
	long = long[:1024]
	paths := []string{
		"pages/item/item?id=42&ref=a/b",
		"pages/商品/index?名=值",
		"../../etc/passwd?x=%2e%2e",
		long,
	}
	for _, p := range paths {
		key := Key("Spring.2026", p, "png")
		meta := Meta{Path: MetaPath(p), AppID: "wx1234567890abcdef"}
		if _, err := s.Put(ctx, key, body, meta); err != nil {
			t.Fatalf("path %q: %v", p, err)
		}
		got, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatalf("path %q: %v", p, err)
		}
		if got.Meta != meta || got.SHA256 != sha(body) {
			t.Errorf("path %q: Stat meta %+v sha %s, want %+v %s", p, got.Meta, got.SHA256, meta, sha(body))
		}
	}
	want := map[string]bool{
		"!spring(2e)2026/pages(2f)item(2f)item(3f)id(3d)42(26)ref(3d)a(2f)b.png":         true,
		"!spring(2e)2026/(2e)(2e)(2f)(2e)(2e)(2f)etc(2f)passwd(3f)x(3d)(25)2e(25)2e.png": true,
	}
	var names []string
	err := s.List(ctx, "", func(o Object) error {
		names = append(names, o.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(paths) {
		t.Errorf("listed %d objects %q, want %d", len(names), names, len(paths))
	}
	digest := 0
	for _, n := range names {
		if strings.HasPrefix(n, "!spring(2e)2026/_sha256/") {
			digest++
		}
		delete(want, n)
	}
	if digest != 1 || len(want) > 0 {
		t.Errorf("listed %q: want one digest key and the readable keys %v", names, want)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	for _, format := range []string{"jpg", "png"} {
		body := testImage(t, format, 7)
		key := Key("spring", "SKU:000123/a", format)
		meta := Meta{Scene: "SKU:000123/a", Page: "pages/item/item", AppID: "wx1234567890abcdef"}
		ctype := map[string]string{"jpg": "image/jpeg", "png": "image/png"}[format]
		got, err := s.Put(ctx, key, body, meta)
		if err != nil {
			t.Fatal(err)
		}
		want := Object{Key: fullKey(s, key), Name: key, ContentType: ctype, Size: int64(len(body)), SHA256: sha(body), Meta: meta}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Put (-want +got):\n%s", diff)
		}
		got, err = s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Stat (-want +got):\n%s", diff)
		}
		b, got, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, body) {
			t.Errorf("Get returned %d bytes, not the %d put", len(b), len(body))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Get (-want +got):\n%s", diff)
		}
	}
}

// fullKey is the key export shows: the store's prefix and the name.
func fullKey(s Store, name string) string {
	if s3s, ok := s.(*S3Store); ok {
		return s3s.prefix + name
	}
	return name
}

func testRefusesNonImage(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	jpg := testImage(t, "jpg", 1)
	for _, tc := range []struct {
		name, key string
		body      []byte
	}{
		{"wechat json error", Key("c", "a", "jpg"), []byte(`{"errcode":40169,"errmsg":"invalid length for scene"}`)},
		{"empty", Key("c", "b", "jpg"), nil},
		{"html", Key("c", "c", "jpg"), []byte("<html><body>502 Bad Gateway</body></html>")},
		{"truncated magic", Key("c", "d", "png"), []byte{0x89, 'P', 'N'}},
		{"extension does not match", Key("c", "e", "png"), jpg},
		{"no extension", Key("c", "f", ""), jpg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Put(ctx, tc.key, tc.body, Meta{Scene: "x"})
			if err == nil {
				t.Fatalf("Put(%q) stored a body that must be refused", tc.key)
			}
			if !strings.HasPrefix(err.Error(), "put "+tc.key+": ") {
				t.Errorf("error %q does not start with put KEY", err)
			}
			if _, err := s.Stat(ctx, tc.key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat after a refused Put: %v, want ErrNotFound", err)
			}
		})
	}
	if _, err := s.Put(ctx, Key("c", "g", "jpg"), jpg, Meta{Page: "pages/é"}); err == nil {
		t.Error("Put took a non-ASCII metadata value")
	}
	if n := count(t, s, ""); n != 0 {
		t.Errorf("%d objects stored, want none", n)
	}
}

func count(t *testing.T, s Store, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(testCtx(t, 20*time.Second), prefix, func(Object) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func testRefusesUnsafeKeys(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	jpg := testImage(t, "jpg", 1)
	for _, key := range []string{
		"", "a.jpg/", "/abs.jpg", "../x.jpg", "a/../../x.jpg", "a/./x.jpg", "a//x.jpg",
		`..\x.jpg`, "a\\b.jpg", "C:x.jpg", "con.jpg", "spring/LPT1.jpg", "spring/aux.tar.jpg",
		"Spring/x.jpg", "a/.hidden.jpg", "a/x..jpg", "a/x.jpg.", "a b.jpg", "a?b.jpg", "a%2f.jpg",
		strings.Repeat("x", 300) + ".jpg",
	} {
		if _, err := s.Put(ctx, key, jpg, Meta{}); err == nil {
			t.Errorf("Put(%q) accepted an unsafe key", key)
		}
		if _, err := s.Stat(ctx, key); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want a key error", key, err)
		}
	}
	if n := count(t, s, ""); n != 0 {
		t.Errorf("%d objects stored, want none", n)
	}
}

func testNotFound(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	key := Key("spring", "missing", "jpg")
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
}

func testIdempotentPut(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	body := testImage(t, "jpg", 3)
	key := Key("spring", "again", "jpg")
	meta := Meta{Scene: "again", Page: "pages/a/a", AppID: "wxapp"}
	first, err := s.Put(ctx, key, body, meta)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := s.Put(ctx, key, body, meta)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, again); diff != "" {
			t.Errorf("second Put (-first +again):\n%s", diff)
		}
	}
	// A new image for the same key (a regenerated code) replaces the old.
	other := testImage(t, "jpg", 4)
	if _, err := s.Put(ctx, key, other, meta); err != nil {
		t.Fatal(err)
	}
	b, obj, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, other) || obj.SHA256 != sha(other) {
		t.Error("Get after replacing the image returned the old one")
	}
	if n := count(t, s, ""); n != 1 {
		t.Errorf("%d objects after re-puts, want 1", n)
	}
}

func testConcurrentPuts(t *testing.T, s Store) {
	ctx := testCtx(t, 40*time.Second)
	const n = 200
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = testImage(t, "jpg", i)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			scene := fmt.Sprintf("sku%06d", i)
			if i%10 == 0 {
				// Some scenes twice at once, as two workers might.
				_, errs[i] = s.Put(ctx, Key("spring", "dup", "jpg"), bodies[0], Meta{Scene: "dup"})
				if errs[i] != nil {
					return
				}
			}
			_, errs[i] = s.Put(ctx, Key("spring", scene, "jpg"), bodies[i], Meta{Scene: scene})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	err := s.List(ctx, "spring/", func(o Object) error {
		seen[o.Name] = o.SHA256
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n+1 {
		t.Errorf("listed %d objects, want %d", len(seen), n+1)
	}
	for i := range n {
		if got := seen[Key("spring", fmt.Sprintf("sku%06d", i), "jpg")]; got != sha(bodies[i]) {
			t.Errorf("scene %d: listed sha256 %q, want %q", i, got, sha(bodies[i]))
		}
	}
}

func testListPrefix(t *testing.T, s Store) {
	ctx := testCtx(t, 20*time.Second)
	jpg, png := testImage(t, "jpg", 1), testImage(t, "png", 2)
	keys := []string{
		Key("spring", "a", "jpg"), Key("spring", "b", "png"), Key("spring2", "a", "jpg"),
		Key("summer", "a", "jpg"),
	}
	for _, k := range keys {
		body := jpg
		if strings.HasSuffix(k, ".png") {
			body = png
		}
		if _, err := s.Put(ctx, k, body, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", keys},
		{"spring/", keys[:2]},
		{"spring", keys[:3]},
		{"spring/b", keys[1:2]},
		{"s", keys},
		{"winter/", nil},
		{"../", nil},
	} {
		var got []string
		err := s.List(ctx, tc.prefix, func(o Object) error {
			got = append(got, o.Name)
			if o.Key != fullKey(s, o.Name) {
				t.Errorf("listed Key %q, Name %q", o.Key, o.Name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, "", func(Object) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with fn failing: err %v after %d calls, want stop after 1", err, n)
	}
}

// trickyScenes are valid scenes that are hard to store: path syntax,
// device names, case twins, every special character.
var trickyScenes = []string{
	"..", ".", "...", "con", "CON", "Con", "nul", "com1", "LPT9", "aux", "prn",
	"a/b", "a/../b", "/", "//", "~", "~root", "ABC", "abc", "aBc",
	"x.", "x..", ".x", "id=42&x=1", "a:b", "C:", "?", "#", "!x", "!", "(2e)", "(", ")",
	"*", "'", "$HOME", "@", ";", ",", "+", "-", "_", "a-b_c.d",
	"!#$&'()*+,/:;=?@-._~", "00000000000000000000000000000000",
}

func testTrickyScenes(t *testing.T, s Store) {
	ctx := testCtx(t, 30*time.Second)
	body := testImage(t, "jpg", 5)
	for _, scene := range trickyScenes {
		key := Key("Spring/2026", scene, "jpg")
		if _, err := s.Put(ctx, key, body, Meta{Scene: scene}); err != nil {
			t.Fatalf("scene %q: %v", scene, err)
		}
	}
	got := map[string]bool{}
	err := s.List(ctx, "", func(o Object) error {
		campaign, scene, ext, err := DecodeKey(o.Name)
		if err != nil {
			return err
		}
		if campaign != "Spring/2026" || ext != "jpg" || scene != o.Meta.Scene {
			t.Errorf("key %q decodes to %q %q %q, meta scene %q", o.Name, campaign, scene, ext, o.Meta.Scene)
		}
		got[scene] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(trickyScenes) {
		t.Errorf("listed %d scenes, want %d", len(got), len(trickyScenes))
	}
}
