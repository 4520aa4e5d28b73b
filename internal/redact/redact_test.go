package redact_test

import (
	"strings"
	"testing"

	"github.com/wxacode/wxacode/internal/redact"
)

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, in, want string
	}{
		{"plain", "https://api.weixin.qq.com", "https://api.weixin.qq.com"},
		{"user and password", "http://user:pass@host:8090/x", "http://REDACTED@host:8090/x"},
		{"token as user", "https://s3cr3t@tokens.example/token", "https://REDACTED@tokens.example/token"},
		{"redis password", "redis://:hunter2@127.0.0.1:6379/0", "redis://REDACTED@127.0.0.1:6379/0"},
		{"access token", "https://api.weixin.qq.com/wxa/getwxacodeunlimit?access_token=TOK", "https://api.weixin.qq.com/wxa/getwxacodeunlimit?access_token=REDACTED"},
		{"secret and others", "https://h/cgi-bin/token?appid=wx1&secret=S&grant_type=client_credential", "https://h/cgi-bin/token?appid=wx1&grant_type=client_credential&secret=REDACTED"},
		{"presigned", "https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=AKIA", "https://b.s3.amazonaws.com/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"bad query", "https://h/p?a=%zz&secret=S", "https://h/p?REDACTED"},
		{"unparsable", "http://us er:pa ss@[::1", "(unparsable URL)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := redact.URL(tt.in)
			if got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, secret := range []string{"pass", "s3cr3t", "hunter2", "TOK", "secret=S", "AKIA", "Signature=abc"} {
				if strings.Contains(tt.in, secret) && strings.Contains(got, secret) {
					t.Errorf("URL(%q) = %q still shows %q", tt.in, got, secret)
				}
			}
		})
	}
}
