package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/internal/redact"
)

// ErrNotFound is returned (wrapped; test with errors.Is) by Stat and Get
// when no object is stored under the key.
var ErrNotFound = errors.New("object not found")

// Meta describes what a code image was made from. Every field must be
// printable ASCII (scenes and pages always are), because S3 metadata values
// are; a path goes through MetaPath.
type Meta struct {
	// Scene is the scene the code carries (interface B); "" for a code of
	// interfaces A and C.
	Scene string `json:"scene"`
	// Path is the path of a code of interfaces A and C, as MetaPath
	// records it; "" for interface B.
	Path string `json:"path,omitempty"`
	// Page is the page the code opens; empty means the home page.
	Page string `json:"page"`
	// AppID is the Mini Program the code belongs to.
	AppID string `json:"appid"`
}

// Object describes a stored code image.
type Object struct {
	// Key is the full object key, the store's prefix included: the key
	// export lists.
	Key string
	// Name is the key relative to the store, as given to Put, Stat and Get.
	Name string
	// ContentType is image/jpeg or image/png, found from the bytes.
	ContentType string
	// Size is the image's length in bytes.
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the stored bytes.
	SHA256 string
	// Meta is what the image was made from.
	Meta Meta
}

// Store keeps code images under keys. Implementations are safe for
// concurrent use.
type Store interface {
	// Put stores body under key, refusing anything but a PNG or JPEG image
	// and a key whose extension does not match the image's type. Putting
	// the same key again is harmless: the last Put wins. When Put returns
	// nil the object is stored and the returned Object describes it.
	Put(ctx context.Context, key string, body []byte, meta Meta) (Object, error)
	// Stat describes the object stored under key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Object, error)
	// Get returns the bytes stored under key and their description, with
	// SHA256 computed from the bytes read; it fails if they do not match
	// the checksum recorded at Put. ErrNotFound when absent.
	Get(ctx context.Context, key string) ([]byte, Object, error)
	// List calls fn for every object whose name starts with prefix (a
	// plain string prefix of the name, like "spring/"), in no guaranteed
	// order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(Object) error) error
	// Blobs keep the files besides images, such as manifests.
	Blobs
	// String tells humans where the store is: "s3://bucket/prefix" or
	// "file:///abs/dir". It never contains credentials.
	String() string
}

// Options tune Open. The zero value is ready to use.
type Options struct {
	// CreateBucket creates a missing S3 bucket at Open instead of failing.
	// Ignored for file://.
	CreateBucket bool
	// Getenv reads the environment (the AWS variables and
	// S3_FORCE_PATH_STYLE). Nil means os.Getenv.
	Getenv func(string) string
	// MaxAttempts bounds the S3 SDK's attempts per request, first try
	// included. Zero means the SDK's default (3). Context deadlines cut
	// retries short in any case.
	MaxAttempts int
	// Logger receives the few events worth telling (a bucket created).
	// The zero value logs nothing.
	Logger zerolog.Logger
}

func (o Options) getenv(name string) string {
	if o.Getenv == nil {
		return os.Getenv(name)
	}
	return o.Getenv(name)
}

// CheckURL reports whether rawURL is a STORAGE_URL that Open can read,
// without opening anything: commands check it before any connection.
func CheckURL(rawURL string) error {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	switch {
	case ok && scheme == "file":
		if _, err := parseFileURL(rest); err != nil {
			return fmt.Errorf("STORAGE_URL %q: %w", rawURL, err)
		}
		return nil
	case ok && scheme == "s3":
		if _, _, err := parseS3URL(rawURL); err != nil {
			return fmt.Errorf("STORAGE_URL %q: %w", redactURL(rawURL), err)
		}
		return nil
	}
	return fmt.Errorf("STORAGE_URL %q: want file://DIR or s3://BUCKET[/PREFIX]", redactURL(rawURL))
}

