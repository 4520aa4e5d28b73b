package wechat

import (
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

	"github.com/rs/zerolog"
)

// DefaultURLTokenLifetime is how long a token from a token service is used
// when the answer does not say.
const DefaultURLTokenLifetime = 5 * time.Minute

// URLTokenConfig configures a URLTokenSource.
type URLTokenConfig struct {
	// URL is the company's token service, asked with GET. It answers the
	// token as JSON {"access_token":"...","expires_in":SECONDS} or as plain
	// text. Required. Its query is never logged or put in errors.
	URL string
	// Header is sent with every request (for example Authorization). Never
	// logged.
	Header http.Header
	// HTTPClient makes the requests. Default NewHTTPClient().
	HTTPClient *http.Client
	// DefaultLifetime is a token's lifetime when the answer has no
	// expires_in (plain text). Default DefaultURLTokenLifetime (5 min).
	DefaultLifetime time.Duration
	// FetchTimeout bounds one request. Default DefaultFetchTimeout (10 s).
	FetchTimeout time.Duration
	// ErrorHold is how long a failed request is remembered and returned
	// without asking again. Default DefaultErrorHold (2 s).
	ErrorHold time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives a line per token fetched, never the token. Default:
	// no logs.
	Logger zerolog.Logger
}

// Validate reports the first field that is missing or wrong, naming it.
func (c URLTokenConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if c.URL == "" {
		return errors.New("url token config: URL is required")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("url token config: URL: want http(s)://HOST/PATH")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DefaultLifetime", c.DefaultLifetime}, {"FetchTimeout", c.FetchTimeout}, {"ErrorHold", c.ErrorHold},
	} {
		if d.v < 0 {
			return fmt.Errorf("url token config: %s %s: must not be negative", d.name, d.v)
		}
	}
	return nil
}

// URLTokenSource hands out tokens from a company's central token service
// (which alone talks to WeChat's token endpoint), cached in the process
// until the refresh margin before expiry (see StableTokenSource). At most
// one request is in flight per source; callers wait for it or their
// context. It is safe for concurrent use.
type URLTokenSource struct {
	url          string
	logURL       string
	header       http.Header
	http         *http.Client
	lifetime     time.Duration
	fetchTimeout time.Duration
	errHold      time.Duration
	now          func() time.Time
	log          zerolog.Logger

	mu        sync.Mutex
	token     string
	expiresAt time.Time
	refreshAt time.Time
	lastErr   error
	errUntil  time.Time
	inflight  *urlFetch
}

// urlFetch is one request in flight; done is closed when it ends.
type urlFetch struct {
	done  chan struct{}
	token string
	err   error
}

// NewURLTokenSource returns a source for cfg, with defaults filled in.
func NewURLTokenSource(cfg URLTokenConfig) (*URLTokenSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}
	u, _ := url.Parse(cfg.URL)
	return &URLTokenSource{
		url:          cfg.URL,
		logURL:       u.Scheme + "://" + u.Host + u.Path,
		header:       cfg.Header.Clone(),
		http:         withoutRedirects(hc),
		lifetime:     cmp.Or(cfg.DefaultLifetime, DefaultURLTokenLifetime),
		fetchTimeout: cmp.Or(cfg.FetchTimeout, DefaultFetchTimeout),
		errHold:      cmp.Or(cfg.ErrorHold, DefaultErrorHold),
		now:          orNow(cfg.Now),
		log:          cfg.Logger,
	}, nil
}

// Token returns the cached token, or asks the service when it is missing
// or inside its refresh margin. A failed refresh of a still valid token
// keeps the old one.
func (s *URLTokenSource) Token(ctx context.Context) (string, error) {
	for {
		s.mu.Lock()
		now := s.now()
		valid := s.token != "" && now.Before(s.expiresAt)
		if valid && (now.Before(s.refreshAt) || s.inflight != nil || now.Before(s.errUntil)) {
			tok := s.token
			s.mu.Unlock()
			return tok, nil
		}
		if !valid && s.lastErr != nil && now.Before(s.errUntil) {
			err := s.lastErr
			s.mu.Unlock()
			return "", err
		}
		f := s.inflight
		if f == nil {
			f = &urlFetch{done: make(chan struct{})}
			s.inflight = f
			s.mu.Unlock()
			s.run(ctx, f)
			if f.err != nil && valid {
				return s.currentOr(f)
			}
			return f.token, f.err
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("token service: %w", ctx.Err())
		case <-f.done:
		}
		if f.err == nil {
			return f.token, nil
		}
		if errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded) {
			continue // the fetching caller gave up; try on our own context
		}
		return "", f.err
	}
}

// currentOr returns the cached token if still valid, else f's error.
func (s *URLTokenSource) currentOr(f *urlFetch) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.expiresAt) {
		s.log.Warn().Err(f.err).Str("url", s.logURL).Msg("token refresh failed; keeping the current token")
		return s.token, nil
	}
	return "", f.err
}

// run makes the request of f and publishes its result.
func (s *URLTokenSource) run(ctx context.Context, f *urlFetch) {
	tok, lifetime, err := s.request(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch {
	case err == nil:
		s.token, s.expiresAt, s.refreshAt = tok, now.Add(lifetime), now.Add(lifetime-refreshMargin(lifetime))
		s.lastErr, s.errUntil = nil, time.Time{}
		s.log.Info().Str("url", s.logURL).Dur("expires_in", lifetime).Msg("access token fetched")
	case ctx.Err() == nil:
		s.lastErr, s.errUntil = err, now.Add(s.errHold)
	}
	f.token, f.err = tok, err
	s.inflight = nil
	close(f.done)
}

// request asks the service for a token.
func (s *URLTokenSource) request(ctx context.Context) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return "", 0, fmt.Errorf("token service: %w", err)
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	resp, err := s.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = s.logURL
		}
		return "", 0, fmt.Errorf("token service: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", 0, fmt.Errorf("token service: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("token service %s: %w", s.logURL, &HTTPError{StatusCode: resp.StatusCode, Snippet: "(body not shown)"})
	}
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, "{") {
		var a tokenAnswer
		if err := json.Unmarshal([]byte(text), &a); err != nil || a.Errcode != 0 || a.AccessToken == "" {
			// Not an *Error: the service's errcode is not about our call.
			return "", 0, fmt.Errorf("token service %s: no access_token in the JSON answer (errcode %d)", s.logURL, a.Errcode)
		}
		lifetime := time.Duration(a.ExpiresIn) * time.Second
		if lifetime <= 0 {
			lifetime = s.lifetime
		}
		return a.AccessToken, lifetime, nil
	}
	if text == "" || strings.ContainsFunc(text, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return "", 0, fmt.Errorf("token service %s: plain text answer of %d bytes is not a token", s.logURL, len(data))
	}
	return text, s.lifetime, nil
}

// Invalidate forgets token if it is still the cached one, so the next
// Token asks the service again.
func (s *URLTokenSource) Invalidate(ctx context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == token {
		s.token = ""
		s.lastErr, s.errUntil = nil, time.Time{}
	}
	return nil
}
