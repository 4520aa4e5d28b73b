package client_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/client"
	"github.com/wxacode/wxacode/internal/webhook"
)

func hmacHex(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// The signature workers send verifies, and nothing else does.
func TestVerifySignatureOfWorkers(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"event":"campaign.done"}`)
	sig := webhook.Sign(secret, body)
	if !client.VerifySignature(secret, body, sig) {
		t.Errorf("signature %s of the workers does not verify", sig)
	}
	for name, bad := range map[string]string{
		"other secret": webhook.Sign([]byte("other"), body),
		"no prefix":    sig[len("sha256="):],
		"not hex":      "sha256=zz",
		"empty":        "",
		"truncated":    sig[:len(sig)-2],
	} {
		if client.VerifySignature(secret, body, bad) {
			t.Errorf("%s: %q verifies", name, bad)
		}
	}
}

// jsonFields lists a struct type's JSON field names with their Go kinds.
func jsonFields(t reflect.Type) map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = f.Type.Kind()
		}
	}
	return out
}

// The client's Status decodes every field of the server's one status
// type: a field added there and not here would be dropped silently.
func TestStatusHasEveryFieldOfTheServers(t *testing.T) {
	if diff := cmp.Diff(jsonFields(reflect.TypeFor[campaign.Status]()), jsonFields(reflect.TypeFor[client.Status]())); diff != "" {
		t.Fatalf("client.Status against campaign.Status (-server +client):\n%s", diff)
	}
}
