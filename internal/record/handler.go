package record

import (
	"context"
	"errors"
	"sync"
)

// Handler consumes records. Handle must not keep r after it returns unless it
// copies it. An error means the record was not kept; inputs that promised
// delivery (the relay's 250) must then push back instead of losing it.
type Handler interface {
	Handle(ctx context.Context, r *Record) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r *Record) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, r *Record) error { return f(ctx, r) }

// Multi fans a record out to several handlers and joins their errors.
type Multi []Handler

// Handle passes r to every handler.
func (m Multi) Handle(ctx context.Context, r *Record) error {
	var errs []error
	for _, h := range m {
		if err := h.Handle(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Collector keeps every record it is handed; for tests and small tools.
type Collector struct {
	mu      sync.Mutex
	records []Record
	notify  chan struct{}
}

// Handle stores a copy of r.
func (c *Collector) Handle(_ context.Context, r *Record) error {
	c.mu.Lock()
	c.records = append(c.records, *r)
	ch := c.notify
	c.notify = nil
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return nil
}

// Records returns a copy of what was collected so far.
func (c *Collector) Records() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Record, len(c.records))
	copy(out, c.records)
	return out
}

// Changed returns a channel closed at the next Handle call.
func (c *Collector) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notify == nil {
		c.notify = make(chan struct{})
	}
	return c.notify
}
