package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wxacode/wxacode/internal/dashboard"
)

// bar renders a one-line progress bar: [#####.....] 50% 500/1000.
func bar(done, total int64, width int) string {
	if total <= 0 {
		total = 1
	}
	frac := min(float64(done)/float64(total), 1)
	fill := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3.0f%% %d/%d", strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100, done, total)
}

// liveLine redraws one line of a terminal in place.
type liveLine struct {
	w    io.Writer
	last time.Time
}

// draw redraws the line, at most ten times a second unless force.
func (l *liveLine) draw(s string, force bool) {
	if !force && time.Since(l.last) < 100*time.Millisecond {
		return
	}
	l.last = time.Now()
	fmt.Fprintf(l.w, "\r\033[K%s", s)
}

// end finishes the line.
func (l *liveLine) end() { fmt.Fprintln(l.w) }

// formatETA writes a duration for humans: 3h20m, 4m05s, 12s.
func formatETA(d time.Duration) string { return dashboard.FormatDuration(d) }
