package simulator

import (
	"time"
)

// Forced stable_token refreshes are limited as WeChat documents them: at
// least 30 s apart (a forced call sooner than that acts as a normal-mode
// call: "otherwise it does not refresh"), and at most 20 in any 24 hours
// (then 45009).
const (
	forcedSpacing  = 30 * time.Second
	forcedPerDay   = 20
	forcedDaySpan  = 24 * time.Hour
	tokenLength    = 136
	tokenAlphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	pruneEvery     = 1024 // token issues between sweeps of dead tokens
	minDeadKeeping = time.Hour
)

// token is one access token the simulator issued.
type token struct {
	value   string
	app     string
	expires time.Time // its natural end: 42001 from then
	revoked time.Time // zero, or when it was replaced or invalidated: 40001 from then
}

// check returns 0 if t is valid at now, 42001 once expired, 40001 once
// revoked (whichever came first).
func (t *token) check(now time.Time) int {
	revoked := !t.revoked.IsZero() && !now.Before(t.revoked)
	expired := !now.Before(t.expires)
	switch {
	case expired && (t.revoked.IsZero() || !t.expires.After(t.revoked)):
		return codeTokenExpired
	case revoked:
		return codeInvalidToken
	}
	return codeOK
}

// end is when t stops being valid, for whatever reason.
func (t *token) end() time.Time {
	if !t.revoked.IsZero() && t.revoked.Before(t.expires) {
		return t.revoked
	}
	return t.expires
}

// revokeAt makes t die at `at` unless it dies sooner anyway.
func (t *token) revokeAt(at time.Time) {
	if t.revoked.IsZero() || at.Before(t.revoked) {
		t.revoked = at
	}
}

// issueLocked creates a token of app valid for the configured lifetime.
// s.mu must be held.
func (s *Server) issueLocked(app string, now time.Time) *token {
	b := make([]byte, tokenLength)
	for i := range b {
		b[i] = tokenAlphabet[s.tokenRand.IntN(len(tokenAlphabet))]
	}
	t := &token{value: string(b), app: app, expires: now.Add(s.cfg.TokenLifetime)}
	s.tokens[t.value] = t
	s.issued++
	if s.issued%pruneEvery == 0 {
		keep := max(s.cfg.TokenLifetime, minDeadKeeping)
		for k, old := range s.tokens {
			if now.Sub(old.end()) > keep {
				delete(s.tokens, k)
			}
		}
	}
	return t
}

// classicTokenLocked issues a new classic token for app; the previous one stays
// valid for the overlap, then answers 40001. s.mu must be held.
func (s *Server) classicTokenLocked(st *appState, app string, now time.Time) (string, int) {
	if prev := st.classic; prev != nil {
		prev.revokeAt(now.Add(s.overlap))
	}
	t := s.issueLocked(app, now)
	st.classic = t
	return t.value, int(s.cfg.TokenLifetime / time.Second)
}

// stableTokenLocked answers cgi-bin/stable_token for app. Normal mode
// hands every caller the current token while more than the overlap is
// left of it, then issues a new one (the old one lives out its last
// minutes beside it). Forced mode revokes the current token at once and
// issues a new one, within WeChat's limits. It returns the token, its
// remaining seconds, or an errcode. s.mu must be held.
func (s *Server) stableTokenLocked(st *appState, app string, force bool, now time.Time) (string, int, int) {
	cur := st.stable
	if force && (st.lastForced.IsZero() || now.Sub(st.lastForced) >= forcedSpacing) {
		cut := now.Add(-forcedDaySpan)
		kept := st.forced[:0]
		for _, t := range st.forced {
			if t.After(cut) {
				kept = append(kept, t)
			}
		}
		st.forced = kept
		if len(st.forced) >= forcedPerDay {
			return "", 0, codeFrequency
		}
		st.forced = append(st.forced, now)
		st.lastForced = now
		if cur != nil {
			cur.revokeAt(now)
		}
		cur = nil
	}
	if cur != nil && cur.check(now) == codeOK && cur.expires.Sub(now) > s.overlap {
		return cur.value, int(cur.expires.Sub(now) / time.Second), codeOK
	}
	t := s.issueLocked(app, now)
	st.stable = t
	return t.value, int(s.cfg.TokenLifetime / time.Second), codeOK
}
