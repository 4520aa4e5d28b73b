package simulator

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
)

// BenchmarkUnlimited measures interface-B calls answered with an image
// (430 px JPEG), through the handler without a network.
func BenchmarkUnlimited(b *testing.B) {
	s, err := New(Config{RateN: -1})
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/cgi-bin/stable_token",
		bytes.NewReader([]byte(`{"grant_type":"client_credential","appid":"`+DemoAppID+`","secret":"`+DemoSecret+`"}`))))
	tok := decodeTokenBody(b, rec.Body.Bytes())
	path := "/wxa/getwxacodeunlimit?access_token=" + url.QueryEscape(tok)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		body := []byte(`{"scene":"sku` + strconv.Itoa(i) + `","page":"pages/index/index","check_path":false}`)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "image/jpeg" {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body.Bytes())
		}
	}
}
