package storage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/middleware"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3 metadata names (sent as x-amz-meta-NAME).
const (
	metaScene  = "scene"
	metaPage   = "page"
	metaPath   = "path"
	metaAppID  = "appid"
	metaSHA256 = "sha256"
)

// listConcurrency is how many HeadObject calls List runs at once: a
// listing carries neither content type nor metadata.
const listConcurrency = 16

// S3Store keeps code images in an S3 bucket (AWS S3, MinIO, Tencent COS,
// Aliyun OSS), under an optional key prefix. It is safe for concurrent use.
type S3Store struct {
	client  *s3.Client
	bucket  string
	prefix  string   // "" or ending in "/"
	secrets []string // scrubbed from errors, as a last line of defence
}

// NewS3 opens bucket through the standard AWS configuration chain, with the
// variables read through opts.Getenv taking precedence:
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (a custom endpoint),
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or
// AWS_DEFAULT_REGION (us-east-1 when none is set and the endpoint is
// custom), and S3_FORCE_PATH_STYLE (true or false; default true with a
// custom endpoint). prefix is "" or a key prefix ending in "/". A missing
// bucket is an error unless opts.CreateBucket is set.
func NewS3(ctx context.Context, bucket, prefix string, opts Options) (*S3Store, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, fmt.Errorf("open s3: %w", err)
	}
	if prefix != "" && (!strings.HasSuffix(prefix, "/") || checkPrefix(strings.TrimSuffix(prefix, "/")) != nil) {
		return nil, fmt.Errorf("open s3: prefix %q: want safe segments ending in \"/\"", prefix)
	}
	getenv := opts.getenv
	endpoint := cmp.Or(getenv("AWS_ENDPOINT_URL_S3"), getenv("AWS_ENDPOINT_URL"))
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("open s3: AWS_ENDPOINT_URL_S3 %q: want http(s)://HOST[:PORT]", redactURL(endpoint))
		}
	}
	var secrets []string
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		// Workers put many small objects at once: keep their connections.
		t.MaxIdleConnsPerHost = 128
	})
	lo := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// COS and OSS do not take the SDK's default trailing CRC
		// checksums (aws-chunked bodies); Put's signed SHA-256 of the
		// body is checked by the service instead.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if r := cmp.Or(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")); r != "" {
		lo = append(lo, config.WithRegion(r))
	}
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		token := getenv("AWS_SESSION_TOKEN")
		lo = append(lo, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, token)))
		secrets = append(secrets, secret)
		if token != "" {
			secrets = append(secrets, token)
		}
	}
	if opts.MaxAttempts > 0 {
		lo = append(lo, config.WithRetryMaxAttempts(opts.MaxAttempts))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("open s3: aws configuration: %w", scrub(err, secrets))
	}
	custom := endpoint != "" || cfg.BaseEndpoint != nil
	if cfg.Region == "" {
		if !custom {
			return nil, errors.New("open s3: no region: set AWS_REGION")
		}
		cfg.Region = "us-east-1"
	}
	pathStyle := custom
	if v := getenv("S3_FORCE_PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("open s3: S3_FORCE_PATH_STYLE %q: want true or false", v)
		}
		pathStyle = b
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
	})
	s := &S3Store{client: client, bucket: bucket, prefix: prefix, secrets: secrets}
	if err := s.checkBucket(ctx, cfg.Region, opts); err != nil {
		return nil, err
	}
	return s, nil
}

// checkBucket makes sure the bucket exists and answers, creating it when
// asked.
func (s *S3Store) checkBucket(ctx context.Context, region string, opts Options) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	switch status := httpStatus(err); {
	case err == nil:
		return nil
	case status == http.StatusNotFound && opts.CreateBucket:
		in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
		if region != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(region)}
		}
		_, err := s.client.CreateBucket(ctx, in)
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return fmt.Errorf("open %s: create bucket: %w", s, scrub(err, s.secrets))
		}
		opts.Logger.Info().Str("bucket", s.bucket).Str("region", region).Msg("storage: bucket created")
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("open %s: bucket %q does not exist (create it, or let wxacode create it)", s, s.bucket)
	case status == http.StatusForbidden:
		return fmt.Errorf("open %s: access to bucket %q denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy: %w", s, s.bucket, scrub(err, s.secrets))
	case status == http.StatusMovedPermanently || status == http.StatusBadRequest:
		return fmt.Errorf("open %s: bucket %q answered %d: check AWS_REGION and S3_FORCE_PATH_STYLE: %w", s, s.bucket, status, scrub(err, s.secrets))
	default:
		return fmt.Errorf("open %s: %w", s, scrub(err, s.secrets))
	}
}

