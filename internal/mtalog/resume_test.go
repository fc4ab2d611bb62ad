package mtalog_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
)

// seqID drops the per-process counter from Postfix session IDs.
var seqID = regexp.MustCompile(`("session_id":"pf-[^"]*)-[0-9]+"`)

type resumeRun struct {
	out   []string
	lines []mtalog.Line
	idle  bool // flush idle messages every third batch
	opt   mtalog.ResumeOptions
}

func (rr *resumeRun) resumer(t *testing.T, st mtalog.ResumeState) *mtalog.Resumer {
	t.Helper()
	opt := rr.opt
	opt.Pipeline = mtalog.PipelineOptions{
		Dialects: []mtalog.Dialect{postfix.Dialect()},
		Handler: record.HandlerFunc(func(_ context.Context, rec *record.Record) error {
			b, err := record.MarshalJSONLine(rec)
			rr.out = append(rr.out, seqID.ReplaceAllString(strings.TrimSpace(string(b)), `$1"`))
			return err
		}),
	}
	r, err := mtalog.NewResumer(opt, st)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// feed feeds lines [from, to) in batches of n, committing after each with
// the index as the position; it returns the states and output lengths
// after each commit.
func (rr *resumeRun) feed(t *testing.T, r *mtalog.Resumer, from, to, n int) ([]mtalog.ResumeState, []int) {
	t.Helper()
	ctx := context.Background()
	var states []mtalog.ResumeState
	var outs []int
	for i := from; i < to; {
		end := min(i+n, to)
		for ; i < end; i++ {
			if err := r.Feed(ctx, rr.lines[i]); err != nil {
				t.Fatal(err)
			}
		}
		if rr.idle && (end/n)%3 == 0 {
			// A wall-clock idle flush, journaled and replayed.
			if err := r.FlushIdle(ctx, rr.lines[end-1].Time.Add(-20*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		st, err := r.Commit(ctx, json.RawMessage(strconv.Itoa(end)))
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
		outs = append(outs, len(rr.out))
	}
	return states, outs
}

// TestResumeExactlyOnce stops a Resumer after every batch of a real Postfix
// log, restarts it from the saved state and checks that the records are
// those of one uninterrupted run, each once; also with idle flushes, and
// with snapshots (the default, here taken often) or without (replay from
// where the correlator was empty).
func TestResumeExactlyOnce(t *testing.T) {
	for _, snap := range []bool{false, true} {
		for _, idle := range []bool{false, true} {
			name := map[bool]string{false: "replay", true: "snapshots"}[snap] + "/" + map[bool]string{false: "lines", true: "idle-flushes"}[idle]
			opt := mtalog.ResumeOptions{NoSnapshots: !snap, SnapshotEvery: 2000}
			t.Run(name, func(t *testing.T) {
				replay := testResume(t, idle, opt)
				t.Logf("lines replayed after a restart: at most %d, %.1f on average", slices.Max(replay), mean(replay))
				// Without snapshots the correlator of this log is never empty
				// and every restart replays from the first of its 446 lines;
				// a snapshot is taken once the lines since the last one
				// outweigh it, so a restart replays about a snapshot's worth.
				if snap && (slices.Max(replay) > 150 || mean(replay) > 50) {
					t.Errorf("a restart replayed up to %d lines despite snapshots", slices.Max(replay))
				}
			})
		}
	}
}

func mean(xs []int64) float64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return float64(s) / float64(len(xs))
}

// testResume returns how many lines each restart replayed.
func testResume(t *testing.T, idle bool, opt mtalog.ResumeOptions) []int64 {
	b, err := os.ReadFile("../../testdata/postfix/real-3.7.log")
	if err != nil {
		t.Fatal(err)
	}
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var lines []mtalog.Line
	for _, raw := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l, err := mtalog.ParseLine(raw, ref)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	moved := 0
	var replay []int64
	for _, batch := range []int{1, 7, 50} {
		whole := &resumeRun{lines: lines, idle: idle, opt: opt}
		whole.feed(t, whole.resumer(t, mtalog.ResumeState{}), 0, len(lines), batch)
		want := slices.Clone(whole.out)
		if idle && !strings.Contains(strings.Join(want, "\n"), `"incomplete"`) {
			t.Fatal("the idle flushes let nothing out")
		}
		if len(want) < 40 {
			t.Fatalf("only %d records without the final flush", len(want))
		}
		first := &resumeRun{lines: lines, idle: idle, opt: opt}
		states, outs := first.feed(t, first.resumer(t, mtalog.ResumeState{}), 0, len(lines), batch)
		for k, st := range states {
			if len(st.From) > 0 {
				moved++
			}
			rr := &resumeRun{lines: lines, out: slices.Clone(first.out[:outs[k]]), idle: idle, opt: opt}
			from := 0
			if len(st.From) > 0 {
				from, _ = strconv.Atoi(string(st.From))
			}
			r := rr.resumer(t, st)
			rr.feed(t, r, from, len(lines), batch)
			if !slices.Equal(rr.out, want) {
				t.Fatalf("batch %d, restart after commit %d (from line %d): %d records, want %d", batch, k, from, len(rr.out), len(want))
			}
			rs := r.ResumeStats()
			if rs.Mismatch != 0 {
				t.Errorf("replay mismatch %d", rs.Mismatch)
			}
			replay = append(replay, rs.Replay)
		}
	}
	if moved == 0 {
		t.Error("From never moved: the correlator was never found empty")
	}
	return replay
}
