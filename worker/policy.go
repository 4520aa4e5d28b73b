package worker

import (
	"errors"
	"fmt"

	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/wechat"
)

// Class sorts the errors a scene can meet by their cause. Metrics and the
// dashboard name errors by their Class; Policy.Decide turns a Class and the
// attempts so far into an Action.
type Class int

// The classes Classify returns.
const (
	// ClassNone: no error.
	ClassNone Class = iota
	// ClassPermanent: WeChat refused the scene for good (40097, 40129,
	// 40169, 41030, 47001, 48001, 85096, a request that fails validation).
	ClassPermanent
	// ClassCredentials: the token endpoint refused the app's credentials,
	// a fault of the configuration, not of the scene.
	ClassCredentials
	// ClassRateLimited: WeChat's minute limit (45009, 45011).
	ClassRateLimited
	// ClassTokenInvalid: WeChat refused the access token (40001, 40014,
	// 42001); the client dropped it.
	ClassTokenInvalid
	// ClassBusy: WeChat answered a temporary errcode it documents (-1).
	ClassBusy
	// ClassUnknownCode: an errcode wxacode does not know.
	ClassUnknownCode
	// ClassTransport: no errcode came back: a connection error, a timeout,
	// an HTTP status other than 200, a body that is neither image nor
	// errcode, or no token could be had.
	ClassTransport
	// ClassStorage: the store failed to take or to show an image.
	ClassStorage
	// ClassRedis: Redis (the ceiling or the campaign records) could not be
	// reached.
	ClassRedis
	// ClassCeiling: the fleet holds this app to another ceiling.
	ClassCeiling
	// ClassQuota: the lifetime quota of interfaces A and C is used up:
	// the ledger refused the call (no call made) or WeChat answered 45029.
	ClassQuota
)

var classNames = [...]string{
	ClassNone:         "none",
	ClassPermanent:    "permanent",
	ClassCredentials:  "credentials",
	ClassRateLimited:  "rate_limited",
	ClassTokenInvalid: "token_invalid",
	ClassBusy:         "busy",
	ClassUnknownCode:  "unknown_code",
	ClassTransport:    "transport",
	ClassStorage:      "storage",
	ClassRedis:        "redis",
	ClassCeiling:      "ceiling",
	ClassQuota:        "quota",
}

// String names the class in snake case, as metrics label it.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ErrStorage marks an error of the store: a put or a look-up that failed.
var ErrStorage = errors.New("storage")

// ErrRedis marks an error of Redis met by the worker (the ceiling or the
// campaign records).
var ErrRedis = errors.New("redis")

// Classify tells an error's Class. Errors of the store and of Redis are
// known by ErrStorage and ErrRedis, which the worker wraps them in.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var mismatch *limiter.MismatchError
	switch {
	case errors.Is(err, ErrStorage):
		return ClassStorage
	case errors.As(err, &mismatch):
		return ClassCeiling
	case errors.Is(err, ErrRedis):
		return ClassRedis
	case errors.Is(err, wechat.ErrCredentials):
		return ClassCredentials
	case errors.Is(err, wechat.ErrQuotaExhausted):
		return ClassQuota
	}
	var we *wechat.Error
	if errors.As(err, &we) {
		switch {
		case we.Code == wechat.CodeLifetimeQuotaUsed:
			return ClassQuota
		case !we.Known():
			return ClassUnknownCode
		case we.Code == wechat.CodeBusy:
			return ClassBusy
		}
	}
	switch wechat.Classify(err) {
	case wechat.ClassPermanent:
		return ClassPermanent
	case wechat.ClassRateLimited:
		return ClassRateLimited
	case wechat.ClassTokenInvalid:
		return ClassTokenInvalid
	}
	if we != nil {
		return ClassBusy // a known temporary errcode
	}
	return ClassTransport
}

// CodeClass is the Class of an errcode recorded against a scene (0: no
// errcode).
func CodeClass(code int) Class {
	if code == 0 {
		return ClassNone
	}
	return Classify(&wechat.Error{Code: code})
}

// Action is what a batch run does with a scene after an error.
type Action int

