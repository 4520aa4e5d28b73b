package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/wxacode/wxacode/internal/testenv"
)

func TestOpenS3URLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"s3://", "bucket \"\": must be 3 to 63 characters"},
		{"s3://Bad_Bucket", "only a-z, 0-9"},
		{"s3://-bucket", "must start and end with a letter or digit"},
		{"s3://bucket:9000/x", "no port"},
		{"s3://bucket/x?region=y", "no port, query or fragment"},
		{"s3://bucket/a/../b", "\"..\" segment"},
		{"s3://bucket/a//b", "empty"},
		{"s3://bucket/a b", "not allowed"},
		{"s3://AKIDEXAMPLE:s3cr3t-value@bucket", "credentials do not belong in the URL"},
	} {
		_, err := Open(t.Context(), tc.url, Options{Getenv: envFunc(nil)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "STORAGE_URL ") {
			t.Errorf("Open(%q): %v, want an error naming STORAGE_URL containing %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t-value") {
			t.Errorf("Open(%q) error shows the secret: %v", tc.url, err)
		}
	}
}

func TestParseS3URL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, bucket, prefix string }{
		{"s3://codes", "codes", ""},
		{"s3://codes/", "codes", ""},
		{"s3://codes/wxacode", "codes", "wxacode/"},
		{"s3://my.codes-1/a/B_c/", "my.codes-1", "a/B_c/"},
	} {
		b, p, err := parseS3URL(tc.url)
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("parseS3URL(%q) = %q, %q, %v; want %q, %q", tc.url, b, p, err, tc.bucket, tc.prefix)
		}
	}
}

// TestS3Objects checks what lands in the bucket, with a prefix: the key,
// Content-Type and x-amz-meta-* as another S3 client sees them.
func TestS3Objects(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 20*time.Second)
	m := testenv.NewMinIO(t)
	s, err := Open(ctx, "s3://"+m.Bucket+"/wx/codes", Options{Getenv: envFunc(m.Env())})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "s3://"+m.Bucket+"/wx/codes"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	body := testImage(t, "png", 3)
	key := Key("spring", "a/b:c", "png")
	obj, err := s.Put(ctx, key, body, Meta{Scene: "a/b:c", Page: "pages/i/i", AppID: "wxapp"})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Key != "wx/codes/"+key {
		t.Errorf("Object.Key = %q, want the prefix and the key", obj.Key)
	}
	head, err := m.Server.S3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String("wx/codes/spring/a(2f)b(3a)c.png")})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(head.ContentType); got != "image/png" {
		t.Errorf("Content-Type %q, want image/png", got)
	}
	want := map[string]string{"scene": "a/b:c", "page": "pages/i/i", "appid": "wxapp", "sha256": sha(body)}
	if diff := cmp.Diff(want, head.Metadata); diff != "" {
		t.Errorf("x-amz-meta-* (-want +got):\n%s", diff)
	}
	// Objects outside the prefix are not the store's.
	if _, err := m.Server.S3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String("other/spring/x.png"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := s.List(ctx, "", func(o Object) error { names = append(names, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{key}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestS3OpenBucket(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 20*time.Second)
	m := testenv.NewMinIO(t)
	name := m.Bucket + "-new"
	url := "s3://" + name
	_, err := Open(ctx, url, Options{Getenv: envFunc(m.Env())})
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), name) {
		t.Fatalf("Open of a missing bucket: %v, want a clear error", err)
	}
	s, err := Open(ctx, url, Options{Getenv: envFunc(m.Env()), CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = m.Server.S3().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(name), Key: aws.String("c/a.jpg")})
		_, _ = m.Server.S3().DeleteBucket(context.Background(), &s3.DeleteBucketInput{Bucket: aws.String(name)})
	})
	if _, err := m.Server.S3().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Errorf("CreateBucket did not create %s: %v", name, err)
	}
	if _, err := s.Put(ctx, "c/a.jpg", testImage(t, "jpg", 1), Meta{}); err != nil {
		t.Error(err)
	}
	// Opening with CreateBucket when the bucket exists is fine.
	if _, err := Open(ctx, url, Options{Getenv: envFunc(m.Env()), CreateBucket: true}); err != nil {
		t.Error(err)
	}
}

