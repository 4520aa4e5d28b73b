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
	// Interface is the WeChat interface of the codes: B ("" too; the items
	// are scenes), or A or C (the items are paths, counted against the
	// app's lifetime quota).
	Interface campaign.Interface
	// Options are the code settings every scene shares. A and C take no
	// page (each path carries its own) and C takes the width alone.
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
// field's JSON name (campaign, appid, interface, page, width, env_version,
// line_color, auto_color, is_hyaline, check_path, priority, webhook,
// scenes, paths), so the command line can name its flag
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
	iface, err := campaign.ParseInterface(string(s.Interface))
	if err != nil {
		return &FieldError{"interface", err}
	}
	if fe := refusedOption(iface, s.Options); fe != nil {
		return fe
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

// refusedOption names an option that interfaces A and C do not take: a
// page (their paths carry it), and for C anything but the width.
func refusedOption(iface campaign.Interface, o wechat.CodeOptions) *FieldError {
	if !iface.Limited() {
		return nil
	}
	refuse := func(field string) *FieldError {
		return &FieldError{field, fmt.Errorf("%s: interface %s does not take it", field, iface)}
	}
	if o.Page != "" {
		return &FieldError{"page", fmt.Errorf("page %q: interface %s takes no page: each path carries its own", o.Page, iface)}
	}
	if iface != campaign.InterfaceC {
		return nil
	}
	switch {
	case o.EnvVersion != "" && o.EnvVersion != wechat.EnvRelease:
		return refuse("env_version")
	case o.AutoColor:
		return refuse("auto_color")
	case o.IsHyaline:
		return refuse("is_hyaline")
	case o.LineColor != (wechat.Color{}):
		return refuse("line_color")
	}
	return nil
}

// limitedOptions are the options recorded for a campaign of interface A
// or C: those the interface takes, the others zero.
func limitedOptions(iface campaign.Interface, o wechat.CodeOptions) wechat.CodeOptions {
	if iface == campaign.InterfaceC {
		return wechat.CodeOptions{Width: o.Width}
	}
	return wechat.CodeOptions{EnvVersion: o.EnvVersion, Width: o.Width, AutoColor: o.AutoColor, LineColor: o.LineColor, IsHyaline: o.IsHyaline}
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
