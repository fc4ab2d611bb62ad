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
}

func (rr *resumeRun) resumer(t *testing.T, st mtalog.ResumeState) *mtalog.Resumer {
	t.Helper()
	r, err := mtalog.NewResumer(mtalog.ResumeOptions{Pipeline: mtalog.PipelineOptions{
		Dialects: []mtalog.Dialect{postfix.Dialect()},
		Handler: record.HandlerFunc(func(_ context.Context, rec *record.Record) error {
			b, err := record.MarshalJSONLine(rec)
			rr.out = append(rr.out, seqID.ReplaceAllString(strings.TrimSpace(string(b)), `$1"`))
			return err
		}),
	}}, st)
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
// those of one uninterrupted run, each once; also with idle flushes.
func TestResumeExactlyOnce(t *testing.T) {
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "lines", true: "idle-flushes"}[idle], func(t *testing.T) { testResume(t, idle) })
	}
}

func testResume(t *testing.T, idle bool) {
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
	for _, batch := range []int{1, 7, 50} {
		whole := &resumeRun{lines: lines, idle: idle}
		whole.feed(t, whole.resumer(t, mtalog.ResumeState{}), 0, len(lines), batch)
		want := slices.Clone(whole.out)
		if idle && !strings.Contains(strings.Join(want, "\n"), `"incomplete"`) {
			t.Fatal("the idle flushes let nothing out")
		}
		if len(want) < 40 {
			t.Fatalf("only %d records without the final flush", len(want))
		}
		first := &resumeRun{lines: lines, idle: idle}
		states, outs := first.feed(t, first.resumer(t, mtalog.ResumeState{}), 0, len(lines), batch)
		for k, st := range states {
			if len(st.From) > 0 {
				moved++
			}
			rr := &resumeRun{lines: lines, out: slices.Clone(first.out[:outs[k]]), idle: idle}
			from := 0
			if len(st.From) > 0 {
				from, _ = strconv.Atoi(string(st.From))
			}
			r := rr.resumer(t, st)
			rr.feed(t, r, from, len(lines), batch)
			if !slices.Equal(rr.out, want) {
				t.Fatalf("batch %d, restart after commit %d (from line %d): %d records, want %d", batch, k, from, len(rr.out), len(want))
			}
			if rs := r.ResumeStats(); rs.Mismatch != 0 {
				t.Errorf("replay mismatch %d", rs.Mismatch)
			}
		}
	}
	if moved == 0 {
		t.Error("From never moved: the correlator was never found empty")
	}
}
