package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Parked bytes commit in the transaction of their message record, with
// capture retention, and not before.
func TestParkCommitsWithRecord(t *testing.T) {
	s := openTest(t, "", Options{})
	c := openCapture(t, s, CaptureOptions{Keep: 2})
	ctx := context.Background()
	at := time.Now().UTC()
	for i := range 4 {
		qid := fmt.Sprintf("Q%d", i)
		body := []byte("Subject: " + qid + "\r\n\r\nbody " + qid + "\r\n")
		if err := c.Park(qid, body); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, s, "raw_messages"); n != min(i, 2) {
			t.Fatalf("after Park %d: %d raw rows before the record", i, n)
		}
		// A session record with the queue ID does not take the bytes.
		if err := s.Handle(ctx, &record.Record{Type: record.TypeSession, Timestamp: at, Source: record.SourceCapture,
			SessionID: "S-" + qid, QueueID: qid}); err != nil {
			t.Fatal(err)
		}
		if err := s.Handle(ctx, &record.Record{Type: record.TypeMessage, Timestamp: at, Source: record.SourceCapture,
			SessionID: "S-" + qid, QueueID: qid, Status: record.StatusAccepted}); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Get(ctx, qid)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Get %s: %q, %v", qid, got, err)
		}
	}
	if n := countRows(t, s, "raw_messages"); n != 2 {
		t.Fatalf("%d raw rows, want 2 after retention", n)
	}
	var msgs int
	if err := s.r.QueryRow(`SELECT count(*) FROM records WHERE type = 'message'`).Scan(&msgs); err != nil {
		t.Fatal(err)
	}
	if msgs != 2 {
		t.Fatalf("%d message records, want 2 after retention", msgs)
	}
	if s.parked.cnt.Load() != 0 {
		t.Fatalf("%d messages still parked", s.parked.cnt.Load())
	}
}
