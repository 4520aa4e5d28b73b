package campaign

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/storage"
)

// Blobs keeps a finished campaign's manifest beside its codes: every
// storage.Store is one.
type Blobs = storage.Blobs

// manifestRows is the number of scenes in one manifest part: about 4 MB
// of gzip'd JSON lines, so neither writing nor reading a part holds more.
// A variable for tests.
var manifestRows = 50_000

// ManifestName is the store name of a campaign's manifest part, such as
// spring/manifest-00000.gz: gzip'd JSON lines of ExportRow, in scene
// order. Its extension sets it apart from every code's key, which ends in
// .jpg or .png.
func ManifestName(campaign string, part int) string {
	return storage.Key(campaign, fmt.Sprintf("manifest-%05d", part), "gz")
}

// ErrNoBlobs is returned when a campaign's rows are in its manifest in
// storage and no store was given to read it.
var ErrNoBlobs = errors.New("the campaign's results are in its manifest in storage: a store is needed to read them")

// Export calls fn with every scene of the campaign, in index order, from
// Redis while the campaign runs and from its manifest in blobs once it
// was archived.
func (s *Store) Export(ctx context.Context, c Campaign, blobs Blobs, fn func(ExportRow) error) error {
	if c.Manifest > 0 {
		if blobs == nil {
			return fmt.Errorf("export %s: %w", c.Name, ErrNoBlobs)
		}
		return readManifest(ctx, c, blobs, func(_ int64, r ExportRow) error { return fn(r) })
	}
	return s.rows(ctx, c, func(r Row) error { return fn(exportRow(c, r)) })
}

func exportRow(c Campaign, r Row) ExportRow {
	row := ExportRow{Scene: r.Scene, Status: r.Status, ErrCode: r.ErrCode, Error: r.Error}
	if c.Interface.Limited() {
		row.Scene, row.Path = "", r.Scene
	}
	if r.Status == Succeeded {
		row.Key = c.KeyPrefix + storage.Key(c.Name, r.Scene, imagetype.Ext(r.Result.ContentType))
		row.ContentType, row.Size, row.SHA256 = r.Result.ContentType, r.Result.Size, r.Result.SHA256
	}
	return row
}

// readManifest calls fn with each row of the manifest and its index.
func readManifest(ctx context.Context, c Campaign, blobs Blobs, fn func(int64, ExportRow) error) error {
	var index int64
	for part := range c.Manifest {
		body, err := blobs.GetBlob(ctx, ManifestName(c.Name, part))
		if err != nil {
			return fmt.Errorf("read manifest of %s: %w", c.Name, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("read manifest of %s part %d: %w", c.Name, part, err)
		}
		dec := json.NewDecoder(zr)
		for dec.More() {
			var r ExportRow
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("read manifest of %s part %d: %w", c.Name, part, err)
			}
			if err := fn(index, r); err != nil {
				return err
			}
			index++
		}
	}
	if index != c.Total {
		return fmt.Errorf("read manifest of %s: %d rows, want %d", c.Name, index, c.Total)
	}
	return nil
}

