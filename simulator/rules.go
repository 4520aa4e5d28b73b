package simulator

import (
	"bytes"
	"encoding/json"
	"image/color"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The errcodes the simulator answers, with WeChat's meaning.
const (
	codeOK            = 0
	codeBusy          = -1    // system busy
	codeInvalidToken  = 40001 // access token invalid or not the latest; wrong secret at cgi-bin/token
	codeInvalidGrant  = 40002 // grant_type is not client_credential
	codeInvalidAppID  = 40013 // unknown appid
	codeInvalidArgs   = 40097 // width, env_version or line_color out of range
	codeInvalidSecret = 40125 // wrong secret at cgi-bin/stable_token
	codeSceneChars    = 40129 // a scene character outside the allowed set
	codePathLength    = 40159 // A or C path empty or too long
	codeSceneLength   = 40169 // scene empty or longer than 32
	codeTokenMissing  = 41001 // no access_token in the query
	codeAppIDMissing  = 41002
	codeSecretMissing = 41004
	codeInvalidPage   = 41030 // leading "/", a query, or not released
	codeTokenExpired  = 42001
	codePostOnly      = 43002 // GET where POST is required
	codeFrequency     = 45009 // per-app window full; daily forced refreshes used up
	codeQuotaAC       = 45029 // A and C lifetime quota used up
	codeDataFormat    = 47001 // body not a JSON object, unknown field, wrong type
	codeScancodeTime  = 85096 // scancode_time is reserved
)

var errmsgs = map[int]string{
	codeBusy:          "system error",
	codeInvalidToken:  "invalid credential, access_token is invalid or not latest",
	codeInvalidGrant:  "invalid grant_type",
	codeInvalidAppID:  "invalid appid",
	codeInvalidArgs:   "invalid args",
	codeInvalidSecret: "invalid appsecret",
	codeSceneChars:    "invalid scene",
	codePathLength:    "invalid length for path, or the data is not json string",
	codeSceneLength:   "invalid length for scene, or the data is not json string",
	codeTokenMissing:  "access_token missing",
	codeAppIDMissing:  "appid missing",
	codeSecretMissing: "appsecret missing",
	codeInvalidPage:   "invalid page",
	codeTokenExpired:  "access_token expired",
	codePostOnly:      "require POST method",
	codeFrequency:     "reach max api daily quota limit",
	codeQuotaAC:       "qrcode count out of limit",
	codeDataFormat:    "data format error",
	codeScancodeTime:  "not allow include scancode_time field",
}

// Scene rules, WeChat's as documented, written here on their own: the
// simulator stands in for WeChat, it does not borrow the client's checks.
const (
	sceneMaxLen   = 32
	sceneSpecials = "!#$&'()*+,/:;=?@-._~"
)

var sceneByte = func() (t [256]bool) {
	for _, set := range []string{"0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", sceneSpecials} {
		for i := 0; i < len(set); i++ {
			t[set[i]] = true
		}
	}
	return t
}()

// sceneErrcode is WeChat's answer to scene s: 0 when accepted, 40169 when
// empty or longer than 32 characters, 40129 for any byte outside the set
// (every allowed character is ASCII, so any other byte is refused).
func sceneErrcode(s string) int {
	if s == "" {
		return codeSceneLength
	}
	for i := 0; i < len(s); i++ {
		if !sceneByte[s[i]] {
			return codeSceneChars
		}
	}
	if len(s) > sceneMaxLen {
		return codeSceneLength
	}
	return codeOK
}

// Path limits of interfaces A and C, and the longest page of B.
const (
	maxPathA    = 1024
	maxPathC    = 128
	maxPageB    = 1024
	minWidth    = 280
	maxWidth    = 1280
	defaultWide = 430
)

// The code APIs, as named in the call log and Stats.
const (
	apiUnlimited = "getwxacodeunlimit" // B
	apiCode      = "getwxacode"        // A
	apiQRCode    = "createwxaqrcode"   // C
	apiToken     = "token"
	apiStable    = "stable_token"
)

// codeRequest is one parsed request of interface A, B or C.
type codeRequest struct {
	api        string
	scene      string // B only
	page       string // B's page or A's and C's path
	checkPath  bool
	envVersion string
	width      int
	autoColor  bool
	line       color.RGBA
	hyaline    bool
}

// content is the text the QR code carries: PAGE?scene=SCENE for B (a
// page has no "?", so DecodeContent splits at the first "?scene="), the
// path itself for A and C.
func (r codeRequest) content() string {
	if r.api == apiUnlimited {
		return r.page + "?scene=" + r.scene
	}
	return r.page
}

// fields lists the body fields each code API knows; any other is 47001.
var fields = map[string]map[string]bool{
	apiUnlimited: {"scene": true, "page": true, "check_path": true, "env_version": true, "width": true, "auto_color": true, "line_color": true, "is_hyaline": true},
	apiCode:      {"path": true, "width": true, "auto_color": true, "line_color": true, "is_hyaline": true, "env_version": true},
	apiQRCode:    {"path": true, "width": true},
}

// parseCode reads the JSON body of a code API and applies WeChat's rules,
// returning the request or the errcode WeChat would answer. released
// reports whether a page is in the released version.
//
//   - The body must be a JSON object, whatever its Content-Type (a form
//     post is not JSON): else 47001. A field the API does not know, or a
//     value of the wrong type, is 47001. null means absent.
//   - Absent fields take WeChat's defaults: home page, check_path true,
//     env_version release, width 430 (0 also means 430), black lines.
//   - B's scene: 1 to 32 characters from 0-9 A-Z a-z and
//     !#$&'()*+,/:;=?@-._~ (40169 when empty or long, 40129 for another
//     character); a JSON number is taken as its text.
//   - B's page: "scancode_time" in it is 85096; a leading "/", a query or
//     fragment, or over 1024 bytes is 41030; with check_path true a page
//     not released is 41030 (check_path false takes any page; WeChat's
//     cap of 60,000 such pages is not modelled).
//   - A's path: 1 to 1024 characters, C's 1 to 128, else 40159;
//     "scancode_time" in it is 85096.
//   - env_version other than release, trial, develop, width outside 280
//     to 1280, or a line_color component outside 0 to 255 is 40097.
//     width and line_color components may be numbers or strings.
func parseCode(api string, body []byte, released func(string) bool) (codeRequest, int) {
	r := codeRequest{api: api, checkPath: true, envVersion: "release", width: defaultWide, line: color.RGBA{A: 255}}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return r, codeDataFormat
	}
	known := fields[api]
	for k := range raw {
		if !known[k] {
			return r, codeDataFormat
		}
	}
	var (
		ok      = true
		pageSet bool
	)
	for k, v := range raw {
		if isNull(v) {
			continue
		}
		switch k {
		case "scene":
			// A number is taken as its decimal text, as loosely typed
			// clients send numeric scenes.
			r.scene, ok = stringOrNumber(v)
		case "page", "path":
			ok = json.Unmarshal(v, &r.page) == nil
			pageSet = true
		case "check_path":
			ok = json.Unmarshal(v, &r.checkPath) == nil
		case "env_version":
			ok = json.Unmarshal(v, &r.envVersion) == nil
			if r.envVersion == "" {
				r.envVersion = "release"
			}
		case "width":
			var w int
			w, ok = intOrString(v)
			if w != 0 { // 0 is "unset" to loosely typed clients
				r.width = w
			}
		case "auto_color":
			ok = json.Unmarshal(v, &r.autoColor) == nil
		case "is_hyaline":
			ok = json.Unmarshal(v, &r.hyaline) == nil
		case "line_color":
			var code int
			r.line, code = parseColor(v)
			if code != codeOK {
				return r, code
			}
		}
		if !ok {
			return r, codeDataFormat
		}
	}

	switch api {
	case apiUnlimited:
		if code := sceneErrcode(r.scene); code != codeOK {
			return r, code
		}
		if strings.Contains(r.page, "scancode_time") {
			return r, codeScancodeTime
		}
		if strings.HasPrefix(r.page, "/") || strings.ContainsAny(r.page, "?#") || len(r.page) > maxPageB {
			return r, codeInvalidPage
		}
		if r.checkPath && r.page != "" && !released(r.page) {
			return r, codeInvalidPage
		}
	case apiCode, apiQRCode:
		limit := maxPathA
		if api == apiQRCode {
			limit = maxPathC
		}
		if !pageSet || r.page == "" || utf8.RuneCountInString(r.page) > limit {
			return r, codePathLength
		}
		if strings.Contains(r.page, "scancode_time") {
			return r, codeScancodeTime
		}
	}
	switch r.envVersion {
	case "release", "trial", "develop":
	default:
		return r, codeInvalidArgs
	}
	if r.width < minWidth || r.width > maxWidth {
		return r, codeInvalidArgs
	}
	return r, codeOK
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// stringOrNumber reads a JSON string, or a number as its literal text.
func stringOrNumber(v json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String(), true
	}
	return "", false
}

