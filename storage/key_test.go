package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wxacode/wxacode/wechat"
)

func ExampleKey() {
	for _, scene := range []string{"sku000123", "SKU-7", "a/b", "..", "con", "CON", "id=42&x=1"} {
		fmt.Println(Key("spring", scene, "jpg"))
	}
	// Output:
	// spring/sku000123.jpg
	// spring/!s!k!u-7.jpg
	// spring/a(2f)b.jpg
	// spring/(2e)(2e).jpg
	// spring/(63)on.jpg
	// spring/!c!o!n.jpg
	// spring/id(3d)42(26)x(3d)1.jpg
}

func ExampleDecodeKey() {
	campaign, scene, ext, err := DecodeKey("spring/id(3d)42(26)x(3d)1.jpg")
	fmt.Println(campaign, scene, ext, err)
	// Output: spring id=42&x=1 jpg <nil>
}

func TestKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ campaign, scene, ext, want string }{
		{"spring", "sku000123", "jpg", "spring/sku000123.jpg"},
		{"spring", "sku000123", "png", "spring/sku000123.png"},
		{"Spring 2026", "a.b", "jpg", "!spring(20)2026/a(2e)b.jpg"},
		{"spring", ".", "jpg", "spring/(2e).jpg"},
		{"spring", "~", "jpg", "spring/(7e).jpg"},
		{"spring", `..\x`, "jpg", "spring/(2e)(2e)(5c)x.jpg"},
		{"spring", "com1", "jpg", "spring/(63)om1.jpg"},
		{"spring", "lpt0", "jpg", "spring/(6c)pt0.jpg"},
		{"spring", "com10", "jpg", "spring/com10.jpg"},
		{"spring", "console", "jpg", "spring/console.jpg"},
		{"nul", "aux", "jpg", "(6e)ul/(61)ux.jpg"},
		{"spring", "(2e)", "jpg", "spring/(28)2e(29).jpg"},
		{"spring", "!x", "jpg", "spring/(21)x.jpg"},
		{"spring", "é", "jpg", "spring/(c3)(a9).jpg"},
	} {
		if got := Key(tc.campaign, tc.scene, tc.ext); got != tc.want {
			t.Errorf("Key(%q, %q, %q) = %q, want %q", tc.campaign, tc.scene, tc.ext, got, tc.want)
		}
	}
}

