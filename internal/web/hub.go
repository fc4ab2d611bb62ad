package web

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

// Hub fans records out to live subscribers (the SSE stream). It is a
// record.Handler that never blocks and never fails the writer: each
// subscriber has a bounded buffer, and a record that does not fit is
// dropped for that subscriber and counted. Place it after the store in a
// record.Multi so live clients see only records that were stored.
type Hub struct {
	buffer int
	max    int

	mu     sync.RWMutex
	subs   map[*Subscription]struct{}
	closed bool
}

var _ record.Handler = (*Hub)(nil)

// HubOptions configures a Hub. The zero value is usable.
type HubOptions struct {
	Buffer         int // records buffered per subscriber; default 256
	MaxSubscribers int // default 100
}

// ErrTooManySubscribers means the hub is at MaxSubscribers.
var ErrTooManySubscribers = errors.New("web: too many live subscribers")

// ErrHubClosed means the hub was closed.
var ErrHubClosed = errors.New("web: hub closed")

// NewHub returns a hub.
func NewHub(opts HubOptions) *Hub {
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = 100
	}
	return &Hub{buffer: opts.Buffer, max: opts.MaxSubscribers, subs: map[*Subscription]struct{}{}}
}

// Subscription receives the JSON of matching records on C until it is
// closed (by Close or by the hub's Close, which closes C).
type Subscription struct {
	C       <-chan []byte
	c       chan []byte
	q       *query.Query
	hub     *Hub
	dropped atomic.Uint64
	once    sync.Once
}

// Subscribe adds a subscriber for the records matching q (nil: all).
func (h *Hub) Subscribe(q *query.Query) (*Subscription, error) {
	c := make(chan []byte, h.buffer)
	s := &Subscription{C: c, c: c, q: q, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if len(h.subs) >= h.max {
		return nil, ErrTooManySubscribers
	}
	h.subs[s] = struct{}{}
	return s, nil
}

// TakeDropped returns how many records were dropped since the last call.
func (s *Subscription) TakeDropped() uint64 { return s.dropped.Swap(0) }

// Close removes the subscription and closes C.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	s.once.Do(func() {
		delete(s.hub.subs, s)
		close(s.c)
	})
}

// Subscribers returns the number of subscribers.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Handle offers r to every subscriber whose query matches. It encodes r
// once, when at least one subscriber wants it, and never waits.
func (h *Hub) Handle(_ context.Context, r *record.Record) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var data []byte
	for s := range h.subs {
		if s.q != nil && !query.Match(s.q, r) {
			continue
		}
		if data == nil {
			var err error
			if data, err = json.Marshal(r); err != nil {
				return nil // a record the encoder refuses is the store's concern, not the live view's
			}
		}
		select {
		case s.c <- data:
		default:
			s.dropped.Add(1)
		}
	}
	return nil
}

// Close ends every subscription; later Subscribe calls fail.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.closeLocked()
	}
}