// TestS3Settings checks the environment the store reads: region default,
// path style, bad values, and that credentials never show in errors.
func TestS3Settings(t *testing.T) {
	t.Parallel()
	m := testenv.NewMinIO(t)
	with := func(extra ...string) func(string) string {
		return envFunc(append(append([]string(nil), m.Env()...), extra...))
	}
	t.Run("region defaults to us-east-1 with a custom endpoint", func(t *testing.T) {
		t.Parallel()
		env := envFunc(m.Env())
		noRegion := func(k string) string {
			if k == "AWS_REGION" {
				return ""
			}
			return env(k)
		}
		if _, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: noRegion}); err != nil {
			t.Error(err)
		}
	})
	t.Run("AWS_ENDPOINT_URL", func(t *testing.T) {
		t.Parallel()
		env := envFunc(m.Env())
		generic := func(k string) string {
			switch k {
			case "AWS_ENDPOINT_URL_S3":
				return ""
			case "AWS_ENDPOINT_URL":
				return env("AWS_ENDPOINT_URL_S3")
			}
			return env(k)
		}
		if _, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: generic}); err != nil {
			t.Error(err)
		}
	})
	t.Run("S3_FORCE_PATH_STYLE", func(t *testing.T) {
		t.Parallel()
		if _, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: with("S3_FORCE_PATH_STYLE=maybe")}); err == nil || !strings.Contains(err.Error(), "S3_FORCE_PATH_STYLE") {
			t.Errorf("bad S3_FORCE_PATH_STYLE: %v", err)
		}
		for _, tc := range []struct {
			env  []string
			want bool
		}{
			{nil, true}, // custom endpoint
			{[]string{"S3_FORCE_PATH_STYLE=true"}, true},
			{[]string{"S3_FORCE_PATH_STYLE=false"}, false},
			{[]string{"S3_FORCE_PATH_STYLE=0"}, false},
		} {
			// Open checks the bucket; against 127.0.0.1 the SDK falls back
			// to path style for an IP address, so all of these open.
			s, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: with(tc.env...)})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.(*S3Store).client.Options().UsePathStyle; got != tc.want {
				t.Errorf("%v: path style %v, want %v", tc.env, got, tc.want)
			}
		}
	})
	t.Run("bad endpoint", func(t *testing.T) {
		t.Parallel()
		_, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: with("AWS_ENDPOINT_URL_S3=127.0.0.1:9000")})
		if err == nil || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL_S3") {
			t.Errorf("endpoint without scheme: %v", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		t.Parallel()
		const secret = "not-the-secret-0123456789"
		_, err := Open(testCtx(t, 10*time.Second), "s3://"+m.Bucket, Options{Getenv: with("AWS_SECRET_ACCESS_KEY=" + secret), MaxAttempts: 1})
		if err == nil {
			t.Fatal("Open with a wrong secret worked")
		}
		if !strings.Contains(err.Error(), "denied") && !strings.Contains(err.Error(), "403") {
			t.Errorf("wrong secret: %v, want an access error", err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), m.Server.SecretKey) {
			t.Errorf("error shows the secret: %v", err)
		}
	})
}

func TestScrub(t *testing.T) {
	t.Parallel()
	base := errors.New("signature for key s3cr3t and token t0k3n mismatched")
	err := scrub(base, []string{"s3cr3t", "t0k3n"})
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "t0k3n") || !errors.Is(err, base) {
		t.Errorf("scrub: %v", err)
	}
	if scrub(base, []string{"absent"}) != base {
		t.Error("scrub changed an error without secrets")
	}
}

