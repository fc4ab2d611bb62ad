package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

// Reads see every acknowledged record with its derived rows, however
// recently it was acknowledged: by every lookup path, and in the
// dashboard's aggregates.
func TestReadYourWritesDerivedRows(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		t.Run(fmt.Sprintf("path=%q", path), func(t *testing.T) {
			s := openTest(t, path, Options{})
			ctx := context.Background()
			g := gen.New(gen.Config{Seed: 5, Start: t0, Span: time.Hour})
			for i := 0; i < 40; i++ {
				r := g.Next()
				r.Type = record.TypeMessage
				r.MessageID = fmt.Sprintf("<ryw%d@test>", i)
				r.Subject = fmt.Sprintf("ryw%dword", i)
				r.RcptTo = []string{fmt.Sprintf("ryw%d@rcpt.example", i)}
				if err := s.Handle(ctx, r); err != nil {
					t.Fatal(err)
				}
				// No wait: the derived rows may not be written yet when
				// Handle returns, and each read must still find them.
				for _, q := range []string{
					fmt.Sprintf("msgid:ryw%d@test", i),
					fmt.Sprintf("ryw%dword", i),
					fmt.Sprintf("to:ryw%d@rcpt.example", i),
				} {
					if got := searchAll(t, s, query.MustParse(q, t0), 10); len(got) != 1 {
						t.Fatalf("record %d: %q finds %d records right after Handle, want 1", i, q, len(got))
					}
				}
				items, err := s.ByMessageID(ctx, r.MessageID)
				if err != nil || len(items) != 1 {
					t.Fatalf("record %d: ByMessageID: %d items, %v", i, len(items), err)
				}
				st, err := s.Stats(ctx, t0.Add(-time.Hour), t0.Add(3*time.Hour), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if st.Messages != int64(i+1) {
					t.Fatalf("Stats right after record %d counts %d messages", i, st.Messages)
				}
			}
		})
	}
}

// A record deleted while others wait for their derived rows: the deletion
// waits for them, and the roll-ups stay exact.
func TestDeleteAfterPendingDerivedRows(t *testing.T) {
	s := openTest(t, "", Options{})
	ctx := context.Background()
	c := openCapture(t, s, CaptureOptions{Keep: 3})
	for i := range 20 {
		captured(t, s, c, fmt.Sprintf("D%02d", i), t0.Add(time.Duration(i)*time.Minute), []byte("Subject: x\r\n\r\nx\r\n"))
	}
	if _, err := s.Prune(ctx, t0.Add(16*time.Minute+30*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "D19"); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, s, "after capture retention, prune and delete")
	if n := countRows(t, s, "records"); n != 4 {
		t.Errorf("%d records, want 4 (D17 and D18 with their sessions)", n)
	}
	if n := countRows(t, s, "rcpts"); n != 2 {
		t.Errorf("%d rcpts rows, want 2", n)
	}
}

const deferChildEnv = "SMTPLOG_STORE_DEFER_CHILD"

