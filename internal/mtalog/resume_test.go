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
// those of one uninterrupted run, each once.
func TestResumeExactlyOnce(t *testing.T) {
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
	whole := &resumeRun{lines: lines}
	whole.feed(t, whole.resumer(t, mtalog.ResumeState{}), 0, len(lines), 7)
	want := slices.Clone(whole.out)
	if len(want) < 40 {
		t.Fatalf("only %d records without the final flush", len(want))
	}
	moved := 0
	for _, batch := range []int{1, 7, 50} {
		first := &resumeRun{lines: lines}
		states, outs := first.feed(t, first.resumer(t, mtalog.ResumeState{}), 0, len(lines), batch)
		for k, st := range states {
			if len(st.From) > 0 {
				moved++
			}
			rr := &resumeRun{lines: lines, out: slices.Clone(first.out[:outs[k]])}
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
