package api

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/wechat"
)

// createRequest is the body of PUT /api/v1/campaigns/{name}.
type createRequest struct {
	// Interface is b (the default), a or c, as given.
	Interface string
	Page      *string
	AppID     string
	Options   wechat.CodeOptions
	Priority  string
	Webhook   string
	Range     *rangeRequest
	// Scenes holds the distinct valid scenes, in first-seen order; Bad
	// every invalid one.
	Scenes    []string
	HasScenes bool
	Bad       []SceneError
	// Paths holds the distinct paths of interface A or C, each checked
	// against A's 1024 bytes (the interface may come after them); OverC
	// those longer than C's 128, which C refuses.
	Paths    []string
	HasPaths bool
	OverC    []SceneError
	// Given names the options the body set.
	Given []string
}

type rangeRequest struct {
	Template string `json:"template"`
	From     int64  `json:"from"`
	To       int64  `json:"to"`
}

// optionsRequest is the options object: absent fields keep WeChat's
// defaults.
type optionsRequest struct {
	Width      *int          `json:"width"`
	EnvVersion *string       `json:"env_version"`
	CheckPath  *bool         `json:"check_path"`
	IsHyaline  *bool         `json:"is_hyaline"`
	AutoColor  *bool         `json:"auto_color"`
	LineColor  *wechat.Color `json:"line_color"`
}

// badRequest is a request that cannot be read, naming the field.
type badRequest struct {
	field string
	err   error
}

func (e *badRequest) Error() string { return e.err.Error() }

// decodeCreate reads a create's body as a stream: the scenes array is read
// one scene at a time, each validated as it comes and kept once, so the
// body itself is never held whole.
func decodeCreate(r io.Reader, maxScenes int) (*createRequest, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.DisallowUnknownFields()
	req := &createRequest{Options: wechat.DefaultCodeOptions()}
	bad := func(field string, format string, args ...any) error {
		return &badRequest{field, fmt.Errorf(format, args...)}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, bad("", "body: want a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, bad("", "body: %v", err)
		}
		key, _ := t.(string)
		switch key {
		case "page":
			var p string
			if err := dec.Decode(&p); err != nil {
				return nil, bad("page", "page: want a string")
			}
			req.Page = &p
		case "appid", "priority", "webhook", "interface":
			var s string
			if err := dec.Decode(&s); err != nil {
				return nil, bad(key, "%s: want a string", key)
			}
			switch key {
			case "appid":
				req.AppID = s
			case "priority":
				req.Priority = s
			case "interface":
				req.Interface = s
			default:
				req.Webhook = s
			}
		case "options":
			var o optionsRequest
			if err := dec.Decode(&o); err != nil {
				return nil, bad("options", "options: %v", err)
			}
			opts := &req.Options
			req.Given = o.given()
			if o.Width != nil {
				opts.Width = *o.Width
			}
			if o.EnvVersion != nil {
				opts.EnvVersion = *o.EnvVersion
			}
			if o.CheckPath != nil {
				opts.CheckPath = *o.CheckPath
			}
			if o.IsHyaline != nil {
				opts.IsHyaline = *o.IsHyaline
			}
			if o.AutoColor != nil {
				opts.AutoColor = *o.AutoColor
			}
			if o.LineColor != nil {
				opts.LineColor = *o.LineColor
			}
		case "range":
			req.Range = &rangeRequest{}
			if err := dec.Decode(req.Range); err != nil {
				return nil, bad("range", `range: want {"template": "sku%%08d", "from": N, "to": M}: %v`, err)
			}
		case "scenes":
			if err := req.readScenes(dec, maxScenes); err != nil {
				return nil, err
			}
		case "paths":
			if err := req.readPaths(dec, maxScenes); err != nil {
				return nil, err
			}
		default:
			return nil, bad(key, "unknown field %q", key)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("", "body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("", "body: want one JSON object and nothing after it")
	}
	return req, nil
}

// readScenes reads the scenes array one token at a time.
func (req *createRequest) readScenes(dec *json.Decoder, maxScenes int) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return &badRequest{"scenes", errors.New("scenes: want an array of strings")}
	}
	req.HasScenes = true
	for i := int64(0); dec.More(); i++ {
		if i >= int64(maxScenes) {
			return &badRequest{"scenes", fmt.Errorf("scenes: more than %d in one campaign", maxScenes)}
		}
		t, err := dec.Token()
		if err != nil {
			return &badRequest{"scenes", fmt.Errorf("scenes[%d]: %v", i, err)}
		}
		s, ok := t.(string)
		if !ok {
			if _, nested := t.(json.Delim); nested {
				return &badRequest{"scenes", fmt.Errorf("scenes[%d]: want a string", i)}
			}
			req.Bad = append(req.Bad, SceneError{Index: i, Scene: fmt.Sprint(t), Reason: "not a string"})
			continue
		}
		if err := wechat.ValidateScene(s); err != nil {
			req.Bad = append(req.Bad, SceneError{Index: i, Scene: s, Reason: err.Error()})
			continue
		}
		req.Scenes = append(req.Scenes, s)
	}
	if _, err := dec.Token(); err != nil {
		return &badRequest{"scenes", fmt.Errorf("scenes: %v", err)}
	}
	req.Scenes = distinct(req.Scenes)
	return nil
}

