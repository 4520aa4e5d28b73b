package campaign

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/internal/imagetype"
)

// DefaultPrefix is the prefix of every key the Store writes.
const DefaultPrefix = "wxacode:"

// recordSize is the width of one scene's result record: content type (1
// byte), size (4 bytes, big-endian), sha256 (32 bytes).
const recordSize = 1 + 4 + sha256.Size

// Store reads and writes campaign records in Redis. It is safe for
// concurrent use; many processes may share one Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewStore returns a Store on rdb (a client, a cluster client or a ring),
// with keys under prefix ("" means DefaultPrefix).
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, prefix: prefix}
}

func (s *Store) key(name, part string) string {
	return s.prefix + "campaign:{" + name + "}:" + part
}

func (s *Store) batchKey(name, part string, batch int) string {
	return s.key(name, part+":"+strconv.Itoa(batch))
}

func (s *Store) indexKey() string { return s.prefix + "campaigns" }

// digest identifies a campaign's scenes and settings.
func digest(c Campaign, scenes []string) string {
	h := sha256.New()
	opts, _ := json.Marshal(c.Options)
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00", c.AppID, opts, c.Queue, c.BatchSize)
	if c.Interface.Limited() {
		// B adds nothing, so the digests of campaigns recorded before
		// interfaces A and C were kinds stay as they were.
		fmt.Fprintf(h, "interface=%s\x00", c.Interface)
	}
	for _, sc := range scenes {
		h.Write([]byte(sc))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// claimScript claims a campaign's name with the digest of its spec, in one
// step, before any scene is written: KEYS meta; ARGV digest, then the meta
// fields. It returns "" when this call claimed the name, else the digest
// the name holds.
var claimScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'digest')
if d then return d end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], unpack(ARGV, 2))
return ''
`)

// Create records a new campaign of the given distinct scenes, with the
// settings of c (Name, AppID, Interface, Options, Queue, BatchSize,
// KeyPrefix, Webhook); the items are scenes for interface B and paths for
// A and C, and must hold no newline. It
// returns the stored campaign and whether this call created it.
//
// The name is claimed together with the digest of the spec before any
// scene is written, so of two creates of one name with other specs exactly
// one wins and the other returns ErrExists having written nothing. The
// same spec again returns the stored campaign, and writes the scenes
// again if a create was cut short before it had written them all.
func (s *Store) Create(ctx context.Context, c Campaign, scenes []string) (Campaign, bool, error) {
	if err := ValidateName(c.Name); err != nil {
		return c, false, err
	}
	if c.BatchSize <= 0 {
		return c, false, fmt.Errorf("create %s: batch size %d must be positive", c.Name, c.BatchSize)
	}
	if len(scenes) == 0 {
		return c, false, fmt.Errorf("create %s: no scenes", c.Name)
	}
	if c.Interface == "" {
		c.Interface = InterfaceB
	}
	c.Total = int64(len(scenes))
	c.Batches = (len(scenes) + c.BatchSize - 1) / c.BatchSize
	c.Digest = digest(c, scenes)
	c.State = StateEnqueuing
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	opts, _ := json.Marshal(c.Options)
	args := []any{
		c.Digest,
		"name", c.Name, "appid", c.AppID, "interface", string(c.Interface), "options", string(opts), "queue", c.Queue,
		"total", c.Total, "batch_size", c.BatchSize, "batches", c.Batches,
		"state", string(c.State), "created", c.Created.UnixMilli(),
		"key_prefix", c.KeyPrefix, "webhook", c.Webhook, "succeeded", 0, "failed", 0, "retries", 0,
	}
	got, err := claimScript.Run(ctx, s.rdb, []string{s.key(c.Name, "meta")}, args...).Text()
	if err != nil {
		return c, false, fmt.Errorf("create %s: %w", c.Name, err)
	}
	created := got == ""
	if !created && got != c.Digest {
		return c, false, fmt.Errorf("create %s: %w", c.Name, ErrExists)
	}
	if !created {
		if c, err = s.Get(ctx, c.Name); err != nil {
			return c, false, err
		}
	}
	// Listed from the claim on, so that an enqueue in progress shows.
	if err := s.rdb.ZAddNX(ctx, s.indexKey(), redis.Z{Score: float64(c.Created.UnixMilli()), Member: c.Name}).Err(); err != nil {
		return c, false, fmt.Errorf("create %s: index: %w", c.Name, err)
	}
	if c.Written {
		return c, created, nil
	}
	// Same spec, same digest: the scenes written are the same whoever
	// writes them, so a create run again (or two at once) is harmless.
	const perPipe = 256
	for from := 0; from < c.Batches; from += perPipe {
		pipe := s.rdb.Pipeline()
		for b := from; b < min(from+perPipe, c.Batches); b++ {
			lo, hi := b*c.BatchSize, min((b+1)*c.BatchSize, len(scenes))
			pipe.Set(ctx, s.batchKey(c.Name, "scenes", b), strings.Join(scenes[lo:hi], "\n"), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return c, created, fmt.Errorf("create %s: write scenes: %w", c.Name, err)
		}
	}
	if err := s.rdb.HSet(ctx, s.key(c.Name, "meta"), "written", 1).Err(); err != nil {
		return c, created, fmt.Errorf("create %s: %w", c.Name, err)
	}
	c.Written = true
	return c, created, nil
}

// Get returns a campaign's record, or ErrNotFound. It is one round trip
// whatever the campaign's size.
func (s *Store) Get(ctx context.Context, name string) (Campaign, error) {
	m, err := s.rdb.HGetAll(ctx, s.key(name, "meta")).Result()
	if err != nil {
		return Campaign{}, fmt.Errorf("get campaign %s: %w", name, err)
	}
	return parseMeta(name, m)
}

func parseMeta(name string, m map[string]string) (Campaign, error) {
	if len(m) == 0 {
		return Campaign{}, fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	}
	num := func(k string) int64 {
		v, _ := strconv.ParseInt(m[k], 10, 64)
		return v
	}
	ms := func(k string) time.Time {
		if v := num(k); v > 0 {
			return time.UnixMilli(v)
		}
		return time.Time{}
	}
	c := Campaign{
		Name: name, AppID: m["appid"], Interface: Interface(cmp.Or(m["interface"], string(InterfaceB))), Queue: m["queue"],
		Total: num("total"), BatchSize: int(num("batch_size")), Batches: int(num("batches")),
		Succeeded: num("succeeded"), Failed: num("failed"),
		State: State(m["state"]), Created: ms("created"),
		FirstDone: ms("first_done"), LastDone: ms("last_done"),
		KeyPrefix: m["key_prefix"], Retries: int(num("retries")), Digest: m["digest"],
		Written: m["written"] == "1", Manifest: int(num("manifest")), Webhook: m["webhook"],
	}
	if err := json.Unmarshal([]byte(m["options"]), &c.Options); err != nil {
		return c, fmt.Errorf("campaign %s: options: %w", name, err)
	}
	if c.BatchSize <= 0 {
		return c, fmt.Errorf("campaign %s: record is damaged (batch_size %q)", name, m["batch_size"])
	}
	return c, nil
}

// List returns every campaign, oldest first.
func (s *Store) List(ctx context.Context) ([]Campaign, error) {
	names, err := s.rdb.ZRange(ctx, s.indexKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(names))
	pipe := s.rdb.Pipeline()
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, s.key(n, "meta"))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list campaigns: %w", err)
		}
	}
	out := make([]Campaign, 0, len(names))
	for i, n := range names {
		c, err := parseMeta(n, cmds[i].Val())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// State returns a campaign's state alone, cheaply, for workers that check
// for cancellation while they run.
func (s *Store) State(ctx context.Context, name string) (State, error) {
	v, err := s.rdb.HGet(ctx, s.key(name, "meta"), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("campaign %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("state of %s: %w", name, err)
	}
	return State(v), nil
}

// BatchScenes returns the scenes of a batch, in index order.
func (s *Store) BatchScenes(ctx context.Context, name string, batch int) ([]string, error) {
	v, err := s.rdb.Get(ctx, s.batchKey(name, "scenes", batch)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("campaign %s has no batch %d: %w", name, batch, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("scenes of %s batch %d: %w", name, batch, err)
	}
	return strings.Split(v, "\n"), nil
}

// MarkBatchStarted records that a batch has begun to run and reports
// whether it had begun before: a batch run again (after a crash, a
// shutdown or a retry) checks storage before calling WeChat.
func (s *Store) MarkBatchStarted(ctx context.Context, name string, batch int) (before bool, err error) {
	old, err := s.rdb.SetBit(ctx, s.key(name, "started"), int64(batch), 1).Result()
	if err != nil {
		return false, fmt.Errorf("mark %s batch %d started: %w", name, batch, err)
	}
	return old == 1, nil
}

// BatchStatus returns the status of each scene of a batch.
func (s *Store) BatchStatus(ctx context.Context, c Campaign, batch int) ([]SceneStatus, error) {
	from, to := c.BatchRange(batch)
	pipe := s.rdb.Pipeline()
	ok := pipe.GetRange(ctx, s.key(c.Name, "ok"), from/8, (to-1)/8)
	fail := pipe.GetRange(ctx, s.key(c.Name, "fail"), from/8, (to-1)/8)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("status of %s batch %d: %w", c.Name, batch, err)
	}
	return statuses(from, to, []byte(ok.Val()), []byte(fail.Val())), nil
}

// statuses reads scenes [from, to) out of bitmap slices that start at
// byte from/8.
func statuses(from, to int64, ok, fail []byte) []SceneStatus {
	bit := func(b []byte, i int64) bool {
		off := i/8 - from/8
		return off < int64(len(b)) && b[off]&(0x80>>(i%8)) != 0
	}
	out := make([]SceneStatus, to-from)
	for i := from; i < to; i++ {
		switch {
		case bit(ok, i):
			out[i-from] = Succeeded
		case bit(fail, i):
			out[i-from] = Failed
		default:
			out[i-from] = Pending
		}
	}
	return out
}

// succeedScript marks a scene succeeded, once: KEYS meta, ok, fail, res,
// errors; ARGV index, record offset, record. A scene that had failed
// (and was retried) leaves the failed count.
var succeedScript = redis.NewScript(`
if redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 1 then return 0 end
redis.call('SETRANGE', KEYS[4], ARGV[2], ARGV[3])
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then
  redis.call('SETBIT', KEYS[3], ARGV[1], 0)
  redis.call('HINCRBY', KEYS[1], 'failed', -1)
  redis.call('HDEL', KEYS[5], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'succeeded', 1)
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSETNX', KEYS[1], 'first_done', ms)
redis.call('HSET', KEYS[1], 'last_done', ms)
return 1
`)

// failScript marks a scene failed, unless it succeeded: KEYS meta, ok,
// fail, errors; ARGV index, "errcode<TAB>message".
var failScript = redis.NewScript(`
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
if redis.call('SETBIT', KEYS[3], ARGV[1], 1) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'failed', 1)
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSETNX', KEYS[1], 'first_done', ms)
redis.call('HSET', KEYS[1], 'last_done', ms)
return 1
`)

// MarkSucceeded records that scene index of the campaign is stored. It
// reports whether this call changed anything (false when it was already
// succeeded).
func (s *Store) MarkSucceeded(ctx context.Context, c Campaign, index int64, r Result) (bool, error) {
	rec, err := encodeResult(r)
	if err != nil {
		return false, fmt.Errorf("mark %s scene %d: %w", c.Name, index, err)
	}
	batch := c.BatchOf(index)
	from, _ := c.BatchRange(batch)
	keys := []string{s.key(c.Name, "meta"), s.key(c.Name, "ok"), s.key(c.Name, "fail"), s.batchKey(c.Name, "res", batch), s.key(c.Name, "errors")}
	n, err := succeedScript.Run(ctx, s.rdb, keys, index, (index-from)*recordSize, rec).Int()
	if err != nil {
		return false, fmt.Errorf("mark %s scene %d succeeded: %w", c.Name, index, err)
	}
	return n == 1, nil
}

// MarkFailed records that scene index failed with a WeChat errcode (0 for
// none) and a message. A succeeded scene stays succeeded.
func (s *Store) MarkFailed(ctx context.Context, c Campaign, index int64, errcode int, msg string) (bool, error) {
	keys := []string{s.key(c.Name, "meta"), s.key(c.Name, "ok"), s.key(c.Name, "fail"), s.key(c.Name, "errors")}
	msg = strings.ReplaceAll(msg, "\t", " ")
	n, err := failScript.Run(ctx, s.rdb, keys, index, strconv.Itoa(errcode)+"\t"+msg).Int()
	if err != nil {
		return false, fmt.Errorf("mark %s scene %d failed: %w", c.Name, index, err)
	}
	return n == 1, nil
}

// rows calls fn with every scene of the campaign, in index order, reading
// its Redis record one batch at a time.
func (s *Store) rows(ctx context.Context, c Campaign, fn func(Row) error) error {
	name := c.Name
	for b := 0; b < c.Batches; b++ {
		from, to := c.BatchRange(b)
		pipe := s.rdb.Pipeline()
		sc := pipe.Get(ctx, s.batchKey(name, "scenes", b))
		ok := pipe.GetRange(ctx, s.key(name, "ok"), from/8, (to-1)/8)
		fail := pipe.GetRange(ctx, s.key(name, "fail"), from/8, (to-1)/8)
		res := pipe.Get(ctx, s.batchKey(name, "res", b))
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("export %s batch %d: %w", name, b, err)
		}
		if sc.Err() != nil {
			return fmt.Errorf("export %s batch %d: scenes: %w", name, b, sc.Err())
		}
		scenes := strings.Split(sc.Val(), "\n")
		st := statuses(from, to, []byte(ok.Val()), []byte(fail.Val()))
		if len(scenes) != len(st) {
			return fmt.Errorf("export %s batch %d: %d scenes stored, %d expected", name, b, len(scenes), len(st))
		}
		var failed []string
		for i, v := range st {
			if v == Failed {
				failed = append(failed, strconv.FormatInt(from+int64(i), 10))
			}
		}
		errs := map[string]string{}
		if len(failed) > 0 {
			vals, err := s.rdb.HMGet(ctx, s.key(name, "errors"), failed...).Result()
			if err != nil {
				return fmt.Errorf("export %s batch %d: errors: %w", name, b, err)
			}
			for i, v := range vals {
				if v, ok := v.(string); ok {
					errs[failed[i]] = v
				}
			}
		}
		recs := []byte(res.Val())
		for i, v := range st {
			row := Row{Index: from + int64(i), Scene: scenes[i], Status: v}
			switch v {
			case Succeeded:
				off := i * recordSize
				if off+recordSize <= len(recs) {
					row.Result = decodeResult(recs[off : off+recordSize])
				}
			case Failed:
				code, msg, _ := strings.Cut(errs[strconv.FormatInt(row.Index, 10)], "\t")
				row.ErrCode, _ = strconv.Atoi(code)
				row.Error = msg
			}
			if err := fn(row); err != nil {
				return err
			}
		}
	}
	return nil
}

// Failures counts a campaign's failed scenes by errcode.
func (s *Store) Failures(ctx context.Context, name string) (map[int]int64, error) {
	out := map[int]int64{}
	iter := s.rdb.HScan(ctx, s.key(name, "errors"), 0, "", 1000).Iterator()
	for i := 0; iter.Next(ctx); i++ {
		if i%2 == 1 {
			code, _, _ := strings.Cut(iter.Val(), "\t")
			n, _ := strconv.Atoi(code)
			out[n]++
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("failures of %s: %w", name, err)
	}
	return out, nil
}

func encodeResult(r Result) ([]byte, error) {
	rec := make([]byte, recordSize)
	switch r.ContentType {
	case imagetype.JPEG:
		rec[0] = 1
	case imagetype.PNG:
		rec[0] = 2
	default:
		return nil, fmt.Errorf("content type %q is not an image type", r.ContentType)
	}
	if r.Size < 0 || r.Size > 1<<32-1 {
		return nil, fmt.Errorf("size %d out of range", r.Size)
	}
	binary.BigEndian.PutUint32(rec[1:5], uint32(r.Size))
	sum, err := hex.DecodeString(r.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not 64 hex digits", r.SHA256)
	}
	copy(rec[5:], sum)
	return rec, nil
}

func decodeResult(rec []byte) Result {
	var r Result
	switch rec[0] {
	case 1:
		r.ContentType = imagetype.JPEG
	case 2:
		r.ContentType = imagetype.PNG
	default:
		return r
	}
	r.Size = int64(binary.BigEndian.Uint32(rec[1:5]))
	r.SHA256 = hex.EncodeToString(rec[5:])
	return r
}
