package wechat

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateScene(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scene string
		ok    bool
	}{
		{"one character", "a", true},
		{"32 characters", strings.Repeat("x", 32), true},
		{"33 characters", strings.Repeat("x", 33), false},
		{"empty", "", false},
		{"every allowed punctuation", "!#$&'()*+,/:;=?@-._~", true},
		{"digits and letters", "0123456789ABCDEFGHIJKLMNOPQRSTUV", true},
		{"query-like", "id=42&from=poster", true},
		{"percent", "a%20b", false},
		{"url-encoded Chinese", "%E4%B8%AD", false},
		{"Chinese", "中文", false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"newline", "a\n", false},
		{"double quote", `a"b`, false},
		{"backslash", `a\b`, false},
		{"caret", "a^b", false},
		{"braces", "{a}", false},
		{"invalid utf-8", "a\xffb", false},
		{"33 with a bad character", strings.Repeat("x", 32) + " ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateScene(tt.scene)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateScene(%q) = %v, want ok %v", tt.scene, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "scene") {
				t.Errorf("error %q does not name the scene", err)
			}
		})
	}
	if err := ValidateScene("a b"); err == nil || !strings.Contains(err.Error(), "a space at character 2") {
		t.Errorf("space error = %v", err)
	}
	if err := ValidateScene(strings.Repeat("x", 33)); err == nil || !strings.Contains(err.Error(), "33 characters") {
		t.Errorf("length error = %v", err)
	}
}

func TestValidatePage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		page string
		ok   bool
	}{
		{"", true},
		{"pages/index/index", true},
		{"pages/item-detail/item_detail.v2", true},
		{"/pages/index/index", false},
		{"pages/index/index?id=1", false},
		{"pages/index/index#top", false},
		{"pages/index/", false},
		{"pages//index", false},
		{"pages/../index", false},
		{"./pages/index", false},
		{"pages/index index", false},
		{"pages/首页", false},
		{"pages/scancode_time/index", false},
		{strings.Repeat("p", 1024), true},
		{strings.Repeat("p", 1025), false},
	}
	for _, tt := range tests {
		if err := ValidatePage(tt.page); (err == nil) != tt.ok {
			t.Errorf("ValidatePage(%q) = %v, want ok %v", tt.page, err, tt.ok)
		}
	}
}

func TestCodeOptionsValidate(t *testing.T) {
	t.Parallel()
	base := DefaultCodeOptions()
	tests := []struct {
		name string
		mod  func(o *CodeOptions)
		want string // substring of the error; "" for ok
	}{
		{"defaults", func(o *CodeOptions) {}, ""},
		{"zero value", func(o *CodeOptions) { *o = CodeOptions{} }, ""},
		{"width 279", func(o *CodeOptions) { o.Width = 279 }, "width"},
		{"width 280", func(o *CodeOptions) { o.Width = 280 }, ""},
		{"width 1280", func(o *CodeOptions) { o.Width = 1280 }, ""},
		{"width 1281", func(o *CodeOptions) { o.Width = 1281 }, "width"},
		{"width negative", func(o *CodeOptions) { o.Width = -1 }, "width"},
		{"env release", func(o *CodeOptions) { o.EnvVersion = EnvRelease }, ""},
		{"env trial", func(o *CodeOptions) { o.EnvVersion = EnvTrial }, ""},
		{"env develop", func(o *CodeOptions) { o.EnvVersion = EnvDevelop }, ""},
		{"env empty", func(o *CodeOptions) { o.EnvVersion = "" }, ""},
		{"env Release", func(o *CodeOptions) { o.EnvVersion = "Release" }, "env_version"},
		{"env prod", func(o *CodeOptions) { o.EnvVersion = "prod" }, "env_version"},
		{"colour white", func(o *CodeOptions) { o.LineColor = Color{255, 255, 255} }, ""},
		{"colour 256", func(o *CodeOptions) { o.LineColor = Color{0, 256, 0} }, "line_color"},
		{"colour negative", func(o *CodeOptions) { o.LineColor = Color{-1, 0, 0} }, "line_color"},
		{"bad page", func(o *CodeOptions) { o.Page = "/x" }, "page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.mod(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want ok", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestParseColor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Color
		ok   bool
	}{
		{"0,0,0", Color{}, true},
		{"255,128,1", Color{255, 128, 1}, true},
		{" 1, 2 ,3", Color{1, 2, 3}, true},
		{"256,0,0", Color{}, false},
		{"-1,0,0", Color{}, false},
		{"1,2", Color{}, false},
		{"1,2,3,4", Color{}, false},
		{"a,b,c", Color{}, false},
		{"1.5,2,3", Color{}, false},
		{"+1,2,3", Color{}, false},
		{"01,2,3", Color{}, false},
		{"", Color{}, false},
	}
	for _, tt := range tests {
		got, err := ParseColor(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseColor(%q) = %v, %v; want %v ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			if back, _ := ParseColor(got.String()); back != got {
				t.Errorf("String round trip of %v = %v", got, back)
			}
		}
	}
}

func TestUnlimitedRequestJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  UnlimitedRequest
		want string
	}{
		{
			"defaults",
			UnlimitedRequest{Scene: "s", CodeOptions: DefaultCodeOptions()},
			`{"scene":"s","check_path":true,"env_version":"release","width":430,"auto_color":false,"line_color":{"r":0,"g":0,"b":0},"is_hyaline":false}`,
		},
		{
			"zero options still send check_path false and the defaults",
			UnlimitedRequest{Scene: "s"},
			`{"scene":"s","check_path":false,"env_version":"release","width":430,"auto_color":false,"line_color":{"r":0,"g":0,"b":0},"is_hyaline":false}`,
		},
		{
			"everything",
			UnlimitedRequest{Scene: "a=1", CodeOptions: CodeOptions{Page: "pages/x/x", EnvVersion: EnvDevelop, Width: 1280, AutoColor: true, LineColor: Color{1, 2, 3}, IsHyaline: true}},
			`{"scene":"a=1","page":"pages/x/x","check_path":false,"env_version":"develop","width":1280,"auto_color":true,"line_color":{"r":1,"g":2,"b":3},"is_hyaline":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []any{tt.req, &tt.req} {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, string(b)); diff != "" {
					t.Errorf("JSON (-want +got):\n%s", diff)
				}
			}
		})
	}
}