// Open opens the store a STORAGE_URL names: file://DIR (DIR may be
// relative, as in file://./wxacodes, and is created if missing) or
// s3://BUCKET[/PREFIX], configured by the standard AWS variables.
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	switch {
	case ok && scheme == "file":
		dir, err := parseFileURL(rest)
		if err != nil {
			return nil, fmt.Errorf("STORAGE_URL %q: %w", rawURL, err)
		}
		return NewFile(dir)
	case ok && scheme == "s3":
		bucket, prefix, err := parseS3URL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("STORAGE_URL %q: %w", redactURL(rawURL), err)
		}
		return NewS3(ctx, bucket, prefix, opts)
	}
	return nil, fmt.Errorf("STORAGE_URL %q: want file://DIR or s3://BUCKET[/PREFIX]", redactURL(rawURL))
}

// KeyPrefix returns the prefix the store a STORAGE_URL names puts before
// every key ("codes/" for s3://bucket/codes, "" for file://), without
// connecting to it; it fails as Open would on a URL it cannot parse.
func KeyPrefix(rawURL string) (string, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	switch {
	case ok && scheme == "file":
		_, err := parseFileURL(rest)
		if err != nil {
			return "", fmt.Errorf("STORAGE_URL %q: %w", rawURL, err)
		}
		return "", nil
	case ok && scheme == "s3":
		_, prefix, err := parseS3URL(rawURL)
		if err != nil {
			return "", fmt.Errorf("STORAGE_URL %q: %w", redactURL(rawURL), err)
		}
		return prefix, nil
	}
	return "", fmt.Errorf("STORAGE_URL %q: want file://DIR or s3://BUCKET[/PREFIX]", redactURL(rawURL))
}

// parseFileURL reads the DIR of file://DIR literally: file:///abs/dir,
// file://./rel, file://rel.
func parseFileURL(dir string) (string, error) {
	switch {
	case dir == "":
		return "", errors.New("file:// needs a folder, as in file://./wxacodes or file:///var/lib/wxacode")
	case strings.ContainsAny(dir, "?#"):
		return "", errors.New("a file:// folder takes no query or fragment")
	case strings.HasPrefix(dir, "localhost/"):
		dir = strings.TrimPrefix(dir, "localhost")
	}
	return dir, nil
}

func parseS3URL(rawURL string) (bucket, prefix string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", errors.New("not a URL: want s3://BUCKET[/PREFIX]")
	}
	if u.User != nil {
		return "", "", errors.New("credentials do not belong in the URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", errors.New("want s3://BUCKET[/PREFIX] with no port, query or fragment (the endpoint comes from AWS_ENDPOINT_URL_S3)")
	}
	bucket = u.Hostname()
	if err := checkBucket(bucket); err != nil {
		return "", "", err
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := checkPrefix(prefix); err != nil {
			return "", "", err
		}
		prefix += "/"
	}
	return bucket, prefix, nil
}

// checkBucket applies the S3 bucket naming rules that every S3-compatible
// service shares: 3 to 63 of a-z 0-9 . -, starting and ending with a letter
// or digit.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket %q: must be 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket %q: only a-z, 0-9, '.' and '-' are allowed", b)
		}
	}
	if strings.Trim(b[:1]+b[len(b)-1:], ".-") != b[:1]+b[len(b)-1:] {
		return fmt.Errorf("bucket %q: must start and end with a letter or digit", b)
	}
	return nil
}

// checkPrefix accepts a key prefix of safe path segments: A-Z a-z 0-9 and
// - _ . ! ( ), no empty, "." or ".." segment.
func checkPrefix(p string) error {
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("prefix %q: has an empty, \".\" or \"..\" segment", p)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!()", c) >= 0) {
				return fmt.Errorf("prefix %q: %q is not allowed (use A-Z a-z 0-9 - _ . ! ( ))", p, c)
			}
		}
	}
	return nil
}

// redactURL hides the user info and secret query values of raw, for
// messages.
func redactURL(raw string) string { return redact.URL(raw) }

// maxMetaPath is the longest path metadata, in bytes: with the other
// fields it stays within S3's 2 KB of user metadata.
const maxMetaPath = 1024

