package producer

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/wechat"
)

// Spec is what a producer asks for: everything of a campaign but its
// scenes. Two creates of one name are the same campaign when their specs
// and scenes are equal.
type Spec struct {
	// Name names the campaign: 1 to 64 of A-Z a-z 0-9 . _ -, starting
	// with a letter or digit; part of every object key.
	Name string
	// AppID is the Mini Program: wx and 16 hex digits.
	AppID string
	// Options are the code settings every scene shares.
	Options wechat.CodeOptions
	// Priority is high, default ("" too) or low: workers serve the queues
	// 6:3:1.
	Priority string
	// KeyPrefix is the storage prefix before each object key, as
	// storage.KeyPrefix finds it in STORAGE_URL; recorded for export.
	KeyPrefix string
	// Webhook, when set, is an http or https URL that gets one POST when
	// the campaign is done. Not part of the campaign's identity.
	Webhook string
}

// FieldError is a bad field of a Spec or of a request: Field is the
// field's JSON name (campaign, appid, page, width, env_version,
// line_color, priority, webhook, scenes), so the command line can name its flag
// and the API its field.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate reports the first bad field as a *FieldError.
func (s Spec) Validate() error {
	if err := campaign.ValidateName(s.Name); err != nil {
		return &FieldError{"campaign", err}
	}
	if err := wechat.ValidateAppID(s.AppID); err != nil {
		return &FieldError{"appid", err}
	}
	if err := s.Options.Validate(); err != nil {
		var fe *wechat.FieldError
		if errors.As(err, &fe) {
			return &FieldError{fe.Field, fe.Err}
		}
		return &FieldError{"options", err}
	}
	if _, err := campaign.QueueFor(s.AppID, s.Priority); err != nil {
		return &FieldError{"priority", err}
	}
	if s.Webhook != "" {
		if err := ValidateWebhook(s.Webhook); err != nil {
			return &FieldError{"webhook", err}
		}
	}
	return nil
}

// ValidateWebhook reports why u cannot be a webhook URL: it must be an
// absolute http or https URL with a host and no user info, at most 2048
// bytes.
func ValidateWebhook(u string) error {
	if len(u) > 2048 {
		return fmt.Errorf("webhook URL is %d bytes long: at most 2048", len(u))
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil {
		return errors.New("webhook URL: want an absolute http:// or https:// URL without user info")
	}
	return nil
}
