package campaign

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The fleet registry says which apps the live workers serve, so that a
// campaign whose app no running worker serves says so instead of waiting
// silently. It is one sorted set: a member "APPID<TAB>WORKER" per app of
// each worker, scored with the time (Redis's, in milliseconds) its
// registration lapses. A worker registers every few seconds while it runs
// and deregisters when it stops; one that dies lapses after its TTL.

func (s *Store) fleetKey() string { return s.prefix + "fleet" }

// registerScript drops lapsed members, then adds or renews ARGV[2..] until
// TTL ARGV[1] (milliseconds) from now on Redis's clock.
var registerScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
	redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 0
`)

// servedScript returns the members that have not lapsed.
var servedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`)

func fleetMembers(worker string, apps []string) []any {
	out := make([]any, 0, len(apps))
	for _, a := range apps {
		out = append(out, a+"\t"+worker)
	}
	return out
}

// Register records that worker serves apps for ttl from now; a worker
// calls it at start and then every ttl/3 or so.
func (s *Store) Register(ctx context.Context, worker string, apps []string, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("register worker %s: ttl %s: want at least 1ms", worker, ttl)
	}
	args := append([]any{ttl.Milliseconds()}, fleetMembers(worker, apps)...)
	if err := registerScript.Run(ctx, s.rdb, []string{s.fleetKey()}, args...).Err(); err != nil {
		return fmt.Errorf("register worker %s: %w", worker, err)
	}
	return nil
}

// Deregister removes worker's apps from the registry: a worker that stops
// calls it.
func (s *Store) Deregister(ctx context.Context, worker string, apps []string) error {
	if len(apps) == 0 {
		return nil
	}
	if err := s.rdb.ZRem(ctx, s.fleetKey(), fleetMembers(worker, apps)...).Err(); err != nil {
		return fmt.Errorf("deregister worker %s: %w", worker, err)
	}
	return nil
}

// Served returns how many live workers serve each app; an app no live
// worker serves is absent.
func (s *Store) Served(ctx context.Context) (map[string]int, error) {
	members, err := servedScript.Run(ctx, s.rdb, []string{s.fleetKey()}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("read the fleet registry: %w", err)
	}
	out := make(map[string]int)
	for _, m := range members {
		if app, _, ok := strings.Cut(m, "\t"); ok {
			out[app]++
		}
	}
	return out, nil
}
