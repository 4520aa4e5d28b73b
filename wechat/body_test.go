package wechat

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadBody checks that an answer is read whole, with or without an
// announced length, and that one longer than the limit shows it.
func TestReadBody(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789abcdef"), 2000) // 32,000 bytes
	for _, tc := range []struct {
		name    string
		r       io.Reader
		length  int64
		limit   int
		want    int
		wantErr error
	}{
		{"announced", bytes.NewReader(body), int64(len(body)), 1 << 20, len(body), nil},
		{"announced, read in small pieces", iotest.HalfReader(bytes.NewReader(body)), int64(len(body)), 1 << 20, len(body), nil},
		{"unknown length", bytes.NewReader(body), -1, 1 << 20, len(body), nil},
		{"empty", bytes.NewReader(nil), 0, 1 << 20, 0, nil},
		{"longer than the limit", bytes.NewReader(body), -1, 1000, 1001, nil},
		{"announced longer than the limit", bytes.NewReader(body), int64(len(body)), 1000, 1001, nil},
		{"cut short", bytes.NewReader(body[:100]), int64(len(body)), 1 << 20, 100, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBody(tc.r, tc.length, tc.limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if len(got) != tc.want || !bytes.Equal(got, body[:len(got)]) {
				t.Errorf("read %d bytes, want the first %d of the body", len(got), tc.want)
			}
		})
	}
}

// BenchmarkReadBody reports the bytes allocated per 31 KB answer (B/op),
// against about 73 KB for io.ReadAll.
func BenchmarkReadBody(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 31<<10)
	for _, bc := range []struct {
		name   string
		length int64
	}{{"announced", int64(len(body))}, {"unknown", -1}, {"io.ReadAll", -2}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := bytes.NewReader(body)
				var err error
				if bc.length == -2 {
					_, err = io.ReadAll(io.LimitReader(r, maxBodyBytes+1))
				} else {
					_, err = readBody(r, bc.length, maxBodyBytes)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
