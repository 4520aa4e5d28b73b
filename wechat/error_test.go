package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code                                        int
		class                                       Class
		permanent, temporary, rateLimited, tokenBad bool
	}{
		{-1, ClassTemporary, false, true, false, false},
		{40001, ClassTokenInvalid, false, true, false, true},
		{40014, ClassTokenInvalid, false, true, false, true},
		{42001, ClassTokenInvalid, false, true, false, true},
		{45009, ClassRateLimited, false, true, true, false},
		{45011, ClassRateLimited, false, true, true, false},
		{40097, ClassPermanent, true, false, false, false},
		{40129, ClassPermanent, true, false, false, false},
		{40169, ClassPermanent, true, false, false, false},
		{41030, ClassPermanent, true, false, false, false},
		{47001, ClassPermanent, true, false, false, false},
		{48001, ClassPermanent, true, false, false, false},
		{85096, ClassPermanent, true, false, false, false},
		{40159, ClassPermanent, true, false, false, false},
		{45029, ClassPermanent, true, false, false, false},
		{99999, ClassTemporary, false, true, false, false}, // unknown
		{40002, ClassTemporary, false, true, false, false}, // unknown to B
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			e := &Error{Code: tt.code, Msg: "m"}
			got := []any{e.Class(), e.Permanent(), e.Temporary(), e.RateLimited(), e.TokenInvalid()}
			want := []any{tt.class, tt.permanent, tt.temporary, tt.rateLimited, tt.tokenBad}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("class, permanent, temporary, rate limited, token invalid (-want +got):\n%s", diff)
			}
			wrapped := fmt.Errorf("getwxacodeunlimit: %w", e)
			if Classify(wrapped) != tt.class {
				t.Errorf("Classify(wrapped) = %v, want %v", Classify(wrapped), tt.class)
			}
			if IsTemporary(wrapped) != tt.temporary || IsPermanent(wrapped) != tt.permanent ||
				IsRateLimited(wrapped) != tt.rateLimited || IsTokenInvalid(wrapped) != tt.tokenBad {
				t.Error("Is* helpers disagree with the methods")
			}
			if e.Known() == (tt.code == 99999 || tt.code == 40002) {
				t.Errorf("Known() = %v", e.Known())
			}
		})
	}
}

func TestClassifyOtherErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"invalid request", fmt.Errorf("getwxacodeunlimit: %w: %w", ErrInvalidRequest, errors.New("scene is empty")), ClassPermanent},
		{"quota", fmt.Errorf("appid x: %w", ErrQuotaExhausted), ClassPermanent},
		{"credentials 40001 is not a token error", fmt.Errorf("access token: %w", &credentialsError{code: 40001, msg: "invalid credential"}), ClassPermanent},
		{"http 502", &HTTPError{StatusCode: 502}, ClassTemporary},
		{"http 404", &HTTPError{StatusCode: 404}, ClassTemporary},
		{"bad answer", &BadResponseError{ContentType: "text/html"}, ClassTemporary},
		{"transport", &url.Error{Op: "Post", URL: "u", Err: errors.New("connection reset by peer")}, ClassTemporary},
		{"timeout", fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTemporary},
		{"canceled", context.Canceled, ClassTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestSplitRID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		errmsg, msg, rid string
	}{
		{"invalid credential, access_token is invalid or not latest rid: 6646d3a1-5aed2e3b-2f8e6d3c", "invalid credential, access_token is invalid or not latest", "6646d3a1-5aed2e3b-2f8e6d3c"},
		{"invalid credential hint: [D3aXa0185e297]", "invalid credential", "D3aXa0185e297"},
		{"system error", "system error", ""},
		{"", "", ""},
		{"rid: abc", "", "abc"},
	}
	for _, tt := range tests {
		msg, rid := splitRID(tt.errmsg)
		if msg != tt.msg || rid != tt.rid {
			t.Errorf("splitRID(%q) = %q, %q; want %q, %q", tt.errmsg, msg, rid, tt.msg, tt.rid)
		}
	}
	e := newError(40169, "invalid scene rid: 77-88")
	if got, want := e.Error(), "wechat errcode 40169: invalid scene (rid 77-88)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	got := redactURL("https://api.weixin.qq.com/wxa/getwxacodeunlimit?access_token=TOPSECRET")
	if want := "https://api.weixin.qq.com/wxa/getwxacodeunlimit?access_token=REDACTED"; got != want {
		t.Errorf("redactURL = %q, want %q", got, want)
	}
	ue := &url.Error{Op: "Post", URL: "http://h/p?access_token=TOPSECRET", Err: errors.New("dial: TOPSECRET")}
	err := redact(fmt.Errorf("call: %w", ue), "TOPSECRET")
	if s := err.Error(); strings.Contains(s, "TOPSECRET") {
		t.Errorf("redacted error still has the token: %s", s)
	}
	if !errors.As(err, &ue) {
		t.Error("redacted error lost its *url.Error")
	}
	if s := snippet([]byte("{\"x\":\"TOPSECRET\"}\x00\x01"), "TOPSECRET"); s != `{"x":"REDACTED"}..` {
		t.Errorf("snippet = %q", s)
	}
}
