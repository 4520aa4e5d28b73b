package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// databases is how many logical databases the shared Redis server has, and so
// how many tests of one binary can ask for one.
const databases = 10000

// RedisServer is a redis-server process on a loopback port.
type RedisServer struct {
	// Addr is host:port.
	Addr string
	proc *process
}

// Redis is one test's own Redis database.
type Redis struct {
	// Server is the server the database lives on.
	Server *RedisServer
	// DB is the database number, never 0.
	DB int
	// URL is a redis:// URL naming the server and DB.
	URL string
	// Client is a client of the database, closed when the test ends.
	Client *redis.Client
}

// Options returns go-redis options for the test's database.
func (r *Redis) Options() *redis.Options {
	return &redis.Options{Addr: r.Server.Addr, DB: r.DB}
}

// NewRedis gives the test a flushed database of its own on the binary's
// shared Redis server, starting the server if needed.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	shared.mu.Lock()
	srv := shared.redis
	shared.mu.Unlock()
	if srv == nil {
		s, err := startRedis(nil)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		shared.mu.Lock()
		if shared.redis == nil {
			shared.redis = s
			shared.stops = append(shared.stops, s.Stop)
		} else {
			defer s.Stop()
		}
		srv = shared.redis
		shared.mu.Unlock()
	}
	shared.mu.Lock()
	shared.redisDB++
	db := shared.redisDB
	shared.mu.Unlock()
	if db >= databases {
		t.Fatalf("testenv: more than %d Redis databases asked for in one test binary", databases-1)
	}
	return newRedisDB(t, srv, db)
}

func newRedisDB(t testing.TB, srv *RedisServer, db int) *Redis {
	t.Helper()
	r := &Redis{Server: srv, DB: db, URL: fmt.Sprintf("redis://%s/%d", srv.Addr, db)}
	r.Client = redis.NewClient(r.Options())
	t.Cleanup(func() { _ = r.Client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("testenv: flush redis db %d: %v", db, err)
	}
	return r
}

// NewRedisServer starts a private Redis server for a test that stops and
// starts it (outage tests). It is stopped when the test ends.
func NewRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	s, err := startRedis(nil)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// NewRedisServerAOF starts a private Redis server that keeps its data in an
// append-only file in a folder of the test's, so a Stop (a SIGKILL) and a
// Start bring it back with every write it acknowledged. It is stopped when
// the test ends.
func NewRedisServerAOF(t testing.TB) *RedisServer {
	t.Helper()
	s, err := startRedis([]string{"--appendonly", "yes", "--appendfsync", "everysec", "--dir", t.TempDir()})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// NewRedisOn gives the test a flushed database db on a private server.
func NewRedisOn(t testing.TB, s *RedisServer, db int) *Redis {
	t.Helper()
	return newRedisDB(t, s, db)
}

func startRedis(extra []string) (*RedisServer, error) {
	path, err := findTool("redis-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--databases", itoa(databases),
		"--daemonize", "no", "--protected-mode", "no",
		"--loglevel", "warning",
	}
	if !slices.Contains(extra, "--dir") {
		// A replica's full sync writes an RDB file: keep it out of the
		// package folder the tests run in.
		dir, err := os.MkdirTemp("", "wxacode-redis-")
		if err != nil {
			return nil, err
		}
		registerStop(func() { os.RemoveAll(dir) })
		args = append(args, "--dir", dir)
	}
	args = append(args, extra...)
	s := &RedisServer{
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		proc: &process{name: "redis-server", path: path, args: args},
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start starts the server (again) on its address. Data is kept across a
// Stop only by a server with persistence (NewRedisServerAOF, cluster
// nodes).
func (s *RedisServer) Start() error {
	if err := s.proc.start(); err != nil {
		return err
	}
	err := s.proc.waitReady(10*time.Second, func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err()
	})
	if err != nil {
		s.proc.stop()
	}
	return err
}

// Stop kills the server (SIGKILL) and waits until it has exited.
func (s *RedisServer) Stop() { s.proc.stop() }

// Port is the server's port, as a string.
func (s *RedisServer) Port() string { return s.Addr[strings.LastIndexByte(s.Addr, ':')+1:] }

// RedisCluster is a Redis Cluster of primaries on loopback ports.
type RedisCluster struct {
	// Addrs are the nodes' host:port addresses.
	Addrs   []string
	servers []*RedisServer
	cli     string
}

// Client returns a cluster client, closed when the test ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// NewRedisCluster starts a three-node Redis Cluster (no replicas) for the
// test and stops it when the test ends. Each node keeps an append-only
// file, so a node restarted with Restart comes back with its data.
func NewRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	cli, err := findTool("redis-cli")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c := &RedisCluster{}
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		s, err := startRedis([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--dir", dir, "--databases", "1",
			"--appendonly", "yes", "--appendfsync", "everysec",
		})
		if err != nil {
			t.Fatalf("testenv: cluster node: %v", err)
		}
		t.Cleanup(s.Stop)
		c.servers = append(c.servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.cli = cli
	if err := c.waitOK(20 * time.Second); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

// waitOK waits until every node says the cluster is ok.
func (c *RedisCluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, s := range c.servers {
			out, err := exec.Command(c.cli, "-h", "127.0.0.1", "-p", s.Port(), "cluster", "info").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis cluster not ok after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL is the cluster's redis-cluster:// URL.
func (c *RedisCluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs, ",") }

// Node returns the index of the node that serves key.
func (c *RedisCluster) Node(ctx context.Context, key string) (int, error) {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer cl.Close()
	m, err := cl.MasterForKey(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("node of %s: %w", key, err)
	}
	for i, a := range c.Addrs {
		if a == m.Options().Addr {
			return i, nil
		}
	}
	return 0, fmt.Errorf("node of %s: %s is not a node of the cluster", key, m.Options().Addr)
}

// Stop kills node i (SIGKILL); its append-only file stays for Start.
func (c *RedisCluster) Stop(i int) { c.servers[i].Stop() }

// Start starts node i again and waits until the cluster is ok.
func (c *RedisCluster) Start(i int) error {
	if err := c.servers[i].Start(); err != nil {
		return err
	}
	return c.waitOK(30 * time.Second)
}

// StartRedis starts a Redis server for code that has no testing.TB, such
// as a runnable example; StopAll (so Main) stops it.
func StartRedis() (*RedisServer, error) {
	s, err := startRedis(nil)
	if err != nil {
		return nil, err
	}
	registerStop(s.Stop)
	return s, nil
}
