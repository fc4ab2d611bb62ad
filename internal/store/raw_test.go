package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/smtplog/smtplog/internal/record"
)

func openCapture(t testing.TB, s *Store, opts CaptureOptions) *Capture {
	t.Helper()
	c, err := NewCapture(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// captured stores a message as capture mode does: its bytes parked, then
// its message record (committing both) and a session record.
func captured(t testing.TB, s *Store, c *Capture, qid string, at time.Time, body []byte) {
	t.Helper()
	ctx := context.Background()
	if err := c.Park(qid, body); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*record.Record{
		{Type: record.TypeMessage, Timestamp: at, Source: record.SourceCapture, SessionID: "S-" + qid, QueueID: qid,
			MailFrom: record.Ptr("app@dev.example"), RcptTo: []string{"u@example.com"}, Status: record.StatusAccepted, Subject: "m " + qid},
		{Type: record.TypeSession, Timestamp: at, Source: record.SourceCapture, SessionID: "S-" + qid},
	} {
		if err := s.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

func countRows(t testing.TB, s *Store, table string) int {
	t.Helper()
	// A reader of the store's own: it waits for the records acknowledged.
	if err := s.caughtUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRawRoundTripExactBytes(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		t.Run(fmt.Sprintf("path=%q", path), func(t *testing.T) {
			s := openTest(t, path, Options{})
			c := openCapture(t, s, CaptureOptions{})
			big := make([]byte, 3<<20)
			rand.Read(big)
			bodies := map[string][]byte{
				"EMPTY": {},
				"TEXT":  []byte("Subject: hi\r\n\r\nbare LF\nand CR\r and NUL \x00 and UTF-8 ✓\r\n"),
				"BIG":   big,
			}
			for q, b := range bodies {
				if err := c.Put(context.Background(), q, b); err != nil {
					t.Fatal(err)
				}
			}
			for q, b := range bodies {
				m, got, err := c.Get(context.Background(), q)
				if err != nil || !bytes.Equal(got, b) || m.Size != int64(len(b)) || m.QueueID != q || m.Read || m.Tags != nil {
					t.Errorf("%s: %+v %d bytes %v", q, m, len(got), err)
				}
			}
			if _, _, err := c.Get(context.Background(), "NOPE"); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown: %v", err)
			}
		})
	}
}

func TestRawRetentionNewestN(t *testing.T) {
	s := openTest(t, "", Options{})
	c := openCapture(t, s, CaptureOptions{Keep: 5})
	for i := range 12 {
		captured(t, s, c, fmt.Sprintf("Q%02d", i), t0.Add(time.Duration(i)*time.Second), []byte(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)))
	}
	ms, total, unread, err := c.List(context.Background(), 0, 100)
	if err != nil || total != 5 || unread != 5 || len(ms) != 5 || ms[0].QueueID != "Q11" || ms[4].QueueID != "Q07" {
		t.Fatalf("kept %+v total %d unread %d %v", ms, total, unread, err)
	}
	// The last put deleted Q06 and older; Q06's record arrived after its
	// bytes but before Q11's put, so it went too.
	if n := countRows(t, s, "records WHERE type = 'message'"); n != 5 {
		t.Errorf("%d message records, want 5", n)
	}
	if n := countRows(t, s, "records WHERE type = 'session'"); n != 5 {
		t.Errorf("%d session records, want 5", n)
	}
	if n := countRows(t, s, "rcpts"); n != 5 {
		t.Errorf("%d rcpts rows, want 5", n)
	}
	if _, err := s.ByQueueID(context.Background(), "Q00"); err == nil {
		if items, _ := s.ByQueueID(context.Background(), "Q00"); len(items) > 0 {
			t.Errorf("record of Q00 kept")
		}
	}
}

// With Keep of 32, retention lets two more arrive (the slack, Keep/16)
// and then deletes the oldest down to 32, records with them.
func TestRawRetentionSlack(t *testing.T) {
	s := openTest(t, "", Options{})
	c := openCapture(t, s, CaptureOptions{Keep: 32})
	for i := range 34 {
		captured(t, s, c, fmt.Sprintf("Q%02d", i), t0.Add(time.Duration(i)*time.Second), []byte("x"))
	}
	if n := countRows(t, s, "raw_messages"); n != 34 {
		t.Fatalf("%d kept within the slack, want 34", n)
	}
	captured(t, s, c, "Q34", t0.Add(34*time.Second), []byte("x"))
	ms, total, _, err := c.List(context.Background(), 0, 100)
	if err != nil || total != 32 || ms[0].QueueID != "Q34" || ms[31].QueueID != "Q03" {
		t.Fatalf("kept %d (%v), newest %s oldest %s", total, err, ms[0].QueueID, ms[len(ms)-1].QueueID)
	}
	// Q00 to Q02 went with their records and sessions.
	if n := countRows(t, s, "records WHERE type = 'message'"); n != 32 {
		t.Errorf("%d message records, want 32", n)
	}
	if n := countRows(t, s, "records WHERE type = 'session'"); n != 32 {
		t.Errorf("%d session records, want 32", n)
	}
}

func TestRawRetentionMaxAge(t *testing.T) {
	now := t0
	s := openTest(t, "", Options{Now: func() time.Time { return now }})
	c := openCapture(t, s, CaptureOptions{Keep: -1, MaxAge: time.Hour})
	for i := range 4 {
		now = t0.Add(time.Duration(i) * 40 * time.Minute)
		captured(t, s, c, fmt.Sprintf("A%d", i), now, []byte("x"))
	}
	// At 120 min, A0 (0) and A1 (40 min) are older than an hour.
	ms, total, _, err := c.List(context.Background(), 0, 10)
	if err != nil || total != 2 || ms[0].QueueID != "A3" || ms[1].QueueID != "A2" {
		t.Fatalf("kept %+v %v", ms, err)
	}
	if n := countRows(t, s, "records WHERE type = 'message'"); n != 2 {
		t.Errorf("%d message records, want 2", n)
	}
}

func TestRawFollowsPrune(t *testing.T) {
	s := openTest(t, "", Options{})
	c := openCapture(t, s, CaptureOptions{})
	captured(t, s, c, "OLD", t0, []byte("old"))
	captured(t, s, c, "NEW", t0.Add(time.Hour), []byte("new"))
	if _, err := s.Prune(context.Background(), t0.Add(time.Minute), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "OLD"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bytes of a pruned record kept: %v", err)
	}
	if _, _, err := c.Get(context.Background(), "NEW"); err != nil {
		t.Error(err)
	}
}

func TestRawDeleteReadTags(t *testing.T) {
	s := openTest(t, ":memory:", Options{})
	c := openCapture(t, s, CaptureOptions{})
	ctx := context.Background()
	for i := range 5 {
		captured(t, s, c, fmt.Sprintf("D%d", i), t0.Add(time.Duration(i)*time.Minute), []byte("x"))
	}
	if n, err := c.Delete(ctx, "D1", "D9"); err != nil || n != 1 {
		t.Fatalf("delete: %d %v", n, err)
	}
	if items, _ := s.ByQueueID(ctx, "D1"); len(items) != 0 {
		t.Errorf("record of a deleted message kept")
	}
	if n, err := c.SetRead(ctx, true, "D2", "D3"); err != nil || n != 2 {
		t.Fatalf("read: %d %v", n, err)
	}
	tags, err := c.SetTags(ctx, "D2", []string{" urgent ", "", "urgent", "b"})
	if err != nil || len(tags) != 2 || tags[0] != "urgent" {
		t.Fatalf("tags %q %v", tags, err)
	}
	if _, err := c.SetTags(ctx, "NOPE", []string{"x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("tags of unknown: %v", err)
	}
	meta, err := c.Meta(ctx, []string{"D2", "D4", "D1"})
	if err != nil || len(meta) != 2 || !meta["D2"].Read || meta["D4"].Read || len(meta["D2"].Tags) != 2 {
		t.Fatalf("meta %+v %v", meta, err)
	}
	all, err := c.Tags(ctx)
	if err != nil || len(all) != 2 || all[0] != "b" {
		t.Errorf("all tags %q %v", all, err)
	}
	if q, err := c.Latest(ctx); err != nil || q != "D4" {
		t.Errorf("latest %q %v", q, err)
	}
	_, total, unread, _ := c.List(ctx, 0, 0)
	if total != 4 || unread != 2 {
		t.Errorf("total %d unread %d", total, unread)
	}
	if n, err := c.DeleteAll(ctx); err != nil || n != 4 {
		t.Fatalf("delete all: %d %v", n, err)
	}
	if n := countRows(t, s, "records"); n != 0 {
		t.Errorf("%d records left", n)
	}
}

// TestRawConcurrentPuts: many callers share commits, none is lost.
func TestRawConcurrentPuts(t *testing.T) {
	s := openTest(t, "", Options{})
	c := openCapture(t, s, CaptureOptions{Keep: -1})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 20 {
		wg.Go(func() {
			for i := range 20 {
				q := fmt.Sprintf("C%02d-%02d", g, i)
				errs <- c.Put(context.Background(), q, []byte("Subject: "+q+"\r\n\r\n"+q+"\r\n"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, s, "raw_messages"); n != 400 {
		t.Fatalf("%d rows", n)
	}
	_, b, err := c.Get(context.Background(), "C07-13")
	if err != nil || string(b) != "Subject: C07-13\r\n\r\nC07-13\r\n" {
		t.Errorf("%q %v", b, err)
	}
}

// BenchmarkCompress compares the codecs on a 5 KiB message (the bench's
// size): the capture path compresses every message on the client's
// goroutine.
func BenchmarkCompress(b *testing.B) {
	msg := bytes.Repeat([]byte("Subject: benchmark message\r\nX-Line: the quick brown fox jumps over 0123456789\r\n"), 70)[:5120]
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		b.Run("zstd-"+lvl.String(), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			var out []byte
			for b.Loop() {
				out = enc.EncodeAll(msg, out[:0])
			}
			b.ReportMetric(float64(len(out)), "out-bytes")
		})
		enc.Close()
	}
	b.Run("gzip-stdlib", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		benchGzip(b, msg)
	})
}

func benchGzip(b *testing.B, msg []byte) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	for b.Loop() {
		buf.Reset()
		zw.Reset(&buf)
		zw.Write(msg)
		zw.Close()
	}
	b.ReportMetric(float64(buf.Len()), "out-bytes")
}
