// Package campaign keeps campaign records and per-scene status in Redis.
//
// A campaign is a list of scenes that share an app, a page and code options.
// Its scenes are cut into batches of BatchSize; one asynq task carries one
// batch (see BatchTask). The record is compact enough for millions of
// scenes:
//
//   - meta, a hash: the campaign's settings, its state and the succeeded and
//     failed counters, so Get (and so `wxacode status`) is one HGETALL;
//   - scenes:B, a string per batch: the batch's scenes joined by newlines;
//   - ok and fail, two bitmaps by scene index;
//   - res:B, a string per batch of fixed-width records (content type, size,
//     sha256) written as scenes succeed, for export;
//   - errors, a hash from scene index to "errcode<TAB>message";
//   - lock:B, a short lease held by the one worker running batch B.
//
// When a campaign is done, its per-scene results move into a manifest in
// storage beside its codes (see Store.Archive): the scenes and result
// strings leave Redis, and the meta hash records how many manifest parts
// there are. Export reads whichever holds the rows.
//
// Life cycle: a campaign is created "enqueuing" (its name claimed with the
// digest of its spec in one step, before any scene is written), becomes
// "active" once every batch is enqueued, and "cancelled" by Cancel at any
// moment; only a retry turns a cancelled campaign active again. Every
// change of state is a compare-and-set in one Redis script.
//
// Every key of a campaign shares the hash tag {NAME}, so a campaign lives in
// one Redis Cluster slot and its scripts are atomic.
package campaign

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/wxacode/wxacode/wechat"
)

// State is where a campaign is in its life.
type State string

// The states of a campaign.
const (
	// StateEnqueuing: the record exists and its batches are being enqueued.
	StateEnqueuing State = "enqueuing"
	// StateActive: every batch is enqueued; workers generate its codes.
	StateActive State = "active"
	// StateCancelled: workers skip the campaign's remaining scenes.
	StateCancelled State = "cancelled"
)

// ErrNotFound is returned for a campaign that does not exist.
var ErrNotFound = errors.New("campaign not found")

// ErrExists is returned when a campaign of that name exists with other
// scenes or settings.
var ErrExists = errors.New("campaign exists with other scenes or settings")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateName reports why name cannot name a campaign: it must be 1 to 64
// characters from A-Z a-z 0-9 . _ -, starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("campaign name %q: want 1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// Interface is the WeChat interface a campaign's codes come from, and so
// what its items are.
type Interface string

// The interfaces of a campaign.
const (
	// InterfaceB is wxacode.getUnlimited, for bulk: each item is a scene,
	// all sharing one page. The default.
	InterfaceB Interface = "b"
	// InterfaceA is wxacode.get: each item is a path (page and query, up
	// to 1024 bytes), counted against the app's lifetime quota.
	InterfaceA Interface = "a"
	// InterfaceC is wxacode.createQRCode, the square QR code: each item is
	// a path of up to 128 bytes, under the same lifetime quota as A.
	InterfaceC Interface = "c"
)

// ParseInterface reads an interface name: "a", "b" or "c" (either case);
// "" means InterfaceB.
func ParseInterface(s string) (Interface, error) {
	switch strings.ToLower(s) {
	case "", "b":
		return InterfaceB, nil
	case "a":
		return InterfaceA, nil
	case "c":
		return InterfaceC, nil
	}
	return "", fmt.Errorf("interface %q: want a, b or c", s)
}

// Limited reports whether the interface counts against the lifetime quota
// of interfaces A and C: its items are paths, not scenes.
func (i Interface) Limited() bool { return i == InterfaceA || i == InterfaceC }

// MaxPathLen is the longest path of the interface, in bytes; 0 for B,
// whose items are scenes.
func (i Interface) MaxPathLen() int {
	switch i {
	case InterfaceA:
		return wechat.MaxCodePathLen
	case InterfaceC:
		return wechat.MaxQRCodePathLen
	}
	return 0
}

// ValidateItem reports why item cannot be an item of the interface's
// campaigns: a scene for B, a path for A and C.
func (i Interface) ValidateItem(item string) error {
	if i.Limited() {
		return wechat.ValidatePath(item, i.MaxPathLen())
	}
	return wechat.ValidateScene(item)
}

