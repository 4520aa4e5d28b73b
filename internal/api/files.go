package api

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/storage"
)

// counter counts what a response has written, so an error before the
// first byte can still be answered as JSON.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// streamFailed ends a streamed response that failed: with an error answer
// if nothing was sent yet, else by cutting the connection, so the client
// sees a broken transfer rather than a short file.
func (h *Handler) streamFailed(w http.ResponseWriter, r *http.Request, c *counter, err error) {
	if c.n == 0 {
		for k := range w.Header() {
			w.Header().Del(k)
		}
		h.fail(w, r, err)
		return
	}
	h.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("api: stream cut short")
	panic(http.ErrAbortHandler)
}

func (h *Handler) export(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = campaign.FormatCSV
	}
	if format != campaign.FormatCSV && format != campaign.FormatJSONL {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "format " + format + ": want csv or jsonl", Field: "format"})
		return
	}
	name := r.PathValue("name")
	c, err := h.cfg.Campaigns.Get(r.Context(), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if format == campaign.FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+"."+format+`"`)
	cw := &counter{w: w}
	ew, err := campaign.NewExportWriter(cw, format)
	if err == nil {
		err = h.cfg.Campaigns.Export(r.Context(), c, h.cfg.Codes, ew.Write)
	}
	if err == nil {
		err = ew.Flush()
	}
	if err != nil {
		h.streamFailed(w, r, cw, err)
	}
}

func (h *Handler) code(w http.ResponseWriter, r *http.Request) {
	name, scene := r.PathValue("name"), r.PathValue("scene")
	c, err := h.cfg.Campaigns.Get(r.Context(), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// A scene for interface B, a path for A and C.
	if c.Interface.ValidateItem(scene) != nil {
		writeError(w, http.StatusNotFound, scene+" is not an item of campaign "+name)
		return
	}
	for _, ct := range []string{imagetype.JPEG, imagetype.PNG} {
		body, obj, err := h.cfg.Codes.Get(r.Context(), storage.Key(c.Name, scene, imagetype.Ext(ct)))
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", obj.ContentType)
		w.Header().Set("ETag", `"`+obj.SHA256+`"`)
		w.Header().Set("Cache-Control", "private, max-age=3600")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	writeError(w, http.StatusNotFound, scene+" of campaign "+name+" has no stored code (not succeeded)")
}

// archiveAhead is how many codes an archive fetches at once: storage
// answers in milliseconds, so one at a time would make a large archive
// slow; memory holds at most this many codes.
const archiveAhead = 8

// fetch is one code being read for an archive.
type fetch struct {
	key  string
	body []byte
	err  error
	done chan struct{}
}

// archive streams every stored code of the campaign, then manifest.csv
// (the export), as one zip. Each code is read, written and dropped in
// turn, so memory holds one code and one batch of rows whatever the
// campaign's size. Codes are stored as they are (they are compressed
// images); the manifest is deflated.
func (h *Handler) archive(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := h.cfg.Campaigns.Get(r.Context(), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.zip"`)
	cw := &counter{w: w}
	zw := zip.NewWriter(cw)
	now := time.Now()
	// Codes are fetched archiveAhead at a time, and written in order.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var ahead []*fetch
	defer func() { // every fetch ends before the handler returns
		cancel()
		for _, f := range ahead {
			<-f.done
		}
	}()
	writeNext := func() error {
		f := ahead[0]
		<-f.done
		ahead = ahead[1:]
		if f.err != nil {
			return f.err
		}
		zf, err := zw.CreateHeader(&zip.FileHeader{Name: f.key, Method: zip.Store, Modified: now})
		if err == nil {
			_, err = zf.Write(f.body)
		}
		return err
	}
	err = h.cfg.Campaigns.Export(ctx, c, h.cfg.Codes, func(row campaign.ExportRow) error {
		if row.Status != campaign.Succeeded {
			return nil
		}
		if len(ahead) == archiveAhead {
			if err := writeNext(); err != nil {
				return err
			}
		}
		f := &fetch{key: strings.TrimPrefix(row.Key, c.KeyPrefix), done: make(chan struct{})}
		ahead = append(ahead, f)
		go func() {
			defer close(f.done)
			f.body, _, f.err = h.cfg.Codes.Get(ctx, f.key)
		}()
		return nil
	})
	for err == nil && len(ahead) > 0 {
		err = writeNext()
	}
	if err == nil {
		var f io.Writer
		if f, err = zw.CreateHeader(&zip.FileHeader{Name: "manifest.csv", Method: zip.Deflate, Modified: now}); err == nil {
			var ew *campaign.ExportWriter
			if ew, err = campaign.NewExportWriter(f, campaign.FormatCSV); err == nil {
				if err = h.cfg.Campaigns.Export(r.Context(), c, h.cfg.Codes, ew.Write); err == nil {
					err = ew.Flush()
				}
			}
		}
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		h.streamFailed(w, r, cw, err)
	}
}
