// Package wechat is wxacode's client of the WeChat Mini Program code APIs:
// interface B (wxacode.getUnlimited, for bulk), interfaces A and C behind a
// lifetime-quota ledger in Redis, and access tokens shared by a whole fleet
// through Redis.
//
// Answers are told apart by their bytes, never by their Content-Type: a
// body is an image only if it starts with the JPEG or PNG magic bytes, and an
// errcode answer becomes an *Error. Every error the package returns can be
// sorted with Classify (or IsTemporary, IsPermanent, IsRateLimited,
// IsTokenInvalid). Access tokens and the app secret never appear in errors
// or logs: URLs are logged and wrapped with access_token=REDACTED.
//
// Redis keys, all with the appid in a hash tag so one app's keys share a
// Redis Cluster slot:
//
//	wxacode:token:{APPID}          hash token, expires_at, refresh_at (Unix ms): the shared token
//	wxacode:token:{APPID}:lock     string "OWNER DEADLINE_MS": the lease of the one process fetching
//	wxacode:token:{APPID}:failure  hash kind, code, msg, rid, until, fp: the last failed fetch
//	wxacode:quota:{APPID}          integer: calls of interfaces A and C so far, kept forever
//
// Expiry times live inside the values; TTLs only collect garbage, so a
// Redis whose clock does not tick (miniredis) works too.
package wechat

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/internal/imagetype"
)

// DefaultBaseURL is the WeChat API's address.
const DefaultBaseURL = "https://api.weixin.qq.com"

// DefaultQuotaLimit is the lifetime quota of interfaces A and C together,
// per appid.
const DefaultQuotaLimit = 100000

// DefaultCallTimeout bounds one HTTP call of the Client.
const DefaultCallTimeout = 20 * time.Second

// maxBodyBytes bounds an answer: a 1280 px code is a few hundred kilobytes.
const maxBodyBytes = 16 << 20

// API paths.
const (
	pathUnlimited   = "/wxa/getwxacodeunlimit"
	pathCode        = "/wxa/getwxacode"
	pathQRCode      = "/cgi-bin/wxaapp/createwxaqrcode"
	pathStableToken = "/cgi-bin/stable_token"
)

// TokenSource hands out access tokens. Implementations are safe for
// concurrent use.
type TokenSource interface {
	// Token returns a valid access token.
	Token(ctx context.Context) (string, error)
	// Invalidate reports that WeChat refused token (40001, 40014, 42001),
	// so the next Token returns another one. It is a no-op when the source
	// has already moved on from token.
	Invalidate(ctx context.Context, token string) error
}

// Image is a code image as WeChat returned it.
type Image struct {
	// Data is the image file, JPEG or PNG.
	Data []byte
	// ContentType is image/jpeg or image/png, read from Data's first bytes.
	ContentType string
}

// Config configures a Client.
type Config struct {
	// BaseURL is the WeChat API's address, without a trailing slash.
	// Default DefaultBaseURL.
	BaseURL string
	// AppID is the Mini Program's appid. Required.
	AppID string
	// Tokens hands out the app's access tokens. Required.
	Tokens TokenSource
	// HTTPClient makes the calls. Default NewHTTPClient(). Redirects are
	// never followed, whatever the client says.
	HTTPClient *http.Client
	// Redis holds the lifetime-quota ledger of interfaces A and C. Required.
	Redis redis.UniversalClient
	// QuotaLimit is the lifetime quota of interfaces A and C together, in
	// calls. Default DefaultQuotaLimit (100,000).
	QuotaLimit int
	// CallTimeout bounds each HTTP call. Default DefaultCallTimeout (20 s).
	CallTimeout time.Duration
	// NoTokenRetry makes a refused token (40001, 40014, 42001) come back
	// as an error at once, after the token is invalidated, instead of
	// being retried once with a new token. Callers that put every call
	// under a ceiling set it and retry themselves, so that no call is sent
	// without a slot.
	NoTokenRetry bool
	// Logger receives a debug line per call (URL without the token, status,
	// size, errcode, rid, duration) and a warning per token refused. Default:
	// no logs.
	Logger zerolog.Logger
}

