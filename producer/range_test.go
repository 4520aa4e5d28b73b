package producer

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestRangeBounds(t *testing.T) {
	t.Parallel()
	// The cap itself is accepted (made in full by the benchmarks only).
	if n, err := checkRange("s%d", 1, MaxScenes); n != MaxScenes || err != nil {
		t.Errorf("checkRange of %d scenes = %d, %v", MaxScenes, n, err)
	}
	for _, tt := range []struct {
		name     string
		tmpl     string
		from, to int64
		count    int    // scenes made, when want is ""
		want     string // in the error
	}{
		{"one", "s%d", 7, 7, 1, ""},
		{"one past the cap", "s%d", 0, MaxScenes, 0, "at most 10,000,000 scenes"},
		{"whole int64", "s%d", 0, math.MaxInt64, 0, "edge of int64"},
		{"int64 edge", "s%d", math.MaxInt64 - 7, math.MaxInt64, 0, "edge of int64"},
		{"just below the edge", "s%d", math.MaxInt64 - 7, math.MaxInt64 - 1, 7, ""},
		{"min int64", "s%d", math.MinInt64, 5, 0, "0 <= from <= to"},
		{"negative span", "s%d", math.MinInt64, math.MaxInt64 - 1, 0, "0 <= from <= to"},
		{"huge span", "s%x", 1, math.MaxInt64 - 1, 0, "at most 10,000,000"},
		{"reversed", "s%d", 10, 9, 0, "0 <= from <= to"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := Range(tt.tmpl, tt.from, tt.to)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Range(%q, %d, %d) err = %v, want %q", tt.tmpl, tt.from, tt.to, err, tt.want)
				}
				return
			}
			if err != nil || len(sc.List) != tt.count {
				t.Fatalf("Range(%q, %d, %d) = %d scenes, %v; want %d", tt.tmpl, tt.from, tt.to, len(sc.List), err, tt.count)
			}
			if last := fmt.Sprintf(tt.tmpl, tt.to); sc.List[len(sc.List)-1] != last {
				t.Fatalf("last scene %q, want %q", sc.List[len(sc.List)-1], last)
			}
		})
	}
}

// FuzzRange checks that any template and bounds give an error or exactly
// to-from+1 scenes, never a panic or an endless loop. `go test` runs the
// seeds; `go test -fuzz FuzzRange ./producer` explores.
func FuzzRange(f *testing.F) {
	for _, s := range []struct {
		tmpl     string
		from, to int64
	}{
		{"s%d", 9223372036854775800, 9223372036854775807},
		{"s%d", 0, 9223372036854775807},
		{"s%d", math.MinInt64, math.MaxInt64},
		{"s%d", math.MaxInt64 - 1, math.MaxInt64 - 1},
		{"s%x", math.MaxInt64 - 100, math.MaxInt64 - 1},
		{"s%d", -1, 0},
		{"s%d", 5, 4},
		{"sku%08d", 1, 1000},
		{"%99d", 1, 3},
		{"%032x", 0, 40},
		{"x%d%", 1, 2},
		{"a%%d", 1, 2},
		{"%d", 0, MaxScenes},
		{"%d", 1, MaxScenes},
		{strings.Repeat("x", 31) + "%d", 1, 20},
		{"二%d", 1, 2},
	} {
		f.Add(s.tmpl, s.from, s.to)
	}
	f.Fuzz(func(t *testing.T, tmpl string, from, to int64) {
		count, err := checkRange(tmpl, from, to)
		if err != nil {
			if count != 0 {
				t.Fatalf("checkRange(%q, %d, %d) = %d with error %v", tmpl, from, to, count, err)
			}
			return
		}
		// The true span, in arbitrary precision.
		span := new(big.Int).Sub(big.NewInt(to), big.NewInt(from))
		span.Add(span, big.NewInt(1))
		if !span.IsInt64() || span.Int64() != count || count < 1 || count > MaxScenes {
			t.Fatalf("checkRange(%q, %d, %d) = %d, true span %s", tmpl, from, to, count, span)
		}
		if count > 20_000 {
			return // checked; making them all would slow the fuzzer, not test more
		}
		sc, err := Range(tmpl, from, to)
		var inv *InvalidError
		switch {
		case errors.As(err, &inv):
			if len(inv.Lines) == 0 || len(inv.Lines) > 20 {
				t.Fatalf("Range(%q, %d, %d): %d bad lines", tmpl, from, to, len(inv.Lines))
			}
		case err != nil:
			t.Fatalf("Range(%q, %d, %d): unexpected error %v", tmpl, from, to, err)
		case int64(len(sc.List)) != count:
			t.Fatalf("Range(%q, %d, %d) = %d scenes, want %d", tmpl, from, to, len(sc.List), count)
		}
	})
}
