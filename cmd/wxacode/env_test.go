package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// TestParsers holds every parser of a setting to its strict reading: each
// value parses or fails, none falls back to a default.
func TestParsers(t *testing.T) {
	t.Parallel()
	ok := func(_ any, err error) bool { return err == nil }
	for _, tt := range []struct {
		name string
		in   string
		ok   bool
		try  func(string) (any, error)
	}{
		{"bool true", "true", true, func(s string) (any, error) { return parseBool(s) }},
		{"bool 0", "0", true, func(s string) (any, error) { return parseBool(s) }},
		{"bool yes", "yes", false, func(s string) (any, error) { return parseBool(s) }},
		{"bool empty", "", false, func(s string) (any, error) { return parseBool(s) }},
		{"int in range", "256", true, func(s string) (any, error) { return intIn(1, 256)(s) }},
		{"int past range", "257", false, func(s string) (any, error) { return intIn(1, 256)(s) }},
		{"int overflow", "99999999999999999999", false, func(s string) (any, error) { return intIn(1, 256)(s) }},
		{"int not a number", "4x", false, func(s string) (any, error) { return intIn(1, 256)(s) }},
		{"duration", "20s", true, func(s string) (any, error) { return durationIn(time.Second, time.Minute)(s) }},
		{"duration negative", "-1s", false, func(s string) (any, error) { return durationIn(time.Second, time.Minute)(s) }},
		{"duration without unit", "20", false, func(s string) (any, error) { return durationIn(time.Second, time.Minute)(s) }},
		{"rate", "600/10s", true, func(s string) (any, error) { return parseRate(s) }},
		{"rate per unit", "100/s", true, func(s string) (any, error) { return parseRate(s) }},
		{"rate zero window", "5000/0s", false, func(s string) (any, error) { return parseRate(s) }},
		{"rate words", "lots", false, func(s string) (any, error) { return parseRate(s) }},
		{"addr", "127.0.0.1:0", true, func(s string) (any, error) { return parseAddr(s) }},
		{"addr all interfaces", ":8080", true, func(s string) (any, error) { return parseAddr(s) }},
		{"addr without port", "localhost", false, func(s string) (any, error) { return parseAddr(s) }},
		{"addr port too big", "127.0.0.1:70000", false, func(s string) (any, error) { return parseAddr(s) }},
		{"appid", "wx0123456789abcdef", true, func(s string) (any, error) { return parseAppID(s) }},
		{"appid short", "wxa1", false, func(s string) (any, error) { return parseAppID(s) }},
		{"url", "https://api.weixin.qq.com", true, func(s string) (any, error) { return parseHTTPURL(s) }},
		{"url scheme", "ftp://h", false, func(s string) (any, error) { return parseHTTPURL(s) }},
		{"url no host", "https://", false, func(s string) (any, error) { return parseHTTPURL(s) }},
		{"hosts", "dash.internal, ops.example:8443,[::1]:80", true, func(s string) (any, error) { return parseHosts(s) }},
		{"hosts URL", "https://dash.example/", false, func(s string) (any, error) { return parseHosts(s) }},
		{"hosts wildcard", "*.example", false, func(s string) (any, error) { return parseHosts(s) }},
		{"hosts bad port", "dash:http", false, func(s string) (any, error) { return parseHosts(s) }},
	} {
		if got := ok(tt.try(tt.in)); got != tt.ok {
			t.Errorf("%s: %q parses %v, want %v", tt.name, tt.in, got, tt.ok)
		}
	}
	hosts, _ := parseHosts(" Dash.Internal ,, ops.example:8443 ")
	if diff := cmp.Diff([]string{"dash.internal", "ops.example:8443"}, hosts); diff != "" {
		t.Errorf("parseHosts (-want +got):\n%s", diff)
	}
}

// TestFromEnv: the flag wins; an unset variable leaves the default; a
// variable that does not parse is bad usage naming flag and variable.
func TestFromEnv(t *testing.T) {
	t.Parallel()
	s := setting{"read-only", "WXACODE_SERVE_READ_ONLY"}
	for _, tt := range []struct {
		name    string
		args    []string
		env     string
		want    bool
		wantErr string
	}{
		{"unset", nil, "", false, ""},
		{"true", nil, "true", true, ""},
		{"flag wins", []string{"--read-only=false"}, "true", false, ""},
		{"flag wins over a bad value", []string{"--read-only"}, "yes", true, ""},
		{"yes", nil, "yes", false, `--read-only/WXACODE_SERVE_READ_ONLY "yes": want true or false`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			var v bool
			fs.BoolVar(&v, "read-only", false, "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			a := &app{getenv: func(k string) string {
				if k == s.env {
					return tt.env
				}
				return ""
			}}
			err := fromEnv(a, fs, s, parseBool, &v)
			switch {
			case tt.wantErr != "":
				var ue usageError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !asUsage(err, &ue) {
					t.Fatalf("err = %v, want a usage error %q", err, tt.wantErr)
				}
			case err != nil || v != tt.want:
				t.Fatalf("value %v, err %v; want %v", v, err, tt.want)
			}
		})
	}
}

func asUsage(err error, ue *usageError) bool {
	u, ok := err.(usageError)
	*ue = u
	return ok
}
