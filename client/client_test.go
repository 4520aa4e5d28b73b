package client_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

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
