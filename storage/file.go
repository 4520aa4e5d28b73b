//go:build linux

package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// metaXattr is the extended attribute that holds an image's metadata on
// the image file itself (see encodeMeta).
const metaXattr = "user.wxacode.meta"

// FileStore keeps code images as files in a local folder: the image of key
// "spring/sku000123.jpg" is DIR/spring/sku000123.jpg, and its metadata an
// extended attribute of that file (user.wxacode.meta), so there is one
// file per image.
//
// An image is written to a hidden temporary file in its final folder, its
// metadata attached, then renamed over its final name: the name never
// points at a half-written file, and the metadata arrives with the bytes.
// Durability is by group commit: the bytes of every image written meanwhile
// are made durable by one syncfs(2) before their renames, and the renames by
// one more after them; Put returns only then. A sync waits up to 20 ms for
// company unless 32 callers already wait. So an image whose Put
// returned survives a power cut, and no torn image is ever visible under its
// final name, at two file-system syncs per batch of images rather than two
// fsyncs per file.
//
// The store never follows a symbolic link inside its folder (every path is
// resolved with openat2's RESOLVE_NO_SYMLINKS, or one component at a time
// with O_NOFOLLOW where openat2 is missing) and never writes outside it: a
// key that meets a link is refused with an error naming it. The folder
// itself may be reached through links; they are resolved once, at NewFile.
//
// A FileStore is safe for concurrent use, also by several processes
// sharing the folder. It needs Linux.
type FileStore struct {
	root string // absolute, as given
	real string // root with its links resolved: the base of every path

	commit groupSync

	noXattr   atomic.Bool // the file system takes no extended attributes
	noOpenat2 atomic.Bool // the kernel (or a sandbox) has no openat2
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
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	s := &FileStore{root: abs, real: real}
	s.commit.dir = real
	return s, nil
}

// String returns the store's file:// URL with an absolute path.
func (s *FileStore) String() string { return "file://" + filepath.ToSlash(s.root) }

// Root returns the store's folder, absolute.
func (s *FileStore) Root() string { return s.root }

// Put writes the image with its metadata, atomically and durably (see
// FileStore). Putting a key again replaces the file.
func (s *FileStore) Put(ctx context.Context, key string, body []byte, meta Meta) (Object, error) {
	obj, err := checkPut(key, body, meta)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	obj.Key = key
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.put(key, body, &obj); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	return obj, nil
}

