package wechat

import (
	"errors"
	"fmt"
	"strings"
)

// Error is an errcode answer of the WeChat API: a JSON body
// {"errcode":N,"errmsg":"..."}, which WeChat sends with HTTP 200.
//
// Every code is in exactly one of two classes: Permanent (asking again
// cannot help) or Temporary (asking again later can). RateLimited and
// TokenInvalid pick out the temporary codes that need a particular response.
// Codes wxacode does not know are Temporary: the package never retries them
// itself (only a token error gets one retry, see Client), so the caller bounds
// them with its own attempt limit (the worker fails a scene after its last
// retry, recording the code).
type Error struct {
	// Code is the errcode, never 0.
	Code int
	// Msg is errmsg without its trailing "rid: ..." or "hint: [...]".
	Msg string
	// RID is WeChat's request id from errmsg, for support requests; empty
	// when errmsg carries none.
	RID string
}

// Error codes of the Mini Program code interfaces and the token endpoints.
const (
	CodeBusy              = -1    // system busy: retry with backoff
	CodeTokenInvalid      = 40001 // access token invalid or not the latest
	CodeAppSecretInvalid  = 40125 // wrong app secret (token endpoint)
	CodeAppIDInvalid      = 40013 // wrong appid (token endpoint)
	CodeTokenMalformed    = 40014 // invalid access token
	CodeTokenExpired      = 42001 // access token expired
	CodeFrequencyLimit    = 45009 // minute frequency limit reached
	CodeMinuteQuota       = 45011 // API minute quota reached
	CodeInvalidArgs       = 40097 // invalid arguments
	CodeInvalidScene      = 40129 // invalid scene characters
	CodeSceneTooLong      = 40169 // scene too long, or body not JSON
	CodeInvalidPage       = 41030 // invalid or unreleased page
	CodeBodyFormat        = 47001 // body is not JSON or has an unknown field
	CodeUnauthorized      = 48001 // API not authorized for this account
	CodeScancodeTime      = 85096 // scancode_time is reserved
	CodeInvalidPath       = 40159 // path empty or too long (A and C)
	CodeLifetimeQuotaUsed = 45029 // lifetime quota of A and C used up
)

// permanentCodes are the codes that asking again cannot fix.
var permanentCodes = map[int]bool{
	CodeInvalidArgs:       true,
	CodeInvalidScene:      true,
	CodeSceneTooLong:      true,
	CodeInvalidPage:       true,
	CodeBodyFormat:        true,
	CodeUnauthorized:      true,
	CodeScancodeTime:      true,
	CodeInvalidPath:       true,
	CodeLifetimeQuotaUsed: true,
}

// Error formats the error without any secret: errcode, message and rid.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wechat errcode %d", e.Code)
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.RID != "" {
		b.WriteString(" (rid ")
		b.WriteString(e.RID)
		b.WriteString(")")
	}
	return b.String()
}

// Class returns the error's class: ClassPermanent, ClassTokenInvalid,
// ClassRateLimited or ClassTemporary.
func (e *Error) Class() Class {
	switch {
	case e.TokenInvalid():
		return ClassTokenInvalid
	case e.RateLimited():
		return ClassRateLimited
	case e.Permanent():
		return ClassPermanent
	}
	return ClassTemporary
}

// Permanent reports whether asking again cannot help (a bad scene, page or
// configuration, or the lifetime quota used up).
func (e *Error) Permanent() bool { return permanentCodes[e.Code] }

// Temporary reports whether asking again later can help: system busy, rate
// limits, token errors and every code wxacode does not know. It is the
// opposite of Permanent.
func (e *Error) Temporary() bool { return !e.Permanent() }

// RateLimited reports whether WeChat refused the call for the minute limit
// (45009, 45011): pause the app's calls, then retry.
func (e *Error) RateLimited() bool {
	return e.Code == CodeFrequencyLimit || e.Code == CodeMinuteQuota
}

// TokenInvalid reports whether WeChat refused the access token (40001,
// 40014, 42001): invalidate it, take a new one and retry.
func (e *Error) TokenInvalid() bool {
	switch e.Code {
	case CodeTokenInvalid, CodeTokenMalformed, CodeTokenExpired:
		return true
	}
	return false
}

// Known reports whether wxacode knows the code (it is documented for the
// code interfaces). Callers may give unknown codes fewer attempts.
func (e *Error) Known() bool {
	return e.Code == CodeBusy || e.TokenInvalid() || e.RateLimited() || e.Permanent()
}

