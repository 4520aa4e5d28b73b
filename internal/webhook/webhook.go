// Package webhook tells producers that their campaign is done: one POST
// of the campaign's status to the URL the campaign was created with,
// delivered at least once through the asynq queue.
//
// A worker whose batch run finds the campaign done calls Notifier.Done,
// which enqueues one delivery task per event: its ID is NAME/done/rN (N the
// campaign's retry runs), so the workers that see the end at the same time
// enqueue it once, and each retry run that ends the campaign again tells
// again. The task is kept in Redis until delivered, so a restart of any
// process loses none; Deliverer POSTs it and fails on anything but a 2xx,
// and asynq retries it after RetryDelay, for a day.
//
// The body is the campaign's status object with one more field, "event":
// "campaign.done", fixed when the event is enqueued so every attempt sends
// the same bytes. Headers: X-Wxacode-Event, X-Wxacode-Delivery (the same
// on every attempt of one event, for de-duplication) and, with a secret,
// X-Wxacode-Signature: sha256=HEX, the HMAC-SHA256 of the body.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
)

// TaskType is the asynq task type of a webhook delivery.
const TaskType = "wxacode:webhook"

// EventDone is the event of a campaign whose every scene has ended.
const EventDone = "campaign.done"

// The headers of a delivery.
const (
	HeaderEvent     = "X-Wxacode-Event"
	HeaderDelivery  = "X-Wxacode-Delivery"
	HeaderSignature = "X-Wxacode-Signature"
)

// For is how long a delivery is retried before it is given up (archived in
// asynq, where an operator can still run it).
const For = 24 * time.Hour

// Task is the payload of a delivery. It names the campaign (whose record
// holds the URL, so no URL with a token in it shows in the queue) and
// carries the body.
type Task struct {
	Campaign string          `json:"c"`
	Event    string          `json:"e"`
	Delivery string          `json:"d"`
	Created  time.Time       `json:"t"`
	Body     json.RawMessage `json:"b"`
}

// Sign returns the X-Wxacode-Signature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Enqueuer is the part of an asynq client Notifier uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Notifier enqueues the done event of campaigns that have a webhook.
type Notifier struct {
	// Campaigns reads the campaign's status for the body.
	Campaigns *campaign.Store
	// Queue takes the delivery tasks.
	Queue Enqueuer
}

// Done enqueues the done event of c, once per retry run, if c has a
// webhook. It is the worker's Config.OnDone.
func (n Notifier) Done(ctx context.Context, c campaign.Campaign) error {
	if c.Webhook == "" {
		return nil
	}
	st, err := n.Campaigns.Status(ctx, c.Name)
	if err != nil {
		return fmt.Errorf("webhook of %s: %w", c.Name, err)
	}
	body, err := json.Marshal(struct {
		Event string `json:"event"`
		campaign.Status
	}{EventDone, st})
	if err != nil {
		return fmt.Errorf("webhook of %s: %w", c.Name, err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails on supported platforms
	t := Task{Campaign: c.Name, Event: EventDone, Delivery: hex.EncodeToString(id[:]), Created: time.Now(), Body: body}
	payload, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("webhook of %s: %w", c.Name, err)
	}
	_, err = n.Queue.EnqueueContext(ctx, asynq.NewTask(TaskType, payload),
		asynq.TaskID(fmt.Sprintf("%s/done/r%d", c.Name, c.Retries)), asynq.Queue(c.Queue),
		asynq.MaxRetry(1000), asynq.Timeout(time.Minute), asynq.Retention(7*24*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("enqueue webhook of %s: %w", c.Name, err)
	}
	return nil
}

// Config wires a Deliverer.
type Config struct {
	// Campaigns holds the webhook URL of each campaign. Required.
	Campaigns *campaign.Store
	// Secret signs each body when set (WXACODE_WEBHOOK_SECRET); nil sends
	// unsigned.
	Secret []byte
	// Client sends the POSTs. Default: an http.Client with Timeout.
	Client *http.Client
	// Timeout bounds one attempt. Default 15s.
	Timeout time.Duration
	// Logger logs every attempt that fails.
	Logger zerolog.Logger
}

// Deliverer is the asynq handler of delivery tasks.
type Deliverer struct{ cfg Config }

// NewDeliverer returns a Deliverer.
func NewDeliverer(cfg Config) (*Deliverer, error) {
	if cfg.Campaigns == nil {
		return nil, errors.New("webhook config: Campaigns is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 15*time.Second)
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &Deliverer{cfg: cfg}, nil
}

// ProcessTask POSTs one event. Anything but a 2xx answer is an error, and
// asynq tries again later; after For it gives up.
func (d *Deliverer) ProcessTask(ctx context.Context, task *asynq.Task) error {
	var t Task
	if err := json.Unmarshal(task.Payload(), &t); err != nil || t.Campaign == "" {
		return fmt.Errorf("webhook payload: %v: %w", err, asynq.SkipRetry)
	}
	log := d.cfg.Logger.With().Str("campaign", t.Campaign).Str("delivery", t.Delivery).Logger()
	c, err := d.cfg.Campaigns.Get(ctx, t.Campaign)
	if errors.Is(err, campaign.ErrNotFound) {
		return fmt.Errorf("webhook of %s: %w: %w", t.Campaign, err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if c.Webhook == "" {
		return nil
	}
	err = d.post(ctx, c.Webhook, t)
	if err == nil {
		log.Info().Str("event", t.Event).Msg("webhook delivered")
		return nil
	}
	if time.Since(t.Created) > For {
		log.Error().Err(err).Msg("webhook not delivered for a day: given up")
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log.Warn().Err(err).Msg("webhook not delivered: will try again")
	return err
}

func (d *Deliverer) post(ctx context.Context, url string, t Task) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.Body))
	if err != nil {
		return fmt.Errorf("webhook: %s", redact(err.Error(), url))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wxacode-webhook")
	req.Header.Set(HeaderEvent, t.Event)
	req.Header.Set(HeaderDelivery, t.Delivery)
	if len(d.cfg.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(d.cfg.Secret, t.Body))
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		// The URL may carry a token in its query: never log it.
		return fmt.Errorf("webhook: %s", redact(err.Error(), url))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: receiver answered %s", resp.Status)
	}
	return nil
}

// redact replaces the URL's query in msg.
func redact(msg, url string) string {
	if base, _, ok := strings.Cut(url, "?"); ok {
		return strings.ReplaceAll(msg, url, base+"?REDACTED")
	}
	return msg
}

// RetryDelay is the asynq retry delay of deliveries: 2 s doubling to an
// hour, so that a receiver down for a day is tried about 30 times.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	return min(2*time.Second<<min(n, 20), time.Hour)
}
