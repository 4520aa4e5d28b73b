package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/wxacode/wxacode/campaign"
)

// CampaignStatus is one campaign as /api/campaigns reports it. Its first
// fields are those of `wxacode status --json`.
type CampaignStatus struct {
	Campaign  string `json:"campaign"`
	AppID     string `json:"appid"`
	Page      string `json:"page"`
	Queue     string `json:"queue"`
	State     string `json:"state"`
	Total     int64  `json:"total"`
	Succeeded int64  `json:"succeeded"`
	Failed    int64  `json:"failed"`
	Pending   int64  `json:"pending"`
	// Done is true when succeeded + failed == total.
	Done bool `json:"done"`
	// RatePerSecond is scenes ended per second between the first and the
	// latest that ended; 0 until two have.
	RatePerSecond float64 `json:"rate_per_second"`
	// ETASeconds is the time left at that rate; 0 when done, cancelled or
	// unknown.
	ETASeconds float64   `json:"eta_seconds"`
	Created    time.Time `json:"created"`
	// FailuresByErrcode counts failed scenes by WeChat errcode (0: a
	// failure without one); the keys are the errcodes as strings.
	FailuresByErrcode map[int]int64 `json:"failures_by_errcode"`
}

func statusOf(c campaign.Campaign, failures map[int]int64) CampaignStatus {
	s := CampaignStatus{
		Campaign: c.Name, AppID: c.AppID, Page: c.Options.Page, Queue: c.Queue, State: string(c.State),
		Total: c.Total, Succeeded: c.Succeeded, Failed: c.Failed, Pending: c.Pending(),
		Done: c.Done(), RatePerSecond: c.Rate(), Created: c.Created,
		FailuresByErrcode: failures,
	}
	if s.FailuresByErrcode == nil {
		s.FailuresByErrcode = map[int]int64{}
	}
	if s.RatePerSecond > 0 && !s.Done && c.State != campaign.StateCancelled {
		s.ETASeconds = float64(s.Pending) / s.RatePerSecond
	}
	return s
}

// errNotFound is a campaign the request names that does not exist.
type errNotFound struct{ name string }

func (e errNotFound) Error() string { return "campaign " + e.name + " not found" }

// load reads one campaign (name != "") or every campaign, with failures.
func (h *Handler) load(ctx context.Context, name string) ([]CampaignStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	var cs []campaign.Campaign
	if name != "" {
		if campaign.ValidateName(name) != nil {
			return nil, errNotFound{name}
		}
		c, err := h.store.Get(ctx, name)
		if errors.Is(err, campaign.ErrNotFound) {
			return nil, errNotFound{name}
		}
		if err != nil {
			return nil, err
		}
		cs = []campaign.Campaign{c}
	} else {
		var err error
		if cs, err = h.store.List(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]CampaignStatus, len(cs))
	for i, c := range cs {
		var failures map[int]int64
		if c.Failed > 0 {
			f, err := h.store.Failures(ctx, c.Name)
			if err != nil {
				return nil, err
			}
			failures = f
		}
		out[i] = statusOf(c, failures)
	}
	return out, nil
}

type errorJSON struct {
	Error string `json:"error"`
}

// fail answers an error: 404 for an unknown campaign, 503 with no detail
// (the detail is logged) for Redis errors.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) (code int, msg string) {
	var nf errNotFound
	if errors.As(err, &nf) {
		return http.StatusNotFound, nf.Error()
	}
	h.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("dashboard: read campaigns")
	return http.StatusServiceUnavailable, "cannot read campaigns from redis (see the dashboard's log)"
}

func (h *Handler) listJSON(w http.ResponseWriter, r *http.Request) {
	cs, err := h.load(r.Context(), "")
	if err != nil {
		code, msg := h.fail(w, r, err)
		writeJSON(w, code, errorJSON{msg})
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (h *Handler) getJSON(w http.ResponseWriter, r *http.Request) {
	cs, err := h.load(r.Context(), r.PathValue("name"))
	if err != nil {
		code, msg := h.fail(w, r, err)
		writeJSON(w, code, errorJSON{msg})
		return
	}
	writeJSON(w, http.StatusOK, cs[0])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}
