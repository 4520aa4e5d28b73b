package campaign

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFleetRegistry(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t), context.Background()
	served := func() map[string]int {
		t.Helper()
		m, err := s.Served(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if got := served(); len(got) != 0 {
		t.Fatalf("empty registry serves %v", got)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Register(ctx, "w1", []string{"wx00000000000000a1", "wx00000000000000a2"}, time.Minute))
	must(s.Register(ctx, "w2", []string{"wx00000000000000a2"}, time.Minute))
	must(s.Register(ctx, "short", []string{"wx00000000000000a3"}, 300*time.Millisecond))
	if diff := cmp.Diff(map[string]int{"wx00000000000000a1": 1, "wx00000000000000a2": 2, "wx00000000000000a3": 1}, served()); diff != "" {
		t.Errorf("served (-want +got):\n%s", diff)
	}
	// A worker that stops deregisters; one that dies lapses.
	must(s.Deregister(ctx, "w1", []string{"wx00000000000000a1", "wx00000000000000a2"}))
	time.Sleep(400 * time.Millisecond)
	if diff := cmp.Diff(map[string]int{"wx00000000000000a2": 1}, served()); diff != "" {
		t.Errorf("served after a stop and a lapse (-want +got):\n%s", diff)
	}
	// Renewing keeps an entry: one registration, renewed past its first TTL.
	start := time.Now()
	must(s.Register(ctx, "w3", []string{"wx00000000000000a4"}, 2*time.Second))
	time.Sleep(1500 * time.Millisecond)
	must(s.Register(ctx, "w3", []string{"wx00000000000000a4"}, 2*time.Second))
	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	if served()["wx00000000000000a4"] != 1 {
		t.Errorf("a renewed entry lapsed")
	}
	if err := s.Register(ctx, "w4", []string{"x"}, 0); err == nil {
		t.Error("a registration without TTL was taken")
	}
}

func TestStatusWithWorkers(t *testing.T) {
	t.Parallel()
	c := Campaign{Name: "c", AppID: "wx00000000000000a1", Total: 10, Succeeded: 3, State: StateActive}
	for _, tt := range []struct {
		name     string
		c        Campaign
		served   map[string]int
		unserved bool
	}{
		{"no worker", c, nil, true},
		{"served", c, map[string]int{"wx00000000000000a1": 2}, false},
		{"another app served", c, map[string]int{"wx00000000000000a2": 1}, true},
		{"done", Campaign{Name: "c", AppID: "wx00000000000000a1", Total: 10, Succeeded: 10, State: StateActive}, nil, false},
		{"cancelled", Campaign{Name: "c", AppID: "wx00000000000000a1", Total: 10, State: StateCancelled}, nil, false},
	} {
		st := StatusOf(tt.c, nil).WithWorkers(tt.served)
		if st.Unserved != tt.unserved || st.Workers != tt.served[tt.c.AppID] {
			t.Errorf("%s: workers %d, unserved %v; want %d, %v", tt.name, st.Workers, st.Unserved, tt.served[tt.c.AppID], tt.unserved)
		}
	}
}

func TestQueueFor(t *testing.T) {
	t.Parallel()
	q, err := QueueFor("wx00000000000000a1", "")
	if err != nil || q != "wxacode-wx00000000000000a1-default" {
		t.Errorf(`QueueFor(app, "") = %q, %v`, q, err)
	}
	if _, err := QueueFor("wx00000000000000a1", "urgent"); err == nil {
		t.Error("priority urgent was taken")
	}
	got := Queues("wx00000000000000a1", map[string]int{"high": 5, "low": 0})
	if diff := cmp.Diff(map[string]int{"wxacode-wx00000000000000a1-high": 5}, got); diff != "" {
		t.Errorf("Queues (-want +got):\n%s", diff)
	}
}
