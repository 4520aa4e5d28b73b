package limiter

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limit is a call ceiling: at most N calls start in any sliding window of
// length Per. WeChat's ceiling for interface B is Limit{N: 5000, Per:
// time.Minute}.
type Limit struct {
	// N is the most calls that may start in any window of length Per; it
	// must be positive.
	N int
	// Per is the length of the sliding window; it must be at least a
	// millisecond, and whole microseconds (Redis's clock has no finer unit).
	Per time.Duration
}

// ParseLimit parses a ceiling written N/DURATION, as WXACODE_RATE is:
// "5000/1m", "600/10s", "300/5s". DURATION is anything time.ParseDuration
// accepts, or a bare unit meaning one of it ("5000/m").
func ParseLimit(s string) (Limit, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Limit{}, fmt.Errorf("parse limit %q: want N/DURATION, such as 5000/1m", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count <= 0 {
		return Limit{}, fmt.Errorf("parse limit %q: N %q is not a positive whole number", s, n)
	}
	per = strings.TrimSpace(per)
	if r, _ := utf8.DecodeRuneInString(per); unicode.IsLetter(r) {
		per = "1" + per // "5000/m" reads as 5000 a minute.
	}
	d, err := time.ParseDuration(per)
	if err != nil {
		return Limit{}, fmt.Errorf("parse limit %q: duration: %w", s, err)
	}
	l := Limit{N: count, Per: d}
	if err := l.validate(); err != nil {
		return Limit{}, fmt.Errorf("parse limit %q: %w", s, err)
	}
	return l, nil
}

// String formats the limit as ParseLimit reads it: "5000/1m", "300/5s".
func (l Limit) String() string {
	d := l.Per.String()
	// Drop zero tails ("1m0s" → "1m", "1h0m0s" → "1h") so the text reads as
	// the operator wrote it.
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return strconv.Itoa(l.N) + "/" + d
}

func (l Limit) validate() error {
	switch {
	case l.N <= 0:
		return fmt.Errorf("N is %d, want at least 1", l.N)
	case l.Per < time.Millisecond:
		return fmt.Errorf("duration %s is shorter than 1ms", l.Per)
	case l.Per%time.Microsecond != 0:
		return fmt.Errorf("duration %s is not whole microseconds", l.Per)
	}
	return nil
}
