package wechat

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	hide "github.com/wxacode/wxacode/internal/redact"
)

// Timeouts of the HTTP client NewHTTPClient builds.
const (
	dialTimeout           = 5 * time.Second
	tlsHandshakeTimeout   = 5 * time.Second
	responseHeaderTimeout = 15 * time.Second
	httpClientTimeout     = 30 * time.Second
)

// NewHTTPClient returns the HTTP client wxacode uses for WeChat by default,
// sized for about 100 calls a second at 300 ms latency (about 30 calls in
// flight): keep-alive with up to 128 idle connections to the host, so
// connections are reused instead of re-dialed; dial and TLS handshake
// timeouts of 5 s, a response header timeout of 15 s and an overall timeout
// of 30 s. Redirects are not followed: the access token rides in the query
// string and must not be sent elsewhere.
func NewHTTPClient() *http.Client {
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     t,
		Timeout:       httpClientTimeout,
		CheckRedirect: noRedirects,
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withoutRedirects returns a copy of hc that does not follow redirects.
func withoutRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = noRedirects
	return &c
}

// redactURL returns u with its user info and secret query values (the
// access_token, the secret) replaced by "REDACTED", for logs and errors.
func redactURL(u string) string { return hide.URL(u) }

// redactedError hides secrets from an error's text while keeping it
// unwrappable (errors.Is(err, context.DeadlineExceeded) still holds).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact rewrites the URL of any *url.Error in err and removes every secret
// from err's text.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	msg := err.Error()
	clean := scrub(msg, secrets...)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// scrub replaces every non-empty secret in s.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	return s
}

// snippetLen is how much of an unexpected body goes into an error.
const snippetLen = 120

// snippet returns the start of b, made printable, without secrets.
func snippet(b []byte, secrets ...string) string {
	if len(b) > 4096 {
		b = b[:4096]
	}
	// Scrub before cutting, so a secret that straddles the cut cannot leave
	// its first half behind.
	s := scrub(string(b), secrets...)
	var sb strings.Builder
	n := 0
	for _, r := range s {
		if n == snippetLen {
			sb.WriteString("...")
			break
		}
		n++
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			sb.WriteByte('.')
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