// Validate reports the first field that is missing or wrong, naming it.
func (c Config) Validate() error {
	if c.BaseURL != "" {
		if err := validateBaseURL(c.BaseURL); err != nil {
			return fmt.Errorf("wechat config: BaseURL: %w", err)
		}
	}
	if err := validateAppID(c.AppID); err != nil {
		return fmt.Errorf("wechat config: AppID: %w", err)
	}
	if c.Tokens == nil {
		return errors.New("wechat config: Tokens is required")
	}
	if c.Redis == nil {
		return errors.New("wechat config: Redis is required (it holds the quota ledger)")
	}
	if c.QuotaLimit < 0 {
		return fmt.Errorf("wechat config: QuotaLimit %d: must not be negative", c.QuotaLimit)
	}
	if c.CallTimeout < 0 {
		return fmt.Errorf("wechat config: CallTimeout %s: must not be negative", c.CallTimeout)
	}
	return nil
}

func validateBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want http(s)://HOST", redactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: must not carry a query, fragment or user", redactURL(s))
	}
	return nil
}

func validateAppID(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only letters, digits, _ and - are allowed", s)
		}
	}
	return nil
}

// Client calls the Mini Program code interfaces of one app. It is safe for
// concurrent use; most callers want GetUnlimited.
//
// Each call takes a token from the TokenSource; when WeChat refuses it
// (40001, 40014, 42001) the client invalidates it, takes a new one and
// retries once. A second refusal is returned (IsTokenInvalid). No other
// error is retried here: the caller decides with Classify.
type Client struct {
	base        string
	appID       string
	tokens      TokenSource
	http        *http.Client
	callTimeout time.Duration
	ledger      *ledger
	noRetry     bool
	log         zerolog.Logger
}

// NewClient returns a client for cfg, with defaults filled in.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	return &Client{
		base:        strings.TrimRight(cmp.Or(cfg.BaseURL, DefaultBaseURL), "/"),
		appID:       cfg.AppID,
		tokens:      cfg.Tokens,
		http:        withoutRedirects(hc),
		callTimeout: cmp.Or(cfg.CallTimeout, DefaultCallTimeout),
		ledger: &ledger{
			rdb:   cfg.Redis,
			key:   QuotaKey(cfg.AppID),
			limit: cmp.Or(cfg.QuotaLimit, DefaultQuotaLimit),
		},
		noRetry: cfg.NoTokenRetry,
		log:     cfg.Logger,
	}, nil
}

// GetUnlimited calls interface B (wxacode.getUnlimited) and returns the code
// image. The request is validated first; an invalid one is refused without a
// call (ErrInvalidRequest). A body that is not a JPEG or PNG is never
// returned as an image: an errcode answer is an *Error, anything else a
// temporary *BadResponseError.
func (c *Client) GetUnlimited(ctx context.Context, req UnlimitedRequest) (Image, error) {
	if err := req.Validate(); err != nil {
		return Image{}, fmt.Errorf("getwxacodeunlimit: %w: %w", ErrInvalidRequest, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Image{}, fmt.Errorf("getwxacodeunlimit: encode: %w", err)
	}
	img, err := c.call(ctx, "getwxacodeunlimit", pathUnlimited, body, false)
	if err != nil {
		return Image{}, fmt.Errorf("getwxacodeunlimit: %w", err)
	}
	return img, nil
}

// call posts body to path with a token, retrying once after a token error.
// When limited, each attempt takes a unit of the lifetime quota first.
func (c *Client) call(ctx context.Context, api, path string, body []byte, limited bool) (Image, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %w", ErrNoToken, err)
	}
	img, err := c.attempt(ctx, api, path, tok, body, limited)
	var we *Error
	if !errors.As(err, &we) || !we.TokenInvalid() {
		return img, err
	}
	c.log.Warn().Str("api", api).Str("appid", c.appID).Int("errcode", we.Code).Str("rid", we.RID).
		Bool("retry", !c.noRetry).Msg("access token refused; invalidating it")
	if ierr := c.tokens.Invalidate(ctx, tok); ierr != nil {
		return Image{}, fmt.Errorf("%w (invalidate token: %w)", err, ierr)
	}
	if c.noRetry {
		return Image{}, err
	}
	tok, terr := c.tokens.Token(ctx)
	if terr != nil {
		return Image{}, fmt.Errorf("%w (new access token: %w)", err, terr)
	}
	return c.attempt(ctx, api, path, tok, body, limited)
}

