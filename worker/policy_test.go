package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/wechat"
)

// TestDecide lists every errcode class, and the storage and Redis
// failures, with the action the policy takes on the first error, on one
// error before each limit, and at the limit.
func TestDecide(t *testing.T) {
	t.Parallel()
	p := Policy{Attempts: 6, UnknownAttempts: 3, RedisAttempts: 10}
	we := func(code int) error { return fmt.Errorf("call: %w", &wechat.Error{Code: code, Msg: "m"}) }
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name  string
		err   error
		n     Attempts
		class Class
		want  Action
	}{
		{"image", nil, Attempts{}, ClassNone, Done},

		// Permanent errcodes fail at once, whatever the attempts.
		{"40097 invalid args", we(wechat.CodeInvalidArgs), Attempts{}, ClassPermanent, FailNow},
		{"40129 invalid scene", we(wechat.CodeInvalidScene), Attempts{}, ClassPermanent, FailNow},
		{"40169 scene too long", we(wechat.CodeSceneTooLong), Attempts{}, ClassPermanent, FailNow},
		{"41030 invalid page", we(wechat.CodeInvalidPage), Attempts{Tries: 5}, ClassPermanent, FailNow},
		{"47001 body format", we(wechat.CodeBodyFormat), Attempts{}, ClassPermanent, FailNow},
		{"48001 unauthorized", we(wechat.CodeUnauthorized), Attempts{}, ClassPermanent, FailNow},
		{"85096 scancode_time", we(wechat.CodeScancodeTime), Attempts{}, ClassPermanent, FailNow},
		{"invalid request", fmt.Errorf("%w: scene", wechat.ErrInvalidRequest), Attempts{}, ClassPermanent, FailNow},
		{"40159 invalid path", we(wechat.CodeInvalidPath), Attempts{}, ClassPermanent, FailNow},

		// The lifetime quota of A and C: WeChat's 45029, or the ledger
		// refusing the call before it is sent; never tried again.
		{"45029 quota used", we(wechat.CodeLifetimeQuotaUsed), Attempts{}, ClassQuota, FailNow},
		{"45029 after tries", we(wechat.CodeLifetimeQuotaUsed), Attempts{Tries: 5}, ClassQuota, FailNow},
		{"ledger refuses", fmt.Errorf("getwxacode: appid wx: %w (100 of 100 used)", wechat.ErrQuotaExhausted), Attempts{}, ClassQuota, FailNow},

		// Credentials are the configuration's fault: hand back.
		{"credentials", fmt.Errorf("%w: %w", wechat.ErrNoToken, wechat.ErrCredentials), Attempts{}, ClassCredentials, HandBack},

		// The minute limit pauses the app and is never an attempt.
		{"45009", we(wechat.CodeFrequencyLimit), Attempts{}, ClassRateLimited, PauseApp},
		{"45011", we(wechat.CodeMinuteQuota), Attempts{Tries: 5}, ClassRateLimited, PauseApp},

		// Refused tokens: a new token at once, within the attempts.
		{"40001", we(wechat.CodeTokenInvalid), Attempts{}, ClassTokenInvalid, RetryNewToken},
		{"40014", we(wechat.CodeTokenMalformed), Attempts{Tries: 4}, ClassTokenInvalid, RetryNewToken},
		{"42001 last attempt", we(wechat.CodeTokenExpired), Attempts{Tries: 5}, ClassTokenInvalid, HandBack},

		// Busy, HTTP and transport errors back off, then hand back.
		{"-1 busy", we(wechat.CodeBusy), Attempts{}, ClassBusy, BackOff},
		{"-1 busy last attempt", we(wechat.CodeBusy), Attempts{Tries: 5}, ClassBusy, HandBack},
		{"http 502", &wechat.HTTPError{StatusCode: 502}, Attempts{Tries: 4}, ClassTransport, BackOff},
		{"http 503 last attempt", &wechat.HTTPError{StatusCode: 503}, Attempts{Tries: 5}, ClassTransport, HandBack},
		{"not an image", &wechat.BadResponseError{ContentType: "text/html"}, Attempts{}, ClassTransport, BackOff},
		{"connection refused", fmt.Errorf("post: %w", refused), Attempts{}, ClassTransport, BackOff},
		{"timeout", context.DeadlineExceeded, Attempts{}, ClassTransport, BackOff},
		{"connection dropped", io.ErrUnexpectedEOF, Attempts{Tries: 5}, ClassTransport, HandBack},
		{"token endpoint busy", fmt.Errorf("%w: %w", wechat.ErrNoToken, &wechat.Error{Code: -1}), Attempts{}, ClassBusy, BackOff},

		// Unknown errcodes: back off, fail after UnknownAttempts of them.
		{"unknown first", we(61234), Attempts{}, ClassUnknownCode, BackOff},
		{"unknown second", we(61234), Attempts{Tries: 1, Unknown: 1}, ClassUnknownCode, BackOff},
		{"unknown third", we(61234), Attempts{Tries: 2, Unknown: 2}, ClassUnknownCode, FailNow},
		{"unknown after other tries", we(61234), Attempts{Tries: 5}, ClassUnknownCode, HandBack},

		// A failing store: the paid image is kept, whatever the attempts.
		{"put fails", fmt.Errorf("%w: put k: %w", ErrStorage, refused), Attempts{}, ClassStorage, KeepImageWaitStorage},
		{"put fails often", fmt.Errorf("%w: put k: %w", ErrStorage, refused), Attempts{Tries: 100, Redis: 100}, ClassStorage, KeepImageWaitStorage},

		// Redis away: the ceiling fails closed; back off, then hand back.
		{"redis refused", fmt.Errorf("%w: ceiling: %w", ErrRedis, refused), Attempts{}, ClassRedis, BackOff},
		{"redis loading", fmt.Errorf("%w: ceiling: %w", ErrRedis, errors.New("LOADING Redis is loading the dataset in memory")), Attempts{Redis: 8, Tries: 5}, ClassRedis, BackOff},
		{"redis away too long", fmt.Errorf("%w: ceiling: %w", ErrRedis, refused), Attempts{Redis: 9}, ClassRedis, HandBack},
		{"another ceiling", fmt.Errorf("%w: ceiling: %w", ErrRedis, &limiter.MismatchError{}), Attempts{}, ClassCeiling, HandBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.class {
				t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.class)
			}
			if got := p.Decide(tt.err, tt.n); got != tt.want {
				t.Errorf("Decide(%v, %+v) = %q, want %q", tt.err, tt.n, got, tt.want)
			}
		})
	}
}

