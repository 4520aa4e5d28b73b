package wechat

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Defaults of StableTokenConfig.
const (
	DefaultFetchTimeout    = 10 * time.Second
	DefaultPollInterval    = 50 * time.Millisecond
	DefaultCredentialsHold = time.Minute
	DefaultErrorHold       = 2 * time.Second
)

// TokenKey is the Redis key of an app's shared access token: a hash with
// fields token, expires_at and refresh_at (Unix milliseconds). Its TTL only
// collects garbage; validity is decided by expires_at.
func TokenKey(appID string) string { return "wxacode:token:{" + appID + "}" }

// tokenLockKey is the lease of the one process fetching the token: a string
// "OWNER DEADLINE_MS".
func tokenLockKey(appID string) string { return TokenKey(appID) + ":lock" }

// tokenFailureKey remembers the last failed fetch, so the fleet does not ask
// again before its hold ends: a hash with fields kind, code, msg, rid, until
// (Unix milliseconds) and fp (a fingerprint of the secret that failed).
func tokenFailureKey(appID string) string { return TokenKey(appID) + ":failure" }

// StableTokenConfig configures a StableTokenSource.
type StableTokenConfig struct {
	// BaseURL is the WeChat API's address. Default DefaultBaseURL.
	BaseURL string
	// AppID is the Mini Program's appid. Required.
	AppID string
	// Secret is the app secret. Required. It is sent only in the body of
	// the stable_token request and never logged.
	Secret string
	// Redis holds the shared token, the fetch lease and the last failure.
	// Required.
	Redis redis.UniversalClient
	// HTTPClient makes the token requests. Default NewHTTPClient().
	HTTPClient *http.Client
	// FetchTimeout bounds one stable_token request. The fetch lease lasts
	// FetchTimeout plus 5 s. Default DefaultFetchTimeout (10 s).
	FetchTimeout time.Duration
	// PollInterval is how often a process waiting for another's fetch reads
	// Redis. Default DefaultPollInterval (50 ms).
	PollInterval time.Duration
	// CredentialsHold is how long a refused secret (ErrCredentials) is
	// remembered: until then every process returns the remembered error
	// without asking WeChat. A process with another secret does not wait.
	// Default DefaultCredentialsHold (1 min).
	CredentialsHold time.Duration
	// ErrorHold is the same for a temporary failure (busy, HTTP 5xx,
	// timeout). Default DefaultErrorHold (2 s).
	ErrorHold time.Duration
	// Now is the clock. Every process should share one (wall) time; the
	// refresh margin absorbs a few seconds of skew. Default time.Now.
	Now func() time.Time
	// Logger receives a line per token fetched or invalidated, never the
	// token or the secret. Default: no logs.
	Logger zerolog.Logger
	// OnFetch, when set, is called after each token this process fetched
	// from WeChat and stored (for metrics).
	OnFetch func()
}

