package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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
	fs.StringVar(p, "redis", or(a.getenv("REDIS_URL"), defaultRedisURL), "Redis URL, redis:// or rediss:// (env REDIS_URL)")
}

// storageFlag adds --storage, defaulting to STORAGE_URL.
func (a *app) storageFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "storage", or(a.getenv("STORAGE_URL"), defaultStorageURL), "where codes go: file://DIR or s3://BUCKET[/PREFIX] (env STORAGE_URL; S3 settings from the AWS_* variables)")
}

// openRedis connects to the Redis of rawURL and checks it answers.
func openRedis(ctx context.Context, rawURL string, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, usagef("--redis/REDIS_URL %s: want redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://…", redactURL(rawURL))
	}
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	opt.ReadTimeout = 5 * time.Second
	opt.WriteTimeout = 5 * time.Second
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", redactURL(rawURL), err)
	}
	return rdb, nil
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

// getCampaign loads a campaign, turning "not found" into bad input.
func getCampaign(ctx context.Context, store *campaign.Store, name string) (campaign.Campaign, error) {
	c, err := store.Get(ctx, name)
	if errors.Is(err, campaign.ErrNotFound) {
		return c, usagef("campaign %s not found", name)
	}
	return c, err
}