// intOrString reads an integer written as a JSON number or a string.
func intOrString(v json.RawMessage) (int, bool) {
	s, ok := stringOrNumber(v)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, false
	}
	return int(f), true
}

// parseColor reads line_color, {"r":..,"g":..,"b":..} with each component
// a number or a string (WeChat's own examples use strings). A missing
// component is 0; a component outside 0 to 255 is 40097.
func parseColor(v json.RawMessage) (color.RGBA, int) {
	c := color.RGBA{A: 255}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return c, codeDataFormat
	}
	for k, cv := range raw {
		var dst *uint8
		switch k {
		case "r":
			dst = &c.R
		case "g":
			dst = &c.G
		case "b":
			dst = &c.B
		default:
			return c, codeDataFormat
		}
		if isNull(cv) {
			continue
		}
		n, ok := intOrString(cv)
		if !ok {
			return c, codeDataFormat
		}
		if n < 0 || n > 255 {
			return c, codeInvalidArgs
		}
		*dst = uint8(n)
	}
	return c, codeOK
}

// peekScene reads the scene and the page (or path) of a code request's
// body as well as it can, for the call log of calls refused before their
// body is judged.
func peekScene(body []byte) (scene, page string) {
	var v struct {
		Scene any    `json:"scene"`
		Page  string `json:"page"`
		Path  string `json:"path"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	switch sc := v.Scene.(type) {
	case string:
		scene = sc
	case float64:
		scene = strconv.FormatFloat(sc, 'f', -1, 64)
	}
	return scene, v.Page + v.Path
}
