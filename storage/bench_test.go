package storage

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
)

// benchImage returns a real JPEG of about size bytes: noise, which JPEG
// cannot shrink, grown until it is big enough.
func benchImage(b *testing.B, size int) []byte {
	b.Helper()
	var seed uint32 = 1
	for side := 64; ; side += 16 {
		img := image.NewRGBA(image.Rect(0, 0, side, side))
		for i := range img.Pix {
			seed = seed*1664525 + 1013904223
			img.Pix[i] = uint8(seed >> 24)
		}
		for y := 0; y < side; y++ {
			img.Set(0, y, color.Black)
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 75}); err != nil {
			b.Fatal(err)
		}
		if buf.Len() >= size {
			return buf.Bytes()
		}
	}
}

// BenchmarkPut measures puts of 40 KB code images per second to MinIO and
// to a local folder, at 1, 8 and 32 concurrent writers.
func BenchmarkPut(b *testing.B) {
	body := benchImage(b, 40*1024)
	b.Logf("image: %d bytes", len(body))
	backends := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"minio", func(b *testing.B) Store {
			m := testenv.NewMinIO(b)
			s, err := Open(b.Context(), "s3://"+m.Bucket, Options{Getenv: envFunc(m.Env())})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"file", func(b *testing.B) Store {
			s, err := NewFile(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			for _, c := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("c%d", c), func(b *testing.B) {
					benchPuts(b, s, c, body)
				})
			}
		})
	}
}

var benchRun atomic.Int64

func benchPuts(b *testing.B, s Store, concurrency int, body []byte) {
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	run := benchRun.Add(1)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range concurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				scene := fmt.Sprintf("r%d-sku%07d", run, i)
				if _, err := s.Put(ctx, Key("bench", scene, "jpg"), body, Meta{Scene: scene}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}
