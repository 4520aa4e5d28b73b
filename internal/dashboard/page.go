package dashboard

import (
	"bytes"
	"cmp"
	"crypto/rand"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/wechat"
	"github.com/wxacode/wxacode/worker"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct":      pct,
	"plus":     func(a, b int64) int64 { return a + b },
	"count":    count,
	"eta":      formatETA,
	"rate":     func(r float64) string { return strconv.FormatFloat(r, 'f', 1, 64) },
	"when":     func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"errtext":  errText,
	"failures": sortedFailures,
}).Parse(pageHTML))

// pageData is what page.html renders.
type pageData struct {
	Title     string
	Campaigns []campaign.Status
	// Single is true on a campaign's own page.
	Single   bool
	NotFound string
	Error    string
	Refresh  int
	Now      time.Time
	ReadOnly bool
	// API is true when the producer API is served: the campaign page then
	// has retry, cancel and archive download, and updates its figures
	// from /api/v1 without a reload.
	API bool
	// Nonce allows the page's one inline script.
	Nonce string
}

func (h *Handler) indexPage(w http.ResponseWriter, r *http.Request) {
	h.renderPage(w, r, "", "Campaigns")
}

func (h *Handler) campaignPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	h.renderPage(w, r, name, name)
}

func (h *Handler) renderPage(w http.ResponseWriter, r *http.Request, name, title string) {
	d := pageData{
		Title: title, Single: name != "", Now: time.Now(),
		Refresh: max(int(h.cfg.Refresh.Seconds()), 1), ReadOnly: h.cfg.ReadOnly,
		API: h.cfg.API != nil, Nonce: rand.Text(),
	}
	code := http.StatusOK
	cs, err := h.load(r.Context(), name)
	if err != nil {
		var msg string
		code, msg = h.fail(w, r, err)
		if code == http.StatusNotFound {
			d.NotFound = msg
		} else {
			d.Error = msg
		}
	}
	d.Campaigns = cs
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		h.cfg.Logger.Error().Err(err).Msg("dashboard: render page")
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The pages need no asset from elsewhere; the campaign page's one
	// script reads /api/v1 and its forms post there.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+d.Nonce+"'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// pct is part of total in percent, for widths and labels.
func pct(part, total int64) string {
	if total <= 0 {
		return "0"
	}
	return strconv.FormatFloat(min(float64(part)/float64(total)*100, 100), 'f', 1, 64)
}

// count writes n with thousands separators: 1,000,000.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// formatETA writes seconds for humans: 3h20m, 4m05s, 12s.
func formatETA(sec float64) string {
	return FormatDuration(time.Duration(sec * float64(time.Second)))
}

// FormatDuration writes a duration for humans, to the second: 3h20m,
// 4m05s, 12s; 0s for none.
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// failure is one row of a campaign's failures table.
type failure struct {
	Code   int
	Scenes int64
}

// sortedFailures orders failures by count, most first.
func sortedFailures(m map[int]int64) []failure {
	out := make([]failure, 0, len(m))
	for _, code := range slices.Sorted(maps.Keys(m)) {
		out = append(out, failure{code, m[code]})
	}
	slices.SortStableFunc(out, func(a, b failure) int { return cmp.Compare(b.Scenes, a.Scenes) })
	return out
}

// errText says what an errcode recorded against a scene means, led by its
// class as the worker's retry policy and metrics name it.
func errText(code int) string {
	return worker.CodeClass(code).String() + ": " + codeText(code)
}

func codeText(code int) string {
	switch code {
	case 0:
		return "no WeChat errcode (the request failed validation)"
	case wechat.CodeBusy:
		return "WeChat busy"
	case wechat.CodeInvalidArgs:
		return "invalid arguments (width, line color, env_version…)"
	case wechat.CodeInvalidScene:
		return "invalid characters in scene"
	case wechat.CodeSceneTooLong:
		return "scene too long, or body not JSON"
	case wechat.CodeInvalidPage:
		return "page does not exist or is not published"
	case wechat.CodeBodyFormat:
		return "request body format"
	case wechat.CodeUnauthorized:
		return "API not authorized for this account"
	case wechat.CodeScancodeTime:
		return "scancode_time is reserved"
	case wechat.CodeFrequencyLimit, wechat.CodeMinuteQuota:
		return "minute limit reached"
	case wechat.CodeTokenInvalid, wechat.CodeTokenMalformed, wechat.CodeTokenExpired:
		return "access token invalid or expired"
	}
	return "see WeChat's error codes"
}