// archiveScript checks that a campaign may be archived and, with ARGV[1]
// "commit", records its manifest and drops the per-scene strings: KEYS
// meta, then the keys to drop; ARGV mode, the retries seen when the
// manifest was written, the manifest's parts. A campaign may be archived
// when it is written, not yet archived and done; the commit also needs no
// retry to have begun since the manifest was written.
var archiveScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'total', 'succeeded', 'failed', 'retries', 'manifest', 'written')
if m[6] ~= '1' or m[5] then return 0 end
if tonumber(m[2]) + tonumber(m[3]) < tonumber(m[1]) then return 0 end
if ARGV[1] ~= 'commit' then return 1 end
if m[4] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'manifest', ARGV[3])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
`)

// Archive moves a finished campaign's per-scene results out of Redis: it
// writes them as the campaign's manifest into blobs, then, in one step and
// only if nothing changed meanwhile, records the manifest and drops the
// scenes and result records from Redis. Counters, bitmaps and failures
// stay. It reports whether it archived the campaign; a campaign not yet
// done, already archived, retried meanwhile or being archived by another
// worker is left as it is.
func (s *Store) Archive(ctx context.Context, name string, blobs Blobs) (bool, error) {
	c, err := s.Get(ctx, name)
	if err != nil {
		return false, err
	}
	head := []string{s.key(name, "meta")}
	ok, err := archiveScript.Run(ctx, s.rdb, head, "check").Int()
	if err != nil || ok == 0 {
		return false, err
	}
	lock := s.key(name, "archiving")
	got, err := s.rdb.SetNX(ctx, lock, 1, 10*time.Minute).Result()
	if err != nil || !got {
		return false, err
	}
	defer s.rdb.Del(context.WithoutCancel(ctx), lock)

	parts, err := s.writeManifest(ctx, c, blobs)
	if err != nil {
		return false, err
	}
	keys := append([]string{}, head...)
	for b := range c.Batches {
		keys = append(keys, s.batchKey(name, "scenes", b), s.batchKey(name, "res", b))
	}
	ok, err = archiveScript.Run(ctx, s.rdb, keys, "commit", c.Retries, parts).Int()
	if err != nil {
		return false, fmt.Errorf("archive %s: %w", name, err)
	}
	return ok == 1, nil
}

// writeManifest writes the campaign's rows from Redis as manifest parts
// and returns how many it wrote.
func (s *Store) writeManifest(ctx context.Context, c Campaign, blobs Blobs) (int, error) {
	var (
		buf   bytes.Buffer
		zw    = gzip.NewWriter(&buf)
		bw    = bufio.NewWriter(zw)
		enc   = json.NewEncoder(bw)
		rows  int
		parts int
	)
	enc.SetEscapeHTML(false)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := blobs.PutBlob(ctx, ManifestName(c.Name, parts), buf.Bytes(), "application/gzip"); err != nil {
			return fmt.Errorf("archive %s: %w", c.Name, err)
		}
		parts++
		rows = 0
		buf.Reset()
		zw.Reset(&buf)
		bw.Reset(zw)
		return nil
	}
	err := s.rows(ctx, c, func(r Row) error {
		if err := enc.Encode(exportRow(c, r)); err != nil {
			return err
		}
		if rows++; rows == manifestRows {
			return flush()
		}
		return nil
	})
	if err == nil && rows > 0 {
		err = flush()
	}
	return parts, err
}

// Restore puts an archived campaign's scenes and result records back into
// Redis from its manifest, so that a retry can run its batches again. It
// returns the number of manifest parts read (0 when the campaign was not
// archived); pass it to BeginRetry, which drops the manifest pointer.
// Restoring twice, or two at once, writes the same values.
func (s *Store) Restore(ctx context.Context, c Campaign, blobs Blobs) (int, error) {
	if c.Manifest == 0 {
		return 0, nil
	}
	if blobs == nil {
		return 0, fmt.Errorf("retry %s: %w", c.Name, ErrNoBlobs)
	}
	var (
		scenes []string
		recs   []byte
		batch  = 0
		pipe   = s.rdb.Pipeline()
	)
	put := func() error {
		pipe.Set(ctx, s.batchKey(c.Name, "scenes", batch), strings.Join(scenes, "\n"), 0)
		if len(recs) > 0 {
			pipe.Set(ctx, s.batchKey(c.Name, "res", batch), recs, 0)
		}
		scenes, recs = scenes[:0], nil
		batch++
		if batch%256 == 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("restore %s: %w", c.Name, err)
			}
		}
		return nil
	}
	err := readManifest(ctx, c, blobs, func(i int64, r ExportRow) error {
		if b := c.BatchOf(i); b != batch {
			return fmt.Errorf("restore %s: manifest row %d is out of order", c.Name, i)
		}
		if r.Status == Succeeded {
			rec, err := encodeResult(Result{ContentType: r.ContentType, Size: r.Size, SHA256: r.SHA256})
			if err != nil {
				return fmt.Errorf("restore %s row %d: %w", c.Name, i, err)
			}
			at := len(scenes) * recordSize
			if len(recs) < at {
				recs = append(recs, make([]byte, at-len(recs))...)
			}
			recs = append(recs, rec...)
		}
		scenes = append(scenes, r.Item())
		if _, to := c.BatchRange(batch); i+1 == to {
			return put()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("restore %s: %w", c.Name, err)
	}
	return c.Manifest, nil
}