// newError builds an Error from an errcode answer, splitting the rid (or
// hint) off errmsg.
func newError(code int, errmsg string) *Error {
	msg, rid := splitRID(errmsg)
	return &Error{Code: code, Msg: msg, RID: rid}
}

// splitRID splits "message rid: 1234-5678" into the message and the rid.
// Older answers end with "hint: [abc]" instead.
func splitRID(errmsg string) (msg, rid string) {
	msg = strings.TrimSpace(errmsg)
	for _, marker := range []string{"rid:", "hint:"} {
		i := strings.LastIndex(msg, marker)
		if i < 0 {
			continue
		}
		rid = strings.TrimSpace(msg[i+len(marker):])
		rid = strings.TrimSuffix(strings.TrimPrefix(rid, "["), "]")
		msg = strings.TrimRight(msg[:i], " ,;")
		return msg, rid
	}
	return msg, ""
}

// Class sorts errors by what the caller should do about them.
type Class int

// The classes Classify returns.
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassTemporary: retry with backoff (-1, HTTP 5xx, timeouts, connection
	// errors, bodies that are neither image nor errcode, unknown codes).
	ClassTemporary
	// ClassRateLimited: pause the app's calls, then retry (45009, 45011).
	ClassRateLimited
	// ClassTokenInvalid: the access token was refused even after the
	// client's one refresh; retry later.
	ClassTokenInvalid
	// ClassPermanent: fail the call for good (bad request, bad
	// configuration or credentials, quota used up).
	ClassPermanent
)

// String names the class.
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTemporary:
		return "temporary"
	case ClassRateLimited:
		return "rate_limited"
	case ClassTokenInvalid:
		return "token_invalid"
	case ClassPermanent:
		return "permanent"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Sentinel errors callers can test with errors.Is.
var (
	// ErrInvalidRequest wraps the reason a request was refused before any
	// call (a bad scene, page, width...). Permanent.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrQuotaExhausted means the lifetime quota of interfaces A and C would
	// be passed by the call, which was not sent. Permanent.
	ErrQuotaExhausted = errors.New("lifetime quota of interfaces A and C used up")
	// ErrNoToken wraps the reason a call was not sent: no access token
	// could be had (the token endpoint failed, or refused the credentials,
	// see ErrCredentials). Its class is the class of the reason.
	ErrNoToken = errors.New("no access token: call not sent")
	// ErrCredentials means the token endpoint refused the app's credentials
	// (wrong appid or secret, IP not allowed...). Permanent: fix the
	// configuration.
	ErrCredentials = errors.New("app credentials refused")
)

// HTTPError is an answer with an HTTP status other than 200. Temporary,
// 4xx included (WeChat answers its errors with 200, so another status comes
// from something in the way: a gateway, a proxy); the caller's attempt limit
// bounds it.
type HTTPError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Snippet is the start of the body, made printable, without secrets.
	Snippet string
}

// Error formats the status and body snippet.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("http status %d: %q", e.StatusCode, e.Snippet)
}

// BadResponseError is an HTTP 200 answer whose body is neither an image nor
// an errcode JSON. Temporary.
type BadResponseError struct {
	// ContentType is the answer's Content-Type header.
	ContentType string
	// Size is the body's length in bytes.
	Size int
	// Snippet is the start of the body, made printable, without secrets.
	Snippet string
}

// Error formats the header, size and snippet.
func (e *BadResponseError) Error() string {
	return fmt.Sprintf("answer is neither an image nor an errcode (content type %q, %d bytes): %q", e.ContentType, e.Size, e.Snippet)
}

// Classify tells what the caller should do about an error returned by this
// package. Errors it does not know (transport errors, timeouts, canceled
// contexts, Redis errors) are ClassTemporary.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	if errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrQuotaExhausted) || errors.Is(err, ErrCredentials) {
		return ClassPermanent
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Class()
	}
	return ClassTemporary
}

// IsTemporary reports whether asking again later can help: err is not nil
// and not permanent.
func IsTemporary(err error) bool { return err != nil && Classify(err) != ClassPermanent }

// IsPermanent reports whether err is permanent: asking again cannot help.
func IsPermanent(err error) bool { return Classify(err) == ClassPermanent }

// IsRateLimited reports whether err is WeChat's minute limit (45009, 45011).
func IsRateLimited(err error) bool { return Classify(err) == ClassRateLimited }

// IsTokenInvalid reports whether err is a refused access token.
func IsTokenInvalid(err error) bool { return Classify(err) == ClassTokenInvalid }
