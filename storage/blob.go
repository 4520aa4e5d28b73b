package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Blobs are the files a store keeps besides code images, such as a
// finished campaign's manifest. Every Store is one.
type Blobs interface {
	// PutBlob stores body under name (a key as Key makes it, any
	// extension), replacing what was there; a reader never sees a part.
	PutBlob(ctx context.Context, name string, body []byte, contentType string) error
	// GetBlob returns what name holds; ErrNotFound when absent.
	GetBlob(ctx context.Context, name string) ([]byte, error)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PutBlob uploads body under name with its sha256 as the payload hash, so
// the service refuses bytes that differ from those sent.
func (s *S3Store) PutBlob(ctx context.Context, name string, body []byte, contentType string) error {
	if err := checkKey(name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + name),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String(contentType),
	}, withPayloadHash(sha256Hex(body)))
	if err != nil {
		return fmt.Errorf("put %s: %w", name, scrub(err, s.secrets))
	}
	return nil
}

// GetBlob downloads name.
func (s *S3Store) GetBlob(ctx context.Context, name string) ([]byte, error) {
	if err := checkKey(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + name)})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, s.notFound(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, scrub(err, s.secrets))
	}
	return b, nil
}
