package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// metaDir is the folder, under a FileStore's root, that holds one JSON
// sidecar per image at the same relative path plus ".json". It starts with
// a dot so no key can name it and the image folders stay clean.
const metaDir = ".wxacode/meta"

// FileStore keeps code images as files in a local folder: the image of key
// "spring/sku000123.jpg" is DIR/spring/sku000123.jpg, its metadata
// DIR/.wxacode/meta/spring/sku000123.jpg.json. Every file is written to a
// temporary file in its final folder, synced, renamed over its final name
// and the folder synced, so a crash never leaves a truncated image under
// its final name (at worst a hidden .tmp-* file, which List ignores).
//
// A FileStore is safe for concurrent use, also by several processes
// sharing the folder.
type FileStore struct {
	root string // absolute
}

// sidecar is the JSON kept beside an image. ImageSize and ImageMtime pin
// the image file it describes: if the image changed without its sidecar
// (a crash between the two renames), the store derives what it reports from
// the image itself.
type sidecar struct {
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Scene       string `json:"scene"`
	Page        string `json:"page"`
	AppID       string `json:"appid"`
	ImageMtime  int64  `json:"image_mtime_ns"`
}

// NewFile opens (creating it if needed) the folder dir as a store.
func NewFile(dir string) (*FileStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &FileStore{root: abs}, nil
}

// String returns the store's file:// URL with an absolute path.
func (s *FileStore) String() string {
	p := filepath.ToSlash(s.root)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // Windows: file:///C:/dir
	}
	return "file://" + p
}

// Root returns the store's folder, absolute.
func (s *FileStore) Root() string { return s.root }

func (s *FileStore) imagePath(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *FileStore) metaPath(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(metaDir), filepath.FromSlash(key)+".json")
}

// Put writes the image and then its sidecar, each atomically. An identical
// object already stored is left as it is.
func (s *FileStore) Put(ctx context.Context, key string, body []byte, meta Meta) (Object, error) {
	obj, err := checkPut(key, body, meta)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	obj.Key = key
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	if old, trusted, err := s.stat(key, nil); err == nil && trusted && old == obj {
		return obj, nil
	}
	img := s.imagePath(key)
	if err := mkdirs(s.root, filepath.Dir(img)); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	fi, err := writeAtomic(img, body)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	sc, err := json.Marshal(sidecar{
		ContentType: obj.ContentType, Size: obj.Size, SHA256: obj.SHA256,
		Scene: meta.Scene, Page: meta.Page, AppID: meta.AppID,
		ImageMtime: fi.ModTime().UnixNano(),
	})
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	mp := s.metaPath(key)
	if err := mkdirs(s.root, filepath.Dir(mp)); err != nil {
		return Object{}, fmt.Errorf("put %s: metadata: %w", key, err)
	}
	if _, err := writeAtomic(mp, sc); err != nil {
		return Object{}, fmt.Errorf("put %s: metadata: %w", key, err)
	}
	return obj, nil
}

// Stat reports the object under key. ErrNotFound when absent.
func (s *FileStore) Stat(ctx context.Context, key string) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	obj, _, err := s.stat(key, nil)
	if err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return obj, nil
}

// stat describes the image under key from its sidecar when the sidecar
// matches the image file, and from the image's bytes otherwise; trusted
// says which. fi may carry the image's FileInfo when the caller has it.
func (s *FileStore) stat(key string, fi fs.FileInfo) (obj Object, trusted bool, err error) {
	if fi == nil {
		fi, err = os.Stat(s.imagePath(key))
		if errors.Is(err, fs.ErrNotExist) {
			return Object{}, false, ErrNotFound
		}
		if err != nil {
			return Object{}, false, err
		}
	}
	if !fi.Mode().IsRegular() {
		return Object{}, false, fmt.Errorf("%s is not a regular file", s.imagePath(key))
	}
	sc, scErr := s.readSidecar(key)
	if scErr == nil && sc.Size == fi.Size() && sc.ImageMtime == fi.ModTime().UnixNano() {
		return Object{
			Key: key, Name: key, ContentType: sc.ContentType, Size: sc.Size, SHA256: sc.SHA256,
			Meta: Meta{Scene: sc.Scene, Page: sc.Page, AppID: sc.AppID},
		}, true, nil
	}
	body, err := os.ReadFile(s.imagePath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Object{}, false, ErrNotFound
	}
	if err != nil {
		return Object{}, false, err
	}
	obj = describe(key, body)
	obj.Meta = s.fallbackMeta(key, sc, scErr)
	return obj, false, nil
}

// fallbackMeta is the metadata of an image whose sidecar does not match
// it: the sidecar's, which describes the same key, or else the scene the
// key itself encodes.
func (s *FileStore) fallbackMeta(key string, sc sidecar, scErr error) Meta {
	if scErr == nil {
		return Meta{Scene: sc.Scene, Page: sc.Page, AppID: sc.AppID}
	}
	if _, scene, _, err := DecodeKey(key); err == nil {
		return Meta{Scene: scene}
	}
	return Meta{}
}

func (s *FileStore) readSidecar(key string) (sidecar, error) {
	var sc sidecar
	b, err := os.ReadFile(s.metaPath(key))
	if err != nil {
		return sc, err
	}
	err = json.Unmarshal(b, &sc)
	return sc, err
}

// Get reads the image under key. ErrNotFound when absent.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, Object, error) {
	if err := checkKey(key); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(s.imagePath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	body := make([]byte, fi.Size())
	if _, err := readFull(f, body); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	obj := describe(key, body)
	sc, scErr := s.readSidecar(key)
	if scErr == nil && sc.Size == fi.Size() && sc.ImageMtime == fi.ModTime().UnixNano() && sc.SHA256 != obj.SHA256 {
		return nil, Object{}, fmt.Errorf("get %s: stored bytes have sha256 %s, recorded %s: the file is corrupt", key, obj.SHA256, sc.SHA256)
	}
	obj.Meta = s.fallbackMeta(key, sc, scErr)
	return body, obj, nil
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// List walks the folders under prefix. Files that are not valid keys
// (hidden, temporary, or put there by hand) are not listed.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if !prefixOK(prefix) {
		return nil // no valid key starts with it
	}
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	dir := filepath.Join(s.root, filepath.FromSlash(start))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if !strings.HasPrefix(name+"/", prefix) && !strings.HasPrefix(prefix, name+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(name, prefix) || checkKey(name) != nil {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		obj, _, err := s.stat(name, fi)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(obj)
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", path.Join(s.String(), prefix), err)
	}
	return nil
}

// mkdirs creates dir and its missing parents below root, syncing each
// parent that gained an entry so the new folders survive a crash.
func mkdirs(root, dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	cur := root
	for _, seg := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, seg)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
		cur = next
	}
	return nil
}

// writeAtomic writes b to a temporary file beside name, syncs it, renames
// it to name and syncs the folder. It returns the final file's info.
func writeAtomic(name string, b []byte) (fs.FileInfo, error) {
	dir := filepath.Dir(name)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, name); err != nil {
		return nil, err
	}
	ok = true
	return fi, syncDir(dir)
}

// syncDir makes a folder's entries durable. Windows cannot sync a folder;
// its renames are durable once they return.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
