//go:build linux

package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
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

// TestFileLayout checks where the image goes, what its metadata record
// holds, and that it is the only file: no second file per image, no
// temporary file left.
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
	p := filepath.Join(root, "spring", "sku000123.jpg")
	b, err := os.ReadFile(p)
	if err != nil || string(b) != string(body) {
		t.Fatalf("image file: %v", err)
	}
	buf := make([]byte, 1024)
	n, err := unix.Getxattr(p, metaXattr, buf)
	if err != nil {
		t.Fatalf("metadata record: %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{"wxacode-meta-2", "image/jpeg", strconv.Itoa(len(body)), strconv.FormatInt(fi.ModTime().UnixNano(), 10),
		sha(body), "sku000123", "pages/item/item", "wxapp", ""}, "\n")
	if diff := cmp.Diff(want, string(buf[:n])); diff != "" {
		t.Errorf("metadata record (-want +got):\n%s", diff)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{filepath.Join("spring", "sku000123.jpg")}, files); diff != "" {
		t.Errorf("files in the folder (-want +got):\n%s", diff)
	}
}

// TestFileCrashLeftovers plays the states a crash (or a hand) can leave
// and checks that nothing wrong is reported.
// TestFileReadsVersion1Meta: a record written before paths were recorded
// still describes its image.
func TestFileReadsVersion1Meta(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s, err := NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	body := testImage(t, "jpg", 4)
	if _, err := s.Put(t.Context(), "old/a.jpg", body, Meta{Scene: "a"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "old", "a.jpg")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	v1 := strings.Join([]string{"wxacode-meta-1", "image/jpeg", strconv.Itoa(len(body)), strconv.FormatInt(fi.ModTime().UnixNano(), 10),
		sha(body), "a", "pages/p", "wxold"}, "\n")
	if err := unix.Setxattr(p, metaXattr, []byte(v1), 0); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Stat(t.Context(), "old/a.jpg")
	if err != nil || obj.Meta != (Meta{Scene: "a", Page: "pages/p", AppID: "wxold"}) || obj.SHA256 != sha(body) {
		t.Errorf("Stat of a version-1 record = %+v, %v", obj, err)
	}
}

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

	t.Run("image rewritten in place, metadata not", func(t *testing.T) {
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

	t.Run("metadata lost", func(t *testing.T) {
		if err := unix.Removexattr(filepath.Join(root, "c", "a.jpg"), metaXattr); err != nil {
			t.Fatal(err)
		}
		obj, err := s.Stat(ctx, "c/a.jpg")
		if err != nil {
			t.Fatal(err)
		}
		if obj.SHA256 != sha(fresh) || obj.Meta != (Meta{Scene: "a"}) {
			t.Errorf("Stat without metadata = %+v, want sha256 of the file and the scene from the key", obj)
		}
		// Putting it again restores the metadata.
		if _, err := s.Put(ctx, "c/a.jpg", fresh, meta); err != nil {
			t.Fatal(err)
		}
		if obj, err := s.Stat(ctx, "c/a.jpg"); err != nil || obj.Meta != meta {
			t.Errorf("Stat after re-put: %+v, %v", obj, err)
		}
	})

	t.Run("bytes changed behind the metadata", func(t *testing.T) {
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

// TestFileRefusesLinks checks that the store follows no symbolic link
// inside its folder, to a place outside it or inside it: Put, Stat and Get
// fail with an error naming the link, nothing is written through it, and
// List does not list what lies behind it.
func TestFileRefusesLinks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	jpg := testImage(t, "jpg", 1)
	for _, tc := range []struct {
		name string
		link string // the link, relative to the root
		to   func(root, outside string) string
		key  string
	}{
		{"folder linked outside", "evil", func(_, out string) string { return out }, "evil/a.jpg"},
		{"file linked outside", "c/x.jpg", func(_, out string) string { return filepath.Join(out, "a.jpg") }, "c/x.jpg"},
		{"folder linked inside", "alias", func(root, _ string) string { return filepath.Join(root, "c") }, "alias/b.jpg"},
		{"file linked inside", "c/y.jpg", func(root, _ string) string { return filepath.Join(root, "c", "z.jpg") }, "c/y.jpg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, outside := t.TempDir(), t.TempDir()
			s, err := NewFile(root)
			if err != nil {
				t.Fatal(err)
			}
			// A real object, and a file outside that a link could reach.
			if _, err := s.Put(ctx, "c/z.jpg", jpg, Meta{Scene: "z"}); err != nil {
				t.Fatal(err)
			}
			decoy := []byte("outside: must stay as it is")
			if err := os.WriteFile(filepath.Join(outside, "a.jpg"), decoy, 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, root, outside)
			link := filepath.Join(root, filepath.FromSlash(tc.link))
			if err := os.Symlink(tc.to(root, outside), link); err != nil {
				t.Fatal(err)
			}
			linkName := filepath.FromSlash(tc.link)

			_, err = s.Put(ctx, tc.key, testImage(t, "jpg", 2), Meta{Scene: "x"})
			if err == nil || !strings.Contains(err.Error(), linkName+" is a symbolic link") {
				t.Errorf("Put(%q) = %v, want an error naming the link %s", tc.key, err, linkName)
			}
			if _, err := s.Stat(ctx, tc.key); err == nil || !strings.Contains(err.Error(), "symbolic link") || errors.Is(err, ErrNotFound) {
				t.Errorf("Stat(%q) = %v, want an error naming the link", tc.key, err)
			}
			if _, _, err := s.Get(ctx, tc.key); err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("Get(%q) = %v, want an error naming the link", tc.key, err)
			}
			var listed []string
			if err := s.List(ctx, "", func(o Object) error { listed = append(listed, o.Name); return nil }); err != nil {
				t.Errorf("List: %v", err)
			}
			if diff := cmp.Diff([]string{"c/z.jpg"}, listed); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was replaced or removed: %v", err)
			}
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, snapshot(t, root, outside)); diff != "" {
				t.Errorf("files changed through the link (-before +after):\n%s", diff)
			}
		})
	}
}

// snapshot maps every file under the folders to its contents.
func snapshot(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			m[p] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
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