// MetaPath is how a code's metadata records the path of interfaces A and
// C: the path with "%" and every byte outside printable ASCII
// percent-encoded (so UTF-8 stays exact), or "sha256:" and the path's
// lowercase hex SHA-256 when that would pass 1024 bytes (S3 allows 2 KB of
// metadata in all). It is deterministic, so a worker recognises a code it
// stored before.
func MetaPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	if b.Len() > maxMetaPath {
		sum := sha256.Sum256([]byte(p))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// MaxKeyLen is the longest key a Store accepts, in bytes; each
// "/"-separated segment is at most MaxSegmentLen bytes (the limit of a file
// name on common file systems).
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 255
)

// checkKey accepts only keys that are safe on S3 and as a relative path on
// Linux, macOS and Windows: "/"-separated segments of a-z 0-9 - _ ! ( ) .,
// none empty, none with a "." but one inside (before an extension), none a
// Windows device name.
// Lowercase only, so no two keys collide on a case-insensitive file system.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("key must be 1 to %d bytes", MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || len(seg) > MaxSegmentLen {
			return fmt.Errorf("key %q: each segment must be 1 to %d bytes", key, MaxSegmentLen)
		}
		if seg[0] == '.' || seg[len(seg)-1] == '.' || strings.Count(seg, ".") > 1 {
			return fmt.Errorf("key %q: segment %q starts or ends with \".\" or has more than one", key, seg)
		}
		for i := 0; i < len(seg); i++ {
			if !keyByte(seg[i]) {
				return fmt.Errorf("key %q: %q is not allowed (keys use a-z 0-9 - _ ! ( ) . and /; build them with Key)", key, seg[i])
			}
		}
		base, _, _ := strings.Cut(seg, ".")
		if reservedName(base) {
			return fmt.Errorf("key %q: %q is a reserved device name on Windows", key, base)
		}
	}
	return nil
}

// prefixOK reports whether some valid key could start with prefix, so that
// List need not ask (MinIO refuses a prefix holding "..").
func prefixOK(prefix string) bool {
	if prefix == "" {
		return true
	}
	i := strings.LastIndexByte(prefix, '/')
	if i >= 0 && checkKey(prefix[:i]) != nil {
		return false
	}
	last := prefix[i+1:]
	if strings.HasPrefix(last, ".") || strings.Count(last, ".") > 1 {
		return false
	}
	for j := 0; j < len(last); j++ {
		if !keyByte(last[j]) {
			return false
		}
	}
	return true
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_!().", c) >= 0
}

// checkPut checks what Put is given and describes the object to store.
func checkPut(key string, body []byte, meta Meta) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	ctype, ok := imagetype.Detect(body)
	if !ok {
		return Object{}, fmt.Errorf("body is not a PNG or JPEG image (%d bytes starting %q)", len(body), head(body))
	}
	if ext := path.Ext(key); ext != "."+imagetype.Ext(ctype) {
		return Object{}, fmt.Errorf("extension %q does not match the image, a %s (want .%s)", ext, ctype, imagetype.Ext(ctype))
	}
	if len(meta.Path) > maxMetaPath {
		return Object{}, fmt.Errorf("meta path is %d bytes long: at most %d (see MetaPath)", len(meta.Path), maxMetaPath)
	}
	for _, f := range []struct{ name, v string }{{"scene", meta.Scene}, {"path", meta.Path}, {"page", meta.Page}, {"appid", meta.AppID}} {
		for i := 0; i < len(f.v); i++ {
			if f.v[i] < 0x20 || f.v[i] > 0x7e {
				return Object{}, fmt.Errorf("meta %s %q: must be printable ASCII", f.name, f.v)
			}
		}
	}
	sum := sha256.Sum256(body)
	return Object{
		Name:        key,
		ContentType: ctype,
		Size:        int64(len(body)),
		SHA256:      hex.EncodeToString(sum[:]),
		Meta:        meta,
	}, nil
}

// head returns the start of a refused body for the error message: enough
// to recognise a WeChat JSON error.
func head(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// describe derives an Object from stored bytes.
func describe(name string, body []byte) Object {
	ctype, _ := imagetype.Detect(body)
	sum := sha256.Sum256(body)
	return Object{Name: name, Key: name, ContentType: ctype, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
}
