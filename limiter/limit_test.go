package limiter

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Limit
		str  string // String() of the result
	}{
		{"per minute", "5000/1m", Limit{5000, time.Minute}, "5000/1m"},
		{"ten seconds", "600/10s", Limit{600, 10 * time.Second}, "600/10s"},
		{"five seconds", "300/5s", Limit{300, 5 * time.Second}, "300/5s"},
		{"bare unit", "5000/m", Limit{5000, time.Minute}, "5000/1m"},
		{"spaces", " 10 / 1s ", Limit{10, time.Second}, "10/1s"},
		{"hour", "100/1h", Limit{100, time.Hour}, "100/1h"},
		{"mixed", "7/1m30s", Limit{7, 90 * time.Second}, "7/1m30s"},
		{"milliseconds", "3/250ms", Limit{3, 250 * time.Millisecond}, "3/250ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if err != nil {
				t.Fatalf("ParseLimit(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLimit(%q) (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			if back, err := ParseLimit(got.String()); err != nil || back != got {
				t.Errorf("ParseLimit(String()) = %v, %v; want %v", back, err, got)
			}
		})
	}
}

func TestParseLimitErrors(t *testing.T) {
	tests := []struct {
		name, in, want string // want: a part of the error
	}{
		{"empty", "", "want N/DURATION"},
		{"no slash", "5000", "want N/DURATION"},
		{"zero", "0/1m", "not a positive whole number"},
		{"negative", "-5/1m", "not a positive whole number"},
		{"not a number", "many/1m", "not a positive whole number"},
		{"fraction", "2.5/1s", "not a positive whole number"},
		{"no duration", "5000/", "duration"},
		{"bad duration", "5000/1 minute", "duration"},
		{"zero duration", "5000/0s", "shorter than 1ms"},
		{"too short", "5/100us", "shorter than 1ms"},
		{"negative duration", "5/-1m", "shorter than 1ms"},
		{"below a microsecond", "5/1.0000005s", "whole microseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLimit(tt.in)
			if err == nil {
				t.Fatalf("ParseLimit(%q) = nil error, want one containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParseLimit(%q) error %q: want it to name the input and say %q", tt.in, err, tt.want)
			}
		})
	}
}
