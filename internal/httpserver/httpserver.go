// Package httpserver builds the HTTP servers of wxacode (the dashboard,
// the demo, the simulator and a worker's metrics) with the same timeouts,
// so that no client can hold a connection forever:
//
//   - request headers must arrive within ReadHeaderTimeout (10 s);
//   - a kept-alive connection waiting for its next request is closed after
//     IdleTimeout (2 min);
//   - a request body that stalls — no byte arrives for BodyStall (30 s)
//     while the handler waits for one — is cut: the read fails and the
//     connection is closed. A large upload that keeps moving is never cut,
//     however long it takes, and neither is a long response.
//
// The body rule is a read deadline renewed before every read of the body
// (http.ResponseController.SetReadDeadline), and lifted once the body is
// read to its end.
package httpserver

import (
	"cmp"
	"io"
	"net/http"
	"time"
)

// Defaults of Config.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultBodyStall         = 30 * time.Second
)

// Config sets a server's timeouts. The zero value takes every default.
type Config struct {
	// ReadHeaderTimeout bounds the reading of a request's headers.
	// Default DefaultReadHeaderTimeout (10 s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request
	// for this long. Default DefaultIdleTimeout (2 min).
	IdleTimeout time.Duration
	// BodyStall is the longest a request body may go without a byte while
	// the handler waits for one. Default DefaultBodyStall (30 s).
	BodyStall time.Duration
}

// New returns a server of h with the timeouts of cfg.
func New(h http.Handler, cfg Config) *http.Server {
	return &http.Server{
		Handler:           StallGuard(cmp.Or(cfg.BodyStall, DefaultBodyStall), h),
		ReadHeaderTimeout: cmp.Or(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout),
	}
}

// StallGuard wraps h so that a request body stalled for longer than stall
// fails to read and its connection is closed. Requests without a body, and
// responses, are not limited.
func StallGuard(stall time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		// Set before the handler runs, so that a body the handler never
		// reads cannot hold the connection either (the server drains what
		// is left of it after the handler).
		if err := rc.SetReadDeadline(time.Now().Add(stall)); err != nil {
			h.ServeHTTP(w, r) // not a real connection (a test recorder)
			return
		}
		r.Body = &stallReader{ReadCloser: r.Body, rc: rc, stall: stall}
		h.ServeHTTP(w, r)
	})
}

// stallReader renews the connection's read deadline before every read of
// the body and lifts it at the body's end.
type stallReader struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
	ended bool
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.ended {
		return s.ReadCloser.Read(p)
	}
	_ = s.rc.SetReadDeadline(time.Now().Add(s.stall))
	n, err := s.ReadCloser.Read(p)
	if err == io.EOF {
		// The body is in: the connection goes back to the server's own
		// timeouts (it watches for the client going away meanwhile).
		s.ended = true
		_ = s.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
