package wechat

import (
	"strings"
	"testing"
)

func TestValidateAppID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, appid string
		ok          bool
	}{
		{"demo app", "wx0123456789abcdef", true},
		{"all digits", "wx0000000000000000", true},
		{"empty", "", false},
		{"short", "wx0123456789abcde", false},
		{"long", "wx0123456789abcdef0", false},
		{"uppercase hex", "wx0123456789ABCDEF", false},
		{"not hex", "wx0123456789abcdeg", false},
		{"no prefix", "ab0123456789abcdef", false},
		{"not UTF-8", "wx0123456789abcd\xff\xfe", false},
		{"label injection", "wx01234567\"} 1\n#", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAppID(tt.appid)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateAppID(%q) = %v, want ok %v", tt.appid, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "16 ") {
				t.Errorf("error %q does not say what an appid looks like", err)
			}
		})
	}
}
