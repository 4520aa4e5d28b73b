package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/redact"
)

// Defaults of the command-line contract.
const (
	defaultRedisURL   = "redis://127.0.0.1:6379/0"
	defaultStorageURL = "file://./wxacodes"
	defaultRate       = "5000/1m"
	defaultAPIBase    = "https://api.weixin.qq.com"
)

// redisFlag adds --redis, defaulting to REDIS_URL.
func (a *app) redisFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "redis", or(a.getenv("REDIS_URL"), defaultRedisURL), "Redis URL (env REDIS_URL): redis://[:PASSWORD@]HOST:PORT[/DB], rediss://…, redis-socket://PATH, redis-sentinel://[:PASSWORD@]H1:P1[,H2:P2…]?master=NAME or redis-cluster://[:PASSWORD@]H1:P1[,H2:P2…]")
}

// storageFlag adds --storage, defaulting to STORAGE_URL.
func (a *app) storageFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "storage", or(a.getenv("STORAGE_URL"), defaultStorageURL), "where codes go: file://DIR or s3://BUCKET[/PREFIX] (env STORAGE_URL; S3 settings from the AWS_* variables)")
}

// redisURLForms is what REDIS_URL may be, for messages.
const redisURLForms = "want redis://[:PASSWORD@]HOST:PORT[/DB], rediss://…, redis-socket://PATH[?db=N], redis-sentinel://[:PASSWORD@]H1:P1[,H2:P2…]?master=NAME or redis-cluster://[:PASSWORD@]H1:P1[,H2:P2…]"

// openRedis connects to the Redis of rawURL and checks it answers. Every
// component (the ceiling, the token cache, the campaign store, asynq and
// asynqmon) uses the client it returns, so they all reach Redis the same
// way: one server, a primary watched by Sentinels, or a Cluster.
func openRedis(ctx context.Context, rawURL string, poolSize int) (redis.UniversalClient, error) {
	rdb, err := newRedisClient(rawURL, poolSize)
	if err != nil {
		return nil, usagef("--redis/REDIS_URL %s: %v; %s", redactURL(rawURL), err, redisURLForms)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", redactURL(rawURL), err)
	}
	return rdb, nil
}

// newRedisClient builds the client of a REDIS_URL with the library
// parsers: go-redis's ParseURL for redis:// and rediss://, asynq's
// ParseRedisURI for redis-socket:// and redis-sentinel:// (the password of
// a sentinel URL is the Sentinels', as asynq reads it), and go-redis's
// ParseClusterURL for redis-cluster://, whose hosts after the first become
// its addr parameters. Timeouts of 5 s bound every command, so a Redis
// that goes away fails calls instead of hanging them.
func newRedisClient(rawURL string, poolSize int) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	const timeout = 5 * time.Second
	switch u.Scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, scrubRedisErr(err, u)
		}
		opt.PoolSize = cmp.Or(poolSize, opt.PoolSize)
		opt.ReadTimeout, opt.WriteTimeout = timeout, timeout
		return redis.NewClient(opt), nil
	case "redis-socket", "redis-sentinel":
		co, err := asynq.ParseRedisURI(rawURL)
		if err != nil {
			return nil, scrubRedisErr(err, u)
		}
		switch o := co.(type) {
		case asynq.RedisClientOpt:
			return redis.NewClient(&redis.Options{
				Network: o.Network, Addr: o.Addr, DB: o.DB, Password: o.Password,
				PoolSize: poolSize, ReadTimeout: timeout, WriteTimeout: timeout,
			}), nil
		case asynq.RedisFailoverClientOpt:
			if o.MasterName == "" {
				return nil, errors.New("a sentinel URL needs ?master=NAME")
			}
			if slices.Contains(o.SentinelAddrs, "") {
				return nil, errors.New("empty sentinel address")
			}
			return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs, SentinelPassword: o.SentinelPassword,
				PoolSize: poolSize, ReadTimeout: timeout, WriteTimeout: timeout,
			}), nil
		}
		return nil, fmt.Errorf("unexpected connection kind %T", co)
	case "redis-cluster":
		hosts := strings.Split(u.Host, ",")
		if slices.Contains(hosts, "") {
			return nil, errors.New("empty cluster node address")
		}
		first := *u
		first.Scheme, first.Host = "redis", hosts[0]
		q := u.Query()
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		first.RawQuery = q.Encode()
		opt, err := redis.ParseClusterURL(first.String())
		if err != nil {
			return nil, scrubRedisErr(err, u)
		}
		opt.PoolSize = cmp.Or(poolSize, opt.PoolSize)
		opt.ReadTimeout, opt.WriteTimeout = timeout, timeout
		return redis.NewClusterClient(opt), nil
	}
	return nil, fmt.Errorf("unknown scheme %q", u.Scheme)
}

// scrubRedisErr keeps a parser's error from showing the URL's password.
func scrubRedisErr(err error, u *url.URL) error {
	msg := err.Error()
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return errors.New(msg)
}

// redactURL hides the user info and secret query values of a URL, for
// messages.
func redactURL(raw string) string { return redact.URL(raw) }

// readSecret reads the app secret from WECHAT_SECRET, or from the file
// that --secret-file or WECHAT_SECRET_FILE names: never from a flag value,
// which would show in ps.
func (a *app) readSecret(file string) (string, error) {
	if file == "" {
		file = a.getenv("WECHAT_SECRET_FILE")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--secret-file: %v", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", usagef("--secret-file %s is empty", file)
		}
		return s, nil
	}
	return a.getenv("WECHAT_SECRET"), nil
}

// webhookSecret reads WXACODE_WEBHOOK_SECRET, or the file named by
// WXACODE_WEBHOOK_SECRET_FILE; nil when neither is set (webhooks go
// unsigned).
func (a *app) webhookSecret() ([]byte, error) {
	if file := a.getenv("WXACODE_WEBHOOK_SECRET_FILE"); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("WXACODE_WEBHOOK_SECRET_FILE: %v", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return nil, usagef("WXACODE_WEBHOOK_SECRET_FILE %s is empty", file)
		}
		return []byte(s), nil
	}
	if s := a.getenv("WXACODE_WEBHOOK_SECRET"); s != "" {
		return []byte(s), nil
	}
	return nil, nil
}

// getCampaign loads a campaign, turning "not found" into bad input.
func getCampaign(ctx context.Context, store *campaign.Store, name string) (campaign.Campaign, error) {
	c, err := store.Get(ctx, name)
	if errors.Is(err, campaign.ErrNotFound) {
		return c, usagef("campaign %s not found", name)
	}
	return c, err
}
