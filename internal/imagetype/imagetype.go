// Package imagetype tells a code image from anything else by its first
// bytes, never by a Content-Type header: WeChat sends its JSON errors with
// HTTP 200 and unreliable headers.
package imagetype

import "bytes"

// Content types of the images WeChat returns.
const (
	JPEG = "image/jpeg"
	PNG  = "image/png"
)

var (
	jpegMagic = []byte{0xFF, 0xD8, 0xFF}
	pngMagic  = []byte{0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A}
)

// Detect returns the content type of b, JPEG or PNG, and false when b is
// neither.
func Detect(b []byte) (contentType string, ok bool) {
	switch {
	case bytes.HasPrefix(b, jpegMagic):
		return JPEG, true
	case bytes.HasPrefix(b, pngMagic):
		return PNG, true
	}
	return "", false
}

// Ext returns the file extension of a content type Detect returns, without
// the dot: "jpg" or "png"; empty for anything else.
func Ext(contentType string) string {
	switch contentType {
	case JPEG:
		return "jpg"
	case PNG:
		return "png"
	}
	return ""
}