// attempt makes one HTTP call, counted against the lifetime quota when
// limited.
func (c *Client) attempt(ctx context.Context, api, path, tok string, body []byte, limited bool) (Image, error) {
	if !limited {
		return c.post(ctx, api, path, tok, body)
	}
	if err := c.ledger.reserve(ctx, c.appID); err != nil {
		return Image{}, err
	}
	img, err := c.post(ctx, api, path, tok, body)
	var we *Error
	if errors.As(err, &we) {
		// An errcode answer created no code; give the unit back, or, when
		// WeChat itself says the quota is gone, believe it.
		var lerr error
		if we.Code == CodeLifetimeQuotaUsed {
			lerr = c.ledger.exhaust(ctx)
		} else {
			lerr = c.ledger.refund(ctx)
		}
		if lerr != nil {
			c.log.Warn().Err(lerr).Str("appid", c.appID).Msg("quota ledger not updated after an errcode answer")
		}
	}
	return img, err
}

// post makes one HTTP call and classifies the answer by its bytes.
func (c *Client) post(ctx context.Context, api, path, tok string, body []byte) (Image, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	u := c.base + path + "?access_token=" + url.QueryEscape(tok)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	secrets := []string{tok, url.QueryEscape(tok)}
	if err != nil {
		return Image{}, redact(err, secrets...)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	ev := c.log.Debug().Str("api", api).Str("appid", c.appID).Str("url", redactURL(u))
	resp, err := c.http.Do(req)
	if err != nil {
		err = redact(err, secrets...)
		ev.Err(err).Dur("duration", time.Since(start)).Msg("wechat call failed")
		return Image{}, err
	}
	defer resp.Body.Close()
	data, err := readBody(resp.Body, resp.ContentLength, maxBodyBytes)
	ev = ev.Int("status", resp.StatusCode).Int("bytes", len(data)).Dur("duration", time.Since(start))
	if err != nil {
		err = redact(fmt.Errorf("read answer: %w", err), secrets...)
		ev.Err(err).Msg("wechat call failed")
		return Image{}, err
	}
	img, err := classify(resp, data, tok)
	var we *Error
	if errors.As(err, &we) {
		ev = ev.Int("errcode", we.Code).Str("rid", we.RID)
	}
	ev.AnErr("answer", err).Msg("wechat call")
	return img, err
}

// classify turns an HTTP answer into an image or an error, trusting only
// the body's bytes.
func classify(resp *http.Response, data []byte, tok string) (Image, error) {
	if resp.StatusCode != http.StatusOK {
		return Image{}, &HTTPError{StatusCode: resp.StatusCode, Snippet: snippet(data, tok)}
	}
	if len(data) > maxBodyBytes {
		return Image{}, &BadResponseError{ContentType: resp.Header.Get("Content-Type"), Size: len(data), Snippet: "(larger than 16 MiB)"}
	}
	if ct, ok := imagetype.Detect(data); ok {
		return Image{Data: data, ContentType: ct}, nil
	}
	var e struct {
		Errcode *int   `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}
	if json.Unmarshal(data, &e) == nil && e.Errcode != nil && *e.Errcode != 0 {
		return Image{}, newError(*e.Errcode, scrub(e.Errmsg, tok))
	}
	return Image{}, &BadResponseError{ContentType: resp.Header.Get("Content-Type"), Size: len(data), Snippet: snippet(data, tok)}
}

// scratch holds the buffers that answers of unknown length are read into
// before they are copied out at their exact size. A buffer never leaves
// readBody.
var scratch = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxScratch is the largest buffer put back in scratch: a rare huge answer
// is not kept for the life of the process.
const maxScratch = 1 << 20

// readBody reads an answer of up to limit bytes, and one byte more when it
// is longer, so the caller can tell. The slice returned is the answer's
// only allocation of its size: read in place when the length is announced,
// or copied out of a pooled buffer when it is not (io.ReadAll would grow a
// slice in steps to about twice the body).
func readBody(r io.Reader, length int64, limit int) ([]byte, error) {
	if length >= 0 && length <= int64(limit) {
		b := make([]byte, length)
		n, err := io.ReadFull(r, b)
		return b[:n], err
	}
	buf := scratch.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxScratch {
			buf.Reset()
			scratch.Put(buf)
		}
	}()
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(r, int64(limit)+1))
	return bytes.Clone(buf.Bytes()), err
}
