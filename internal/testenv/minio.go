package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIO root credentials of the test servers. They exist only on loopback
// servers started for tests.
const (
	minioUser     = "wxacode-test"
	minioPassword = "wxacode-test-password"
	minioRegion   = "us-east-1"
)

// MinIOServer is a MinIO server process on a loopback port.
type MinIOServer struct {
	// Endpoint is the http:// URL of the S3 API.
	Endpoint string
	// AccessKey, SecretKey and Region are the credentials to use.
	AccessKey, SecretKey, Region string
	proc                         *process
	dir                          string
}

// MinIO is one test's own bucket on a MinIO server.
type MinIO struct {
	Server *MinIOServer
	// Bucket is the test's bucket, created empty.
	Bucket string
}

// Env returns the environment a wxacode process needs to reach the bucket:
// the standard AWS variables and STORAGE_URL.
func (m *MinIO) Env() []string {
	return append(m.Server.Env(), "STORAGE_URL=s3://"+m.Bucket)
}

// Env returns the standard AWS variables naming the server.
func (s *MinIOServer) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
	}
}

// S3 returns an S3 client of the server, path-style, with no retries, for
// test assertions.
func (s *MinIOServer) S3() *s3.Client {
	return s3.New(s3.Options{
		Region:           s.Region,
		BaseEndpoint:     aws.String(s.Endpoint),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RetryMaxAttempts: 1,
	})
}

// NewMinIO gives the test a new empty bucket on the binary's shared MinIO
// server, starting the server if needed.
func NewMinIO(t testing.TB) *MinIO {
	t.Helper()
	shared.mu.Lock()
	srv := shared.minio
	shared.mu.Unlock()
	if srv == nil {
		s, err := startMinIO()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		shared.mu.Lock()
		if shared.minio == nil {
			shared.minio = s
			shared.stops = append(shared.stops, s.Close)
		} else {
			defer s.Close()
		}
		srv = shared.minio
		shared.mu.Unlock()
	}
	return NewBucket(t, srv)
}

// NewBucket creates a new empty bucket for the test on the server.
func NewBucket(t testing.TB, srv *MinIOServer) *MinIO {
	t.Helper()
	shared.mu.Lock()
	shared.bucket++
	n := shared.bucket
	shared.mu.Unlock()
	name := fmt.Sprintf("t%d-%04d", os.Getpid(), n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", name, err)
	}
	return &MinIO{Server: srv, Bucket: name}
}

// NewMinIOServer starts a private MinIO server for a test that stops and
// starts it (outage tests). It is stopped when the test ends.
func NewMinIOServer(t testing.TB) *MinIOServer {
	t.Helper()
	s, err := startMinIO()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func startMinIO() (*MinIOServer, error) {
	path, err := findTool("minio")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	console, err := FreePort()
	if err != nil {
		return nil, err
	}
	// The shared server outlives any one test, so its data lives in a
	// folder of its own, removed when it stops.
	dir, err := os.MkdirTemp("", "wxacode-minio-")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &MinIOServer{
		Endpoint:  "http://" + addr,
		AccessKey: minioUser,
		SecretKey: minioPassword,
		Region:    minioRegion,
		proc: &process{
			name: "minio",
			path: path,
			args: []string{"server", dir, "--quiet", "--address", addr, "--console-address", fmt.Sprintf("127.0.0.1:%d", console)},
			env: []string{
				"MINIO_ROOT_USER=" + minioUser,
				"MINIO_ROOT_PASSWORD=" + minioPassword,
				"MINIO_BROWSER=off",
				"MINIO_UPDATE=off",
				"MINIO_REGION=" + minioRegion,
			},
		},
	}
	s.dir = dir
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Start starts the server (again) on its address, with the data it had.
func (s *MinIOServer) Start() error {
	if err := s.proc.start(); err != nil {
		return err
	}
	err := s.proc.waitReady(60*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("minio health: %s", resp.Status)
		}
		// The health check can pass while the S3 API still answers 503
		// (server not initialized): wait for a real S3 call.
		_, err = s.S3().ListBuckets(ctx, &s3.ListBucketsInput{})
		return err
	})
	if err != nil {
		s.proc.stop()
	}
	return err
}

// Stop kills the server and waits until it has exited. Its data stays for a
// later Start, until the test binary ends.
func (s *MinIOServer) Stop() { s.proc.stop() }

// Close stops the server for good and removes its data.
func (s *MinIOServer) Close() {
	s.proc.stop()
	os.RemoveAll(s.dir)
}
