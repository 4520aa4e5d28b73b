// Package testenv gives tests real Redis and MinIO servers on free loopback
// ports.
//
// A test binary starts at most one shared Redis server and one shared MinIO
// server, lazily, the first time a test asks for them; Main stops them when
// the tests are done. Each test is isolated: Redis hands it a database number
// of its own (flushed first), MinIO a bucket of its own. Tests that stop and
// start a server (outage tests) get a private one from NewRedisServer or
// NewMinIOServer.
//
// The servers are found on PATH, in the folder named by WXACODE_TOOLS, or in
// $HOME/.cache/wxacode/bin, where scripts/test-deps.sh installs them. A test
// that needs a server that cannot be found fails with a message saying how to
// install it; it never skips.
package testenv

import (
	"os"
	"sync"
	"testing"
)

// shared holds the servers started for this test binary.
var shared struct {
	mu      sync.Mutex
	redis   *RedisServer
	redisDB int
	minio   *MinIOServer
	bucket  int
	stops   []func()
}

// Main runs the tests and then stops every server this binary started. Call
// it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops every server started by this test binary. Main calls it.
func StopAll() {
	shared.mu.Lock()
	stops := shared.stops
	shared.stops = nil
	shared.redis, shared.minio = nil, nil
	shared.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

func registerStop(f func()) {
	shared.mu.Lock()
	shared.stops = append(shared.stops, f)
	shared.mu.Unlock()
}

const installHint = "install the test services with `make test-deps` (scripts/test-deps.sh)"
