package simulator

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"

	"github.com/makiuchi-d/gozxing"
	gzqrcode "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/skip2/go-qrcode"
)

// jpegQuality keeps codes sharp enough to decode at 280 px.
const jpegQuality = 90

// jfifAPP0 is the JFIF header segment (version 1.1, no density unit,
// 1:1, no thumbnail) that WeChat's JPEGs carry and Go's encoder omits.
var jfifAPP0 = []byte{0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}

// renderCode draws the code of r: a standard QR code of r.width pixels
// carrying r.content(), in the line colour (black when auto_color), as a
// JFIF JPEG on white, or as a PNG on a transparent background when
// is_hyaline. The same request always gives the same bytes.
func renderCode(r codeRequest) ([]byte, error) {
	text := r.content()
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		if q, err = qrcode.New(text, qrcode.Low); err != nil {
			return nil, fmt.Errorf("qr code of %d bytes: %w", len(text), err)
		}
	}
	bits := q.Bitmap() // with its 4-module quiet zone
	n := len(bits)
	size := max(r.width, n)
	fg := r.line
	if r.autoColor {
		fg = color.RGBA{A: 255}
	}
	// Each pixel takes the module under it; rows under one module row are
	// the same, so each module row is drawn once and copied.
	cols := make([]int, size)
	for x := range cols {
		cols[x] = moduleOf(x, size, n)
	}
	var buf bytes.Buffer
	if r.hyaline {
		img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.Transparent, fg})
		drawRows(img.Pix, img.Stride, 1, size, n, func(row []byte, bits []bool) {
			for x, m := range cols {
				if bits[m] {
					row[x] = 1
				}
			}
		}, bits)
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		if err := enc.Encode(&buf, img); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}

	var img image.Image
	if fg.R == fg.G && fg.G == fg.B {
		// Grey lines: a one-component JPEG, quicker to make and smaller.
		g := image.NewGray(image.Rect(0, 0, size, size))
		drawRows(g.Pix, g.Stride, 1, size, n, func(row []byte, bits []bool) {
			for x, m := range cols {
				row[x] = 0xFF
				if bits[m] {
					row[x] = fg.R
				}
			}
		}, bits)
		img = g
	} else {
		c := image.NewRGBA(image.Rect(0, 0, size, size))
		drawRows(c.Pix, c.Stride, 4, size, n, func(row []byte, bits []bool) {
			for x, m := range cols {
				p := row[4*x : 4*x+4 : 4*x+4]
				if bits[m] {
					p[0], p[1], p[2] = fg.R, fg.G, fg.B
				} else {
					p[0], p[1], p[2] = 0xFF, 0xFF, 0xFF
				}
				p[3] = 0xFF
			}
		}, bits)
		img = c
	}
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	out := make([]byte, 0, len(b)+len(jfifAPP0))
	out = append(out, b[:2]...) // SOI
	out = append(out, jfifAPP0...)
	return append(out, b[2:]...), nil
}

// DecodeContent splits the text of an interface-B code, PAGE?scene=SCENE,
// into its page (empty for the home page) and scene. ok is false when s
// has no "?scene=" (the text of an A or C code is its path).
func DecodeContent(s string) (page, scene string, ok bool) {
	page, scene, ok = strings.Cut(s, "?scene=")
	if !ok {
		return "", "", false
	}
	return page, scene, true
}

// DecodeImageText reads the QR code in a JPEG or PNG image (a transparent
// background reads as white) and returns the text it carries.
func DecodeImageText(b []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("decode image: %w", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", fmt.Errorf("decode image: %w", err)
	}
	reader := gzqrcode.NewQRCodeReader()
	res, err := reader.Decode(bmp, nil)
	if err != nil {
		// The finder-pattern search misreads a few clean codes; a code
		// straight from the simulator is a pure barcode, read directly.
		for _, hint := range []gozxing.DecodeHintType{gozxing.DecodeHintType_TRY_HARDER, gozxing.DecodeHintType_PURE_BARCODE} {
			if res, err = reader.Decode(bmp, map[gozxing.DecodeHintType]any{hint: true}); err == nil {
				break
			}
		}
		if err != nil {
			return "", fmt.Errorf("read qr code: %w", err)
		}
	}
	return res.GetText(), nil
}

// DecodeImage reads an interface-B code image made by the simulator and
// returns the page and scene it encodes.
func DecodeImage(b []byte) (page, scene string, err error) {
	text, err := DecodeImageText(b)
	if err != nil {
		return "", "", err
	}
	page, scene, ok := DecodeContent(text)
	if !ok {
		return "", "", errors.New("qr code text has no ?scene=: not an interface-B code")
	}
	return page, scene, nil
}

// drawRows fills the size rows of pix (stride bytes apart, bpp bytes a
// pixel): each row lies under module row moduleOf(y) of bits; draw paints
// one row from its module row, and rows under the same module row are
// copied.
func drawRows(pix []byte, stride, bpp, size, n int, draw func(row []byte, bits []bool), bits [][]bool) {
	last := -1
	var prev []byte
	for y := range size {
		row := pix[y*stride : y*stride+size*bpp]
		if m := moduleOf(y, size, n); m != last {
			draw(row, bits[m])
			last, prev = m, row
		} else {
			copy(row, prev)
		}
	}
}

// moduleOf returns the module under pixel p of a code size pixels wide
// with n modules a side. Every module gets the same whole number of
// pixels, so the code reads as well as a printed one; the pixels left
// over widen the (white) quiet zone on both sides.
func moduleOf(p, size, n int) int {
	px := max(size/n, 1)
	m := (p - (size-n*px)/2) / px
	return min(max(m, 0), n-1)
}