// Campaign is a campaign's record.
type Campaign struct {
	// Name names the campaign; it is part of every object key.
	Name string `json:"campaign"`
	// AppID is the Mini Program the codes belong to.
	AppID string `json:"appid"`
	// Interface is the WeChat interface the codes come from: B (the
	// default; items are scenes) or A and C (items are paths). A record
	// without one is B.
	Interface Interface `json:"interface"`
	// Options are the code settings every scene shares. A and C
	// campaigns have no page (each path carries its own); C uses the
	// width alone.
	Options wechat.CodeOptions `json:"options"`
	// Queue is the asynq queue its batches go to.
	Queue string `json:"queue"`
	// Total is the number of distinct scenes.
	Total int64 `json:"total"`
	// BatchSize is the number of scenes in each batch but the last.
	BatchSize int `json:"batch_size"`
	// Batches is the number of batches.
	Batches int `json:"batches"`
	// Succeeded and Failed count scenes that ended so.
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	// State is enqueuing, active or cancelled.
	State State `json:"state"`
	// Created is when the campaign was first enqueued.
	Created time.Time `json:"created"`
	// FirstDone and LastDone are when the first and the latest scene ended;
	// zero before any did.
	FirstDone time.Time `json:"first_done,omitzero"`
	LastDone  time.Time `json:"last_done,omitzero"`
	// KeyPrefix is the storage prefix before each object key (for example
	// "codes/" for s3://bucket/codes), recorded when the campaign was
	// created.
	KeyPrefix string `json:"key_prefix"`
	// Written is true once every batch's scenes are in Redis: a create
	// cut short leaves it false, and the same enqueue run again finishes
	// the job.
	Written bool `json:"-"`
	// Manifest is the number of manifest parts in storage that hold the
	// per-scene results of a finished campaign; 0 while Redis holds them.
	Manifest int `json:"-"`
	// Retries counts `retry` runs, which name their tasks apart.
	Retries int `json:"retries"`
	// Webhook is the URL told when the campaign is done; "" for none. It
	// is not part of the digest: the same campaign asked again with
	// another webhook keeps the first.
	Webhook string `json:"-"`
	// Digest identifies the scenes and settings, so that enqueueing the
	// same campaign again is recognised as harmless.
	Digest string `json:"-"`
}

// Pending is the number of scenes that have not ended.
func (c Campaign) Pending() int64 { return max(c.Total-c.Succeeded-c.Failed, 0) }

// Done reports whether every scene has ended.
func (c Campaign) Done() bool { return c.Succeeded+c.Failed >= c.Total }

// Rate is the scenes ended per second between the first and the latest
// that ended; zero until two have.
func (c Campaign) Rate() float64 {
	d := c.LastDone.Sub(c.FirstDone).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(c.Succeeded+c.Failed-1) / d
}

// BatchOf returns the batch a scene index belongs to.
func (c Campaign) BatchOf(index int64) int { return int(index / int64(c.BatchSize)) }

// BatchRange returns the scene indices [from, to) of a batch.
func (c Campaign) BatchRange(batch int) (from, to int64) {
	from = int64(batch) * int64(c.BatchSize)
	to = min(from+int64(c.BatchSize), c.Total)
	return from, to
}

// SceneStatus is where one scene is.
type SceneStatus string

// The statuses of a scene.
const (
	Pending   SceneStatus = "pending"
	Succeeded SceneStatus = "succeeded"
	Failed    SceneStatus = "failed"
)

// Result describes a stored code, as export reports it.
type Result struct {
	// ContentType is image/jpeg or image/png.
	ContentType string
	// Size is the image's size in bytes.
	Size int64
	// SHA256 is the image's sha256, lowercase hex.
	SHA256 string
}

// Row is one scene of a campaign, as export reports it.
type Row struct {
	// Index is the scene's index in the campaign.
	Index int64
	// Scene is the campaign's item: a scene for interface B, a path for A
	// and C.
	Scene  string
	Status SceneStatus
	// Result is set for succeeded scenes.
	Result Result
	// ErrCode and Error are set for failed scenes; ErrCode is WeChat's
	// errcode, or 0 for a failure that has none.
	ErrCode int
	Error   string
}