// PutBlob writes body under name as Put writes an image (atomically and
// durably, following no link), without metadata.
func (s *FileStore) PutBlob(ctx context.Context, name string, body []byte, contentType string) error {
	if err := checkKey(name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err := s.put(name, body, nil); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// GetBlob reads name, following no link.
func (s *FileStore) GetBlob(ctx context.Context, name string) ([]byte, error) {
	if err := checkKey(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	fd, err := s.open(name, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, s.linkError(name, err))
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return b, nil
}

// put writes body under key, with obj's metadata when obj is not nil.
func (s *FileStore) put(key string, body []byte, obj *Object) error {
	dir, name := path.Split(key)
	dfd, err := s.dir(key, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	tmp, fd, err := createTemp(dfd)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	f := os.NewFile(uintptr(fd), tmp)
	err = s.fill(f, fd, body, obj)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The bytes reach the disk before the name points at them.
	if err := s.commit.wait(); err != nil {
		return err
	}
	if err := rename(dfd, tmp, name); err != nil {
		return s.linkError(key, err)
	}
	renamed = true
	return s.commit.wait()
}

// fill writes body to the new file f (descriptor fd) and attaches obj's
// metadata, if any, pinned to the file's size and modification time.
func (s *FileStore) fill(f *os.File, fd int, body []byte, obj *Object) error {
	if _, err := f.Write(body); err != nil {
		return err
	}
	if obj == nil || s.noXattr.Load() {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	err := unix.Fsetxattr(fd, metaXattr, encodeMeta(*obj, st.Mtim.Nano()), 0)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		// Stat then finds the scene in the key and the SHA-256 in the bytes.
		s.noXattr.Store(true)
		return nil
	}
	return err
}

// createTemp creates a hidden temporary file in the folder dfd.
func createTemp(dfd int) (string, int, error) {
	for {
		tmp := ".tmp-" + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		return tmp, fd, err
	}
}

// rename moves tmp over name in the folder dfd, refusing to replace a link
// or a folder.
func rename(dfd int, tmp, name string) error {
	err := unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE)
	if err == nil || !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return unix.ELOOP
	case unix.S_IFDIR:
		return unix.EISDIR
	}
	return unix.Renameat(dfd, tmp, dfd, name)
}

// dir opens the folder rel of key's image, creating it and its parents
// when missing. Only the first image of a folder pays for that.
func (s *FileStore) dir(key, rel string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	fd, err := s.open(rel, flags, 0)
	if !errors.Is(err, unix.ENOENT) {
		return fd, s.linkError(key, err)
	}
	segs := strings.Split(rel, "/")
	for i := range segs {
		parent := strings.Join(segs[:i], "/")
		pfd, err := s.open(parent, flags, 0)
		if err != nil {
			return -1, s.linkError(key, err)
		}
		err = unix.Mkdirat(pfd, segs[i], 0o755)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
	}
	fd, err = s.open(rel, flags, 0)
	return fd, s.linkError(key, err)
}

// open opens rel (a checked key or a part of one; "" is the folder)
// without following any link: a link anywhere in it is ELOOP or ENOTDIR.
func (s *FileStore) open(rel string, flags int, mode uint32) (int, error) {
	p := s.real
	if rel != "" {
		p += "/" + rel
	}
	if !s.noOpenat2.Load() {
		fd, err := unix.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
			Mode:    uint64(mode),
			Resolve: unix.RESOLVE_NO_SYMLINKS,
		})
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return fd, err
		}
		s.noOpenat2.Store(true) // old kernel, or a sandbox that forbids it
	}
	fd, err := unix.Open(s.real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil || rel == "" {
		if err == nil && flags&unix.O_PATH == 0 {
			unix.Close(fd)
			return unix.Open(s.real, flags|unix.O_CLOEXEC, mode)
		}
		return fd, err
	}
	segs := strings.Split(rel, "/")
	for i, seg := range segs {
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(segs)-1 {
			f = flags | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		next, err := unix.Openat(fd, seg, f, mode)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// linkError turns the error of a path that met a link into one naming the
// link; other errors pass unchanged.
func (s *FileStore) linkError(key string, err error) error {
	if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		return err
	}
	cur := s.real
	for _, seg := range strings.Split(key, "/") {
		cur = filepath.Join(cur, seg)
		if fi, lerr := os.Lstat(cur); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link; the file store follows no links inside %s: %w",
				strings.TrimPrefix(cur, s.real+"/"), s.root, err)
		}
	}
	return err
}

// Stat reports the object under key. ErrNotFound when absent.
func (s *FileStore) Stat(ctx context.Context, key string) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	obj, _, err := s.read(key, false)
	if err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return obj, nil
}

// Get reads the image under key. ErrNotFound when absent.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, Object, error) {
	if err := checkKey(key); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	obj, body, err := s.read(key, true)
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	return body, obj, nil
}

// read describes the image under key from its metadata when that is pinned
// to the file as it is (same size and modification time), and from its
// bytes otherwise; with full it always reads the bytes, and fails if they
// do not match a pinned SHA-256.
func (s *FileStore) read(key string, full bool) (Object, []byte, error) {
	fd, err := s.open(key, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return Object{}, nil, ErrNotFound
	}
	if err != nil {
		return Object{}, nil, s.linkError(key, err)
	}
	f := os.NewFile(uintptr(fd), key)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Object{}, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Object{}, nil, fmt.Errorf("%s is not a regular file", filepath.Join(s.root, key))
	}
	m, mErr := readMeta(fd)
	pinned := mErr == nil && m.Size == st.Size && m.mtime == st.Mtim.Nano()
	if pinned && !full {
		m.Key, m.Name = key, key
		return m.Object, nil, nil
	}
	body := make([]byte, st.Size)
	if _, err := io.ReadFull(f, body); err != nil {
		return Object{}, nil, err
	}
	obj := describe(key, body)
	if pinned && m.SHA256 != obj.SHA256 {
		return Object{}, nil, fmt.Errorf("stored bytes have sha256 %s, recorded %s: the file is corrupt", obj.SHA256, m.SHA256)
	}
	switch {
	case mErr == nil:
		// Metadata of an earlier image under the same key: same scene.
		obj.Meta = m.Meta
	default:
		if _, scene, _, err := DecodeKey(key); err == nil {
			obj.Meta = Meta{Scene: scene}
		}
	}
	return obj, body, nil
}