// The actions Decide returns.
const (
	// Done: no error; the scene is stored.
	Done Action = iota
	// FailNow records the scene failed with its errcode.
	FailNow
	// PauseApp pauses the app's calls for the whole fleet, then tries the
	// scene again; it is not counted as an attempt.
	PauseApp
	// RetryNewToken tries again at once, under a new slot, with a new token.
	RetryNewToken
	// BackOff waits (Policy.Backoff) and tries again.
	BackOff
	// HandBack leaves the scene pending and hands its batch back to the
	// queue, to run again later.
	HandBack
	// KeepImageWaitStorage keeps the image already paid for and puts it
	// again when the store answers; no new call is made meanwhile.
	KeepImageWaitStorage
)

var actionNames = [...]string{
	Done:                 "done",
	FailNow:              "fail now",
	PauseApp:             "pause app",
	RetryNewToken:        "retry with new token",
	BackOff:              "back off",
	HandBack:             "hand back",
	KeepImageWaitStorage: "keep image and wait for storage",
}

// String names the action.
func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Attempts counts the errors a scene met in this run of its batch, before
// the one being decided on.
type Attempts struct {
	// Tries counts temporary errors and refused tokens (busy, transport,
	// unknown errcodes, token errors).
	Tries int
	// Unknown counts errcodes wxacode does not know.
	Unknown int
	// Redis counts failures to reach Redis.
	Redis int
}

// Add counts one more error of class c.
func (n Attempts) Add(c Class) Attempts {
	switch c {
	case ClassBusy, ClassTransport, ClassTokenInvalid:
		n.Tries++
	case ClassUnknownCode:
		n.Tries++
		n.Unknown++
	case ClassRedis:
		n.Redis++
	}
	return n
}

// Policy holds the limits of the retry policy. Its zero value uses the
// defaults of Config.
type Policy struct {
	// Attempts bounds the tries of a scene in one batch run (Config.Attempts).
	Attempts int
	// UnknownAttempts bounds the tries of a scene that keeps getting an
	// unknown errcode (Config.UnknownAttempts).
	UnknownAttempts int
	// RedisAttempts bounds the tries of a scene while Redis cannot be
	// reached (Config.RedisAttempts).
	RedisAttempts int
}

// Decide is the retry policy: what to do with a scene after err, given
// the errors it met before in this run. It is a pure function.
//
//	class          action
//	permanent      fail now
//	quota          fail now (A and C: nothing left of the lifetime quota)
//	credentials    hand back (the configuration must be fixed)
//	ceiling        hand back (another ceiling is in use)
//	rate limited   pause app (not an attempt)
//	token invalid  retry with new token; hand back after Attempts tries
//	busy,transport back off; hand back after Attempts tries
//	unknown code   back off; fail after UnknownAttempts of them, hand back
//	               after Attempts tries
//	storage        keep image and wait for storage (never a new call)
//	redis          back off; hand back after RedisAttempts
func (p Policy) Decide(err error, n Attempts) Action {
	c := Classify(err)
	next := n.Add(c)
	switch c {
	case ClassNone:
		return Done
	case ClassPermanent, ClassQuota:
		return FailNow
	case ClassCredentials, ClassCeiling:
		return HandBack
	case ClassRateLimited:
		return PauseApp
	case ClassStorage:
		return KeepImageWaitStorage
	case ClassRedis:
		if next.Redis >= p.redisAttempts() {
			return HandBack
		}
		return BackOff
	case ClassUnknownCode:
		if next.Unknown >= p.unknownAttempts() {
			return FailNow
		}
	}
	if next.Tries >= p.attempts() {
		return HandBack
	}
	if c == ClassTokenInvalid {
		return RetryNewToken
	}
	return BackOff
}

func (p Policy) attempts() int {
	if p.Attempts > 0 {
		return p.Attempts
	}
	return defaultAttempts
}

func (p Policy) unknownAttempts() int {
	if p.UnknownAttempts > 0 {
		return p.UnknownAttempts
	}
	return defaultUnknownAttempts
}

func (p Policy) redisAttempts() int {
	if p.RedisAttempts > 0 {
		return p.RedisAttempts
	}
	return defaultRedisAttempts
}

const (
	defaultAttempts        = 6
	defaultUnknownAttempts = 3
	defaultRedisAttempts   = 12
)
