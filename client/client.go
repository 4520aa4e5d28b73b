// Package client is a Go client of wxacode's producer API (version 1,
// served by `wxacode serve` under /api/v1): create a campaign, read its
// status, cancel or retry it, export its rows, fetch one code or every
// code as a zip; and VerifySignature for webhook receivers.
//
// A Client is safe for concurrent use. Every method that fails because
// of the server's answer returns an *Error carrying the HTTP status, so
// callers can tell a conflict (409) or bad input (400, with every bad
// scene) from an outage.
package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one wxacode server.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL (such as
// "http://127.0.0.1:8080"), sending token as "Authorization: Bearer
// TOKEN" when it is not empty. hc nil means http.DefaultClient.
func New(baseURL, token string, hc *http.Client) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: cmp.Or(hc, http.DefaultClient)}
}

// Color is a line colour.
type Color struct {
	R int `json:"r"`
	G int `json:"g"`
	B int `json:"b"`
}

// Options are the code options; nil fields keep WeChat's defaults (width
// 430, release, check_path true, black lines).
type Options struct {
	Width      *int    `json:"width,omitempty"`
	EnvVersion *string `json:"env_version,omitempty"`
	CheckPath  *bool   `json:"check_path,omitempty"`
	IsHyaline  *bool   `json:"is_hyaline,omitempty"`
	AutoColor  *bool   `json:"auto_color,omitempty"`
	LineColor  *Color  `json:"line_color,omitempty"`
}

// Range makes the scenes Template % n for n from From to To, inclusive.
type Range struct {
	Template string `json:"template"`
	From     int64  `json:"from"`
	To       int64  `json:"to"`
}

// Campaign is what Create asks for: Page and either Scenes or Range; or,
// for interface A or C, Paths.
type Campaign struct {
	// Interface is "b" ("" too: wxacode.getUnlimited, scenes), "a"
	// (wxacode.get) or "c" (createQRCode): paths, at most 100,000 codes per
	// app ever for A and C together. A takes the options Width,
	// EnvVersion, IsHyaline, AutoColor and LineColor; C takes Width only.
	Interface string `json:"interface,omitempty"`
	// Page is the page the codes open; "" for the home page. A and C take
	// none: each path carries its own.
	Page   string   `json:"page"`
	Scenes []string `json:"scenes,omitempty"`
	Range  *Range   `json:"range,omitempty"`
	// Paths are the codes of interface A (up to 1024 bytes each) or C (up
	// to 128): a page with its query, such as "pages/item/item?id=42". A
	// campaign with more distinct paths than the app has left of its
	// lifetime quota is refused: an *Error with StatusCode 400, Field
	// "paths" and the figures in Quota.
	Paths []string `json:"paths,omitempty"`
	// AppID defaults to the server's WECHAT_APPID.
	AppID   string   `json:"appid,omitempty"`
	Options *Options `json:"options,omitempty"`
	// Priority is high, default or low.
	Priority string `json:"priority,omitempty"`
	// Webhook is POSTed the status when the campaign is done.
	Webhook string `json:"webhook,omitempty"`
}

// Status is a campaign's status, the object of `wxacode status --json`.
type Status struct {
	Campaign string `json:"campaign"`
	AppID    string `json:"appid"`
	// Interface is "b", "a" or "c".
	Interface         string        `json:"interface"`
	Page              string        `json:"page"`
	Queue             string        `json:"queue"`
	State             string        `json:"state"`
	Total             int64         `json:"total"`
	Succeeded         int64         `json:"succeeded"`
	Failed            int64         `json:"failed"`
	Pending           int64         `json:"pending"`
	Done              bool          `json:"done"`
	RatePerSecond     float64       `json:"rate_per_second"`
	ETASeconds        float64       `json:"eta_seconds"`
	Retries           int           `json:"retries"`
	Created           time.Time     `json:"created"`
	Archived          bool          `json:"archived"`
	FailuresByErrcode map[int]int64 `json:"failures_by_errcode"`
	// Workers is the number of live workers that serve the app.
	Workers int `json:"workers"`
	// Unserved is true when the campaign has codes to make and no live
	// worker serves its app.
	Unserved bool `json:"unserved"`
}

// SceneError is one bad scene of a Create.
type SceneError struct {
	// Index is the scene's 0-based index in Campaign.Scenes (or in the
	// range).
	Index  int64  `json:"index"`
	Scene  string `json:"scene"`
	Reason string `json:"reason"`
}

// Error is an answer of the server that is not a success.
type Error struct {
	// StatusCode is the HTTP status: 400 bad input (nothing written), 401
	// no credential, 404 unknown campaign or code, 409 the name holds
	// another campaign.
	StatusCode int
	Message    string `json:"error"`
	// Field names the bad field of a Create.
	Field string `json:"field"`
	// Scenes lists every bad scene (or path) of a Create.
	Scenes []SceneError `json:"errors"`
	// Quota holds the figures of a campaign of interface A or C refused
	// for the app's lifetime quota; nil otherwise.
	Quota *Quota `json:"quota"`
}

