// Package producer turns a list of scenes into a campaign: it reads scenes
// from a file, a stream or a numeric range, validates every one before
// anything is written, drops duplicates, records the campaign and enqueues
// its batches as asynq tasks.
package producer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/wechat"
)

// Scenes is a validated list of distinct scenes, in first-seen order.
type Scenes struct {
	// List holds each distinct scene once.
	List []string
	// Duplicates counts the scenes dropped because they came before.
	Duplicates int
}

// LineError is one bad line of a scenes source.
type LineError struct {
	// Line is the 1-based line number; for a range, the number the
	// template was filled with.
	Line int64
	Err  error
}

// Error formats the line as LINE: reason.
func (e LineError) Error() string { return fmt.Sprintf("%d: %v", e.Line, e.Err) }

// InvalidError lists every bad line of a source. Nothing is enqueued when
// a source has one.
type InvalidError struct {
	Lines []LineError
	// What is "scenes" or "paths"; "" means scenes.
	What string
}

// Error formats every bad line, one per line.
func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d invalid %s, nothing enqueued:", len(e.Lines), e.noun())
	for _, l := range e.Lines {
		b.WriteString("\n")
		b.WriteString(l.Error())
	}
	return b.String()
}

// maxLine is the longest line read; scenes are at most 32 characters, so
// anything longer is reported, not read whole.
const maxLine = 64 << 10

// Read reads one scene per line (LF or CRLF; blank lines skipped) and
// validates them all; a source of more than MaxScenes distinct scenes is
// refused. Bad lines come back together as *InvalidError.
func Read(r io.Reader) (Scenes, error) {
	return read(r, "scenes", wechat.ValidateScene)
}

// ReadPaths reads one path of interface A or C per line, as Read reads
// scenes: LF or CRLF, blank lines skipped, every path validated (A: up to
// 1024 bytes, C: up to 128; see wechat.ValidatePath), duplicates dropped
// and counted. Bad lines come back together as *InvalidError.
func ReadPaths(r io.Reader, iface campaign.Interface) (Scenes, error) {
	if !iface.Limited() {
		return Scenes{}, fmt.Errorf("read paths: interface %q takes scenes, not paths", iface)
	}
	max := iface.MaxPathLen()
	return read(r, "paths", func(p string) error { return wechat.ValidatePath(p, max) })
}

func read(r io.Reader, what string, validate func(string) error) (Scenes, error) {
	var (
		sc   Scenes
		bad  []LineError
		seen = map[string]struct{}{}
	)
	br := bufio.NewReaderSize(r, 1<<16)
	for line := int64(1); ; line++ {
		text, err := readLine(br)
		if errors.Is(err, errLongLine) {
			bad = append(bad, LineError{line, fmt.Errorf("line is longer than %d bytes", maxLine)})
			continue
		}
		if err == io.EOF && text == "" {
			break
		}
		if err != nil && err != io.EOF {
			return sc, fmt.Errorf("read %s: line %d: %w", what, line, err)
		}
		if strings.TrimSpace(text) != "" {
			if verr := validate(text); verr != nil {
				bad = append(bad, LineError{line, verr})
			} else if _, dup := seen[text]; dup {
				sc.Duplicates++
			} else if len(sc.List) == MaxScenes {
				return Scenes{}, fmt.Errorf("read %s: line %d: more than %s distinct %s in one source", what, line, formatCount(MaxScenes), what)
			} else {
				seen[text] = struct{}{}
				sc.List = append(sc.List, text)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(bad) > 0 {
		return Scenes{}, &InvalidError{Lines: bad, What: what}
	}
	return sc, nil
}

// noun is "scene(s)" or "path(s)".
func (e *InvalidError) noun() string {
	if e.What == "paths" {
		return "path(s)"
	}
	return "scene(s)"
}

var errLongLine = errors.New("line too long")

// readLine reads a line without its LF or CRLF. A line over maxLine is
// skipped to its end and reported as errLongLine.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b)+len(chunk) > maxLine+2 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return "", err
			}
			return "", errLongLine
		}
		b = append(b, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		s := strings.TrimSuffix(string(b), "\n")
		s = strings.TrimSuffix(s, "\r")
		return s, err
	}
}

var verbRE = regexp.MustCompile(`%(0?[1-9][0-9]?)?[dx]`)

// MaxScenes is the most scenes one source may give: a campaign's status is
// kept by scene index, and a source past this is far more likely a typo
// (a --to with three zeros too many) than a print run.
const MaxScenes = 10_000_000

// checkRange checks a range's template and bounds without making a scene,
// and returns how many numbers it spans. The arithmetic cannot overflow:
// from is at least 0 and to at most math.MaxInt64-1, so to-from+1 fits.
func checkRange(template string, from, to int64) (int64, error) {
	locs := verbRE.FindAllStringIndex(template, -1)
	if len(locs) != 1 || strings.Count(template, "%") != 1 {
		return 0, fmt.Errorf("--range %q: want exactly one %%d or %%x verb (such as sku%%08d) and no other %%", template)
	}
	switch {
	case from < 0 || to < from:
		return 0, fmt.Errorf("--from %d --to %d: want 0 <= from <= to", from, to)
	case to == math.MaxInt64:
		// The last number of int64: n+1 would wrap around.
		return 0, fmt.Errorf("--to %d: at the edge of int64, want at most %d", to, int64(math.MaxInt64-1))
	case to-from >= MaxScenes:
		return 0, fmt.Errorf("--from %d --to %d: at most %s scenes in one range", from, to, formatCount(MaxScenes))
	}
	return to - from + 1, nil
}

// Range makes the scenes template % n for every n from from to to,
// inclusive: at most MaxScenes of them, with 0 <= from <= to < MaxInt64.
// The template holds exactly one %d or %x verb, with an optional width
// such as %08d, and no other %.
func Range(template string, from, to int64) (Scenes, error) {
	count, err := checkRange(template, from, to)
	if err != nil {
		return Scenes{}, err
	}
	// Distinct numbers print as distinct strings under %d and %x, padded
	// or not, so a range has no duplicates. The last scene is the longest:
	// when it is valid, every scene is and the list is sized at once.
	var sc Scenes
	if wechat.ValidateScene(fmt.Sprintf(template, to)) == nil {
		sc.List = make([]string, 0, count)
	}
	var bad []LineError
	for i := range count {
		n := from + i
		s := fmt.Sprintf(template, n)
		if err := wechat.ValidateScene(s); err != nil {
			bad = append(bad, LineError{n, fmt.Errorf("scene %q: %w", s, err)})
			if len(bad) >= 20 {
				break
			}
			continue
		}
		sc.List = append(sc.List, s)
	}
	if len(bad) > 0 {
		return Scenes{}, &InvalidError{Lines: bad}
	}
	return sc, nil
}

// formatCount writes n with thousands separators, for summaries.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
