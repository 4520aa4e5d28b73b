package wechat

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SceneChars lists every character WeChat accepts in a scene, besides
// 0-9, A-Z and a-z.
const SceneChars = "!#$&'()*+,/:;=?@-._~"

// MaxSceneLen is the longest scene WeChat accepts, in characters.
const MaxSceneLen = 32

// Width limits of interface B, in pixels.
const (
	MinWidth     = 280
	MaxWidth     = 1280
	DefaultWidth = 430
)

// Environment versions a code can open.
const (
	EnvRelease = "release"
	EnvTrial   = "trial"
	EnvDevelop = "develop"
)

// Color is a line colour in decimal RGB, each component 0 to 255.
type Color struct {
	R int `json:"r"`
	G int `json:"g"`
	B int `json:"b"`
}

// String formats the colour as R,G,B, the form ParseColor reads.
func (c Color) String() string { return fmt.Sprintf("%d,%d,%d", c.R, c.G, c.B) }

// ParseColor reads a colour written R,G,B (for example "0,128,255").
func ParseColor(s string) (Color, error) {
	var c Color
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return c, fmt.Errorf("line color %q: want R,G,B", s)
	}
	for i, p := range parts {
		var v int
		if _, err := fmt.Sscanf(strings.TrimSpace(p), "%d", &v); err != nil || v < 0 || v > 255 || strings.TrimSpace(p) != fmt.Sprint(v) {
			return c, fmt.Errorf("line color %q: component %d must be an integer from 0 to 255", s, i+1)
		}
		switch i {
		case 0:
			c.R = v
		case 1:
			c.G = v
		default:
			c.B = v
		}
	}
	return c, nil
}

// CodeOptions are the settings of a code that interface B shares by every
// scene of a campaign. The zero value is not WeChat's default (CheckPath is
// false there): start from DefaultCodeOptions.
type CodeOptions struct {
	// Page is the page the code opens, such as "pages/index/index": no
	// leading "/", no query. Empty means the Mini Program's home page.
	Page string `json:"page"`
	// CheckPath asks WeChat to check that Page exists in the released
	// version. WeChat's default is true; it is always sent.
	CheckPath bool `json:"check_path"`
	// EnvVersion is release, trial or develop. Empty means release.
	EnvVersion string `json:"env_version,omitempty"`
	// Width is the code's width in pixels, 280 to 1280. Zero means 430.
	Width int `json:"width,omitempty"`
	// AutoColor lets WeChat pick the line colour.
	AutoColor bool `json:"auto_color"`
	// LineColor is the line colour when AutoColor is false.
	LineColor Color `json:"line_color"`
	// IsHyaline asks for a transparent background.
	IsHyaline bool `json:"is_hyaline"`
}

// DefaultCodeOptions returns WeChat's defaults: home page, check_path true,
// release, 430 px, black lines.
func DefaultCodeOptions() CodeOptions {
	return CodeOptions{CheckPath: true, EnvVersion: EnvRelease, Width: DefaultWidth}
}

// FieldError is a request field WeChat would refuse: Field is its JSON
// name (page, env_version, width, line_color, scene), so callers can name
// their own flag or field for it.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate reports the first option WeChat would refuse, naming it, as a
// *FieldError.
func (o CodeOptions) Validate() error {
	if err := ValidatePage(o.Page); err != nil {
		return &FieldError{"page", err}
	}
	switch o.EnvVersion {
	case "", EnvRelease, EnvTrial, EnvDevelop:
	default:
		return &FieldError{"env_version", fmt.Errorf("env_version %q: want release, trial or develop", o.EnvVersion)}
	}
	if o.Width != 0 && (o.Width < MinWidth || o.Width > MaxWidth) {
		return &FieldError{"width", fmt.Errorf("width %d: must be from %d to %d", o.Width, MinWidth, MaxWidth)}
	}
	for _, v := range []int{o.LineColor.R, o.LineColor.G, o.LineColor.B} {
		if v < 0 || v > 255 {
			return &FieldError{"line_color", fmt.Errorf("line_color %s: each component must be from 0 to 255", o.LineColor)}
		}
	}
	return nil
}