func TestKeyDigest(t *testing.T) {
	t.Parallel()
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	fits := strings.Repeat("a", MaxSegmentLen-len(".jpg"))
	over := fits + "a"
	escaped := strings.Repeat("?", 63) // 63*4 = 252 bytes, with ".jpg" 256
	long := "pages/p/p?" + strings.Repeat("x", 1014)
	for _, tc := range []struct{ name, scene, want string }{
		{"plain fits", fits, "spring/" + fits + ".jpg"},
		{"one byte over", over, "spring/_sha256/" + sum(over) + ".jpg"},
		{"escapes over", escaped, "spring/_sha256/" + sum(escaped) + ".jpg"},
		{"path of 1024 bytes", long, "spring/_sha256/" + sum(long) + ".jpg"},
		{"readable name _sha256", "_sha256", "spring/_sha256.jpg"},
	} {
		got := Key("spring", tc.scene, "jpg")
		if got != tc.want {
			t.Errorf("%s: Key = %q, want %q", tc.name, got, tc.want)
		}
		if err := checkKey(got); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The longest campaign name with a digest key leaves 512 bytes for a
	// prefix within S3's 1024.
	name := strings.Repeat(".", 64)
	if k := Key(name, long, "png"); len(k) > 512 {
		t.Errorf("key of %d bytes: want at most 512", len(k))
	}
	if _, _, _, err := DecodeKey(Key("spring", over, "jpg")); err == nil {
		t.Error("DecodeKey of a digest key: want an error")
	}
}

func TestMetaPath(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 400) // 800 bytes, 2400 encoded
	h := sha256.Sum256([]byte(long))
	for _, tc := range []struct{ path, want string }{
		{"pages/a/a?id=1&x=y", "pages/a/a?id=1&x=y"},
		{"pages/a/a?q=50%", "pages/a/a?q=50%25"},
		{"pages/é", "pages/%C3%A9"},
		{long, "sha256:" + hex.EncodeToString(h[:])},
	} {
		if got := MetaPath(tc.path); got != tc.want {
			t.Errorf("MetaPath(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestDecodeKeyRefuses(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"", "spring", "spring/", "/a.jpg", "spring/a/b.jpg", "spring/A.jpg", "spring/!A.jpg", "spring/!.jpg",
		"spring/(2E).jpg", "spring/(2e.jpg", "spring/(zz).jpg", "spring/(61).jpg", "spring/con.jpg",
		"spring/a.b.jpg", "spring/a.jpg.", "spring/a b.jpg",
	} {
		if c, s, e, err := DecodeKey(key); err == nil {
			t.Errorf("DecodeKey(%q) = %q %q %q, want an error", key, c, s, e)
		}
	}
}

// keyPattern is everything a key may be: two names and an extension in the
// key alphabet, lowercase only.
var keyPattern = regexp.MustCompile(`^[a-z0-9_!()-]+/[a-z0-9_!()-]+\.(jpg|png)$`)

// FuzzKey checks, for any valid scene, that its key is in the key alphabet,
// deterministic, safe on Windows, decodes back, differs from any other
// scene's key even case-folded, and that the file store keeps it inside
// its root.
func FuzzKey(f *testing.F) {
	for _, s := range trickyScenes {
		f.Add(s, strings.ToUpper(s))
	}
	for _, pair := range [][2]string{
		{"..", "."}, {".", "~"}, {"con", "CON"}, {"a/b", `..\x`}, {`..\x`, "../x"}, {"~", "~1"},
		{"ABC", "abc"}, {"sku000123", "SKU000123"}, {"(2e)", "."}, {"!a", "A"}, {"(61)", "a"},
	} {
		f.Add(pair[0], pair[1])
	}
	f.Fuzz(func(t *testing.T, scene, other string) {
		if wechat.ValidateScene(scene) != nil {
			return
		}
		for _, ext := range []string{"jpg", "png"} {
			key := Key("spring", scene, ext)
			if !keyPattern.MatchString(key) {
				t.Fatalf("Key(%q) = %q: outside the key alphabet", scene, key)
			}
			if again := Key("spring", scene, ext); again != key {
				t.Fatalf("Key(%q) not deterministic: %q then %q", scene, key, again)
			}
			if err := checkKey(key); err != nil {
				t.Fatalf("Key(%q) = %q, refused by stores: %v", scene, key, err)
			}
			c, s, e, err := DecodeKey(key)
			if err != nil || c != "spring" || s != scene || e != ext {
				t.Fatalf("DecodeKey(%q) = %q %q %q %v, want spring %q %s", key, c, s, e, err, scene, ext)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(key, "spring/"), "."+ext)
			if base, _, _ := strings.Cut(name, "."); reservedName(strings.ToLower(base)) {
				t.Fatalf("Key(%q) = %q: a Windows device name", scene, key)
			}
			if strings.ContainsAny(key, `<>:"\|?*`) || strings.HasSuffix(name, " ") {
				t.Fatalf("Key(%q) = %q: not a Windows file name", scene, key)
			}
		}
		if wechat.ValidateScene(other) == nil && other != scene {
			a, b := Key("spring", scene, "jpg"), Key("spring", other, "jpg")
			if strings.EqualFold(a, b) {
				t.Fatalf("scenes %q and %q share key %q / %q (case-folded)", scene, other, a, b)
			}
		}
		checkFileStoreStaysInside(t, Key("spring", scene, "jpg"))
	})
}

// fuzzJPEG is a minimal body the stores take for a JPEG.
var fuzzJPEG = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0, 0xFF, 0xD9}

// checkFileStoreStaysInside puts key in a file store and checks that the
// image landed at root/key and nothing was written beside root.
func checkFileStoreStaysInside(t *testing.T, key string) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	s, err := NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, key, fuzzJPEG, Meta{}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "root" {
		t.Fatalf("key %q: the store wrote beside its root: %v", key, entries)
	}
	want := filepath.Join(root, filepath.FromSlash(key))
	if rel, err := filepath.Rel(root, want); err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("key %q: path %s is outside %s", key, want, root)
	}
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("key %q: image not at %s: %v", key, want, err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != want { // the image, its metadata on it
		t.Fatalf("key %q: files under root %v, want only %s", key, files, want)
	}
}
