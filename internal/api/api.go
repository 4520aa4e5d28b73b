// Package api serves the producer API, version 1, under /api/v1: create a
// campaign (its scenes streamed in the request body), read its status,
// cancel, retry, export its rows, fetch one code or every code as a zip,
// and the OpenAPI document of these routes.
//
// Every operation is one of the domain packages (producer, campaign); this
// package only decodes requests and formats answers. Errors are JSON
// {"error": "…"}; bad input is 400 and changes nothing. Authentication is
// the caller's (the dashboard wraps this handler with its credential);
// state-changing requests from other origins are refused here (403), so
// a browser page elsewhere cannot drive a campaign.
package api

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
)

// Prefix is where the API is mounted.
const Prefix = "/api/v1/"

// Codes is the part of a storage.Store the API reads: code images and the
// manifests of finished campaigns.
type Codes interface {
	Get(ctx context.Context, key string) ([]byte, storage.Object, error)
	campaign.Blobs
}

// Config wires the API. Campaigns, Producer and Codes are required.
type Config struct {
	// Campaigns is the campaign store.
	Campaigns *campaign.Store
	// Producer creates and retries campaigns.
	Producer *producer.Producer
	// Codes is where the codes are (STORAGE_URL).
	Codes Codes
	// KeyPrefix is the prefix of Codes before each key
	// (storage.KeyPrefix), recorded in new campaigns for export.
	KeyPrefix string
	// AppID is the app of a campaign created without one
	// (WECHAT_APPID); "" makes appid required.
	AppID string
	// MaxScenes bounds the scenes of one create. Default 10,000,000.
	MaxScenes int
	// MaxBody bounds a create's body in bytes. Default 1 GiB.
	MaxBody int64
	// Logger logs errors the answers do not detail.
	Logger zerolog.Logger
}

// Validate reports the first missing or bad field.
func (c Config) Validate() error {
	switch {
	case c.Campaigns == nil:
		return errors.New("Campaigns is required")
	case c.Producer == nil:
		return errors.New("Producer is required")
	case c.Codes == nil:
		return errors.New("Codes is required")
	case c.MaxScenes < 0 || c.MaxBody < 0:
		return errors.New("MaxScenes and MaxBody must not be negative")
	}
	return nil
}

// route is one route of the API; openapi.json describes exactly these.
type route struct {
	method, path string
	handle       func(*Handler, http.ResponseWriter, *http.Request)
}

var routes = []route{
	{"PUT", "/api/v1/campaigns/{name}", (*Handler).create},
	{"GET", "/api/v1/campaigns", (*Handler).list},
	{"GET", "/api/v1/campaigns/{name}", (*Handler).get},
	{"POST", "/api/v1/campaigns/{name}/cancel", (*Handler).cancel},
	{"POST", "/api/v1/campaigns/{name}/retry", (*Handler).retry},
	{"GET", "/api/v1/campaigns/{name}/export", (*Handler).export},
	{"GET", "/api/v1/campaigns/{name}/codes/{scene}", (*Handler).code},
	{"GET", "/api/v1/campaigns/{name}/archive.zip", (*Handler).archive},
	{"GET", "/api/v1/openapi.json", (*Handler).openapi},
}

//go:embed openapi.json
var openapiJSON []byte

// Handler serves the API's routes under Prefix.
type Handler struct {
	cfg  Config
	root http.Handler
}

// New returns the API of cfg.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	cfg.MaxScenes = cmp.Or(cfg.MaxScenes, 10_000_000)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 1<<30)
	h := &Handler{cfg: cfg}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) { rt.handle(h, w, r) })
	}
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route: see /api/v1/openapi.json")
	})
	h.root = http.NewCrossOriginProtection().Handler(mux)
	return h, nil
}

// ServeHTTP serves a request under Prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A code's scene is one percent-encoded segment that a ServeMux would
	// clean after decoding ("..", "a//b"): match that route on the path
	// as sent.
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v1/campaigns/"); ok {
			if parts := strings.Split(rest, "/"); len(parts) == 3 && parts[1] == "codes" {
				name, err1 := url.PathUnescape(parts[0])
				scene, err2 := url.PathUnescape(parts[2])
				if err1 == nil && err2 == nil && scene != "" {
					r.SetPathValue("name", name)
					r.SetPathValue("scene", scene)
					h.code(w, r)
					return
				}
			}
		}
	}
	h.root.ServeHTTP(w, r)
}

type errorBody struct {
	Error string `json:"error"`
	// Field names the bad field of a create.
	Field string `json:"field,omitempty"`
	// Errors lists every bad scene (or path) of a create.
	Errors []SceneError `json:"errors,omitempty"`
	// Quota holds the figures of a campaign of interface A or C refused
	// for the lifetime quota.
	Quota *quotaFigures `json:"quota,omitempty"`
}

// quotaFigures say why a campaign of A or C was refused: it asked more
// codes than remain (limit - used - pending in the app's other A and C
// campaigns).
type quotaFigures struct {
	Asked     int64 `json:"asked"`
	Remaining int64 `json:"remaining"`
	Limit     int64 `json:"limit"`
	Used      int64 `json:"used"`
	Pending   int64 `json:"pending"`
}

// SceneError is one bad scene (or path) of a create.
type SceneError struct {
	// Index is the scene's 0-based index in the request's scenes (or
	// paths).
	Index  int64  `json:"index"`
	Scene  string `json:"scene"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing to do
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// fail answers err: 404 for an unknown campaign, 503 with no detail for
// anything else (the detail is logged: it may name a Redis or S3 host).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, campaign.ErrNotFound) {
		writeError(w, http.StatusNotFound, "campaign "+r.PathValue("name")+" not found")
		return
	}
	if errors.Is(err, campaign.ErrIncomplete) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	h.cfg.Logger.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("api")
	writeError(w, http.StatusServiceUnavailable, "cannot read or write campaigns (see the server's log)")
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	sts, err := h.cfg.Campaigns.Statuses(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sts)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Campaigns.Status(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Campaigns.Cancel(context.WithoutCancel(r.Context()), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.changed(w, r, st)
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if campaign.ValidateName(name) != nil {
		writeError(w, http.StatusNotFound, "campaign "+name+" not found")
		return
	}
	sum, err := h.cfg.Producer.Retry(context.WithoutCancel(r.Context()), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.changed(w, r, sum.Status)
}

// changed answers a cancel or retry: the status object, or for a form of
// the dashboard's page (which asks for HTML) a redirect back to the page.
func (h *Handler) changed(w http.ResponseWriter, r *http.Request, st campaign.Status) {
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/campaigns/"+st.Campaign, http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapiJSON)
}