// UnlimitedRequest is one call of interface B (wxacode.getUnlimited).
type UnlimitedRequest struct {
	// Scene is the parameter the Mini Program reads as query.scene.
	Scene string
	CodeOptions
}

// Validate reports the first field WeChat would refuse, naming it.
func (r UnlimitedRequest) Validate() error {
	if err := ValidateScene(r.Scene); err != nil {
		return err
	}
	return r.CodeOptions.Validate()
}

// MarshalJSON writes exactly the fields interface B knows, check_path and
// the booleans included even when false, width and env_version filled with
// WeChat's defaults when zero.
func (r UnlimitedRequest) MarshalJSON() ([]byte, error) {
	type wire struct {
		Scene      string `json:"scene"`
		Page       string `json:"page,omitempty"`
		CheckPath  bool   `json:"check_path"`
		EnvVersion string `json:"env_version"`
		Width      int    `json:"width"`
		AutoColor  bool   `json:"auto_color"`
		LineColor  Color  `json:"line_color"`
		IsHyaline  bool   `json:"is_hyaline"`
	}
	w := wire{
		Scene: r.Scene, Page: r.Page, CheckPath: r.CheckPath,
		EnvVersion: r.EnvVersion, Width: r.Width,
		AutoColor: r.AutoColor, LineColor: r.LineColor, IsHyaline: r.IsHyaline,
	}
	if w.EnvVersion == "" {
		w.EnvVersion = EnvRelease
	}
	if w.Width == 0 {
		w.Width = DefaultWidth
	}
	return json.Marshal(w)
}

// IsSceneChar reports whether WeChat accepts c in a scene.
func IsSceneChar(c rune) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return true
	}
	return c < utf8.RuneSelf && strings.ContainsRune(SceneChars, c)
}

// ValidateScene reports why WeChat would refuse s as a scene, or nil: it
// must be 1 to 32 characters from 0-9 A-Z a-z and !#$&'()*+,/:;=?@-._~.
func ValidateScene(s string) error {
	if s == "" {
		return fmt.Errorf("scene is empty")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("scene is not valid UTF-8")
	}
	pos := 0
	for _, c := range s {
		pos++
		if !IsSceneChar(c) {
			return fmt.Errorf("scene has %s at character %d: allowed are 0-9 A-Z a-z and %s", quoteChar(c), pos, SceneChars)
		}
	}
	if n := utf8.RuneCountInString(s); n > MaxSceneLen {
		return fmt.Errorf("scene is %d characters long: at most %d", n, MaxSceneLen)
	}
	return nil
}

func quoteChar(c rune) string {
	switch c {
	case ' ':
		return "a space"
	case '\t':
		return "a tab"
	}
	if c < 0x20 || c == 0x7f {
		return fmt.Sprintf("control character %U", c)
	}
	return fmt.Sprintf("%q", string(c))
}

// MaxPageLen is the longest page path wxacode sends.
const MaxPageLen = 1024

// ValidatePage reports why WeChat would refuse p as interface B's page, or
// nil. Empty means the home page.
func ValidatePage(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPageLen {
		return fmt.Errorf("page is %d bytes long: at most %d", len(p), MaxPageLen)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("page %q: must not start with \"/\" (write %q)", p, strings.TrimLeft(p, "/"))
	}
	if strings.ContainsAny(p, "?#") {
		return fmt.Errorf("page %q: must not carry a query or fragment (put parameters in the scene)", p)
	}
	if strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("page %q: has an empty path segment", p)
	}
	for i, c := range p {
		ok := c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || strings.ContainsRune("-_./", c)
		if !ok {
			return fmt.Errorf("page %q: %s at byte %d is not allowed in a page path", p, quoteChar(c), i+1)
		}
	}
	if strings.Contains(p, "scancode_time") {
		return fmt.Errorf("page %q: scancode_time is reserved by WeChat", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("page %q: has a %q segment", p, seg)
		}
	}
	return nil
}
