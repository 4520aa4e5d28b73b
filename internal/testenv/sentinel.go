package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the Sentinels of NewRedisSentinel know the
// primary by.
const SentinelMaster = "wxacode"

// RedisSentinel is a Redis primary, its replica and three Sentinels
// (redis-server --sentinel) watching them, on loopback ports. The Sentinels
// take a primary for down after one second and fail it over to the replica.
type RedisSentinel struct {
	// Primary and Replica are the data servers as started; after a
	// failover the replica is the primary.
	Primary, Replica *RedisServer
	// SentinelAddrs are the Sentinels' host:port addresses.
	SentinelAddrs []string
	sentinels     []*process
}

// URL is a redis-sentinel:// URL of the setup (asynq's form).
func (s *RedisSentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.SentinelAddrs, ",") + "?master=" + SentinelMaster
}

// NewRedisSentinel starts a primary, a replica and three Sentinels, waits
// until the Sentinels know the replica and each other (so a failover can
// be voted for), and stops them all when the test ends.
func NewRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	primary, err := startRedis([]string{"--databases", "16", "--repl-diskless-sync-delay", "0"})
	if err != nil {
		t.Fatalf("testenv: sentinel primary: %v", err)
	}
	t.Cleanup(primary.Stop)
	replica, err := startRedis([]string{"--databases", "16", "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", primary.Port()})
	if err != nil {
		t.Fatalf("testenv: sentinel replica: %v", err)
	}
	t.Cleanup(replica.Stop)
	err = replica.proc.waitReady(30*time.Second, func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica not in sync yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &RedisSentinel{Primary: primary, Replica: replica}
	path, err := findTool("redis-server")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for range 3 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		// A Sentinel rewrites its configuration file: each gets its own.
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		body := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, SentinelMaster, primary.Port(), SentinelMaster, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &process{name: "redis-sentinel", path: path, args: []string{conf, "--sentinel", "--loglevel", "warning"}}
		if err := p.start(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(p.stop)
		s.sentinels = append(s.sentinels, p)
		s.SentinelAddrs = append(s.SentinelAddrs, net.JoinHostPort("127.0.0.1", itoa(port)))
	}
	// Ready when every Sentinel knows the replica and the two others.
	for i, p := range s.sentinels {
		addr := s.SentinelAddrs[i]
		err := p.waitReady(30*time.Second, func(ctx context.Context) error {
			c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer c.Close()
			replicas, err := c.Replicas(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			others, err := c.Sentinels(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(replicas) != 1 || len(others) != 2 {
				return fmt.Errorf("sentinel %s knows %d replicas and %d other sentinels", addr, len(replicas), len(others))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return s
}

// PrimaryAddr asks a Sentinel which address the primary has now.
func (s *RedisSentinel) PrimaryAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.SentinelAddrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names the primary: %w", last)
}

// WaitPrimary waits until the Sentinels name addr as the primary and it
// answers as one.
func (s *RedisSentinel) WaitPrimary(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := s.PrimaryAddr(ctx)
		if err == nil && got == addr {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			role, rerr := c.Do(ctx, "ROLE").Slice()
			c.Close()
			if rerr == nil && len(role) > 0 && role[0] == "master" {
				cancel()
				return nil
			}
			err = fmt.Errorf("%s answers ROLE %v, %v", addr, role, rerr)
		}
		cancel()
		if time.Now().After(deadline) {
			return fmt.Errorf("primary is not %s after %s (sentinels say %s): %v", addr, timeout, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
