package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/wxacode/wxacode/campaign"
)

// errNotFound is a campaign the request names that does not exist.
type errNotFound struct{ name string }

func (e errNotFound) Error() string { return "campaign " + e.name + " not found" }

// load reads one campaign's status (name != "") or every campaign's.
func (h *Handler) load(ctx context.Context, name string) ([]campaign.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	if name == "" {
		return h.store.Statuses(ctx)
	}
	st, err := h.store.Status(ctx, name)
	if errors.Is(err, campaign.ErrNotFound) {
		return nil, errNotFound{name}
	}
	if err != nil {
		return nil, err
	}
	return []campaign.Status{st}, nil
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
