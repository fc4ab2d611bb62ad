package capture

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// BulkHandler is a record handler that can also store several records in
// one transaction (store.Store).
type BulkHandler interface {
	record.Handler
	Insert(ctx context.Context, recs []*record.Record) error
}

// DefaultSessionDelay is how long SessionBatcher holds a session record
// when no message record comes to carry it.
const DefaultSessionDelay = 100 * time.Millisecond

// SessionBatcher hands capture mode's session records to the store with
// the next message record (one write to the store's acknowledgement log,
// or one commit), instead of in a write of their own: a client that sends
// one message per connection otherwise pays two per message, the second
// one competing with the next message's. A session record that no message
// record follows within Delay is stored alone. Handle returns, for every
// record, only once it is stored (or failed), so handlers after it in a
// record.Multi still see only stored
// records; nobody waits for a session record but the goroutine of its
// closed connection. Other records pass straight through.
type SessionBatcher struct {
	st    BulkHandler
	delay time.Duration

	mu      sync.Mutex
	pending []*pendingSession
	timer   *time.Timer
}

type pendingSession struct {
	r    *record.Record
	done chan error // buffered, 1
}

var _ record.Handler = (*SessionBatcher)(nil)

// NewSessionBatcher returns a SessionBatcher in front of st; delay <= 0
// means DefaultSessionDelay.
func NewSessionBatcher(st BulkHandler, delay time.Duration) *SessionBatcher {
	if delay <= 0 {
		delay = DefaultSessionDelay
	}
	return &SessionBatcher{st: st, delay: delay}
}

// Handle stores r; see SessionBatcher.
func (b *SessionBatcher) Handle(ctx context.Context, r *record.Record) error {
	if r.Source != record.SourceCapture {
		return b.st.Handle(ctx, r)
	}
	if r.Type != record.TypeSession {
		p := b.take()
		if len(p) == 0 {
			return b.st.Handle(ctx, r)
		}
		return b.insert(ctx, p, r)
	}
	p := &pendingSession{r: r, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, p)
	if b.timer == nil {
		b.timer = time.AfterFunc(b.delay, b.Flush)
	}
	b.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("capture: waiting for the session record's commit: %w", ctx.Err())
	}
}

// Flush stores the session records held now, at once.
func (b *SessionBatcher) Flush() {
	if p := b.take(); len(p) > 0 {
		b.insert(context.Background(), p, nil)
	}
}

func (b *SessionBatcher) take() []*pendingSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	b.pending = nil
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return p
}

// insert stores the held session records, and r when given, in one
// transaction.
func (b *SessionBatcher) insert(ctx context.Context, p []*pendingSession, r *record.Record) error {
	recs := make([]*record.Record, 0, len(p)+1)
	for _, s := range p {
		recs = append(recs, s.r)
	}
	if r != nil {
		recs = append(recs, r)
	}
	err := b.st.Insert(ctx, recs)
	for _, s := range p {
		s.done <- err
	}
	return err
}
