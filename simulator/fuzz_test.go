package simulator

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/wxacode/wxacode/wechat"
)

// FuzzSceneRules holds the simulator's scene rule (WeChat's, written on
// its own) and the client's validation equal: a scene valid for one is
// valid for the other.
func FuzzSceneRules(f *testing.F) {
	for _, s := range []string{"", "a", "sku000123", "09AZaz!#$&'()*+,/:;=?@-._~", "a b", "a%20", "商品", "\x00", "\xff",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", `"`, `\`, "<>", "[]{}|^`"} {
		f.Add(s)
	}
	all := func(string) bool { return true }
	f.Fuzz(func(t *testing.T, s string) {
		client := wechat.ValidateScene(s) == nil
		sim := sceneErrcode(s) == codeOK
		if client != sim {
			t.Fatalf("scene %q: client valid %v, simulator valid %v (errcode %d)", s, client, sim, sceneErrcode(s))
		}
		if !utf8.ValidString(s) {
			return // JSON would carry another string
		}
		// Through the wire: the rule the server applies to a JSON body.
		body, err := json.Marshal(map[string]string{"scene": s})
		if err != nil {
			t.Fatal(err)
		}
		if _, code := parseCode(apiUnlimited, body, all); code != sceneErrcode(s) {
			t.Fatalf("scene %q: over JSON errcode %d, directly %d", s, code, sceneErrcode(s))
		}
	})
}
