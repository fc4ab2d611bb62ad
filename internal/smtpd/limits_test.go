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
