package campaign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) *Store {
	t.Helper()
	return NewStore(testenv.NewRedis(t).Client, "")
}

func spec(name string, batch int) Campaign {
	return Campaign{Name: name, AppID: "wx0123456789abcdef", Options: wechat.DefaultCodeOptions(), Queue: "wxacode-wx0123456789abcdef-default", BatchSize: batch}
}

func scenes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("s%04d", i)
	}
	return out
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	c, created, err := s.Create(ctx, spec("spring", 10), scenes(25))
	if err != nil || !created {
		t.Fatalf("Create = %v, %v", created, err)
	}
	if c.Total != 25 || c.Batches != 3 || c.State != StateEnqueuing {
		t.Fatalf("created %+v", c)
	}
	again, created, err := s.Create(ctx, spec("spring", 10), scenes(25))
	if err != nil || created {
		t.Fatalf("second Create = %v, %v; want existing, nil", created, err)
	}
	if diff := cmp.Diff(c.Digest, again.Digest); diff != "" {
		t.Fatalf("digest (-want +got):\n%s", diff)
	}
	if _, _, err := s.Create(ctx, spec("spring", 10), scenes(26)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create with other scenes: err = %v, want ErrExists", err)
	}
	other := spec("spring", 10)
	other.Options.Page = "pages/other"
	if _, _, err := s.Create(ctx, other, scenes(25)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create with another page: err = %v, want ErrExists", err)
	}
	got, err := s.BatchScenes(ctx, "spring", 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(scenes(25)[20:], got); diff != "" {
		t.Fatalf("batch 2 scenes (-want +got):\n%s", diff)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "spring" {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestGetUnknown(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if _, err := s.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestMarkAndExport(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	c, _, err := s.Create(ctx, spec("autumn", 4), scenes(10))
	if err != nil {
		t.Fatal(err)
	}
	ok := Result{ContentType: imagetype.JPEG, Size: 1234, SHA256: sum("a")}
	for _, i := range []int64{0, 5, 9} {
		if changed, err := s.MarkSucceeded(ctx, c, i, ok); err != nil || !changed {
			t.Fatalf("MarkSucceeded(%d) = %v, %v", i, changed, err)
		}
	}
	if changed, _ := s.MarkSucceeded(ctx, c, 5, ok); changed {
		t.Fatal("second MarkSucceeded changed the count")
	}
	if changed, err := s.MarkFailed(ctx, c, 6, 41030, "invalid page rid: 1"); err != nil || !changed {
		t.Fatalf("MarkFailed = %v, %v", changed, err)
	}
	if changed, _ := s.MarkFailed(ctx, c, 5, 40001, "x"); changed {
		t.Fatal("MarkFailed changed a succeeded scene")
	}
	got, err := s.Get(ctx, "autumn")
	if err != nil {
		t.Fatal(err)
	}
	if got.Succeeded != 3 || got.Failed != 1 || got.Pending() != 6 || got.Done() {
		t.Fatalf("counts %+v", got)
	}
	st, err := s.BatchStatus(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]SceneStatus{Pending, Succeeded, Failed, Pending}, st); diff != "" {
		t.Fatalf("batch 1 status (-want +got):\n%s", diff)
	}
	var rows []Row
	if err := s.rows(ctx, c, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 {
		t.Fatalf("exported %d rows, want 10", len(rows))
	}
	if diff := cmp.Diff(Row{Index: 5, Scene: "s0005", Status: Succeeded, Result: ok}, rows[5]); diff != "" {
		t.Fatalf("row 5 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Row{Index: 6, Scene: "s0006", Status: Failed, ErrCode: 41030, Error: "invalid page rid: 1"}, rows[6]); diff != "" {
		t.Fatalf("row 6 (-want +got):\n%s", diff)
	}
	if rows[7].Status != Pending {
		t.Fatalf("row 7 = %+v, want pending", rows[7])
	}
	f, err := s.Failures(ctx, "autumn")
	if err != nil || f[41030] != 1 || len(f) != 1 {
		t.Fatalf("Failures = %v, %v", f, err)
	}

	batches, err := s.UnfinishedBatches(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{0, 1, 2}, batches); diff != "" {
		t.Fatalf("unfinished batches (-want +got):\n%s", diff)
	}
	retry, reset, err := s.BeginRetry(ctx, "autumn", 0)
	if err != nil || retry != 1 || reset != 1 {
		t.Fatalf("BeginRetry = %d, %d, %v", retry, reset, err)
	}
	got, _ = s.Get(ctx, "autumn")
	if got.Failed != 0 || got.Pending() != 7 || got.State != StateActive {
		t.Fatalf("after reset %+v", got)
	}
	// A retried scene that succeeds leaves the failed count for good.
	if _, err := s.MarkFailed(ctx, c, 6, -1, "busy"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSucceeded(ctx, c, 6, ok); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, "autumn")
	if got.Failed != 0 || got.Succeeded != 4 {
		t.Fatalf("after retried success %+v", got)
	}
}

func TestConcurrentMarksCountOnce(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	c, _, err := s.Create(ctx, spec("race", 100), scenes(500))
	if err != nil {
		t.Fatal(err)
	}
	ok := Result{ContentType: imagetype.PNG, Size: 1, SHA256: sum("b")}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); i < 500; i++ {
				if _, err := s.MarkSucceeded(ctx, c, i, ok); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, "race")
	if got.Succeeded != 500 || !got.Done() {
		t.Fatalf("succeeded = %d, want 500", got.Succeeded)
	}
}

func TestBatchStarted(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	if _, _, err := s.Create(ctx, spec("b", 2), scenes(4)); err != nil {
		t.Fatal(err)
	}
	if before, err := s.MarkBatchStarted(ctx, "b", 1); err != nil || before {
		t.Fatalf("first start = %v, %v", before, err)
	}
	if before, _ := s.MarkBatchStarted(ctx, "b", 1); !before {
		t.Fatal("second start not seen")
	}
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"spring", "Spring-2026.v1", "a", "0_x"} {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", "-x", ".x", "a/b", "a b", "春", string(make([]byte, 65))} {
		if err := ValidateName(n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestTaskID(t *testing.T) {
	for _, tt := range []struct {
		task BatchTask
		id   string
	}{
		{BatchTask{Campaign: "x", Batch: 3}, "x/b3"},
		{BatchTask{Campaign: "x", Batch: 3, Retry: 2}, "x/b3/r2"},
	} {
		if got := tt.task.ID(); got != tt.id {
			t.Errorf("ID = %q, want %q", got, tt.id)
		}
		back, err := ParseBatchTask(tt.task.Marshal())
		if err != nil || back != tt.task {
			t.Errorf("round trip = %+v, %v", back, err)
		}
	}
	if _, err := ParseBatchTask([]byte(`{"c":"../x","b":1}`)); err == nil {
		t.Error("bad campaign name accepted in payload")
	}
}

// TestInterfaceKinds: a campaign records its interface; B's digest is the
// one recorded before interfaces were kinds, A's differs for the same
// items, and an A campaign's rows carry the path, not the scene.
func TestInterfaceKinds(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	items := []string{"pages/a/a?id=1", "pages/a/a?id=2"}
	b, _, err := s.Create(ctx, spec("kind-b", 10), items[:1])
	if err != nil {
		t.Fatal(err)
	}
	// The digest of a B campaign, as written before A and C were kinds.
	opts := `{"page":"","check_path":true,"env_version":"release","width":430,"auto_color":false,"line_color":{"r":0,"g":0,"b":0},"is_hyaline":false}`
	if want := sum("wx0123456789abcdef\x00" + opts + "\x00" + "wxacode-wx0123456789abcdef-default" + "\x0010\x00" + items[0] + "\n"); b.Digest != want || b.Interface != InterfaceB {
		t.Errorf("B campaign: digest %s interface %q, want %s b", b.Digest, b.Interface, want)
	}
	a := spec("kind-a", 10)
	a.Interface, a.Options = InterfaceA, wechat.CodeOptions{Width: 430}
	ca, created, err := s.Create(ctx, a, items)
	if err != nil || !created {
		t.Fatalf("Create A = %v, %v", created, err)
	}
	asB := a
	asB.Interface = InterfaceB
	if _, _, err := s.Create(ctx, asB, items); !errors.Is(err, ErrExists) {
		t.Errorf("the same items as B under an A campaign's name: %v, want ErrExists", err)
	}
	got, err := s.Get(ctx, "kind-a")
	if err != nil || got.Interface != InterfaceA || got.Digest != ca.Digest {
		t.Fatalf("Get = %+v, %v; want interface a, digest %s", got, err, ca.Digest)
	}
	if st, err := s.Status(ctx, "kind-a"); err != nil || st.Interface != InterfaceA {
		t.Errorf("Status = %+v, %v; want interface a", st, err)
	}
	if _, err := s.MarkSucceeded(ctx, got, 0, Result{ContentType: imagetype.PNG, Size: 9, SHA256: sum("x")}); err != nil {
		t.Fatal(err)
	}
	var rows []ExportRow
	if err := s.Export(ctx, got, nil, func(r ExportRow) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []ExportRow{
		{Path: items[0], Status: Succeeded, Key: "kind-a/pages(2f)a(2f)a(3f)id(3d)1.png", ContentType: imagetype.PNG, Size: 9, SHA256: sum("x")},
		{Path: items[1], Status: Pending},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("export (-want +got):\n%s", diff)
	}
}

func TestParseInterface(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Interface{"": InterfaceB, "b": InterfaceB, "A": InterfaceA, "c": InterfaceC} {
		if got, err := ParseInterface(in); err != nil || got != want {
			t.Errorf("ParseInterface(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseInterface("d"); err == nil {
		t.Error(`ParseInterface("d"): want an error`)
	}
}
