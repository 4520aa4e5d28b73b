package dashboard

import (
	"net"
	"net/http"
	"strings"
)

// EnvAllowedHosts lists, comma-separated, the host names (or HOST:PORT)
// that requests to a dashboard without a credential may name in their Host
// header, besides the served address and the loopback names.
const EnvAllowedHosts = "WXACODE_ALLOWED_HOSTS"

// crossOrigin refuses state changes (every method but GET, HEAD and
// OPTIONS) that a browser reports as coming from another origin, through
// Sec-Fetch-Site or, failing that, Origin against Host: any page the
// operator visits could otherwise pause queues or delete tasks. Requests
// without either header (curl, scripts, Prometheus) pass.
func crossOrigin(h http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, errorJSON{"cross-origin request refused: use the dashboard's own pages"})
	}))
	return p.Handler(h)
}

// hostGuard refuses requests whose Host header names neither a loopback
// name (localhost, 127.0.0.0/8, ::1) nor one of allowed (host names or
// HOST:PORT, lowercase). Without it, a page whose name an attacker points
// at 127.0.0.1 (DNS rebinding) could read the dashboard of an operator who
// visits it.
func hostGuard(allowed []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !HostAllowed(r.Host, allowed) {
			writeJSON(w, http.StatusMisdirectedRequest, errorJSON{"host " + quoteHost(r.Host) + " is not served here: add it to " + EnvAllowedHosts + " or set a credential"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HostAllowed reports whether hostport, a request's Host header, names a
// loopback name or one of allowed (host names or HOST:PORT; a name without
// a port allows every port).
func HostAllowed(hostport string, allowed []string) bool {
	host, port := splitHost(hostport)
	if host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, a := range allowed {
		ah, ap := splitHost(a)
		if ah == host && (ap == "" || ap == port) {
			return true
		}
	}
	return false
}

// splitHost splits HOST[:PORT] (or [IPv6][:PORT]) into a lowercase host
// without brackets or trailing dot, and the port.
func splitHost(hostport string) (host, port string) {
	host = hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	return strings.ToLower(host), port
}

// quoteHost shows a Host header in a message, cut short and quoted.
func quoteHost(h string) string {
	if len(h) > 64 {
		h = h[:64] + "…"
	}
	return strings.ToValidUTF8(`"`+h+`"`, "?")
}