// Validate reports the first field that is missing or wrong, naming it.
func (c StableTokenConfig) Validate() error {
	if c.BaseURL != "" {
		if err := validateBaseURL(c.BaseURL); err != nil {
			return fmt.Errorf("stable token config: BaseURL: %w", err)
		}
	}
	if err := validateAppID(c.AppID); err != nil {
		return fmt.Errorf("stable token config: AppID: %w", err)
	}
	if c.Secret == "" {
		return errors.New("stable token config: Secret is required")
	}
	if c.Redis == nil {
		return errors.New("stable token config: Redis is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"FetchTimeout", c.FetchTimeout}, {"PollInterval", c.PollInterval},
		{"CredentialsHold", c.CredentialsHold}, {"ErrorHold", c.ErrorHold},
	} {
		if d.v < 0 {
			return fmt.Errorf("stable token config: %s %s: must not be negative", d.name, d.v)
		}
	}
	return nil
}

// StableTokenSource hands out the app's stable access token
// (cgi-bin/stable_token in normal mode, never force_refresh), shared by
// every process through Redis. It is safe for concurrent use.
//
// The token lives in Redis (TokenKey) with its expiry written inside the
// value, so a Redis whose TTLs do not tick is fine. One process fetches per
// expiry for the whole fleet: it takes a lease (a Lua compare-and-set on a
// lock key, with the deadline inside the value); the others poll Redis
// every PollInterval until the new token or a failure appears, or the lease
// runs out. Each process keeps the token it last read or fetched until the
// token's refresh point, or until Invalidate drops it (WeChat refused it),
// so a busy worker reads Redis about once per token, not once per call.
//
// A token is refreshed ahead of expiry, once less than the refresh margin
// is left: max(60 s, a tenth of the lifetime WeChat gave), but never more
// than half of it. Meanwhile the current token keeps being served, by every
// process but the one refreshing. WeChat hands back the same stable token
// until it has 300 s left, so a 7200 s token is usually fetched twice: at
// 720 s left (same token, now 720 s) and at 72 s left (a new one).
//
// Invalidate deletes the shared token only if it is still the refused one,
// so processes reporting the same bad token cause one fetch, not many.
// A failed fetch is remembered in Redis for CredentialsHold (refused
// credentials: ErrCredentials) or ErrorHold (anything else), during which
// every process returns the remembered error without a request.
type StableTokenSource struct {
	base         string
	appID        string
	secret       string
	fp           string
	rdb          redis.UniversalClient
	http         *http.Client
	fetchTimeout time.Duration
	poll         time.Duration
	credHold     time.Duration
	errHold      time.Duration
	now          func() time.Time
	log          zerolog.Logger
	onFetch      func()
	keys         []string // token, lock, failure

	mu    sync.Mutex
	local sharedToken // the token as last read or stored, served until refreshAt
}

// NewStableTokenSource returns a source for cfg, with defaults filled in.
func NewStableTokenSource(cfg StableTokenConfig) (*StableTokenSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	sum := sha256.Sum256([]byte("wxacode stable token failure\x00" + cfg.AppID + "\x00" + cfg.Secret))
	return &StableTokenSource{
		base:         strings.TrimRight(cmp.Or(cfg.BaseURL, DefaultBaseURL), "/"),
		appID:        cfg.AppID,
		secret:       cfg.Secret,
		fp:           hex.EncodeToString(sum[:8]),
		rdb:          cfg.Redis,
		http:         withoutRedirects(hc),
		fetchTimeout: cmp.Or(cfg.FetchTimeout, DefaultFetchTimeout),
		poll:         cmp.Or(cfg.PollInterval, DefaultPollInterval),
		credHold:     cmp.Or(cfg.CredentialsHold, DefaultCredentialsHold),
		errHold:      cmp.Or(cfg.ErrorHold, DefaultErrorHold),
		now:          orNow(cfg.Now),
		log:          cfg.Logger,
		onFetch:      cfg.OnFetch,
		keys:         []string{TokenKey(cfg.AppID), tokenLockKey(cfg.AppID), tokenFailureKey(cfg.AppID)},
	}, nil
}

// orNow returns now, or time.Now when now is nil.
func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// refreshMargin is how long before expiry a token is refreshed.
func refreshMargin(lifetime time.Duration) time.Duration {
	return min(max(time.Minute, lifetime/10), lifetime/2)
}

// sharedToken is the token hash in Redis.
type sharedToken struct {
	token     string
	expiresAt time.Time
	refreshAt time.Time
}

func (t sharedToken) valid(now time.Time) bool { return t.token != "" && now.Before(t.expiresAt) }

// cached returns the token the process holds if it is before its refresh
// point.
func (s *StableTokenSource) cached(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local.valid(now) && now.Before(s.local.refreshAt) {
		return s.local.token, true
	}
	return "", false
}

// keep makes st the token the process serves without reading Redis, until
// its refresh point.
func (s *StableTokenSource) keep(st sharedToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.local = st
}

// forget drops the process's copy of token, if it is the one held.
func (s *StableTokenSource) forget(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local.token == token {
		s.local = sharedToken{}
	}
}

// Token returns the shared token, fetching it when no process has a valid
// one. It blocks while another process fetches, until ctx is done.
func (s *StableTokenSource) Token(ctx context.Context) (string, error) {
	if tok, ok := s.cached(s.now()); ok {
		return tok, nil
	}
	var tick *time.Ticker
	for {
		now := s.now()
		st, err := s.load(ctx)
		if err != nil {
			return "", err
		}
		if st.valid(now) {
			if now.Before(st.refreshAt) {
				s.keep(st)
				return st.token, nil
			}
			return s.refreshAhead(ctx, st), nil
		}
		if err := s.rememberedFailure(ctx, now); err != nil {
			return "", err
		}
		owner, ok, err := s.acquire(ctx, now)
		if err != nil {
			return "", err
		}
		if ok {
			// Double-check under the lease: the previous holder may have
			// stored a token or a failure (and released the lease) since
			// the reads above.
			st, err := s.load(ctx)
			if err == nil && st.valid(now) {
				s.release(ctx, owner)
				return st.token, nil
			}
			if err == nil {
				err = s.rememberedFailure(ctx, now)
			}
			if err != nil {
				s.release(ctx, owner)
				return "", err
			}
			return s.fetch(ctx, owner)
		}
		if tick == nil {
			tick = time.NewTicker(s.poll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stable token for appid %s: waiting for another process's fetch: %w", s.appID, ctx.Err())
		case <-tick.C:
		}
	}
}

// invalidateScript deletes the token only if it is still ARGV[1].
var invalidateScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Invalidate drops the shared token if it is still token, so the next
// Token fetches a new one. Another process may already have replaced it:
// then nothing happens.
func (s *StableTokenSource) Invalidate(ctx context.Context, token string) error {
	s.forget(token)
	n, err := invalidateScript.Run(ctx, s.rdb, s.keys[:1], token).Int()
	if err != nil {
		return fmt.Errorf("stable token for appid %s: invalidate: %w", s.appID, err)
	}
	s.log.Info().Str("appid", s.appID).Bool("dropped", n == 1).Msg("access token invalidated")
	return nil
}

func (s *StableTokenSource) load(ctx context.Context) (sharedToken, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys[0], "token", "expires_at", "refresh_at").Result()
	if err != nil {
		return sharedToken{}, fmt.Errorf("stable token for appid %s: read redis: %w", s.appID, err)
	}
	str := func(i int) string {
		if i < len(vals) {
			if v, ok := vals[i].(string); ok {
				return v
			}
		}
		return ""
	}
	exp, err1 := strconv.ParseInt(str(1), 10, 64)
	ref, err2 := strconv.ParseInt(str(2), 10, 64)
	if str(0) == "" || err1 != nil || err2 != nil {
		return sharedToken{}, nil // missing or damaged: fetch again
	}
	return sharedToken{token: str(0), expiresAt: time.UnixMilli(exp), refreshAt: time.UnixMilli(ref)}, nil
}

// acquireScript takes the fetch lease unless another owner holds it past
// now. KEYS[1] lock; ARGV owner, now, deadline (ms), ttl (ms, for garbage
// collection only).
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
	local d = tonumber(string.match(v, ' (%d+)$'))
	if d and d > tonumber(ARGV[2]) then
		return 0
	end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[3], 'PX', ARGV[4])
