package mtalogtest

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// CheckResume checks a dialect whose correlator is a Snapshotter through
// a Resumer, as ingest --follow uses it: lines are fed in batches of
// batch, each committed with its end as the position and snapshots taken
// as often as the Resumer allows; then, for every committed state, a
// Resumer restarted from it and fed the lines from its position must emit
// the records of the uninterrupted run, each once. At least one state
// must hold a snapshot.
func CheckResume(t *testing.T, d mtalog.Dialect, lines []mtalog.Line, batch int) {
	t.Helper()
	ctx := context.Background()
	newResumer := func(st mtalog.ResumeState, out *[]string) *mtalog.Resumer {
		r, err := mtalog.NewResumer(mtalog.ResumeOptions{
			SnapshotEvery: 1,
			Pipeline: mtalog.PipelineOptions{
				Dialects: []mtalog.Dialect{d},
				MTA:      d.Name,
				Handler: record.HandlerFunc(func(_ context.Context, rec *record.Record) error {
					b, err := record.MarshalJSONLine(rec)
					*out = append(*out, string(bytes.TrimSpace(b)))
					return err
				}),
			},
		}, st)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	feed := func(r *mtalog.Resumer, from int, out *[]string) ([]mtalog.ResumeState, []int) {
		var states []mtalog.ResumeState
		var outs []int
		for i := from; i < len(lines); {
			end := min(i+batch, len(lines))
			for ; i < end; i++ {
				if err := r.Feed(ctx, lines[i]); err != nil {
					t.Fatal(err)
				}
			}
			st, err := r.Commit(ctx, json.RawMessage(strconv.Itoa(end)))
			if err != nil {
				t.Fatal(err)
			}
			states = append(states, st)
			outs = append(outs, len(*out))
		}
		return states, outs
	}
	var want []string
	states, outs := feed(newResumer(mtalog.ResumeState{}, &want), 0, &want)
	if len(want) == 0 {
		t.Fatal("no records")
	}
	snapshots := 0
	for k, st := range states {
		if len(st.Snapshot) > 0 {
			snapshots++
		}
		from := 0
		if len(st.From) > 0 {
			var err error
			if from, err = strconv.Atoi(string(st.From)); err != nil {
				t.Fatal(err)
			}
		}
		got := slices.Clone(want[:outs[k]])
		r := newResumer(st, &got)
		feed(r, from, &got)
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("restart after commit %d (from line %d): record %d:\n got %s\nwant %s", k, from, i, got[i], want[i])
				}
			}
			t.Fatalf("restart after commit %d (from line %d): %d records, want %d", k, from, len(got), len(want))
		}
		if rs := r.ResumeStats(); rs.Mismatch != 0 {
			t.Errorf("restart after commit %d: replay mismatch %d", k, rs.Mismatch)
		}
	}
	if snapshots == 0 {
		t.Error("no state held a snapshot")
	}
}
