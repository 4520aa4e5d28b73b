package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wxacode/wxacode/limiter"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

// One parser per setting: every value of the command line, flag or
// environment variable, goes through one of the parse functions below
// before any connection is made, and a value that does not parse is bad
// usage (exit 2) naming the flag and the variable, never a silent default.

// setting names one value of the command line: its flag and the
// environment variable behind it (either may be empty).
type setting struct{ flag, env string }

// String names the setting as messages show it: "--rate/WXACODE_RATE".
func (s setting) String() string {
	switch {
	case s.flag == "":
		return s.env
	case s.env == "":
		return "--" + s.flag
	}
	return "--" + s.flag + "/" + s.env
}

// bad is the usage error for value v of s.
func (s setting) bad(v string, err error) error {
	return usagef("%s %q: %v", s, v, err)
}

// check parses v with parse and turns its error into bad usage naming s.
func check[T any](s setting, v string, parse func(string) (T, error)) (T, error) {
	out, err := parse(v)
	if err != nil {
		return out, s.bad(v, err)
	}
	return out, nil
}

// fromEnv sets *p from s's environment variable, parsed strictly, unless
// the flag was given on the command line (the flag wins) or the variable
// is unset.
func fromEnv[T any](a *app, fs *pflag.FlagSet, s setting, parse func(string) (T, error), p *T) error {
	if flagSet(fs, s.flag) {
		return nil
	}
	v := a.getenv(s.env)
	if v == "" {
		return nil
	}
	out, err := check(s, v, parse)
	if err != nil {
		return err
	}
	*p = out
	return nil
}

// parseBool reads true or false (also 1, 0, t, f, TRUE, FALSE).
func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errors.New("want true or false")
	}
	return b, nil
}

// intIn returns a parser of whole numbers from lo to hi.
func intIn(lo, hi int) func(string) (int, error) {
	return func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		return n, nil
	}
}

// checkInt checks a number already parsed (by pflag) against lo and hi.
func checkInt(s setting, n, lo, hi int) error {
	_, err := check(s, strconv.Itoa(n), intIn(lo, hi))
	return err
}

// durationIn returns a parser of durations from lo to hi.
func durationIn(lo, hi time.Duration) func(string) (time.Duration, error) {
	return func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi {
			return 0, fmt.Errorf("want a duration from %s to %s, such as 20s", lo, hi)
		}
		return d, nil
	}
}

// checkDuration checks a duration already parsed (by pflag).
func checkDuration(s setting, d, lo, hi time.Duration) error {
	_, err := check(s, d.String(), durationIn(lo, hi))
	return err
}

// parseRate reads a ceiling, N/DURATION: 5000/1m, 600/10s, 100/s.
func parseRate(s string) (limiter.Limit, error) {
	l, err := limiter.ParseLimit(s)
	if err != nil {
		return l, errors.New("want N/DURATION such as 5000/1m or 600/10s, N at least 1, DURATION at least 1ms")
	}
	return l, nil
}

// parseHTTPURL reads an http:// or https:// URL with a host. Messages
// show the URL redacted (setting.bad is not used for URLs).
func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want http(s)://HOST[:PORT][/PATH]")
	}
	return u, nil
}

// checkURL checks a URL setting, showing the value redacted.
func checkURL(s setting, v string, extra func(*url.URL) error) error {
	u, err := parseHTTPURL(v)
	if err == nil && extra != nil {
		err = extra(u)
	}
	if err != nil {
		return usagef("%s %q: %v", s, redactURL(v), err)
	}
	return nil
}

// noUserInfo refuses a URL carrying a user or password: the API base is
// not a place for credentials.
func noUserInfo(u *url.URL) error {
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("want http(s)://HOST[:PORT] with no user, password, query or fragment")
	}
	return nil
}

// parseAppID reads a Mini Program appid: wx and 16 hex digits.
func parseAppID(s string) (string, error) {
	if err := wechat.ValidateAppID(s); err != nil {
		return "", errors.New("want wx and 16 lowercase hex digits, such as wx0123456789abcdef")
	}
	return s, nil
}

// parseAddr reads a listen address, HOST:PORT (HOST may be empty, PORT 0).
func parseAddr(s string) (string, error) {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return "", errors.New("want HOST:PORT, such as 127.0.0.1:8080")
	}
	return s, nil
}

// parseHosts reads a comma-separated list of host names or addresses, each
// with an optional :PORT (WXACODE_ALLOWED_HOSTS).
func parseHosts(s string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		host := h
		if hp, port, err := net.SplitHostPort(h); err == nil {
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return nil, fmt.Errorf("%q: bad port", h)
			}
			host = hp
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" || strings.ContainsAny(host, "/@?#*\\ ") {
			return nil, fmt.Errorf("%q: want a host name or address, such as dashboard.example.com or 10.0.0.5:8080", h)
		}
		out = append(out, strings.ToLower(h))
	}
	return out, nil
}

// checkStorage checks STORAGE_URL and, for S3, the variables that
// configure it, without connecting to anything.
func (a *app) checkStorage(rawURL string) error {
	if err := storage.CheckURL(rawURL); err != nil {
		return usagef("--storage/STORAGE_URL: %v", strings.TrimPrefix(err.Error(), "STORAGE_URL "))
	}
	if !strings.HasPrefix(rawURL, "s3://") {
		return nil
	}
	for _, name := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if v := a.getenv(name); v != "" {
			if err := checkURL(setting{env: name}, v, nil); err != nil {
				return err
			}
		}
	}
	if v := a.getenv("S3_FORCE_PATH_STYLE"); v != "" {
		if _, err := check(setting{env: "S3_FORCE_PATH_STYLE"}, v, parseBool); err != nil {
			return err
		}
	}
	return nil
}
