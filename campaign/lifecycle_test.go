package campaign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/storage"
)

func TestConcurrentCreatesHaveOneWinner(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	const rounds, racers = 40, 4
	for round := range rounds {
		name := fmt.Sprintf("race%d", round)
		lists := make([][]string, racers)
		for r := range lists {
			lists[r] = make([]string, 300)
			for i := range lists[r] {
				lists[r][i] = fmt.Sprintf("r%d-%d", r, i)
			}
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []int
			start   = make(chan struct{})
		)
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, created, err := s.Create(ctx, spec(name, 50), lists[r])
				switch {
				case err == nil && created:
					mu.Lock()
					winners = append(winners, r)
					mu.Unlock()
				case errors.Is(err, ErrExists):
				default:
					t.Errorf("round %d racer %d: created %v, err %v", round, r, created, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, len(winners))
		}
		c, err := s.Get(ctx, name)
		if err != nil || !c.Written || c.Total != 300 {
			t.Fatalf("round %d: campaign %+v, %v", round, c, err)
		}
		var got []string
		for b := range c.Batches {
			sc, err := s.BatchScenes(ctx, name, b)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, sc...)
		}
		if diff := cmp.Diff(lists[winners[0]], got); diff != "" {
			t.Fatalf("round %d: scenes are not all the winner's (-want +got):\n%s", round, diff)
		}
	}
}

func TestCancelSticks(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	if _, _, err := s.Create(ctx, spec("c", 10), scenes(30)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Cancel(ctx, "c")
	if err != nil || st.State != StateCancelled {
		t.Fatalf("Cancel = %+v, %v", st, err)
	}
	// The enqueue that was running finishes: its activation must not undo
	// the cancel.
	if got, err := s.Activate(ctx, "c"); err != nil || got != StateCancelled {
		t.Fatalf("Activate after cancel = %s, %v; want cancelled", got, err)
	}
	// Enqueueing the same spec again leaves it cancelled too.
	c, created, err := s.Create(ctx, spec("c", 10), scenes(30))
	if err != nil || created || c.State != StateCancelled {
		t.Fatalf("Create again = %+v, %v, %v", c, created, err)
	}
	if n, reset, err := s.BeginRetry(ctx, "c", 0); err != nil || n != 1 || reset != 0 {
		t.Fatalf("BeginRetry = %d, %d, %v", n, reset, err)
	}
	if st, _ := s.State(ctx, "c"); st != StateActive {
		t.Fatalf("after retry: %s, want active", st)
	}
	if _, err := s.Cancel(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cancel of an unknown campaign: %v", err)
	}
}

func TestRetryRefusesAnUnwrittenCampaign(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	s, ctx := NewStore(r.Client, ""), context.Background()
	c, _, err := s.Create(ctx, spec("half", 10), scenes(30))
	if err != nil {
		t.Fatal(err)
	}
	// As a create cut short between claim and the last scene leaves it.
	if err := r.Client.HDel(ctx, s.key("half", "meta"), "written").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginRetry(ctx, "half", 0); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("BeginRetry = %v, want ErrIncomplete", err)
	}
	again, _, err := s.Create(ctx, spec("half", 10), scenes(30))
	if err != nil || !again.Written || again.Digest != c.Digest {
		t.Fatalf("Create again = %+v, %v; want it written", again, err)
	}
}