// TestDeferKillChild is the child of TestKillBetweenCommits. In mode
// "pending" it writes a given number of records with the writer never
// idle long enough to write their derived rows, makes sure some are still
// waiting, prints "ready" and waits to be killed. In mode "busy" it writes
// until killed, with derived rows written every 16 records, so that the
// kill may land in any of the writer's transactions. Every acknowledged
// record's Message-ID is printed.
func TestDeferKillChild(t *testing.T) {
	env := os.Getenv(deferChildEnv)
	if env == "" {
		t.Skip("run by TestKillBetweenCommits")
	}
	mode, rest, _ := strings.Cut(env, ":")
	nStr, path, _ := strings.Cut(rest, ":")
	n, _ := strconv.Atoi(nStr)
	if mode == "pending" {
		indexIdle = time.Hour
	} else {
		indexBatch, ackBatch = 16, 16
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	perWorker := 0
	if mode == "pending" {
		perWorker = n / 8
	}
	writeAcked(s, 8, perWorker, "defer.test", true)
	if mode == "pending" {
		if s.unindexed.Load()+s.ack.count() == 0 {
			r := gen.New(gen.Config{Seed: 1, Start: t0, Span: time.Hour}).Next()
			r.MessageID = fmt.Sprintf("<%d.last@defer.test>", os.Getpid())
			r.Subject = fmt.Sprintf("zq%dlast", os.Getpid())
			if err := s.Handle(context.Background(), r); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Fprintf(os.Stdout, "ack %s\n", r.MessageID)
		}
		fmt.Fprintf(os.Stdout, "ready %d\n", s.unindexed.Load()+s.ack.count())
		time.Sleep(time.Minute)
	}
	os.Exit(3)
}

// TestKillBetweenCommits kills a writing process with SIGKILL after some
// records committed and before their derived rows did (and, in busy
// rounds, at a random moment of a stream of both kinds of commit), then
// checks on the reopened store that every acknowledged record is
// findable by its derived rows exactly once: one full-text entry, one
// recipient row per recipient, roll-ups equal to a scan of the records.
func TestKillBetweenCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	path := filepath.Join(t.TempDir(), "defer.db")
	allAcked := map[string]bool{}
	for round := 0; round < 4; round++ {
		mode := "pending"
		if round%2 == 1 {
			mode = "busy"
		}
		n := 300 + rand.IntN(700)
		cmd := exec.Command(os.Args[0], "-test.run=^TestDeferKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%s", deferChildEnv, mode, n, path))
		pending := ""
		acked := killChild(t, cmd, allAcked, func(l string, acked int) bool {
			if p, ready := strings.CutPrefix(l, "ready "); ready {
				pending = p + " records"
				return true
			}
			if mode == "busy" && acked >= n {
				pending = "a random number of records"
				return true
			}
			return false
		})
		if mode == "pending" && pending == "0 records" {
			t.Fatalf("round %d: no record was waiting for its derived rows at the kill", round)
		}
		t.Logf("round %d (%s): killed after %d acknowledgements, %s waiting for derived rows", round, mode, acked, pending)
		checkDerivedOnce(t, path, allAcked, fmt.Sprintf("round %d", round))
	}
}

// checkDerivedOnce opens the store at path (twice, so that a second open
// finds nothing left to do) and checks that every record in acked is
// there with its derived rows, each exactly once.
func checkDerivedOnce(t *testing.T, path string, acked map[string]bool, when string) {
	t.Helper()
	ctx := context.Background()
	for open := 0; open < 2; open++ {
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatalf("%s: reopen: %v", when, err)
		}
		var ok string
		if err := s.r.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("%s: integrity_check: %v %q", when, err, ok)
		}
		var mark, maxID int64
		if err := s.r.QueryRow(`SELECT (SELECT upto FROM index_mark), (SELECT coalesce(max(id), 0) FROM records)`).Scan(&mark, &maxID); err != nil {
			t.Fatal(err)
		}
		if mark != maxID {
			t.Errorf("%s: index mark %d after open, newest record %d", when, mark, maxID)
		}
		bad := 0
		for id := range acked {
			items, err := s.ByMessageID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 1 {
				bad++
				if bad <= 5 {
					t.Errorf("%s: acknowledged record %s: found %d times by Message-ID", when, id, len(items))
				}
				continue
			}
			var n int
			if err := s.r.QueryRow(`SELECT count(*) FROM fts WHERE fts MATCH ?`, `"`+items[0].Record.Subject+`"`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				bad++
				if bad <= 5 {
					t.Errorf("%s: acknowledged record %s: %d full-text entries, want 1", when, id, n)
				}
			}
		}
		// Every stored record, acknowledged or not: as many derived rows as
		// it has, no more.
		var wantRcpts, wantCodes, wantText int64
		err = s.Scan(ctx, time.Time{}, time.Time{}, func(r *record.Record) error {
			if len(query.Tokens(query.Text(r))) > 0 {
				wantText++
			}
			wantRcpts += int64(len(query.Recipients(r)))
			wantCodes += int64(len(query.Codes(r)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var rcpts, codes, fts int64
		if err := s.r.QueryRow(`SELECT (SELECT count(*) FROM rcpts), (SELECT count(*) FROM codes), (SELECT count(*) FROM fts)`).
			Scan(&rcpts, &codes, &fts); err != nil {
			t.Fatal(err)
		}
		if rcpts != wantRcpts || codes != wantCodes || fts != wantText {
			t.Errorf("%s: %d rcpts rows (want %d), %d codes rows (want %d), %d full-text entries (want %d)",
				when, rcpts, wantRcpts, codes, wantCodes, fts, wantText)
		}
		checkRollups(t, s, when)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}
