package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Environment variables that hold the dashboard's credential.
const (
	EnvToken    = "WXACODE_DASHBOARD_TOKEN"
	EnvUser     = "WXACODE_DASHBOARD_USER"
	EnvPassword = "WXACODE_DASHBOARD_PASSWORD"
)

// Auth is the credential the dashboard asks of every request but /healthz.
// The zero value asks for nothing, which is fit only for a dashboard bound
// to a loopback address (see CheckBind). When both a token and a user are
// set, either is accepted.
type Auth struct {
	// Token is accepted as "Authorization: Bearer TOKEN" (for Prometheus
	// and scripts).
	Token string
	// User and Password are accepted as HTTP basic auth (for browsers,
	// which prompt for them). Both or neither.
	User, Password string
}

// AuthFromEnv reads the credential from WXACODE_DASHBOARD_TOKEN, or
// WXACODE_DASHBOARD_USER and WXACODE_DASHBOARD_PASSWORD.
func AuthFromEnv(getenv func(string) string) (Auth, error) {
	a := Auth{Token: getenv(EnvToken), User: getenv(EnvUser), Password: getenv(EnvPassword)}
	if (a.User == "") != (a.Password == "") {
		return Auth{}, fmt.Errorf("dashboard credential: set both %s and %s, or neither", EnvUser, EnvPassword)
	}
	return a, nil
}

// Enabled reports whether a credential is set.
func (a Auth) Enabled() bool { return a.Token != "" || a.User != "" }

// IsLoopback reports whether the listen address addr (HOST:PORT) binds
// only loopback interfaces: 127.0.0.0/8, ::1 or localhost. An empty host
// binds every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrNoCredential is returned by CheckBind for a dashboard that would be
// reachable from other hosts without a credential.
var ErrNoCredential = errors.New("a dashboard bound to a non-loopback address needs a credential: set " +
	EnvToken + " (Bearer), or " + EnvUser + " and " + EnvPassword + " (basic auth)")

// CheckBind refuses to serve on a non-loopback address without a
// credential: the dashboard can delete and run tasks (unless read-only) and
// shows every campaign.
func CheckBind(addr string, a Auth) error {
	if IsLoopback(addr) || a.Enabled() {
		return nil
	}
	return fmt.Errorf("--addr %s: %w", addr, ErrNoCredential)
}

// requireAuth wraps h so that it answers 401 to requests without the
// credential. Comparisons take constant time.
func requireAuth(a Auth, h http.Handler) http.Handler {
	if !a.Enabled() {
		return h
	}
	token := sha256.Sum256([]byte(a.Token))
	user := sha256.Sum256([]byte(a.User))
	pass := sha256.Sum256([]byte(a.Password))
	same := func(want [32]byte, got string) bool {
		g := sha256.Sum256([]byte(got))
		return subtle.ConstantTimeCompare(want[:], g[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if a.Token != "" {
			if t, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
				ok = same(token, strings.TrimSpace(t))
			}
		}
		if !ok && a.User != "" {
			if u, p, found := r.BasicAuth(); found {
				// Both compared, always, so timing tells nothing.
				okUser, okPass := same(user, u), same(pass, p)
				ok = okUser && okPass
			}
		}
		if !ok {
			if a.User != "" {
				w.Header().Set("WWW-Authenticate", `Basic realm="wxacode", charset="UTF-8"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wxacode"`)
			}
			writeJSON(w, http.StatusUnauthorized, errorJSON{"credential required"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
