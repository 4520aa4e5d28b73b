// Package redact hides the secrets a URL may carry before it is shown in a
// message or a log line: the user info (user and password, or a token in
// the user's place) and the values of query parameters that hold secrets
// (access_token, secret, ...). Every part of wxacode that shows a URL it
// was given (API base, token service, storage endpoint, Redis) goes through
// URL.
package redact

import (
	"net/url"
	"strings"
)

// Placeholder stands where a secret was.
const Placeholder = "REDACTED"

// secretParams are query parameters whose values are secrets, lowercase.
var secretParams = []string{"access_token", "secret", "token", "password", "passwd", "key", "signature", "sig", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}

// URL returns raw with its user info replaced by Placeholder and the values
// of secret query parameters replaced by Placeholder. Text that does not
// parse as a URL is not shown at all: it may hold a secret in a place the
// parser could not find.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(Placeholder)
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Placeholder
		} else {
			changed := false
			for k := range q {
				if isSecretParam(k) {
					q[k] = []string{Placeholder}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		}
	}
	return u.String()
}

func isSecretParam(name string) bool {
	name = strings.ToLower(name)
	for _, p := range secretParams {
		if name == p {
			return true
		}
	}
	return false
}
