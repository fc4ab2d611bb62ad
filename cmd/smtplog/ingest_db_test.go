package main

import (
	"context"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/testenv"
)

func followDBArgs(dir string) []string {
	return []string{"ingest", "--follow", "--progress", "never", "--checkpoint-dir", filepath.Join(dir, "state"),
		"--db", filepath.Join(dir, "smtplog.db"), "--unparsed", filepath.Join(dir, "unparsed.txt"),
		"--poll-interval", "20ms", "--flush-every", "50ms",
		// The fixture's lines are from late November 2026: no wall-clock
		// idle flush, whatever the date, so that the output is that of
		// one pass without flushes.
		"--flush-after", "100000h", filepath.Join(dir, "mail.log")}
}

// TestIngestFollowDBChild is `smtplog ingest --follow --db` for
// TestIngestFollowDBKill9; it runs only when re-executed by it.
func TestIngestFollowDBChild(t *testing.T) {
	runChild(t, "SMTPLOG_TEST_FOLLOW_DB_DIR", "TestIngestFollowDBKill9", followDBArgs)
}

var resumingRE = regexp.MustCompile(`: resuming at offset (\d+) \(([^)]*)\), (\d+) lines to replay`)

// TestIngestFollowDBKill9 follows a Postfix log being written into a store,
// kills the follower with SIGKILL at random moments (in the middle of a
// store commit too) and restarts it: in the end the store holds the records
// of one uninterrupted pass, each once, and every restart resumed near
// where the killed run was (restored correlators, a few lines replayed),
// not from the beginning of the file.
func TestIngestFollowDBKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	sqlite := testenv.NeedBinary(t, "sqlite3")
	dir := t.TempDir()
	db := filepath.Join(dir, "smtplog.db")
	w := newFollowWriter(t, filepath.Join(dir, "mail.log"), 10)
	w.rotate = len(w.lines) + 1 // no rotation: TestIngestFollowKill9 does that
	want := w.mustExpected(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- w.run(ctx, 5*time.Millisecond) }()
	defer func() { cancel(); <-werr }()

	query := func(sql string) string {
		out, err := exec.Command(sqlite, "-readonly", db, ".timeout 5000", sql).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	count := func() int {
		n, _ := strconv.Atoi(query("SELECT count(*) FROM records"))
		return n
	}
	start := func() *child { return startChild(t, "TestIngestFollowDBChild", "SMTPLOG_TEST_FOLLOW_DB_DIR", dir) }
	var runs []string
	defer func() {
		if t.Failed() {
			for i, r := range runs {
				t.Logf("run %d:\n%s", i, r)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(5, 6))
	kills, writerDone := 0, false
	var replays []int
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); {
		c := start()
		if writerDone {
			waitOpened(c.stderr, filepath.Join(dir, "mail.log"))
			for count() < len(want) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			code := c.stop(false)
			runs = append(runs, c.stderr())
			if code != 0 {
				t.Fatalf("follower exited %d", code)
			}
			break
		}
		// Kill once it has stored something more, at a random moment.
		before := count()
		for wait := time.Now().Add(10 * time.Second); count() == before && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		c.stop(true)
		kills++
		runs = append(runs, c.stderr())
		select {
		case err := <-werr:
			if err != nil {
				t.Fatal(err)
			}
			werr <- nil // for the deferred wait
			writerDone = true
		default:
		}
	}
	for i, r := range runs[1:] {
		m := resumingRE.FindStringSubmatch(r)
		if m == nil {
			if !strings.Contains(r, ": opened ") {
				// Killed while it was still finishing the batch the
				// previous run left pending, before it said where it
				// resumes: the next run finishes it again.
				continue
			}
			t.Errorf("run %d did not resume from a saved state:\n%s", i+1, r)
			continue
		}
		n, _ := strconv.Atoi(m[3])
		replays = append(replays, n)
		if !strings.Contains(m[2], "snapshot") {
			t.Errorf("run %d resumed without a snapshot: %s", i+1, m[0])
		}
	}
	t.Logf("%d kills; lines replayed by each restart: %v (of %d lines)", kills, replays, len(w.lines))
	if kills < 3 {
		t.Errorf("only %d kills before the writer was done", kills)
	}
	// A snapshot is taken once the lines since the last one outweigh it
	// (at least 64 KiB of lines, a few hundred); the correlator of this
	// log is never empty, so without snapshots each restart would replay
	// from the first line.
	if len(replays) > 0 && slices.Max(replays) > len(w.lines)/4 {
		t.Errorf("a restart replayed %d lines of %d", slices.Max(replays), len(w.lines))
	}

	got := normalise(query("SELECT body FROM records"))
	if !slices.Equal(got, want) {
		t.Errorf("the store holds %d records, want %d (each once)", len(got), len(want))
		reportCountDiffs(t, got, want)
	}
	if len(want) < 100 {
		t.Errorf("weak fixture: %d records", len(want))
	}
}
