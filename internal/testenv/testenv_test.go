package testenv

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) { Main(m) }

func TestRedisIsolated(t *testing.T) {
	a, b := NewRedis(t), NewRedis(t)
	if a.DB == b.DB {
		t.Fatalf("two tests share db %d", a.DB)
	}
	ctx := context.Background()
	if err := a.Client.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key of db %d seen in db %d: n=%d err=%v", a.DB, b.DB, n, err)
	}
}

func TestRedisServerRestart(t *testing.T) {
	s := NewRedisServer(t)
	r := NewRedisOn(t, s, 1)
	ctx := context.Background()
	s.Stop()
	if err := r.Client.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded on a stopped server")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestMinIOBucket(t *testing.T) {
	m := NewMinIO(t)
	ctx := context.Background()
	c := m.Server.S3()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(m.Bucket)}); err != nil {
		t.Fatalf("head bucket %s: %v", m.Bucket, err)
	}
	if m2 := NewMinIO(t); m2.Bucket == m.Bucket {
		t.Fatalf("two tests share bucket %s", m.Bucket)
	}
}

func TestRedisCluster(t *testing.T) {
	c := NewRedisCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "{x}1", "{x}2"} {
		if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
}
