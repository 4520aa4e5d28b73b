package storage

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFileURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want, err string }{
		{"file://./wxacodes", "./wxacodes", ""},
		{"file://wxacodes", "wxacodes", ""},
		{"file:///var/lib/wxacode", "/var/lib/wxacode", ""},
		{"file://localhost/var/lib/wxacode", "/var/lib/wxacode", ""},
		{"file://", "", "STORAGE_URL \"file://\": file:// needs a folder"},
		{"file://./x?y=1", "", "no query"},
		{"ftp://x", "", "want file://DIR or s3://BUCKET[/PREFIX]"},
		{"./wxacodes", "", "want file://DIR or s3://BUCKET[/PREFIX]"},
	} {
		_, rest, _ := strings.Cut(tc.url, "://")
		got, err := parseFileURL(rest)
		if tc.err != "" {
			_, err = Open(t.Context(), tc.url, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "STORAGE_URL") {
				t.Errorf("Open(%q) error %v, want one naming STORAGE_URL and containing %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseFileURL(%q) = %q, %v; want %q", rest, got, err, tc.want)
		}
	}
}

func TestFileStoreString(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(t.Context(), "file://"+dir+"/codes", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "file://"+filepath.ToSlash(dir)+"/codes"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, "codes")); err != nil || !fi.IsDir() {
		t.Errorf("Open did not create the folder: %v", err)
	}
}

// TestFileLayout checks where the image and its sidecar go, what the
// sidecar holds, and that no temporary file is left.
func TestFileLayout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s, err := NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	body := testImage(t, "jpg", 9)
	meta := Meta{Scene: "sku000123", Page: "pages/item/item", AppID: "wxapp"}
	if _, err := s.Put(t.Context(), "spring/sku000123.jpg", body, meta); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "spring", "sku000123.jpg"))
	if err != nil || string(b) != string(body) {
		t.Fatalf("image file: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(root, ".wxacode", "meta", "spring", "sku000123.jpg.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc sidecar
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	sc.ImageMtime = 0
	want := sidecar{ContentType: "image/jpeg", Size: int64(len(body)), SHA256: sha(body), Scene: "sku000123", Page: "pages/item/item", AppID: "wxapp"}
	if diff := cmp.Diff(want, sc); diff != "" {
		t.Errorf("sidecar (-want +got):\n%s", diff)
	}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFileCrashLeftovers plays the states a crash can leave and checks
// that nothing wrong is reported.
func TestFileCrashLeftovers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := t.TempDir()
	s, err := NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	old, fresh := testImage(t, "jpg", 1), testImage(t, "jpg", 2)
	meta := Meta{Scene: "a", Page: "pages/p/p", AppID: "wxapp"}
	if _, err := s.Put(ctx, "c/a.jpg", old, meta); err != nil {
		t.Fatal(err)
	}

	t.Run("half-written temporary file", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(root, "c", ".tmp-0123456789abcdef"), fresh[:10], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "c/b.jpg"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat of a never-renamed image: %v, want ErrNotFound", err)
		}
		if n := count(t, s, ""); n != 1 {
			t.Errorf("listed %d objects, want 1 (temporary files are not objects)", n)
		}
	})

	t.Run("image replaced, sidecar not yet", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(root, "c", "a.jpg"), fresh, 0o644); err != nil {
			t.Fatal(err)
		}
		obj, err := s.Stat(ctx, "c/a.jpg")
		if err != nil {
			t.Fatal(err)
		}
		want := Object{Key: "c/a.jpg", Name: "c/a.jpg", ContentType: "image/jpeg", Size: int64(len(fresh)), SHA256: sha(fresh), Meta: meta}
		if diff := cmp.Diff(want, obj); diff != "" {
			t.Errorf("Stat (-want +got):\n%s", diff)
		}
		if _, got, err := s.Get(ctx, "c/a.jpg"); err != nil || got.SHA256 != sha(fresh) {
			t.Errorf("Get: %v, sha256 %s, want %s", err, got.SHA256, sha(fresh))
		}
	})

	t.Run("sidecar lost", func(t *testing.T) {
		if err := os.Remove(filepath.Join(root, ".wxacode", "meta", "c", "a.jpg.json")); err != nil {
			t.Fatal(err)
		}
		obj, err := s.Stat(ctx, "c/a.jpg")
		if err != nil {
			t.Fatal(err)
		}
		if obj.SHA256 != sha(fresh) || obj.Meta != (Meta{Scene: "a"}) {
			t.Errorf("Stat without sidecar = %+v, want sha256 of the file and the scene from the key", obj)
		}
		// Putting it again restores the sidecar.
		if _, err := s.Put(ctx, "c/a.jpg", fresh, meta); err != nil {
			t.Fatal(err)
		}
		if obj, err := s.Stat(ctx, "c/a.jpg"); err != nil || obj.Meta != meta {
			t.Errorf("Stat after re-put: %+v, %v", obj, err)
		}
	})

	t.Run("bytes changed behind the sidecar", func(t *testing.T) {
		p := filepath.Join(root, "c", "a.jpg")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), fresh...)
		bad[len(bad)/2] ^= 0xff
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Time{}, fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get(ctx, "c/a.jpg"); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("Get of a corrupted file: %v, want a corruption error", err)
		}
	})
}

// TestOpenRelativeFolder opens the default STORAGE_URL, a relative folder.
// Not parallel: it changes the working directory.
func TestOpenRelativeFolder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := Open(t.Context(), "file://./wxacodes", Options{})
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.EvalSymlinks(s.(*FileStore).Root())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(real, "wxacodes"); root != want {
		t.Errorf("root %s, want %s", root, want)
	}
	if !strings.HasPrefix(s.String(), "file:///") {
		t.Errorf("String() = %q, want an absolute file:/// URL", s.String())
	}
}