// Quota says why a campaign of interface A or C was refused: it asked
// more codes than remain (Limit - Used - Pending, Pending being the paths
// still to make in the app's other A and C campaigns).
type Quota struct {
	Asked     int64 `json:"asked"`
	Remaining int64 `json:"remaining"`
	Limit     int64 `json:"limit"`
	Used      int64 `json:"used"`
	Pending   int64 `json:"pending"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("wxacode: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// do sends a request and returns the response of a 2xx answer (the caller
// closes its body) or an *Error.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("wxacode: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wxacode: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &Error{StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if json.Unmarshal(b, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	return nil, e
}

func (c *Client) status(ctx context.Context, method, path string, body io.Reader) (Status, int, error) {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return Status{}, 0, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, 0, fmt.Errorf("wxacode: read status: %w", err)
	}
	return st, resp.StatusCode, nil
}

func campaignPath(name string) string { return "/api/v1/campaigns/" + url.PathEscape(name) }

// Create creates the campaign name, or finds it: created is false when the
// same campaign existed (asking again is harmless). Another campaign under
// the name is an *Error with StatusCode 409; bad scenes one with 400 and
// every bad scene in Scenes.
func (c *Client) Create(ctx context.Context, name string, campaign Campaign) (st Status, created bool, err error) {
	body, err := json.Marshal(campaign)
	if err != nil {
		return Status{}, false, fmt.Errorf("wxacode: %w", err)
	}
	st, code, err := c.status(ctx, http.MethodPut, campaignPath(name), bytes.NewReader(body))
	return st, code == http.StatusCreated, err
}

// Status returns a campaign's status.
func (c *Client) Status(ctx context.Context, name string) (Status, error) {
	st, _, err := c.status(ctx, http.MethodGet, campaignPath(name), nil)
	return st, err
}

// List returns every campaign's status, oldest first.
func (c *Client) List(ctx context.Context) ([]Status, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/campaigns", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Status
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("wxacode: read statuses: %w", err)
	}
	return out, nil
}

// Cancel stops a campaign: its remaining scenes stay pending until Retry.
func (c *Client) Cancel(ctx context.Context, name string) (Status, error) {
	st, _, err := c.status(ctx, http.MethodPost, campaignPath(name)+"/cancel", nil)
	return st, err
}

// Retry turns failed scenes back to pending, enqueues every batch that
// lost its task and resumes a cancelled campaign.
func (c *Client) Retry(ctx context.Context, name string) (Status, error) {
	st, _, err := c.status(ctx, http.MethodPost, campaignPath(name)+"/retry", nil)
	return st, err
}

// copyTo streams a GET's body to w.
func (c *Client) copyTo(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("wxacode: read %s: %w", path, err)
	}
	return nil
}

// Export writes the campaign's rows to w, as "csv" (with a header line)
// or "jsonl": scene, path, status, key, content_type, size, sha256, errcode,
// error.
func (c *Client) Export(ctx context.Context, name, format string, w io.Writer) error {
	return c.copyTo(ctx, campaignPath(name)+"/export?format="+url.QueryEscape(format), w)
}

// Archive writes a zip of every stored code of the campaign plus
// manifest.csv to w.
func (c *Client) Archive(ctx context.Context, name string, w io.Writer) error {
	return c.copyTo(ctx, campaignPath(name)+"/archive.zip", w)
}

// Code is one stored code image.
type Code struct {
	Body        []byte
	ContentType string
	// SHA256 is the sha256 of Body as the server recorded it (the ETag),
	// lowercase hex.
	SHA256 string
}

// Code returns the stored code of one scene; an *Error with StatusCode
// 404 while the scene has not succeeded.
func (c *Client) Code(ctx context.Context, name, scene string) (Code, error) {
	resp, err := c.do(ctx, http.MethodGet, campaignPath(name)+"/codes/"+url.PathEscape(scene), nil)
	if err != nil {
		return Code{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Code{}, fmt.Errorf("wxacode: read code: %w", err)
	}
	return Code{Body: b, ContentType: resp.Header.Get("Content-Type"), SHA256: strings.Trim(resp.Header.Get("ETag"), `"`)}, nil
}

// The headers of a webhook delivery.
const (
	// HeaderEvent names the event: "campaign.done".
	HeaderEvent = "X-Wxacode-Event"
	// HeaderDelivery is the same on every attempt of one event: drop a
	// delivery already seen.
	HeaderDelivery = "X-Wxacode-Delivery"
	// HeaderSignature is "sha256=HEX", the HMAC-SHA256 of the raw body
	// under WXACODE_WEBHOOK_SECRET.
	HeaderSignature = "X-Wxacode-Signature"
)

// Event is the body of a webhook delivery: the campaign's status and the
// event's name.
type Event struct {
	Event string `json:"event"`
	Status
}

// VerifySignature reports whether signature (the X-Wxacode-Signature
// header) is the HMAC-SHA256 of body under secret. It takes constant time.
// Verify the raw body before decoding it.
func VerifySignature(secret, body []byte, signature string) bool {
	hexSum, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(m.Sum(nil), got)
}
