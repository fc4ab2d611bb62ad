package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/record"
)

// scannedStats is Stats computed from the records alone, without roll-ups.
func scannedStats(t *testing.T, s *Store, from, to time.Time, bucket time.Duration) *Stats {
	t.Helper()
	a, err := s.statsScanned(context.Background(), unixNano(from), unixNano(to), int64(bucket))
	if err != nil {
		t.Fatal(err)
	}
	return a.stats(from.UTC(), to.UTC(), bucket)
}

type statsRange struct {
	from, to time.Time
	bucket   time.Duration
}

func rollupRanges() []statsRange {
	return []statsRange{
		{t0.Add(2 * time.Hour), t0.Add(26 * time.Hour), time.Hour},                                // whole hours
		{t0.Add(90 * time.Minute), t0.Add(30*time.Hour + 17*time.Minute), 5 * time.Minute},        // ragged ends
		{t0, t0.Add(72 * time.Hour), 3 * time.Hour},                                               // everything
		{t0.Add(25*time.Hour + 59*time.Minute), t0.Add(27*time.Hour + time.Minute), time.Minute},  // one whole hour
		{t0.Add(3*time.Hour + 10*time.Minute), t0.Add(3*time.Hour + 50*time.Minute), time.Minute}, // inside an hour
		{t0.Add(time.Hour + 30*time.Second), t0.Add(40 * time.Hour), 90 * time.Second},            // scanned whole
		{t0.Add(-24 * time.Hour), t0.Add(96 * time.Hour), 24 * time.Hour},                         // whole days
		{t0.Add(5 * time.Hour), t0.Add(53 * time.Hour), 2 * time.Hour},                            // a whole day and hours
	}
}

// rollAllDays sums the hourly roll-ups of every day, the newest too, into
// day rows, as the writer does for days two days old; it returns how many.
func rollAllDays(t *testing.T, s *Store) int {
	t.Helper()
	old := rollDayAfter
	rollDayAfter = -1 << 20
	defer func() { rollDayAfter = old }()
	return repeatInWriter(t, s, rollDay)
}

// checkRollups checks Stats as the roll-ups stand, then again once every
// day has a day row.
func checkRollups(t *testing.T, s *Store, when string) {
	t.Helper()
	checkRollupsNow(t, s, when)
	rollAllDays(t, s)
	var days int
	if err := s.r.QueryRow(`SELECT count(*) FROM rollup_days`).Scan(&days); err != nil || days == 0 {
		t.Fatalf("%s: no day rows (%v)", when, err)
	}
	checkRollupsNow(t, s, when+", with day rows")
}

func checkRollupsNow(t *testing.T, s *Store, when string) {
	t.Helper()
	for _, r := range rollupRanges() {
		got, err := s.Stats(context.Background(), r.from, r.to, r.bucket)
		if err != nil {
			t.Fatalf("%s: Stats: %v", when, err)
		}
		want := scannedStats(t, s, r.from, r.to, r.bucket)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Stats(%v, %v, %v) from roll-ups differs from a scan of the records:\n got  %+v\n want %+v",
				when, r.from, r.to, r.bucket, summary(got), summary(want))
		}
	}
}

func summary(st *Stats) string {
	return fmt.Sprintf("messages=%d sessions=%d byStatus=%v temp=%d perm=%d tls=%v auth=%d lat=%+v codes=%v senders=%v rcpts=%v",
		st.Messages, st.Sessions, st.ByStatus, st.Temporary, st.Permanent, st.TLS, st.AuthFailures, st.Latency,
		st.ReplyCodes, st.TopSenders, st.TopRecipients)
}

