package campaign

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ExportRow is one scene of a campaign as export reports it, and as the
// manifest of a finished campaign stores it.
type ExportRow struct {
	// Scene is the scene of a code of interface B; "" for A and C.
	Scene string `json:"scene"`
	// Path is the path (page and query) of a code of interface A or C;
	// "" for B.
	Path string `json:"path"`
	// Status is succeeded, failed or pending.
	Status SceneStatus `json:"status"`
	// Key is the object key of the code, the store's prefix included; ""
	// unless succeeded.
	Key string `json:"key"`
	// ContentType is image/jpeg or image/png; "" unless succeeded.
	ContentType string `json:"content_type"`
	// Size is the code's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the stored bytes.
	SHA256 string `json:"sha256"`
	// ErrCode is WeChat's errcode of a failed scene, 0 when none.
	ErrCode int `json:"errcode"`
	// Error is why the scene failed.
	Error string `json:"error"`
}

// ExportHeader is the CSV header of an export.
var ExportHeader = []string{"scene", "path", "status", "key", "content_type", "size", "sha256", "errcode", "error"}

// Export formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// ExportWriter writes export rows as CSV (with a header line) or JSON
// lines. CSV cells that a spreadsheet would run as a formula (a leading
// =, +, -, @, tab or CR) get a leading ' ; JSON lines keep every value
// exact.
type ExportWriter struct {
	csv  *csv.Writer
	json *json.Encoder
}

// NewExportWriter returns a writer of format (FormatCSV or FormatJSONL);
// for CSV it writes the header line.
func NewExportWriter(w io.Writer, format string) (*ExportWriter, error) {
	switch format {
	case FormatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(ExportHeader); err != nil {
			return nil, err
		}
		return &ExportWriter{csv: cw}, nil
	case FormatJSONL:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return &ExportWriter{json: enc}, nil
	}
	return nil, fmt.Errorf("export format %q: want csv or jsonl", format)
}

// Write writes one row.
func (e *ExportWriter) Write(r ExportRow) error {
	if e.json != nil {
		return e.json.Encode(r)
	}
	return e.csv.Write([]string{
		SafeCell(r.Scene), SafeCell(r.Path), string(r.Status), SafeCell(r.Key), r.ContentType,
		strconv.FormatInt(r.Size, 10), r.SHA256, strconv.Itoa(r.ErrCode), SafeCell(r.Error),
	})
}

// Flush writes what is buffered and reports any error of the writes.
func (e *ExportWriter) Flush() error {
	if e.csv != nil {
		e.csv.Flush()
		return e.csv.Error()
	}
	return nil
}

// Item is the row's item: its path for interfaces A and C, else its scene.
func (r ExportRow) Item() string { return cmp.Or(r.Path, r.Scene) }

// SafeCell neutralises a CSV text cell that a spreadsheet would run as a
// formula: one that starts with =, +, -, @, a tab or a carriage return
// gets a leading ' .
func SafeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
