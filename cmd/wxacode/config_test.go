package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/testenv"
)

// TestRedisURLForms: each form of REDIS_URL gives the client kind it names,
// aimed where it says.
func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url   string
		check func(redis.UniversalClient) error
	}{
		{"redis://:pw@127.0.0.1:6390/3", func(c redis.UniversalClient) error {
			o := c.(*redis.Client).Options()
			if o.Addr != "127.0.0.1:6390" || o.DB != 3 || o.Password != "pw" || o.PoolSize != 7 {
				return fmt.Errorf("options %s db %d pool %d", o.Addr, o.DB, o.PoolSize)
			}
			return nil
		}},
		{"rediss://127.0.0.1:6390", func(c redis.UniversalClient) error {
			if c.(*redis.Client).Options().TLSConfig == nil {
				return fmt.Errorf("no TLS")
			}
			return nil
		}},
		{"redis-socket://:pw@/run/redis.sock?db=2", func(c redis.UniversalClient) error {
			o := c.(*redis.Client).Options()
			if o.Network != "unix" || o.Addr != "/run/redis.sock" || o.DB != 2 || o.Password != "pw" {
				return fmt.Errorf("options %s %s db %d", o.Network, o.Addr, o.DB)
			}
			return nil
		}},
		{"redis-sentinel://127.0.0.1:26379,127.0.0.1:26380?master=mymaster", func(c redis.UniversalClient) error {
			if _, ok := c.(*redis.Client); !ok {
				return fmt.Errorf("%T, want a failover *redis.Client", c)
			}
			return nil
		}},
		{"redis-cluster://:pw@127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", func(c redis.UniversalClient) error {
			o := c.(*redis.ClusterClient).Options()
			if strings.Join(o.Addrs, ",") != "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002" || o.Password != "pw" || o.PoolSize != 7 {
				return fmt.Errorf("addrs %v pool %d", o.Addrs, o.PoolSize)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := newRedisClient(tt.url, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := tt.check(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisURLBad: a REDIS_URL that cannot be used is bad usage (exit 2)
// naming the variable, without its password, before any connection.
func TestRedisURLBad(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"redis-sentinel://:s3cret@127.0.0.1:26379",            // no master
		"redis-cluster://:s3cret@127.0.0.1:7000,,127.0.0.1:1", // empty node
		"memcached://:s3cret@127.0.0.1:11211",
		"redis://:s3cret@127.0.0.1:6379/notadb",
	} {
		_, stderr, code := run(t, []string{"REDIS_URL=" + u}, "", "status")
		if code != 2 || !strings.Contains(stderr, "REDIS_URL") || strings.Contains(stderr, "s3cret") {
			t.Errorf("REDIS_URL=%s: exit %d, stderr %q; want 2 naming REDIS_URL, without the password", u, code, stderr)
		}
	}
}

// TestRedisURLCluster: the commands reach a real Cluster by its
// redis-cluster:// URL.
func TestRedisURLCluster(t *testing.T) {
	t.Parallel()
	c := testenv.NewRedisCluster(t)
	rdb, err := openRedis(context.Background(), c.URL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("%T, want a cluster client", rdb)
	}
	_, stderr, code := run(t, []string{"REDIS_URL=" + c.URL()}, "", "status", "nope")
	if code != 2 || !strings.Contains(stderr, "campaign nope not found") {
		t.Fatalf("status on the cluster: exit %d, %s", code, stderr)
	}
}
