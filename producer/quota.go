package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/wechat"
)

// Ledger tells how much of an app's lifetime quota of interfaces A and C
// is used: wechat.QuotaLedger reads the ledger the workers' clients keep.
type Ledger interface {
	QuotaUsed(ctx context.Context, appID string) (int64, error)
}

// QuotaError refuses a campaign of interface A or C that would pass what
// is left of the app's lifetime quota. Nothing was written or called.
type QuotaError struct {
	// AppID is the app whose quota it is.
	AppID string
	// Asked is the campaign's number of distinct paths.
	Asked int64
	// Remaining is what is left: Limit - Used - Pending, at least 0.
	Remaining int64
	// Limit is the lifetime quota; Used what the ledger counted; Pending
	// the paths still to make in the app's other unfinished A and C
	// campaigns.
	Limit, Used, Pending int64
}

// Error says how many codes were asked and how many remain.
func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota: %s codes asked, %s of %s remain for %s (%s used, %s pending in other campaigns): nothing enqueued",
		formatCount(e.Asked), formatCount(e.Remaining), formatCount(e.Limit), e.AppID, formatCount(e.Used), formatCount(e.Pending))
}

// quotaLeft is the arithmetic of the check: what the ledger has not
// counted, less the paths still pending in the app's unfinished A and C
// campaigns other than name (a cancelled campaign makes no call until a
// retry, so it is not counted). A path in flight may be counted twice,
// by the ledger and as pending: the check errs on the safe side.
func quotaLeft(limit, used int64, campaigns []campaign.Campaign, appID, name string) (left, pending int64) {
	for _, c := range campaigns {
		if c.AppID != appID || c.Name == name || !c.Interface.Limited() || c.State == campaign.StateCancelled {
			continue
		}
		pending += c.Pending()
	}
	return max(limit-used-pending, 0), pending
}

// checkQuota refuses, as *QuotaError, a new campaign of interface A or C
// with more paths than the app has left. A campaign that exists is left
// to Create, which recognises the same spec (counted when it was first
// enqueued) or refuses another.
func (p *Producer) checkQuota(ctx context.Context, spec Spec, asked int) error {
	if _, err := p.store.Get(ctx, spec.Name); err == nil {
		return nil
	} else if !errors.Is(err, campaign.ErrNotFound) {
		return err
	}
	if p.cfg.Ledger == nil {
		return fmt.Errorf("enqueue %s: interface %s needs the quota ledger (producer Config.Ledger)", spec.Name, spec.Interface)
	}
	used, err := p.cfg.Ledger.QuotaUsed(ctx, spec.AppID)
	if err != nil {
		return err
	}
	all, err := p.store.List(ctx)
	if err != nil {
		return err
	}
	limit := int64(p.cfg.QuotaLimit)
	left, pending := quotaLeft(limit, used, all, spec.AppID, spec.Name)
	if int64(asked) > left {
		return &QuotaError{AppID: spec.AppID, Asked: int64(asked), Remaining: left, Limit: limit, Used: used, Pending: pending}
	}
	return nil
}

// validPaths checks the paths of an A or C campaign, naming the first bad
// one by its index.
func validPaths(iface campaign.Interface, paths []string) error {
	for i, p := range paths {
		if err := wechat.ValidatePath(p, iface.MaxPathLen()); err != nil {
			return &FieldError{Field: "paths", Err: fmt.Errorf("paths[%d]: %w", i, err)}
		}
	}
	return nil
}