// List walks the folders under prefix. Files that are not valid keys
// (hidden, temporary, links, or put there by hand) are not listed.
func (s *FileStore) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if !prefixOK(prefix) {
		return nil // no valid key starts with it
	}
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	fd, err := s.open(start, unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", path.Join(s.String(), prefix), s.linkError(start, err))
	}
	unix.Close(fd)
	dir := filepath.Join(s.real, filepath.FromSlash(start))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
		rel, err := filepath.Rel(s.real, p)
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
		obj, _, err := s.read(name, false)
		if errors.Is(err, ErrNotFound) {
			return nil // removed meanwhile
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

// storedMeta is what metaXattr holds: the object without its key, and the
// modification time that pins it to the file.
type storedMeta struct {
	Object
	mtime int64 // ns
}

// metaVersion starts every metaXattr value; metaVersion1 records, without
// a path, are still read.
const (
	metaVersion  = "wxacode-meta-2"
	metaVersion1 = "wxacode-meta-1"
)

// encodeMeta writes the metadata record: lines of metaVersion, content
// type, size, modification time (ns), SHA-256, scene, page, appid and
// path. Every field is printable ASCII (checkPut), so none holds a
// newline.
func encodeMeta(obj Object, mtime int64) []byte {
	return []byte(strings.Join([]string{
		metaVersion, obj.ContentType, strconv.FormatInt(obj.Size, 10), strconv.FormatInt(mtime, 10),
		obj.SHA256, obj.Meta.Scene, obj.Meta.Page, obj.Meta.AppID, obj.Meta.Path,
	}, "\n"))
}

// readMeta reads a file's metadata record; an error when it has none.
func readMeta(fd int) (storedMeta, error) {
	var buf [4096]byte
	n, err := unix.Fgetxattr(fd, metaXattr, buf[:])
	if err != nil {
		return storedMeta{}, err
	}
	f := strings.Split(string(buf[:n]), "\n")
	switch {
	case len(f) == 8 && f[0] == metaVersion1:
		f = append(f, "") // no path
	case len(f) != 9 || f[0] != metaVersion:
		return storedMeta{}, errors.New("unknown metadata record")
	}
	size, err1 := strconv.ParseInt(f[2], 10, 64)
	mtime, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return storedMeta{}, errors.New("damaged metadata record")
	}
	return storedMeta{
		Object: Object{ContentType: f[1], Size: size, SHA256: f[4], Meta: Meta{Scene: f[5], Page: f[6], AppID: f[7], Path: f[8]}},
		mtime:  mtime,
	}, nil
}

// Group commit: a sync waits up to commitDelay for commitBatch callers
// before it starts. Under load the batch fills at once; at a ceiling's
// trickle (5000/1m is one image per 12 ms) the delay gathers a few images
// per sync, at the price of a little latency that the limiter's wait dwarfs.
const (
	commitDelay = 20 * time.Millisecond
	commitBatch = 32
)

// groupSync makes a file system's writes durable for many callers at once:
// wait returns once a syncfs(2) that started after the call has finished,
// and callers that arrive while one runs, or gathers company, share it or
// the next.
type groupSync struct {
	dir string // a folder on the file system

	mu       sync.Mutex
	cond     *sync.Cond
	running  bool          // a sync runs or gathers callers
	full     chan struct{} // closed when enough callers wait; nil when no sync gathers
	waiting  int           // callers in wait
	started  uint64        // syncs started
	finished uint64        // syncs finished
	failed   uint64        // the latest sync that failed, with its error
	err      error
}

func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	g.waiting++
	defer func() { g.waiting-- }()
	if g.full != nil && g.waiting >= commitBatch {
		close(g.full)
		g.full = nil
	}
	want := g.started + 1 // the next sync to start covers what came before
	for g.finished < want {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		if g.waiting < commitBatch {
			full := make(chan struct{})
			g.full = full
			g.mu.Unlock()
			t := time.NewTimer(commitDelay)
			select {
			case <-t.C:
			case <-full:
			}
			t.Stop()
			g.mu.Lock()
			if g.full == full {
				g.full = nil
			}
		}
		g.started++
		n := g.started
		g.mu.Unlock()
		err := syncfs(g.dir)
		g.mu.Lock()
		g.running = false
		g.finished = n
		if err != nil {
			g.failed, g.err = n, err
		}
		g.cond.Broadcast()
	}
	if g.failed >= want {
		return fmt.Errorf("sync %s: %w", g.dir, g.err)
	}
	return nil
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	err = unix.Syncfs(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}