// The dashboard's aggregates from roll-ups equal those scanned from the
// records, after inserts (bulk and one by one), deletions of every kind,
// a reopen, and a rebuild of the roll-ups of a store that had none.
func TestRollupsMatchRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smtplog.db")
	s := openTest(t, path, Options{})
	ctx := context.Background()
	fill(t, s, corpus())
	// One by one, as the relay writes: many small roll-up rows per hour.
	g := gen.New(gen.Config{Seed: 11, Start: t0.Add(20 * time.Hour), Span: 3 * time.Hour, N: 400, Domains: 20, Senders: 50, Recipients: 100})
	for i := 0; i < 400; i++ {
		if err := s.Handle(ctx, g.Next()); err != nil {
			t.Fatal(err)
		}
	}
	checkRollups(t, s, "after inserts")

	var maxRows int
	if err := s.r.QueryRow(`SELECT max(n) FROM (SELECT count(*) AS n FROM rollups GROUP BY hour)`).Scan(&maxRows); err != nil {
		t.Fatal(err)
	}
	// 400 single-record commits over 3 hours: unmerged, an hour would
	// hold over 130 rows.
	if maxRows > 64 {
		t.Errorf("an hour has %d roll-up rows: they are not being merged", maxRows)
	}

	// Retention at a cut inside an hour, and deletions of scattered records.
	if _, err := s.Prune(ctx, t0.Add(13*time.Hour+20*time.Minute), 0); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, s, "after prune")
	err := s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range []string{
			`CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY)`,
			`DELETE FROM doomed`,
			`INSERT INTO doomed SELECT id FROM records WHERE id % 7 = 3`,
			`DELETE FROM rcpts WHERE record_id IN (SELECT id FROM doomed)`,
			`DELETE FROM records WHERE id IN (SELECT id FROM doomed)`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkRollups(t, s, "after scattered deletes")
	var gone int
	if err := s.r.QueryRow(`SELECT count(*) FROM rollup_gone`).Scan(&gone); err != nil || gone != 0 {
		t.Errorf("rollup_gone holds %d rows after commit (%v)", gone, err)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	checkRollups(t, s, "after reopen")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A store written before roll-ups existed has none: they are rebuilt.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM rollups`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openTest(t, path, Options{})
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM rollups`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("roll-ups not rebuilt: %d rows, %v", n, err)
	}
	checkRollups(t, s, "after rebuild")
}

// Capture retention deletes through its own path; the roll-ups follow.
func TestRollupsFollowCaptureRetention(t *testing.T) {
	s := openTest(t, "", Options{})
	c, err := NewCapture(s, CaptureOptions{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 12; i++ {
		qid := fmt.Sprintf("Q%02d", i)
		if err := c.Park(qid, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		r := &record.Record{Type: record.TypeMessage, Timestamp: t0.Add(time.Duration(i) * 7 * time.Minute),
			Source: record.SourceCapture, QueueID: qid, MailFrom: record.Ptr("a@b.example"),
			RcptTo: []string{fmt.Sprintf("r%d@c.example", i%3)}, Status: record.StatusAccepted, ReplyCode: 250, LatencyMS: float64(i + 1)}
		if err := s.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(ctx, t0, t0.Add(2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := scannedStats(t, s, t0, t0.Add(2*time.Hour), time.Hour)
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("roll-ups %s\nscan %s", summary(st), summary(want))
	}
	if st.Messages != 5 {
		t.Errorf("dashboard counts %d messages, capture keeps 5", st.Messages)
	}
}

// A damaged roll-up row is an error that names it, never a panic.
func TestRollupDecodeDamaged(t *testing.T) {
	a := newAgg()
	a.record(3, "message", "sent", 250, true, 12.5, "", "x@y.example", true, 1)
	a.rcpts["r@y.example"] = 2
	good := a.encode()
	for i := 0; i < len(good); i++ {
		if err := newAgg().decodeInto(good[:i], nil); err == nil {
			t.Errorf("a row cut to %d of %d bytes decoded without error", i, len(good))
		}
	}
	if err := newAgg().decodeInto(append(append([]byte{}, good...), 0), nil); err == nil {
		t.Error("trailing bytes accepted")
	}
	b := newAgg()
	if err := b.decodeInto(good, nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip: %+v, want %+v", b, a)
	}
}

func FuzzRollupDecode(f *testing.F) {
	a := newAgg()
	a.record(59, "message", "deferred", 451, false, 3, "", "", true, 1)
	f.Add(a.encode())
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = newAgg().decodeInto(b, nil)
	})
}

func TestLatencyKey(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{1, 1}, {1.0049, 1}, {1.239, 1.23}, {0.0123456, 0.0123}, {999.9, 999}, {1000, 1000}, {1234.5, 1230}, {0.1, 0.1}, {36.04, 36},
	} {
		if got := latencyKey(c.in); math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("latencyKey(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