// TestAttemptsAdd: which classes count against which limit.
func TestAttemptsAdd(t *testing.T) {
	t.Parallel()
	var n Attempts
	for _, c := range []Class{ClassBusy, ClassTransport, ClassTokenInvalid, ClassUnknownCode, ClassRateLimited, ClassStorage, ClassRedis, ClassRedis} {
		n = n.Add(c)
	}
	if want := (Attempts{Tries: 4, Unknown: 1, Redis: 2}); n != want {
		t.Fatalf("attempts %+v, want %+v", n, want)
	}
}

// TestCodeClass: the dashboard's class of a recorded errcode.
func TestCodeClass(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]Class{0: ClassNone, -1: ClassBusy, 41030: ClassPermanent, 45009: ClassRateLimited, 42001: ClassTokenInvalid, 61234: ClassUnknownCode} {
		if got := CodeClass(code); got != want {
			t.Errorf("CodeClass(%d) = %s, want %s", code, got, want)
		}
	}
}

// TestDefaultPolicy: the zero Policy uses Config's defaults.
func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	var p Policy
	busy := &wechat.Error{Code: wechat.CodeBusy}
	if got := p.Decide(busy, Attempts{Tries: defaultAttempts - 2}); got != BackOff {
		t.Errorf("zero policy, %d tries: %s", defaultAttempts-2, got)
	}
	if got := p.Decide(busy, Attempts{Tries: defaultAttempts - 1}); got != HandBack {
		t.Errorf("zero policy, %d tries: %s", defaultAttempts-1, got)
	}
}
