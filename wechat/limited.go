package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Longest paths of interfaces A and C, in bytes (WeChat counts characters;
// bytes are never fewer).
const (
	MaxCodePathLen   = 1024
	MaxQRCodePathLen = 128
)

// CodeRequest is one call of interface A (wxacode.get): a code for a page
// with its query, counted against the lifetime quota.
type CodeRequest struct {
	// Path is the page with its query, such as "pages/item/item?id=42":
	// 1 to 1024 bytes. Required.
	Path string
	// Width is the code's width in pixels, 280 to 1280. Zero means 430.
	Width int
	// AutoColor lets WeChat pick the line colour.
	AutoColor bool
	// LineColor is the line colour when AutoColor is false.
	LineColor Color
	// IsHyaline asks for a transparent background.
	IsHyaline bool
	// EnvVersion is release, trial or develop. Empty means release.
	EnvVersion string
}

// Validate reports the first field WeChat would refuse, naming it.
func (r CodeRequest) Validate() error {
	if err := validatePath(r.Path, MaxCodePathLen); err != nil {
		return err
	}
	o := CodeOptions{EnvVersion: r.EnvVersion, Width: r.Width, LineColor: r.LineColor}
	return o.Validate()
}

// MarshalJSON writes exactly the fields interface A knows, with WeChat's
// defaults for a zero width or env_version.
func (r CodeRequest) MarshalJSON() ([]byte, error) {
	type wire struct {
		Path       string `json:"path"`
		Width      int    `json:"width"`
		AutoColor  bool   `json:"auto_color"`
		LineColor  Color  `json:"line_color"`
		IsHyaline  bool   `json:"is_hyaline"`
		EnvVersion string `json:"env_version"`
	}
	w := wire{
		Path: r.Path, Width: r.Width, AutoColor: r.AutoColor, LineColor: r.LineColor,
		IsHyaline: r.IsHyaline, EnvVersion: r.EnvVersion,
	}
	if w.Width == 0 {
		w.Width = DefaultWidth
	}
	if w.EnvVersion == "" {
		w.EnvVersion = EnvRelease
	}
	return json.Marshal(w)
}

// QRCodeRequest is one call of interface C (wxacode.createQRCode): the old
// square QR code, counted against the lifetime quota.
type QRCodeRequest struct {
	// Path is the page with its query: 1 to 128 bytes. Required.
	Path string
	// Width is the code's width in pixels, 280 to 1280. Zero means 430.
	Width int
}

// Validate reports the first field WeChat would refuse, naming it.
func (r QRCodeRequest) Validate() error {
	if err := validatePath(r.Path, MaxQRCodePathLen); err != nil {
		return err
	}
	return CodeOptions{Width: r.Width}.Validate()
}

// MarshalJSON writes exactly the fields interface C knows.
func (r QRCodeRequest) MarshalJSON() ([]byte, error) {
	w := struct {
		Path  string `json:"path"`
		Width int    `json:"width"`
	}{r.Path, r.Width}
	if w.Width == 0 {
		w.Width = DefaultWidth
	}
	return json.Marshal(w)
}

// ValidatePath reports why p cannot be the path of interface A (max
// MaxCodePathLen) or C (max MaxQRCodePathLen): empty, longer than max
// bytes, not UTF-8, holding a control character or a space, or using the
// query key scancode_time that WeChat reserves.
func ValidatePath(p string, max int) error { return validatePath(p, max) }

// validatePath checks the path of interfaces A and C.
func validatePath(p string, max int) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty")
	case len(p) > max:
		return fmt.Errorf("path is %d bytes long: at most %d", len(p), max)
	case !utf8.ValidString(p):
		return fmt.Errorf("path is not valid UTF-8")
	}
	for i, c := range p {
		if c < 0x20 || c == 0x7f || c == ' ' {
			return fmt.Errorf("path has %s at byte %d", quoteChar(c), i+1)
		}
	}
	if _, q, ok := strings.Cut(p, "?"); ok {
		for _, kv := range strings.Split(q, "&") {
			if k, _, _ := strings.Cut(kv, "="); k == "scancode_time" {
				return fmt.Errorf("path %q: scancode_time is reserved by WeChat", p)
			}
		}
	}
	return nil
}

