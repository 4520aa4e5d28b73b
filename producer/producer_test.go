package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestRead(t *testing.T) {
	in := "sku1\r\nsku2\n\n  \nsku1\r\nid=7&x=/a?b#c\n~()\n"
	got, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Scenes{List: []string{"sku1", "sku2", "id=7&x=/a?b#c", "~()"}, Duplicates: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Read (-want +got):\n%s", diff)
	}
}

func TestReadNoTrailingNewline(t *testing.T) {
	got, err := Read(strings.NewReader("a\nb"))
	if err != nil || len(got.List) != 2 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
}

func TestReadReportsEveryBadLine(t *testing.T) {
	in := strings.Join([]string{
		"ok1",
		strings.Repeat("x", 33),
		"50%",
		"二维码",
		"a b",
		"ok2",
		strings.Repeat("y", 70000),
		"ok3",
	}, "\n")
	_, err := Read(strings.NewReader(in))
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("err = %v, want *InvalidError", err)
	}
	var lines []int64
	for _, l := range inv.Lines {
		lines = append(lines, l.Line)
	}
	if diff := cmp.Diff([]int64{2, 3, 4, 5, 7}, lines); diff != "" {
		t.Fatalf("bad lines (-want +got):\n%s", diff)
	}
	msg := err.Error()
	for _, want := range []string{"2: scene is 33 characters long", `3: scene has "%"`, `4: scene has "二"`, "5: scene has a space", "7: line is longer"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestRange(t *testing.T) {
	got, err := Range("sku%08d", 9, 11)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"sku00000009", "sku00000010", "sku00000011"}, got.List); diff != "" {
		t.Fatalf("Range (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		tmpl     string
		from, to int64
		want     string
	}{
		{"sku", 1, 2, "exactly one"},
		{"a%db%d", 1, 2, "exactly one"},
		{"a%s", 1, 2, "exactly one"},
		{"100%%%d", 1, 2, "exactly one"},
		{"x%d", 5, 1, "from <= to"},
		{"x y%d", 1, 2, "a space"},
		{strings.Repeat("x", 30) + "%d", 1, 200, "33 characters"},
	} {
		if _, err := Range(tt.tmpl, tt.from, tt.to); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Range(%q, %d, %d) err = %v, want %q", tt.tmpl, tt.from, tt.to, err, tt.want)
		}
	}
}

func newProducer(t *testing.T, cfg Config) (*Producer, *campaign.Store, *asynq.Inspector) {
	t.Helper()
	r := testenv.NewRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Server.Addr, DB: r.DB}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	store := campaign.NewStore(r.Client, "")
	p, err := New(store, client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, store, insp
}

func TestEnqueueTwiceIsHarmless(t *testing.T) {
	t.Parallel()
	var calls int
	p, store, insp := newProducer(t, Config{BatchSize: 10, Progress: func(done, total int) { calls++ }})
	ctx := context.Background()
	sc, _ := Range("s%d", 1, 95)
	spec := Spec{Name: "spring", AppID: "wx0123456789abcdef", Options: wechat.DefaultCodeOptions(), Priority: "low"}
	sum, err := p.Enqueue(ctx, spec, sc.List)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Created || sum.Enqueued != 10 || sum.AlreadyQueued != 0 || sum.Campaign.State != campaign.StateActive || calls != 10 {
		t.Fatalf("first Enqueue = %+v (progress calls %d)", sum, calls)
	}
	again, err := p.Enqueue(ctx, spec, sc.List)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Enqueued != 0 || again.AlreadyQueued != 10 {
		t.Fatalf("second Enqueue = %+v", again)
	}
	info, err := insp.GetQueueInfo("wxacode-wx0123456789abcdef-low")
	if err != nil || info.Pending != 10 {
		t.Fatalf("queue %s: %+v, %v; want 10 pending", "wxacode-wx0123456789abcdef-low", info, err)
	}
	task, err := insp.GetTaskInfo("wxacode-wx0123456789abcdef-low", "spring/b9")
	if err != nil {
		t.Fatal(err)
	}
	bt, err := campaign.ParseBatchTask(task.Payload)
	if err != nil || bt.Batch != 9 {
		t.Fatalf("payload %q: %+v, %v", task.Payload, bt, err)
	}
	c, err := store.Get(ctx, "spring")
	if err != nil || c.Total != 95 || c.Batches != 10 {
		t.Fatalf("campaign %+v, %v", c, err)
	}
	other := spec
	other.Options.Width = 600
	if _, err := p.Enqueue(ctx, other, sc.List); !errors.Is(err, campaign.ErrExists) {
		t.Fatalf("Enqueue with other options: %v, want ErrExists", err)
	}
}

func TestRetryEnqueuesFailedBatches(t *testing.T) {
	t.Parallel()
	p, store, insp := newProducer(t, Config{BatchSize: 4})
	p.cfg.Tasks = insp
	ctx := context.Background()
	spec := Spec{Name: "r", AppID: "wx0123456789abcdef", Options: wechat.DefaultCodeOptions(), Priority: "high"}
	sum, err := p.Enqueue(ctx, spec, []string{"a", "b", "c", "d", "e", "f"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MarkFailed(ctx, sum.Campaign, 5, 41030, "invalid page"); err != nil {
		t.Fatal(err)
	}
	// Both batches still have their enqueue's task pending: nothing to
	// enqueue, the failed scene is pending again.
	rs, err := p.Retry(ctx, "r")
	if err != nil || rs.Run != 1 || rs.Reset != 1 || rs.Batches != 2 || rs.Enqueued != 0 || rs.Live != 2 || rs.Status.Pending != 6 {
		t.Fatalf("Retry = %+v, %v", rs, err)
	}
	// A batch task deleted (as in the dashboard) is enqueued again.
	if err := insp.DeleteTask("wxacode-wx0123456789abcdef-high", "r/b1"); err != nil {
		t.Fatal(err)
	}
	rs, err = p.Retry(ctx, "r")
	if err != nil || rs.Run != 2 || rs.Enqueued != 1 || rs.Live != 1 {
		t.Fatalf("second Retry = %+v, %v", rs, err)
	}
	if _, err := insp.GetTaskInfo("wxacode-wx0123456789abcdef-high", "r/b1/r2"); err != nil {
		t.Fatalf("retry task: %v", err)
	}
	if _, err := p.Retry(ctx, "nope"); !errors.Is(err, campaign.ErrNotFound) {
		t.Fatalf("Retry of unknown campaign: %v", err)
	}
}

func ExampleRead() {
	sc, err := Read(strings.NewReader("sku1\r\nsku2\n\nsku1\nid=7&from=poster\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sc.List, "duplicates:", sc.Duplicates)

	_, err = Read(strings.NewReader("ok\n50%off\n"))
	fmt.Println(err)
	// Output:
	// [sku1 sku2 id=7&from=poster] duplicates: 1
	// 1 invalid scene(s), nothing enqueued:
	// 2: scene has "%" at character 3: allowed are 0-9 A-Z a-z and !#$&'()*+,/:;=?@-._~
}