// given names the options set, by their JSON names.
func (o optionsRequest) given() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"width", o.Width != nil}, {"env_version", o.EnvVersion != nil}, {"check_path", o.CheckPath != nil},
		{"is_hyaline", o.IsHyaline != nil}, {"auto_color", o.AutoColor != nil}, {"line_color", o.LineColor != nil},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// readPaths reads the paths array one token at a time, as readScenes.
func (req *createRequest) readPaths(dec *json.Decoder, maxPaths int) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return &badRequest{"paths", errors.New("paths: want an array of strings")}
	}
	req.HasPaths = true
	for i := int64(0); dec.More(); i++ {
		if i >= int64(maxPaths) {
			return &badRequest{"paths", fmt.Errorf("paths: more than %d in one campaign", maxPaths)}
		}
		t, err := dec.Token()
		if err != nil {
			return &badRequest{"paths", fmt.Errorf("paths[%d]: %v", i, err)}
		}
		s, ok := t.(string)
		if !ok {
			if _, nested := t.(json.Delim); nested {
				return &badRequest{"paths", fmt.Errorf("paths[%d]: want a string", i)}
			}
			req.Bad = append(req.Bad, SceneError{Index: i, Scene: fmt.Sprint(t), Reason: "not a string"})
			continue
		}
		if err := wechat.ValidatePath(s, wechat.MaxCodePathLen); err != nil {
			req.Bad = append(req.Bad, SceneError{Index: i, Scene: s, Reason: err.Error()})
			continue
		}
		if err := wechat.ValidatePath(s, wechat.MaxQRCodePathLen); err != nil {
			req.OverC = append(req.OverC, SceneError{Index: i, Scene: s, Reason: err.Error()})
		}
		req.Paths = append(req.Paths, s)
	}
	if _, err := dec.Token(); err != nil {
		return &badRequest{"paths", fmt.Errorf("paths: %v", err)}
	}
	req.Paths = distinct(req.Paths)
	return nil
}

// limitedTakes lists the options interfaces A and C take.
var limitedTakes = map[campaign.Interface][]string{
	campaign.InterfaceA: {"width", "env_version", "is_hyaline", "auto_color", "line_color"},
	campaign.InterfaceC: {"width"},
}

// checkLimited checks a create of interface A or C: paths and no page,
// scenes, range or option the interface does not take. It returns the
// bad paths (C refuses those over 128 bytes).
func (req *createRequest) checkLimited(iface campaign.Interface) ([]SceneError, *errorBody) {
	switch {
	case req.Page != nil && *req.Page != "":
		return nil, &errorBody{Error: fmt.Sprintf("page %q: interface %s takes no page: each path carries its own", *req.Page, iface), Field: "page"}
	case req.HasScenes:
		return nil, &errorBody{Error: fmt.Sprintf("scenes: interface %s takes paths", iface), Field: "scenes"}
	case req.Range != nil:
		return nil, &errorBody{Error: fmt.Sprintf("range: interface %s takes paths", iface), Field: "range"}
	case !req.HasPaths:
		return nil, &errorBody{Error: fmt.Sprintf("paths (an array of strings) is required for interface %s", iface), Field: "paths"}
	}
	for _, g := range req.Given {
		if !slices.Contains(limitedTakes[iface], g) {
			return nil, &errorBody{Error: fmt.Sprintf("options.%s: interface %s does not take it", g, iface), Field: g}
		}
	}
	bad := req.Bad
	if iface == campaign.InterfaceC && len(req.OverC) > 0 {
		bad = append(slices.Clone(bad), req.OverC...)
		slices.SortFunc(bad, func(a, b SceneError) int { return cmp.Compare(a.Index, b.Index) })
	}
	return bad, nil
}