// Get calls interface A (wxacode.get) and returns the code image. The call
// takes one unit of the app's lifetime quota first and is refused with
// ErrQuotaExhausted, without a call, when that would pass the limit.
func (c *Client) Get(ctx context.Context, req CodeRequest) (Image, error) {
	if err := req.Validate(); err != nil {
		return Image{}, fmt.Errorf("getwxacode: %w: %w", ErrInvalidRequest, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Image{}, fmt.Errorf("getwxacode: encode: %w", err)
	}
	img, err := c.call(ctx, "getwxacode", pathCode, body, true)
	if err != nil {
		return Image{}, fmt.Errorf("getwxacode: %w", err)
	}
	return img, nil
}

// CreateQRCode calls interface C (wxacode.createQRCode) and returns the QR
// code image, under the same lifetime quota as Get.
func (c *Client) CreateQRCode(ctx context.Context, req QRCodeRequest) (Image, error) {
	if err := req.Validate(); err != nil {
		return Image{}, fmt.Errorf("createwxaqrcode: %w: %w", ErrInvalidRequest, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Image{}, fmt.Errorf("createwxaqrcode: encode: %w", err)
	}
	img, err := c.call(ctx, "createwxaqrcode", pathQRCode, body, true)
	if err != nil {
		return Image{}, fmt.Errorf("createwxaqrcode: %w", err)
	}
	return img, nil
}

// Quota returns how many calls of interfaces A and C the ledger has counted
// for the app, and the limit.
func (c *Client) Quota(ctx context.Context) (used, limit int, err error) {
	n, err := c.ledger.rdb.Get(ctx, c.ledger.key).Int()
	if err == redis.Nil {
		return 0, c.ledger.limit, nil
	}
	if err != nil {
		return 0, c.ledger.limit, fmt.Errorf("quota ledger: %w", err)
	}
	return n, c.ledger.limit, nil
}

// QuotaLedger reads the lifetime-quota ledgers of interfaces A and C in
// Redis, without a client: what producers need to check a campaign before
// it is enqueued.
type QuotaLedger struct {
	// Redis holds the ledgers (the Redis of the workers).
	Redis redis.UniversalClient
}

// QuotaUsed returns how many calls of interfaces A and C the app's ledger
// has counted; 0 when it has counted none.
func (l QuotaLedger) QuotaUsed(ctx context.Context, appID string) (int64, error) {
	n, err := l.Redis.Get(ctx, QuotaKey(appID)).Int64()
	if err == redis.Nil {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("quota ledger of %s: %w", appID, err)
	}
	return n, nil
}

// QuotaKey is the Redis key of an app's lifetime-quota ledger: an integer
// counting the calls of interfaces A and C, kept forever.
func QuotaKey(appID string) string { return "wxacode:quota:{" + appID + "}" }

// ledger counts the calls of interfaces A and C in Redis, so the count
// survives restarts and is shared by every process. Every call sent takes a
// unit first, retries included; a unit is given back only when WeChat
// answered with an errcode (no code was made). A call whose answer is lost
// (timeout, connection error) keeps its unit: it may have made a code.
type ledger struct {
	rdb   redis.UniversalClient
	key   string
	limit int
}

// reserveScript takes one unit unless that would pass the limit. It returns
// {1, used} when taken and {0, used} when refused.
var reserveScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + 1 > tonumber(ARGV[1]) then
	return {0, used}
end
return {1, redis.call('INCR', KEYS[1])}
`)

// refundScript gives one unit back, never going below zero.
var refundScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 then
	return redis.call('DECR', KEYS[1])
end
return 0
`)

// exhaustScript raises the count to the limit.
var exhaustScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used < tonumber(ARGV[1]) then
	redis.call('SET', KEYS[1], ARGV[1])
end
return 0
`)

func (l *ledger) reserve(ctx context.Context, appID string) error {
	res, err := reserveScript.Run(ctx, l.rdb, []string{l.key}, l.limit).Int64Slice()
	if err != nil {
		return fmt.Errorf("quota ledger: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("quota ledger: unexpected reply %v", res)
	}
	if res[0] == 0 {
		return fmt.Errorf("appid %s: %w (%d of %d used)", appID, ErrQuotaExhausted, res[1], l.limit)
	}
	return nil
}

func (l *ledger) refund(ctx context.Context) error {
	return refundScript.Run(ctx, l.rdb, []string{l.key}).Err()
}

func (l *ledger) exhaust(ctx context.Context) error {
	return exhaustScript.Run(ctx, l.rdb, []string{l.key}, l.limit).Err()
}