return 1
`)

// acquire tries to take the fetch lease and returns its owner id.
func (s *StableTokenSource) acquire(ctx context.Context, now time.Time) (string, bool, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	owner := hex.EncodeToString(b[:])
	lease := s.fetchTimeout + 5*time.Second
	ok, err := acquireScript.Run(ctx, s.rdb, s.keys[1:2], owner, now.UnixMilli(), now.Add(lease).UnixMilli(), (lease + time.Minute).Milliseconds()).Int()
	if err != nil {
		return "", false, fmt.Errorf("stable token for appid %s: take fetch lease: %w", s.appID, err)
	}
	return owner, ok == 1, nil
}

// The scripts below act only while ARGV[1] still owns the lease (KEYS[2]),
// and release it.
const ownsLease = `
local v = redis.call('GET', KEYS[2])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
	return 0
end
`

// storeScript writes the token and forgets any failure. KEYS token, lock,
// failure; ARGV owner, token, expires_at, refresh_at, ttl (ms).
var storeScript = redis.NewScript(ownsLease + `
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'expires_at', ARGV[3], 'refresh_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`)

// failScript remembers a failed fetch. KEYS failure, lock; ARGV owner,
// kind, code, msg, rid, until, fp, ttl (ms).
var failScript = redis.NewScript(ownsLease + `
redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'code', ARGV[3], 'msg', ARGV[4], 'rid', ARGV[5], 'until', ARGV[6], 'fp', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('DEL', KEYS[2])
return 1
`)

// postponeScript moves a token's refresh point after a failed refresh.
// KEYS token, lock; ARGV owner, token, refresh_at.
var postponeScript = redis.NewScript(ownsLease + `
if redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
	redis.call('HSET', KEYS[1], 'refresh_at', ARGV[3])
end
redis.call('DEL', KEYS[2])
return 1
`)

// releaseScript gives the lease back. KEYS unused, lock; ARGV owner.
var releaseScript = redis.NewScript(ownsLease + `
redis.call('DEL', KEYS[2])
return 1
`)