// distinct drops the scenes that came before, keeping first-seen order.
// It sorts indices rather than filling a set: a third of the memory for
// a million scenes.
func distinct(list []string) []string {
	idx := make([]int32, len(list))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		return cmp.Or(strings.Compare(list[a], list[b]), cmp.Compare(a, b))
	})
	keep := make([]bool, len(list))
	for i, j := range idx {
		keep[j] = i == 0 || list[idx[i-1]] != list[j]
	}
	out := list[:0]
	for i, s := range list {
		if keep[i] {
			out = append(out, s)
		}
	}
	clear(list[len(out):])
	return out
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := campaign.ValidateName(name); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Field: "campaign"})
		return
	}
	req, err := decodeCreate(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody), h.cfg.MaxScenes)
	var br *badRequest
	if errors.As(err, &br) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: br.Error(), Field: br.field})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	iface, err := campaign.ParseInterface(req.Interface)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Field: "interface"})
		return
	}
	scenes, bad := req.Scenes, req.Bad
	items := "scene"
	switch {
	case iface.Limited():
		var eb *errorBody
		if bad, eb = req.checkLimited(iface); eb != nil {
			writeJSON(w, http.StatusBadRequest, eb)
			return
		}
		scenes, items = req.Paths, "path"
	case req.HasPaths:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "paths: interface b takes scenes or range; paths are for interface a or c", Field: "paths"})
		return
	case req.Page == nil:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `page is required ("" for the home page)`, Field: "page"})
		return
	case req.HasScenes && req.Range != nil:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "give scenes or range, not both", Field: "scenes"})
		return
	case req.Range != nil:
		rg := req.Range
		if rg.To >= rg.From && rg.To-rg.From >= int64(h.cfg.MaxScenes) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("range: more than %d scenes in one campaign", h.cfg.MaxScenes), Field: "range"})
			return
		}
		sc, err := producer.Range(rg.Template, rg.From, rg.To)
		var inv *producer.InvalidError
		switch {
		case errors.As(err, &inv):
			for _, l := range inv.Lines {
				bad = append(bad, SceneError{Index: l.Line - rg.From, Scene: fmt.Sprintf(rg.Template, l.Line), Reason: reason(l.Err)})
			}
		case err != nil:
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "range: " + err.Error(), Field: "range"})
			return
		}
		scenes = sc.List
	case !req.HasScenes:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "scenes (an array of strings) or range is required", Field: "scenes"})
		return
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("%d invalid %s(s): nothing written", len(bad), items), Field: items + "s", Errors: bad})
		return
	}
	if len(scenes) == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("no %ss: nothing written", items), Field: items + "s"})
		return
	}
	if req.Page != nil && !iface.Limited() {
		req.Options.Page = *req.Page
	}
	if iface.Limited() {
		req.Options.CheckPath = false // A and C have no check_path
	}
	spec := producer.Spec{
		Name: name, AppID: req.AppID, Interface: iface, Options: req.Options, Priority: req.Priority,
		KeyPrefix: h.cfg.KeyPrefix, Webhook: req.Webhook,
	}
	if spec.AppID == "" {
		spec.AppID = h.cfg.AppID
	}
	if spec.AppID == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "appid is required (the server has no WECHAT_APPID)", Field: "appid"})
		return
	}
	var fe *producer.FieldError
	if err := spec.Validate(); errors.As(err, &fe) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fe.Error(), Field: fe.Field})
		return
	}
	// The enqueue finishes even if the client goes: a half-enqueued
	// campaign would wait for the same request again.
	ctx := context.WithoutCancel(r.Context())
	sum, err := h.cfg.Producer.Enqueue(ctx, spec, scenes)
	if errors.Is(err, campaign.ErrExists) {
		writeError(w, http.StatusConflict, "campaign "+name+" exists with other "+items+"s or options")
		return
	}
	var qe *producer.QuotaError
	if errors.As(err, &qe) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: qe.Error(), Field: "paths", Quota: &quotaFigures{
			Asked: qe.Asked, Remaining: qe.Remaining, Limit: qe.Limit, Used: qe.Used, Pending: qe.Pending,
		}})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	st, err := h.cfg.Campaigns.Status(ctx, name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if sum.Created {
		code = http.StatusCreated
	}
	writeJSON(w, code, st)
}

// reason is the cause of a range's bad line, without the scene it names.
func reason(err error) string {
	if inner := errors.Unwrap(err); inner != nil {
		return inner.Error()
	}
	return err.Error()
}
