package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wxacode/wxacode/limiter"
)

// appSetup is one app a worker serves: its credentials and its ceiling.
type appSetup struct {
	appid, secret, tokenURL string
	limit                   limiter.Limit
	// from names where the app was configured, for messages.
	from string
}

// appFields are the fields of an app in a WXACODE_APPS file.
var appFields = []string{"appid", "secret_file", "secret_env", "token_url", "rate"}

// loadApps reads the WXACODE_APPS file: a YAML document
//
//	apps:
//	  - appid: wx0123456789abcdef
//	    secret_file: /run/secrets/wx0123456789abcdef  # or secret_env: NAME, or token_url: URL
//	    rate: 5000/1m                                 # optional; default limit
//
// Secrets are read from the files or variables named, never from the YAML
// itself. Every mistake is bad usage naming the file, the line and the
// field, and no value of a secret is ever shown.
func (a *app) loadApps(path string, limit limiter.Limit) ([]appSetup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("WXACODE_APPS: %v", err)
	}
	bad := func(n *yaml.Node, format string, args ...any) error {
		return usagef("WXACODE_APPS %s:%d: %s", path, n.Line, fmt.Sprintf(format, args...))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, usagef("WXACODE_APPS %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, usagef("WXACODE_APPS %s: empty; want a list under apps:", path)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, bad(root, "want a mapping with the key apps")
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "apps" {
			return nil, bad(k, "unknown key %q: the file has one key, apps", k.Value)
		}
		list = v
	}
	if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return nil, bad(root, "apps: want a list of at least one app")
	}
	var out []appSetup
	seen := map[string]int{}
	for _, item := range list.Content {
		if item.Kind != yaml.MappingNode {
			return nil, bad(item, "an app is a mapping of %s", strings.Join(appFields, ", "))
		}
		fields := map[string]*yaml.Node{}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], item.Content[i+1]
			switch {
			case k.Value == "secret" || k.Value == "app_secret":
				return nil, bad(k, "%s: the file holds no secret; name a file with secret_file or a variable with secret_env", k.Value)
			case !slices.Contains(appFields, k.Value):
				return nil, bad(k, "unknown field %q: want %s", k.Value, strings.Join(appFields, ", "))
			case fields[k.Value] != nil:
				return nil, bad(k, "%s given twice", k.Value)
			case v.Kind != yaml.ScalarNode:
				return nil, bad(v, "%s: want a single value", k.Value)
			}
			fields[k.Value] = v
		}
		s := appSetup{limit: limit, from: fmt.Sprintf("WXACODE_APPS %s:%d", path, item.Line)}
		id := fields["appid"]
		if id == nil {
			return nil, bad(item, "appid is missing")
		}
		if _, err := parseAppID(id.Value); err != nil {
			return nil, bad(id, "appid %q: %v", id.Value, err)
		}
		if line, dup := seen[id.Value]; dup {
			return nil, bad(id, "appid %s is already listed at line %d", id.Value, line)
		}
		seen[id.Value] = id.Line
		s.appid = id.Value
		var given []string
		for _, f := range []string{"secret_file", "secret_env", "token_url"} {
			if fields[f] != nil {
				given = append(given, f)
			}
		}
		if len(given) != 1 {
			return nil, bad(item, "app %s: want exactly one of secret_file, secret_env and token_url (has %d)", s.appid, len(given))
		}
		switch v := fields[given[0]]; given[0] {
		case "secret_file":
			b, err := os.ReadFile(v.Value)
			if err != nil {
				return nil, bad(v, "secret_file of %s: %v", s.appid, errors.Unwrap(err))
			}
			if s.secret = strings.TrimSpace(string(b)); s.secret == "" {
				return nil, bad(v, "secret_file %s of %s is empty", v.Value, s.appid)
			}
		case "secret_env":
			if s.secret = a.getenv(v.Value); s.secret == "" {
				return nil, bad(v, "secret_env of %s: variable %s is not set", s.appid, v.Value)
			}
		case "token_url":
			if err := checkURL(setting{env: "token_url"}, v.Value, nil); err != nil {
				return nil, bad(v, "token_url of %s: want http(s)://HOST[:PORT][/PATH]", s.appid)
			}
			s.tokenURL = v.Value
		}
		if r := fields["rate"]; r != nil {
			if s.limit, err = parseRate(r.Value); err != nil {
				return nil, bad(r, "rate %q of %s: %v", r.Value, s.appid, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}
