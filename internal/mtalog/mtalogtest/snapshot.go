package mtalogtest

import (
	"bytes"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// CheckSnapshotRuns runs CheckSnapshots on lines as the subtest name, and
// again, flushing every 5 lines, as name + "/flushes".
func CheckSnapshotRuns(t *testing.T, name string, lines []mtalog.Line, newC func() mtalog.Correlator) {
	t.Helper()
	t.Run(name, func(t *testing.T) { CheckSnapshots(t, lines, newC, 0) })
	t.Run(name+"/flushes", func(t *testing.T) { CheckSnapshots(t, lines, newC, 5) })
}

// CheckSnapshots checks a Snapshotter correlator against lines: for every
// cut point, a correlator fed the lines before it, snapshotted and
// restored into a fresh one (from newC) that is fed the rest and flushed,
// must emit the records of one uninterrupted run, in the same order; and a
// restored correlator must snapshot to the same bytes. With flushEvery > 0
// both runs also flush what is idle for a minute every flushEvery lines, so
// that restored timers and lingering messages are exercised.
func CheckSnapshots(t *testing.T, lines []mtalog.Line, newC func() mtalog.Correlator, flushEvery int) {
	t.Helper()
	run := func(c mtalog.Correlator, from, to int, out *[]string) {
		emit := func(r *record.Record) {
			b, err := record.MarshalJSONLine(r)
			if err != nil {
				t.Fatal(err)
			}
			*out = append(*out, string(bytes.TrimSpace(b)))
		}
		for i := from; i < to; i++ {
			c.Feed(lines[i], emit)
			if flushEvery > 0 && (i+1)%flushEvery == 0 {
				c.Flush(lines[i].Time.Add(-time.Minute), emit)
			}
		}
		if to == len(lines) {
			c.Flush(time.Time{}, emit)
		}
	}
	var want []string
	run(newC(), 0, len(lines), &want)
	if len(want) == 0 {
		t.Fatal("no records")
	}
	nonEmpty := 0
	for cut := 0; cut <= len(lines); cut++ {
		var got []string
		a := newC()
		run(a, 0, cut, &got)
		snap, err := a.(mtalog.Snapshotter).Snapshot()
		if err != nil {
			t.Fatalf("cut %d: snapshot: %v", cut, err)
		}
		if len(snap) > 64 {
			nonEmpty++
		}
		b := newC()
		if err := b.(mtalog.Snapshotter).Restore(snap); err != nil {
			t.Fatalf("cut %d: restore: %v", cut, err)
		}
		again, err := b.(mtalog.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, snap) {
			t.Fatalf("cut %d: the restored correlator snapshots differently:\n%s\n%s", cut, snap, again)
		}
		run(b, cut, len(lines), &got)
		if len(got) != len(want) {
			t.Fatalf("cut %d (after %q): %d records, want %d", cut, lines[max(cut-1, 0)].Raw, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("cut %d (after %q): record %d:\n got %s\nwant %s", cut, lines[max(cut-1, 0)].Raw, i, got[i], want[i])
			}
		}
	}
	if nonEmpty == 0 {
		t.Error("no snapshot held anything open")
	}
}

// CheckRestoreRefuses checks that a fresh correlator from newC refuses, with
// an error rather than a half restore, a snapshot of another version,
// garbage, and each of the inconsistent snapshots bad; and that one that has
// been fed inUse refuses even a valid empty snapshot.
func CheckRestoreRefuses(t *testing.T, newC func() mtalog.Correlator, inUse mtalog.Line, bad ...string) {
	t.Helper()
	for _, b := range append([]string{`{"v":2}`, `{"v":0}`, `not json`, ``}, bad...) {
		if err := newC().(mtalog.Snapshotter).Restore([]byte(b)); err == nil {
			t.Errorf("Restore(%s) = nil", b)
		}
	}
	c := newC()
	c.Feed(inUse, func(*record.Record) {})
	if err := c.(mtalog.Snapshotter).Restore([]byte(`{"v":1}`)); err == nil {
		t.Error("Restore into a correlator in use = nil")
	}
}
