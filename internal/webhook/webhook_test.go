package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/wechat"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// One event per retry run, whoever sees the end; the payload names the
// campaign, not its URL; a delivery is signed, fails on a non-2xx answer,
// and is given up after a day.
func TestNotifyAndDeliver(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := t.Context()
	store := campaign.NewStore(r.Client, "")

	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
		answer = http.StatusInternalServerError
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, b)
		sigs = append(sigs, req.Header.Get(HeaderSignature))
		w.WriteHeader(answer)
	}))
	t.Cleanup(recv.Close)
	hook := recv.URL + "/hook?token=never-in-a-payload"

	c, _, err := store.Create(ctx, campaign.Campaign{
		Name: "spring", AppID: "wx00000000000000a1", Options: wechat.CodeOptions{Page: "p"},
		Queue: "wxacode-wx00000000000000a1-default", BatchSize: 10, Webhook: hook,
	}, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(ctx, "spring"); got.Webhook != hook {
		t.Fatalf("stored webhook %q, want %q", got.Webhook, hook)
	}
	q := asynq.NewClientFromRedisClient(r.Client)
	n := Notifier{Campaigns: store, Queue: q}
	for range 3 {
		if err := n.Done(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	tasks, err := insp.ListPendingTasks("wxacode-wx00000000000000a1-default")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].ID != "spring/done/r0" || tasks[0].Type != TaskType {
		t.Fatalf("pending tasks %+v, want one spring/done/r0", tasks)
	}
	if strings.Contains(string(tasks[0].Payload), "never-in-a-payload") {
		t.Error("the webhook URL (and its token) is in the task payload")
	}

	d, err := NewDeliverer(Config{Campaigns: store, Secret: []byte("k"), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	task := asynq.NewTask(TaskType, tasks[0].Payload)
	if err := d.ProcessTask(ctx, task); err == nil || errors.Is(err, asynq.SkipRetry) || strings.Contains(err.Error(), "never-in-a-payload") {
		t.Errorf("delivery answered 500: %v, want an error to retry that does not show the URL's query", err)
	}
	mu.Lock()
	answer = http.StatusNoContent
	mu.Unlock()
	if err := d.ProcessTask(ctx, task); err != nil {
		t.Errorf("delivery answered 204: %v, want delivered", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || string(bodies[0]) != string(bodies[1]) || sigs[0] != Sign([]byte("k"), bodies[0]) {
		t.Fatalf("deliveries %q signed %q: want the same signed body twice", bodies, sigs)
	}
	var ev struct {
		Event    string `json:"event"`
		Campaign string `json:"campaign"`
		Total    int64  `json:"total"`
	}
	if err := json.Unmarshal(bodies[0], &ev); err != nil || ev.Event != EventDone || ev.Campaign != "spring" || ev.Total != 1 {
		t.Errorf("body %s: want the status with event %s", bodies[0], EventDone)
	}

	// A day of refusals: given up.
	var old Task
	_ = json.Unmarshal(tasks[0].Payload, &old)
	old.Created = time.Now().Add(-For - time.Minute)
	payload, _ := json.Marshal(old)
	answer = http.StatusBadGateway
	mu.Unlock()
	err = d.ProcessTask(ctx, asynq.NewTask(TaskType, payload))
	mu.Lock()
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("a delivery refused for a day: %v, want SkipRetry", err)
	}
}

func TestRetryDelay(t *testing.T) {
	var total time.Duration
	for n := 0; n < 40; n++ {
		d := RetryDelay(n, nil, nil)
		if d < 2*time.Second || d > time.Hour {
			t.Errorf("RetryDelay(%d) = %s, want 2s to 1h", n, d)
		}
		total += d
	}
	if total < For {
		t.Errorf("40 retries span %s, want at least a day", total)
	}
}
