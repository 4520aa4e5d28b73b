package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/wxacode/wxacode/storage"
)

// probeKey is the key a circuit looks up to learn whether the store
// answers; it is never written, so "not found" is the healthy answer.
const probeKey = "wxacode-probe/store.png"

// circuit keeps a worker from paying for calls whose images cannot be
// stored. A failed put or look-up opens it; while it is open no scene takes
// a slot. Scenes that wait on it probe the store (a Stat) every interval,
// and scenes holding an image put it again at the same pace; the first
// answer from the store closes it. It needs no goroutine of its own.
type circuit struct {
	store    Store
	interval time.Duration

	mu      sync.Mutex
	open    bool
	closed  chan struct{} // closed while the circuit is closed
	probing bool
	opened  time.Time
}

func newCircuit(store Store, interval time.Duration) *circuit {
	c := &circuit{store: store, interval: interval, closed: make(chan struct{})}
	close(c.closed)
	return c
}

// trip opens the circuit; it reports whether it was closed.
func (c *circuit) trip() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open {
		return false
	}
	c.open = true
	c.opened = time.Now()
	c.closed = make(chan struct{})
	return true
}

// reset closes the circuit; it returns how long it was open (0 when it
// was not).
func (c *circuit) reset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return 0
	}
	c.open = false
	close(c.closed)
	return time.Since(c.opened)
}

// isOpen reports whether calls are held.
func (c *circuit) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// wait returns true once the circuit is closed, false if ctx ended or stop
// closed first. While it waits, one waiter at a time probes the store.
func (c *circuit) wait(ctx context.Context, stop <-chan struct{}) bool {
	for {
		c.mu.Lock()
		closed := c.closed
		probe := c.open && !c.probing
		if probe {
			c.probing = true
		}
		c.mu.Unlock()
		if probe {
			ok := c.probe(ctx, stop)
			c.mu.Lock()
			c.probing = false
			c.mu.Unlock()
			if !ok {
				return false
			}
			continue
		}
		select {
		case <-closed:
			return true
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-time.After(c.interval):
			// The prober may have left: take its turn.
		}
	}
}

// probe asks the store every interval until it answers (then closes the
// circuit and returns true) or ctx ends or stop closes.
func (c *circuit) probe(ctx context.Context, stop <-chan struct{}) bool {
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		select {
		case <-closed:
			return true
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-time.After(c.interval):
		}
		pctx, cancel := context.WithTimeout(ctx, max(c.interval, time.Second))
		_, err := c.store.Stat(pctx, probeKey)
		cancel()
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			c.reset()
			return true
		}
	}
}
