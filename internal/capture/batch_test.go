package capture_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/record"
)

// calls records how records reached the store: one entry per Handle
// (one record) or Insert (several, one transaction).
type calls struct {
	mu  sync.Mutex
	got [][]string
}

func (c *calls) add(recs ...*record.Record) {
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.SessionID+"/"+string(r.Type))
	}
	c.mu.Lock()
	c.got = append(c.got, ids)
	c.mu.Unlock()
}

func (c *calls) Handle(_ context.Context, r *record.Record) error { c.add(r); return nil }
func (c *calls) Insert(_ context.Context, recs []*record.Record) error {
	c.add(recs...)
	return nil
}

func (c *calls) snapshot() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.got...)
}

func rec(t record.Type, sess string, src record.Source) *record.Record {
	return &record.Record{Type: t, SessionID: sess, Source: src}
}

func TestSessionBatcher(t *testing.T) {
	st := &calls{}
	b := capture.NewSessionBatcher(st, time.Hour)
	ctx := context.Background()

	// A session record waits for the next message record and commits with it.
	errc := make(chan error, 1)
	go func() { errc <- b.Handle(ctx, rec(record.TypeSession, "S1", record.SourceCapture)) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("session record acknowledged before any commit: %v", err)
	default:
	}
	if got := st.snapshot(); len(got) != 0 {
		t.Fatalf("stored before a message came: %v", got)
	}
	if err := b.Handle(ctx, rec(record.TypeMessage, "S2", record.SourceCapture)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Nothing held: a message record goes alone; other sources pass.
	if err := b.Handle(ctx, rec(record.TypeMessage, "S3", record.SourceCapture)); err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(ctx, rec(record.TypeSession, "R1", record.SourceProxy)); err != nil {
		t.Fatal(err)
	}
	// Flush stores what is held without a message.
	go func() { errc <- b.Handle(ctx, rec(record.TypeSession, "S4", record.SourceCapture)) }()
	time.Sleep(20 * time.Millisecond)
	b.Flush()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"S1/session", "S2/message"}, {"S3/message"}, {"R1/session"}, {"S4/session"}}
	got := st.snapshot()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}
}

// Without a message to carry it, a session record commits after the delay.
func TestSessionBatcherDelay(t *testing.T) {
	st := &calls{}
	b := capture.NewSessionBatcher(st, 10*time.Millisecond)
	if err := b.Handle(context.Background(), rec(record.TypeSession, "S1", record.SourceCapture)); err != nil {
		t.Fatal(err)
	}
	if got := st.snapshot(); len(got) != 1 || len(got[0]) != 1 || got[0][0] != "S1/session" {
		t.Fatalf("got %v", got)
	}
}