// String returns s3://bucket/prefix.
func (s *S3Store) String() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// Put uploads the image with its Content-Type and metadata
// x-amz-meta-scene (or -path), -page, -appid and -sha256. The request is signed with
// the body's SHA-256 (x-amz-content-sha256, the hash Put computes anyway),
// which the service checks against the bytes it received and refuses the
// upload on a mismatch, so no Content-MD5 is computed on top. Putting the
// same key again overwrites it.
func (s *S3Store) Put(ctx context.Context, key string, body []byte, meta Meta) (Object, error) {
	obj, err := checkPut(key, body, meta)
	if err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	obj.Key = s.prefix + key
	if err := s.put(ctx, obj, body, obj.SHA256); err != nil {
		return Object{}, fmt.Errorf("put %s: %w", key, err)
	}
	return obj, nil
}

// put uploads body as obj, signed with payloadHash as the body's SHA-256.
func (s *S3Store) put(ctx context.Context, obj Object, body []byte, payloadHash string) error {
	meta := obj.Meta
	md := map[string]string{metaSHA256: obj.SHA256}
	for k, v := range map[string]string{metaScene: meta.Scene, metaPath: meta.Path, metaPage: meta.Page, metaAppID: meta.AppID} {
		if v != "" {
			md[k] = v
		}
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(obj.Key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(obj.Size),
		ContentType:   aws.String(obj.ContentType),
		Metadata:      md,
	}, withPayloadHash(payloadHash))
	return scrub(err, s.secrets)
}

// Stat reads the object's headers. ErrNotFound when absent.
func (s *S3Store) Stat(ctx context.Context, key string) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	obj, err := s.head(ctx, key)
	if err != nil {
		return Object{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return obj, nil
}

func (s *S3Store) head(ctx context.Context, name string) (Object, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + name)})
	if err != nil {
		return Object{}, s.notFound(err)
	}
	return Object{
		Key:         s.prefix + name,
		Name:        name,
		ContentType: aws.ToString(out.ContentType),
		Size:        aws.ToInt64(out.ContentLength),
		SHA256:      out.Metadata[metaSHA256],
		Meta:        metaOf(out.Metadata),
	}, nil
}

func metaOf(md map[string]string) Meta {
	return Meta{Scene: md[metaScene], Path: md[metaPath], Page: md[metaPage], AppID: md[metaAppID]}
}

// Get downloads the object and checks its bytes against the sha256 recorded
// at Put. ErrNotFound when absent.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, Object, error) {
	if err := checkKey(key); err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, s.notFound(err))
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, Object{}, fmt.Errorf("get %s: %w", key, scrub(err, s.secrets))
	}
	obj := describe(key, body)
	obj.Key = s.prefix + key
	obj.Meta = metaOf(out.Metadata)
	if want := out.Metadata[metaSHA256]; want != "" && want != obj.SHA256 {
		return nil, Object{}, fmt.Errorf("get %s: stored bytes have sha256 %s, recorded %s", key, obj.SHA256, want)
	}
	return body, obj, nil
}

// List pages through the bucket and reads each object's headers, a few at
// a time; fn is called from one goroutine, in key order.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(Object) error) error {
	if !prefixOK(prefix) {
		return nil // no valid key starts with it
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", s.String()+"/"+prefix, scrub(err, s.secrets))
		}
		objs, err := s.headAll(ctx, page.Contents)
		if err != nil {
			return fmt.Errorf("list %s: %w", s.String()+"/"+prefix, err)
		}
		for _, o := range objs {
			if o.Key == "" {
				continue // deleted since it was listed
			}
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// headAll reads the headers of listed objects, listConcurrency at a time.
// An object deleted meanwhile comes back as the zero Object.
func (s *S3Store) headAll(ctx context.Context, contents []types.Object) ([]Object, error) {
	objs := make([]Object, len(contents))
	errs := make([]error, len(contents))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, c := range contents {
		name := strings.TrimPrefix(aws.ToString(c.Key), s.prefix)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o, err := s.head(ctx, name)
			if errors.Is(err, ErrNotFound) {
				return
			}
			objs[i], errs[i] = o, err
		})
	}
	wg.Wait()
	return objs, errors.Join(errs...)
}

// notFound maps a missing object to ErrNotFound and scrubs other errors.
func (s *S3Store) notFound(err error) error {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return ErrNotFound
	}
	var api smithy.APIError
	if httpStatus(err) == http.StatusNotFound && !(errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket") {
		return ErrNotFound
	}
	return scrub(err, s.secrets)
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// scrub hides secrets should an error ever quote one. The SDK's errors do
// not; this keeps it so whatever a service sends back.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	scrubbed := msg
	for _, s := range secrets {
		scrubbed = strings.ReplaceAll(scrubbed, s, "[REDACTED]")
	}
	if scrubbed == msg {
		return err
	}
	return &scrubbedError{msg: scrubbed, err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// withPayloadHash hands the request signer the body's sha256, which Put
// has computed already, so the SDK does not hash the body a second time.
func withPayloadHash(hexSum string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("wxacodePayloadHash",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					return next.HandleInitialize(v4.SetPayloadHash(ctx, hexSum), in)
				}), middleware.Before)
		})
	}
}