// release gives the lease back, even when ctx is done. A failure only
// delays the next fetch until the lease's deadline.
func (s *StableTokenSource) release(ctx context.Context, owner string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := releaseScript.Run(rctx, s.rdb, s.keys[:2], owner).Err(); err != nil {
		s.log.Warn().Err(err).Str("appid", s.appID).Msg("access token lease not released")
	}
}

// fetch asks WeChat for the token while holding the lease, and stores the
// token or the failure before giving the lease back.
func (s *StableTokenSource) fetch(ctx context.Context, owner string) (string, error) {
	tok, lifetime, ferr := s.request(ctx)
	if ferr != nil {
		ferr = fmt.Errorf("stable token for appid %s: %w", s.appID, ferr)
	}
	// Redis updates must happen even when the caller has given up.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := s.now()
	if ferr == nil {
		if err := s.store(rctx, owner, tok, lifetime, now); err != nil {
			return "", err
		}
		return tok, nil
	}
	if ctx.Err() != nil {
		// The caller gave up: not the endpoint's fault, nothing to remember.
		s.release(rctx, owner)
		return "", ferr
	}
	f := failureOf(ferr)
	hold := s.errHold
	if f.kind == failCredentials {
		hold = s.credHold
	}
	until := now.Add(hold)
	err := failScript.Run(rctx, s.rdb, []string{s.keys[2], s.keys[1]}, owner,
		f.kind, f.code, f.msg, f.rid, until.UnixMilli(), s.fp, (hold + time.Minute).Milliseconds()).Err()
	if err != nil {
		return "", fmt.Errorf("%w (remember failure: %v)", ferr, err)
	}
	return "", ferr
}

// store writes a fetched token and releases the lease.
func (s *StableTokenSource) store(ctx context.Context, owner, tok string, lifetime time.Duration, now time.Time) error {
	exp := now.Add(lifetime)
	ref := exp.Add(-refreshMargin(lifetime))
	ok, err := storeScript.Run(ctx, s.rdb, s.keys, owner, tok, exp.UnixMilli(), ref.UnixMilli(), (lifetime + 10*time.Minute).Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("stable token for appid %s: store: %w", s.appID, err)
	}
	s.log.Info().Str("appid", s.appID).Dur("expires_in", lifetime).Time("refresh_at", ref).Bool("stored", ok == 1).Msg("access token fetched")
	s.keep(sharedToken{token: tok, expiresAt: exp, refreshAt: ref})
	if s.onFetch != nil {
		s.onFetch()
	}
	return nil
}

// refreshAhead refreshes a token that is still valid but inside its
// refresh margin, if no other process is doing so, and returns the token to
// use. Failures are logged and the current token is kept.
func (s *StableTokenSource) refreshAhead(ctx context.Context, st sharedToken) string {
	now := s.now()
	owner, ok, err := s.acquire(ctx, now)
	if err != nil || !ok {
		return st.token
	}
	// Double-check under the lease: another process may just have
	// refreshed (or postponed) it.
	if cur, err := s.load(ctx); err != nil || cur.valid(now) && now.Before(cur.refreshAt) {
		s.release(ctx, owner)
		if err != nil {
			return st.token
		}
		s.keep(cur)
		return cur.token
	}
	tok, lifetime, ferr := s.request(ctx)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now = s.now()
	if ferr == nil {
		if err := s.store(rctx, owner, tok, lifetime, now); err != nil {
			s.log.Warn().Err(err).Str("appid", s.appID).Msg("refreshed access token not stored; keeping the current one")
			return st.token
		}
		return tok
	}
	hold := s.errHold
	if errors.Is(ferr, ErrCredentials) {
		hold = s.credHold
	}
	next := now.Add(min(hold, st.expiresAt.Sub(now)/2))
	if err := postponeScript.Run(rctx, s.rdb, s.keys[:2], owner, st.token, next.UnixMilli()).Err(); err != nil {
		s.log.Warn().Err(err).Str("appid", s.appID).Msg("access token refresh not postponed")
	}
	s.log.Warn().Err(ferr).Str("appid", s.appID).Time("expires_at", st.expiresAt).Time("next_try", next).
		Msg("access token refresh failed; keeping the current one")
	return st.token
}

// Kinds of remembered failures.
const (
	failCredentials = "credentials" // ErrCredentials: permanent
	failWeChat      = "wechat"      // a temporary *Error (busy, rate limit)
	failOther       = "other"       // HTTP status, transport, bad answer
)