func TestBatchLease(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	l, err := s.LeaseBatch(ctx, "x", 3, time.Minute)
	if err != nil || l == nil {
		t.Fatalf("LeaseBatch = %v, %v", l, err)
	}
	if other, err := s.LeaseBatch(ctx, "x", 3, time.Minute); err != nil || other != nil {
		t.Fatalf("second LeaseBatch = %v, %v; want none while held", other, err)
	}
	if ok, err := l.Renew(ctx); err != nil || !ok {
		t.Fatalf("Renew = %v, %v", ok, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Renew(ctx); ok {
		t.Fatal("Renew after Release kept the lease")
	}
	if other, err := s.LeaseBatch(ctx, "x", 3, time.Minute); err != nil || other == nil {
		t.Fatalf("LeaseBatch after release = %v, %v", other, err)
	}
}

// finish marks every scene: index%7 == 3 fails, the rest succeed.
func finish(t *testing.T, s *Store, c Campaign) {
	t.Helper()
	ctx := context.Background()
	for i := range c.Total {
		var err error
		if i%7 == 3 {
			_, err = s.MarkFailed(ctx, c, i, 41030, fmt.Sprintf("invalid page rid: %d", i))
		} else {
			_, err = s.MarkSucceeded(ctx, c, i, Result{ContentType: imagetype.PNG, Size: 100 + i, SHA256: sum(fmt.Sprint(i))})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func exportAll(t *testing.T, s *Store, name string, blobs Blobs) []ExportRow {
	t.Helper()
	ctx := context.Background()
	c, err := s.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var rows []ExportRow
	if err := s.Export(ctx, c, blobs, func(r ExportRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestArchiveMovesResultsToTheManifest(t *testing.T) {
	defer func(n int) { manifestRows = n }(manifestRows)
	manifestRows = 300 // two parts: not parallel, it changes a package variable
	r := testenv.NewRedis(t)
	s, ctx := NewStore(r.Client, ""), context.Background()
	blobs, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := spec("Done.1", 40)
	c.KeyPrefix = "codes/"
	c, _, err = s.Create(ctx, c, scenes(430))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Archive(ctx, "Done.1", blobs); err != nil || ok {
		t.Fatalf("Archive of a running campaign = %v, %v", ok, err)
	}
	finish(t, s, c)
	before := exportAll(t, s, "Done.1", nil)
	if before[3].Status != Failed || before[4].Key != "codes/"+storage.Key("Done.1", "s0004", "png") {
		t.Fatalf("rows before: %+v %+v", before[3], before[4])
	}
	ok, err := s.Archive(ctx, "Done.1", blobs)
	if err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	got, _ := s.Get(ctx, "Done.1")
	if got.Manifest != 2 {
		t.Fatalf("manifest parts %d, want 2", got.Manifest)
	}
	left, err := r.Client.Keys(ctx, "wxacode:campaign:{Done.1}:scenes:*").Result()
	if err != nil || len(left) != 0 {
		t.Fatalf("scene keys left in Redis: %d, %v", len(left), err)
	}
	if _, err := s.BatchScenes(ctx, "Done.1", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("BatchScenes after archive: %v", err)
	}
	var exportErr error
	exportErr = s.Export(ctx, got, nil, func(ExportRow) error { return nil })
	if !errors.Is(exportErr, ErrNoBlobs) {
		t.Fatalf("Export without a store: %v, want ErrNoBlobs", exportErr)
	}
	after := exportAll(t, s, "Done.1", blobs)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("export from the manifest (-redis +manifest):\n%s", diff)
	}
	st, err := s.Status(ctx, "Done.1")
	if err != nil || !st.Archived || !st.Done || st.Failed != 61 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if ok, err := s.Archive(ctx, "Done.1", blobs); err != nil || ok {
		t.Fatalf("second Archive = %v, %v; want nothing to do", ok, err)
	}

	// A retry reads the rows back and turns the failed scenes pending, in
	// one step with dropping the manifest.
	if _, _, err := s.BeginRetry(ctx, "Done.1", 0); !errors.Is(err, ErrArchived) {
		t.Fatalf("BeginRetry without restoring = %v, want ErrArchived", err)
	}
	restored, err := s.Restore(ctx, got, blobs)
	if err != nil || restored != 2 {
		t.Fatalf("Restore = %d, %v", restored, err)
	}
	sc, err := s.BatchScenes(ctx, "Done.1", 1)
	if err != nil || strings.Join(sc, ",") != strings.Join(scenes(80)[40:], ",") {
		t.Fatalf("restored batch 1: %v, %v", sc, err)
	}
	run, reset, err := s.BeginRetry(ctx, "Done.1", restored)
	if err != nil || run != 1 || reset != 61 {
		t.Fatalf("BeginRetry = %d, %d, %v", run, reset, err)
	}
	got, _ = s.Get(ctx, "Done.1")
	if got.Manifest != 0 || got.Done() || got.Failed != 0 || got.Pending() != 61 {
		t.Fatalf("after restore %+v", got)
	}
	if ok, err := s.Archive(ctx, "Done.1", blobs); err != nil || ok {
		t.Fatalf("Archive under retry = %v, %v; want refused", ok, err)
	}
	for i, r := range exportAll(t, s, "Done.1", nil) {
		want := before[i]
		if want.Status == Failed {
			want = ExportRow{Scene: want.Scene, Status: Pending}
		}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Fatalf("row %d after restore (-want +got):\n%s", i, diff)
		}
	}
}

func TestExportWriterNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	rows := []ExportRow{
		{Scene: "=1+2", Status: Succeeded, Key: "k/x.jpg", ContentType: imagetype.JPEG, Size: 3, SHA256: "ab"},
		{Scene: "+sum", Status: Failed, ErrCode: -1, Error: "-busy"},
		{Scene: "@cmd", Status: Pending},
		{Scene: "-x", Status: Pending},
		{Scene: "plain", Status: Pending},
		{Path: "=p?x=1", Status: Pending},
	}
	for _, tc := range []struct {
		format, want string
	}{
		{FormatCSV, "scene,path,status,key,content_type,size,sha256,errcode,error\n" +
			"'=1+2,,succeeded,k/x.jpg,image/jpeg,3,ab,0,\n" +
			"'+sum,,failed,,,0,,-1,'-busy\n" +
			"'@cmd,,pending,,,0,,0,\n" +
			"'-x,,pending,,,0,,0,\n" +
			"plain,,pending,,,0,,0,\n" +
			",'=p?x=1,pending,,,0,,0,\n"},
		{FormatJSONL, `{"scene":"=1+2","path":"","status":"succeeded","key":"k/x.jpg","content_type":"image/jpeg","size":3,"sha256":"ab","errcode":0,"error":""}` + "\n" +
			`{"scene":"+sum","path":"","status":"failed","key":"","content_type":"","size":0,"sha256":"","errcode":-1,"error":"-busy"}` + "\n" +
			`{"scene":"@cmd","path":"","status":"pending","key":"","content_type":"","size":0,"sha256":"","errcode":0,"error":""}` + "\n" +
			`{"scene":"-x","path":"","status":"pending","key":"","content_type":"","size":0,"sha256":"","errcode":0,"error":""}` + "\n" +
			`{"scene":"plain","path":"","status":"pending","key":"","content_type":"","size":0,"sha256":"","errcode":0,"error":""}` + "\n" +
			`{"scene":"","path":"=p?x=1","status":"pending","key":"","content_type":"","size":0,"sha256":"","errcode":0,"error":""}` + "\n"},
	} {
		var b strings.Builder
		w, err := NewExportWriter(&b, tc.format)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, b.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.format, diff)
		}
	}
	if _, err := NewExportWriter(&strings.Builder{}, "xml"); err == nil {
		t.Error("NewExportWriter accepted xml")
	}
}