// TestS3Outage stops MinIO under running puts: while it is down every
// call fails quickly and clearly (never as ErrNotFound), and once it is
// back every Put that returned nil is really stored, intact.
func TestS3Outage(t *testing.T) {
	t.Parallel()
	srv := testenv.NewMinIOServer(t)
	ctx := testCtx(t, 50*time.Second)
	m := newBucketWhenReady(t, ctx, srv)
	s, err := Open(ctx, "s3://"+m.Bucket, Options{Getenv: envFunc(m.Env()), MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	body := testImage(t, "jpg", 1)
	stored := Key("c", "before", "jpg")
	if _, err := s.Put(ctx, stored, body, Meta{Scene: "before"}); err != nil {
		t.Fatal(err)
	}

	// Writers keep putting distinct keys through the outage.
	var (
		mu       sync.Mutex
		ok       = map[string]string{} // key → sha256 reported stored
		failed   = map[string]bool{}
		stop     = make(chan struct{})
		started  = make(chan struct{}, 64)
		sawError = make(chan struct{}, 64)
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := Key("c", fmt.Sprintf("w%d-%d", w, i), "jpg")
				img := testImage(t, "jpg", w*1000+i)
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				obj, err := s.Put(pctx, key, img, Meta{})
				cancel()
				mu.Lock()
				if err == nil {
					ok[key] = obj.SHA256
					select {
					case started <- struct{}{}:
					default:
					}
				} else {
					failed[key] = true
					select {
					case sawError <- struct{}{}:
					default:
					}
				}
				mu.Unlock()
			}
		})
	}
	for range 8 {
		<-started
	}
	srv.Stop()
	for range 4 {
		<-sawError
	}

	down := Key("c", "during", "jpg")
	t0 := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = s.Put(pctx, down, body, Meta{})
	cancel()
	if err == nil {
		t.Fatal("Put with MinIO down reported success")
	}
	if !strings.HasPrefix(err.Error(), "put "+down+": ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Put with MinIO down: %v, want put KEY: ... connection refused", err)
	}
	t.Logf("Put with MinIO down: %v", err)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Put with MinIO down took %v", d)
	}
	pctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	if _, err := s.Stat(pctx, stored); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Stat with MinIO down: %v, want an error that is not ErrNotFound", err)
	}
	if _, _, err := s.Get(pctx, stored); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get with MinIO down: %v, want an error that is not ErrNotFound", err)
	}
	cancel()
	close(stop)
	wg.Wait()

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Back up: the store serves again with no reopening, once MinIO has
	// finished initialising.
	for {
		_, err := s.Stat(ctx, stored)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Stat after restart: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := s.Stat(ctx, down); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of the Put refused while down: %v, want ErrNotFound", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) == 0 {
		t.Error("no writer saw the outage")
	}
	for key, want := range ok {
		_, obj, err := s.Get(ctx, key)
		if err != nil {
			t.Errorf("%s was reported stored: %v", key, err)
			continue
		}
		if obj.SHA256 != want {
			t.Errorf("%s: stored sha256 %s, reported %s", key, obj.SHA256, want)
		}
	}
	t.Logf("%d puts succeeded, %d failed across the outage", len(ok), len(failed))
}

// newBucketWhenReady creates a bucket on a freshly started private server.
// MinIO may answer its health check before it takes requests
// (XMinioServerNotInitialized), so the creation is retried for a while.
func newBucketWhenReady(t *testing.T, ctx context.Context, srv *testenv.MinIOServer) *testenv.MinIO {
	t.Helper()
	name := fmt.Sprintf("outage-%d", time.Now().UnixNano())
	for {
		_, err := srv.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		if err == nil {
			return &testenv.MinIO{Server: srv, Bucket: name}
		}
		if ctx.Err() != nil {
			t.Fatalf("create bucket %s: %v", name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestS3PayloadHashChecked checks that the service verifies the signed
// SHA-256 of the body (what replaces Content-MD5): bytes that do not match
// it are refused and nothing is stored.
func TestS3PayloadHashChecked(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 20*time.Second)
	m := testenv.NewMinIO(t)
	st, err := Open(ctx, "s3://"+m.Bucket, Options{Getenv: envFunc(m.Env())})
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*S3Store)
	body := testImage(t, "png", 4)
	key := Key("spring", "torn", "png")
	obj, err := checkPut(key, body, Meta{Scene: "torn"})
	if err != nil {
		t.Fatal(err)
	}
	obj.Key = key
	other := sha(testImage(t, "png", 5))
	if err := s.put(ctx, obj, body, other); err == nil {
		t.Fatal("put with a payload hash of other bytes: nil error, want the service's refusal")
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after the refused put: %v, want ErrNotFound", err)
	}
	if err := s.put(ctx, obj, body, obj.SHA256); err != nil {
		t.Fatalf("put with the right hash: %v", err)
	}
}