type failure struct {
	kind, msg, rid string
	code           int
}

// failureOf describes a fetch error for Redis, without secrets (the error
// texts are already redacted).
func failureOf(err error) failure {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return failure{kind: failCredentials, code: ce.code, msg: ce.msg, rid: ce.rid}
	}
	var we *Error
	if errors.As(err, &we) {
		return failure{kind: failWeChat, code: we.Code, msg: we.Msg, rid: we.RID}
	}
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error() // without the "stable token for appid" prefix
	}
	return failure{kind: failOther, msg: msg}
}

// rememberedFailure returns the failure another fetch left in Redis, if it
// still holds and came from the same secret.
func (s *StableTokenSource) rememberedFailure(ctx context.Context, now time.Time) error {
	m, err := s.rdb.HGetAll(ctx, s.keys[2]).Result()
	if err != nil {
		return fmt.Errorf("stable token for appid %s: read redis: %w", s.appID, err)
	}
	until, err := strconv.ParseInt(m["until"], 10, 64)
	if err != nil || m["fp"] != s.fp || !now.Before(time.UnixMilli(until)) {
		return nil
	}
	code, _ := strconv.Atoi(m["code"])
	var cause error
	switch m["kind"] {
	case failCredentials:
		cause = &credentialsError{code: code, msg: m["msg"], rid: m["rid"]}
	case failWeChat:
		cause = &Error{Code: code, Msg: m["msg"], RID: m["rid"]}
	default:
		cause = errors.New(m["msg"])
	}
	return fmt.Errorf("stable token for appid %s: %w (remembered until %s)", s.appID, cause, time.UnixMilli(until).UTC().Format(time.RFC3339))
}

// credentialsError is a token endpoint's refusal of the app's credentials.
// It is not an *Error: its 40001 means a wrong secret, not a stale token.
type credentialsError struct {
	code     int
	msg, rid string
}

func (e *credentialsError) Error() string {
	s := fmt.Sprintf("%v: errcode %d: %s", ErrCredentials, e.code, e.msg)
	if e.rid != "" {
		s += " (rid " + e.rid + ")"
	}
	return s + "; check the appid, the secret and the server's IP allowlist"
}

func (e *credentialsError) Unwrap() error { return ErrCredentials }

// request makes one stable_token request.
func (s *StableTokenSource) request(ctx context.Context) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.fetchTimeout)
	defer cancel()
	body, err := json.Marshal(struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}{"client_credential", s.appID, s.secret, false})
	if err != nil {
		return "", 0, fmt.Errorf("encode: %w", err)
	}
	tok, lifetime, err := fetchToken(ctx, s.http, http.MethodPost, s.base+pathStableToken, nil, body, s.secret)
	if err != nil {
		return "", 0, err
	}
	if lifetime <= 0 {
		return "", 0, &BadResponseError{ContentType: "application/json", Snippet: "(expires_in missing or not positive)"}
	}
	return tok, lifetime, nil
}

// tokenAnswer is the JSON answer of a token endpoint.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Errcode     int    `json:"errcode"`
	Errmsg      string `json:"errmsg"`
}

// fetchToken makes a token request and reads a JSON token answer. The
// lifetime is zero when the answer has none. secrets are kept out of errors.
func fetchToken(ctx context.Context, hc *http.Client, method, u string, header http.Header, body []byte, secrets ...string) (string, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return "", 0, redact(err, secrets...)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, redact(err, secrets...)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", 0, redact(fmt.Errorf("read answer: %w", err), secrets...)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, &HTTPError{StatusCode: resp.StatusCode, Snippet: snippet(data, secrets...)}
	}
	var a tokenAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return "", 0, &BadResponseError{ContentType: resp.Header.Get("Content-Type"), Size: len(data), Snippet: "(not a JSON token answer)"}
	}
	if a.Errcode != 0 {
		e := newError(a.Errcode, scrub(a.Errmsg, secrets...))
		if e.Code == CodeBusy || e.RateLimited() {
			return "", 0, e
		}
		return "", 0, &credentialsError{code: e.Code, msg: e.Msg, rid: e.RID}
	}
	if a.AccessToken == "" {
		return "", 0, &BadResponseError{ContentType: resp.Header.Get("Content-Type"), Size: len(data), Snippet: "(no access_token in the answer)"}
	}
	return a.AccessToken, time.Duration(a.ExpiresIn) * time.Second, nil
}
