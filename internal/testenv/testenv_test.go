package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
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

// TestRedisSentinelFailover: writes reach the primary through the
// Sentinels, and after the primary is killed the replica takes over with
// the data.
func TestRedisSentinelFailover(t *testing.T) {
	s := NewRedisSentinel(t)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: s.SentinelAddrs})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("wait for the replica: %d, %v", n, err)
	}
	s.Primary.Stop()
	if err := s.WaitPrimary(s.Replica.Addr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var v string
	var err error
	for range 50 {
		if v, err = c.Get(ctx, "k").Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v != "v" {
		t.Fatalf("after failover: get k = %q, %v", v, err)
	}
}

// TestRedisClusterRestart: a node killed and started again keeps its keys.
func TestRedisClusterRestart(t *testing.T) {
	c := NewRedisCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	if err := cl.Set(ctx, "{x}k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	i, err := c.Node(ctx, "{x}k")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(i)
	if err := c.Start(i); err != nil {
		t.Fatal(err)
	}
	var v string
	for range 50 {
		if v, err = cl.Get(ctx, "{x}k").Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v != "v" {
		t.Fatalf("after restart: get = %q, %v", v, err)
	}
}
