package smtpd

import (
	"context"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// TestClosedConnectionsDoNotCount: a client that has quit no longer counts
// against MaxPerIP while its session record waits for the store, so a
// client that opens one connection per message is not refused for
// connections it has already closed.
func TestClosedConnectionsDoNotCount(t *testing.T) {
	release := make(chan struct{})
	waiting := make(chan struct{}, 10)
	var recs record.Collector
	h := start(t, func(c *Config) {
		c.Limits.MaxPerIP = 2
		c.Handler = record.HandlerFunc(func(ctx context.Context, r *record.Record) error {
			if r.Type == record.TypeSession {
				waiting <- struct{}{}
				<-release
			}
			return recs.Handle(ctx, r)
		})
	})
	defer close(release)
	for i := 0; i < 4; i++ {
		c := h.dial()
		c.Cmd("EHLO client.example", 250)
		c.Cmd("QUIT", 221)
		select {
		case <-waiting:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d: no session record", i)
		}
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("Active() = %d with every client gone, want 0", n)
	}
}

// TestFreeBuffersBounded: the buffers kept between connections stay within
// maxFreeBufs sets and never hold a large message's content buffer.
func TestFreeBuffersBounded(t *testing.T) {
	s := New(Config{}, &fakeBackend{})
	var sets []*connBufs
	for i := 0; i < 2*maxFreeBufs; i++ {
		b := s.getBufs(nil)
		b.data.Grow(maxFreeData * 2)
		b.data.WriteString("content")
		sets = append(sets, b)
	}
	for _, b := range sets {
		s.putBufs(b)
	}
	if len(s.free) != maxFreeBufs {
		t.Fatalf("%d sets kept, want %d", len(s.free), maxFreeBufs)
	}
	for _, b := range s.free {
		if b.data.Cap() > maxFreeData || b.data.Len() != 0 {
			t.Errorf("kept a content buffer of cap %d, len %d", b.data.Cap(), b.data.Len())
		}
	}
	// A connection that dropped its content buffer (after a large
	// message) hands back a set that is still usable.
	b := s.getBufs(nil)
	b.data = nil
	s.putBufs(b)
	if got := s.getBufs(nil); got.data == nil {
		t.Error("a reused set has no content buffer")
	}
}
