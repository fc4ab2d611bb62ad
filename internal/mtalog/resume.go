package mtalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// A Resumer drives a Pipeline over a followed source so that the source
// can be stopped (or killed) and restarted without losing or repeating a
// record, although correlators keep messages open across many lines.
//
// The state it gives the consumer to persist (ResumeState) names a source
// position, From, and how the correlators stood there: either empty, or a
// snapshot of what they held open (when every correlator in use is a
// Snapshotter). Since From it keeps the lines fed (a journal) and counts
// the records and unparsed lines it let out. A restarted source resumes
// reading at From; the Resumer restores the snapshot, replays the
// journaled lines into the correlators and holds back as many records and
// unparsed lines as were already let out, then lets everything through.
// Flushes of idle messages on a wall-clock timer are journaled (FlushIdle)
// and replayed at the same line, so replay is deterministic.
//
// From moves to the current position in three ways:
//
//   - a snapshot: when the correlators can be snapshotted, Commit takes one
//     once the journal holds as many bytes as the last snapshot took (at
//     least 64 KiB), or when no line came since the last Commit (a quiet
//     source), so the cost of snapshots stays below that of reading the
//     lines and a restart re-reads at most about that much;
//   - emptiness: otherwise, whether the correlators hold nothing open is
//     found out by feeding the journal to a fresh Pipeline and flushing it;
//     when nothing comes out, From moves on with no snapshot. This costs at
//     most about twice the work of feeding the lines;
//   - a cut: when the journal outgrows its bounds (correlators that are
//     never empty and cannot be snapshotted, or a snapshot larger than
//     MaxSnapshot), From moves on anyway and Stats.Cuts counts it: a
//     restart after such a cut can split a message that was open at the cut
//     into two incomplete records.
//
// The consumer calls Commit after the records of a batch were written
// (and synced) and persists the returned state together with the position
// of its output, so that records and state agree; see ResumeState.
//
// A Resumer is not safe for concurrent use.
type Resumer struct {
	opt      ResumeOptions
	p        *Pipeline
	state    ResumeState
	skipRecs int64 // records still to hold back (replay)
	skipUn   int64 // unparsed lines still to hold back
	marks    []FlushMark
	replayTo int64       // lines to replay: the state's Lines
	replay   bool        // still replaying
	loaded   ResumeState // the state resumed from; what Commit returns while replaying
	fed      int64       // lines fed since From
	journal  []journalEntry
	jbytes   int64
	sinceRun int   // lines fed since the last emptiness check
	cuts     int64 // journal overflows
	held     int64 // records held back during replay
	mismatch int64 // records or unparsed lines the replay did not reproduce
	// Snapshots: how many were taken (the state's SnapshotSeq), the size
	// of the last one tried, those too large to keep, and whether a line
	// was fed since the last Commit.
	snapSeq   uint64
	snapLen   int
	snapTaken int64
	oversize  int64
	fedCommit bool
}

type journalEntry struct {
	line  Line
	flush *FlushMark
}

// ResumeState is what a consumer persists after each Commit, atomically
// and only after the records let out so far were written. From is opaque
// to the Resumer: the source's position (for a followed file, its
// follow.Checkpoint as JSON); empty means the source's beginning.
type ResumeState struct {
	From json.RawMessage `json:"from,omitempty"`
	// Snapshot, when set, is the pipeline's state at From (correlators'
	// open messages and the pipeline's own); otherwise the correlators
	// were empty there. SnapshotSeq numbers the snapshots a Resumer took:
	// a consumer that keeps Snapshot apart writes it only when the number
	// changes.
	Snapshot    []byte      `json:"snapshot,omitempty"`
	SnapshotSeq uint64      `json:"snapshot_seq,omitempty"`
	Lines       int64       `json:"lines"`    // lines fed since From
	Records     int64       `json:"records"`  // records let out since From
	Unparsed    int64       `json:"unparsed"` // unparsed lines let out since From
	Flushes     []FlushMark `json:"flushes,omitempty"`
}

// FlushMark is a journaled idle flush: after Lines lines since From,
// Flush(Before) ran.
type FlushMark struct {
	Lines  int64     `json:"lines"`
	Before time.Time `json:"before"`
}

// ResumeOptions configures a Resumer.
type ResumeOptions struct {
	// Pipeline configures the pipeline; its Handler and Unparsed writer
	// receive what the Resumer lets out.
	Pipeline PipelineOptions
	// Bounds of the journal: lines and bytes (defaults 200000 and 64 MiB).
	MaxLines int
	MaxBytes int64
	// MaxSnapshot bounds a snapshot's bytes (default 64 MiB): a larger one
	// is not kept, and the journal's bounds apply as without snapshots.
	MaxSnapshot int
	// SnapshotEvery is how many bytes of lines (as the journal counts them)
	// are fed at least between two snapshots (default 64 KiB); more when
	// the last snapshot was larger.
	SnapshotEvery int64
	// NoSnapshots: never snapshot, replay from where the correlators were
	// empty (as with correlators that are not Snapshotters).
	NoSnapshots bool
	// Ephemeral: the consumer keeps no state (nothing to resume from), so
	// nothing is journaled and From simply follows the last commit.
	Ephemeral bool
}

// ResumeStats count what a Resumer did.
type ResumeStats struct {
	Held     int64 // records held back while replaying
	Cuts     int64 // times the journal outgrew its bounds
	Mismatch int64 // records or unparsed lines the replay did not reproduce
	Journal  int   // lines kept now
	// Snapshots taken, and those not kept for being larger than
	// MaxSnapshot; SnapshotBytes is the size of the last one tried.
	Snapshots     int64
	Oversize      int64
	SnapshotBytes int
	// Replay is how many lines the state resumed from had fed since its
	// From: what a restart read again.
	Replay int64
}

// maxFlushMarks bounds the journaled flushes; beyond it the journal is cut.
const maxFlushMarks = 10000

// NewResumer returns a Resumer that continues from st (the zero state for
// a first start).
func NewResumer(opt ResumeOptions, st ResumeState) (*Resumer, error) {
	if opt.MaxLines <= 0 {
		opt.MaxLines = 200000
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 64 << 20
	}
	if opt.SnapshotEvery <= 0 {
		opt.SnapshotEvery = 64 << 10
	}
	if opt.MaxSnapshot <= 0 {
		opt.MaxSnapshot = 64 << 20
	}
	if st.Records < 0 || st.Unparsed < 0 || st.Lines < 0 || len(st.Flushes) > maxFlushMarks {
		return nil, errors.New("mtalog: invalid resume state")
	}
	r := &Resumer{opt: opt, skipRecs: st.Records, skipUn: st.Unparsed, replayTo: st.Lines, replay: true}
	r.state = ResumeState{From: st.From, Snapshot: st.Snapshot, SnapshotSeq: st.SnapshotSeq}
	r.snapSeq, r.snapLen = st.SnapshotSeq, len(st.Snapshot)
	r.marks = append(r.marks, st.Flushes...)
	r.loaded = st
	r.loaded.Flushes = slices.Clone(st.Flushes)
	po := opt.Pipeline
	h := po.Handler
	if h == nil {
		return nil, fmt.Errorf("mtalog: pipeline needs a record handler")
	}
	po.Handler = record.HandlerFunc(func(ctx context.Context, rec *record.Record) error {
		r.state.Records++
		if r.skipRecs > 0 {
			r.skipRecs--
			r.held++
			return nil
		}
		r.leak()
		return h.Handle(ctx, rec)
	})
	if opt.Pipeline.Unparsed != nil {
		po.Unparsed = unparsedGate{r: r, w: opt.Pipeline.Unparsed}
	} else {
		po.Unparsed = unparsedGate{r: r, w: io.Discard}
	}
	p, err := newPipelineAt(po, st.Snapshot)
	if err != nil {
		return nil, err
	}
	r.p = p
	return r, nil
}

// newPipelineAt returns a Pipeline restored from snap (none: empty).
func newPipelineAt(po PipelineOptions, snap []byte) (*Pipeline, error) {
	p, err := NewPipeline(po)
	if err != nil {
		return nil, err
	}
	if len(snap) > 0 {
		if err := p.restore(snap); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// unparsedGate counts unparsed lines and holds back those already let out.
type unparsedGate struct {
	r *Resumer
	w io.Writer
}

func (g unparsedGate) Write(b []byte) (int, error) {
	g.r.state.Unparsed++
	if g.r.skipUn > 0 {
		g.r.skipUn--
		return len(b), nil
	}
	g.r.leak()
	return g.w.Write(b)
}

// leak ends a replay that lets something out before it caught up (the
// correlators did not reproduce what they did before): from then on the
// state must count what was let out, and what was still to be held back
// is counted as a mismatch.
func (r *Resumer) leak() {
	if r.replay {
		r.mismatch += 1 + r.skipRecs + r.skipUn
		r.skipRecs, r.skipUn, r.marks, r.replay = 0, 0, nil, false
	}
}

// Replaying reports whether the lines fed so far are still those the
// saved state had already seen.
func (r *Resumer) Replaying() bool { return r.replay }

// Feed passes one line on, replaying a journaled flush that came before it.
func (r *Resumer) Feed(ctx context.Context, l Line) error {
	if err := r.catchUp(ctx); err != nil {
		return err
	}
	if !r.opt.Ephemeral {
		l = cloneLine(l)
	}
	if err := r.p.Feed(ctx, l); err != nil {
		return err
	}
	r.fed++
	r.fedCommit = true
	if !r.opt.Ephemeral {
		r.sinceRun++
		r.journal = append(r.journal, journalEntry{line: l})
		r.jbytes += int64(len(l.Raw) + 64)
	}
	return r.catchUp(ctx)
}

// catchUp replays the journaled flushes due and ends the replay once the
// saved state's lines have all been fed again. Whatever the replay did not
// reproduce (a correlator whose output depended on lines before From) is
// let through from then on and counted, never held back for good.
func (r *Resumer) catchUp(ctx context.Context) error {
	if !r.replay {
		return nil
	}
	if err := r.replayMarks(ctx); err != nil {
		return err
	}
	if r.fed >= r.replayTo {
		r.mismatch += r.skipRecs + r.skipUn
		r.skipRecs, r.skipUn, r.marks, r.replay = 0, 0, nil, false
	}
	return nil
}

func (r *Resumer) replayMarks(ctx context.Context) error {
	for len(r.marks) > 0 && r.marks[0].Lines <= r.fed {
		m := r.marks[0]
		r.marks = r.marks[1:]
		if err := r.flushMark(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (r *Resumer) flushMark(ctx context.Context, m FlushMark) error {
	r.state.Flushes = append(r.state.Flushes, m)
	r.journal = append(r.journal, journalEntry{flush: &m})
	return r.p.Flush(ctx, m.Before)
}

// FlushIdle flushes what has seen no line since before (a wall-clock idle
// flush) and journals it when it let something out.
func (r *Resumer) FlushIdle(ctx context.Context, before time.Time) error {
	if err := r.catchUp(ctx); err != nil {
		return err
	}
	if r.replay {
		return nil // not before the replay has caught up
	}
	n := r.state.Records
	// Flush emits in a deterministic order, so a flush that let nothing
	// out changed nothing and need not be journaled.
	if err := r.p.Flush(ctx, before); err != nil {
		return err
	}
	if r.state.Records != n && !r.opt.Ephemeral {
		m := FlushMark{Lines: r.fed, Before: before}
		r.state.Flushes = append(r.state.Flushes, m)
		r.journal = append(r.journal, journalEntry{flush: &m})
	}
	return nil
}

// Commit is called once what was let out so far has been written; at is
// the source's position after the last line fed. It returns the state to
// persist. It may move From to at (the correlators are empty, or the
// journal outgrew its bounds).
func (r *Resumer) Commit(ctx context.Context, at json.RawMessage) (ResumeState, error) {
	if err := r.catchUp(ctx); err != nil {
		return ResumeState{}, err
	}
	if r.replay {
		// Nothing new was let out: the state resumed from still describes
		// the output (a smaller count would let the rest out again).
		st := r.loaded
		st.Flushes = slices.Clone(st.Flushes)
		return st, nil
	}
	if r.opt.Ephemeral {
		r.state = ResumeState{From: append(json.RawMessage(nil), at...)}
		r.fed = 0
		return r.state, nil
	}
	quiet := !r.fedCommit
	r.fedCommit = false
	snap := !r.opt.NoSnapshots && r.p.canSnapshot()
	if snap && (len(r.journal) > 0 || len(r.state.Flushes) > 0) &&
		(quiet || r.jbytes >= max(int64(r.snapLen), r.opt.SnapshotEvery)) {
		b, err := r.p.snapshot()
		if err != nil {
			return ResumeState{}, err
		}
		r.snapLen = len(b)
		if len(b) <= r.opt.MaxSnapshot {
			r.snapSeq++
			r.snapTaken++
			r.state = ResumeState{From: append(json.RawMessage(nil), at...), Snapshot: b, SnapshotSeq: r.snapSeq}
			r.journal, r.jbytes, r.fed, r.sinceRun = nil, 0, 0, 0
			return r.stateNow(), nil
		}
		r.oversize++
	}
	overflow := len(r.journal) > r.opt.MaxLines || r.jbytes > r.opt.MaxBytes || len(r.state.Flushes) >= maxFlushMarks
	if overflow {
		r.cuts++
	}
	if overflow || (!snap && 2*r.sinceRun >= len(r.journal) && r.empty(ctx)) {
		r.state = ResumeState{From: append(json.RawMessage(nil), at...)}
		r.journal, r.jbytes, r.fed = nil, 0, 0
	}
	return r.stateNow(), nil
}

// stateNow is the state to persist now.
func (r *Resumer) stateNow() ResumeState {
	st := r.state
	st.Lines = r.fed
	st.Flushes = append([]FlushMark(nil), r.state.Flushes...)
	return st
}

// SetStart sets From when it is still the source's beginning: a consumer
// that learns the position of its first line (a file's identity) records
// it, so that a restart finds that file even after it was rotated.
func (r *Resumer) SetStart(at json.RawMessage) {
	if len(r.state.From) == 0 {
		r.state.From = append(json.RawMessage(nil), at...)
	}
}

// empty reports whether a fresh pipeline fed the journal has nothing open.
func (r *Resumer) empty(ctx context.Context) bool {
	r.sinceRun = 0
	var n int64
	po := r.opt.Pipeline
	po.Handler = record.HandlerFunc(func(context.Context, *record.Record) error { n++; return nil })
	po.Unparsed = nil
	p, err := newPipelineAt(po, r.state.Snapshot)
	if err != nil {
		return false
	}
	for _, e := range r.journal {
		if e.flush != nil {
			err = p.Flush(ctx, e.flush.Before)
		} else {
			err = p.Feed(ctx, e.line)
		}
		if err != nil {
			return false
		}
	}
	n = 0
	if p.Flush(ctx, time.Time{}) != nil {
		return false
	}
	return n == 0
}

// Stats returns the pipeline's counters.
func (r *Resumer) Stats() Stats { return r.p.Stats() }

// ResumeStats returns the Resumer's own counters.
func (r *Resumer) ResumeStats() ResumeStats {
	return ResumeStats{
		Held: r.held, Cuts: r.cuts, Mismatch: r.mismatch, Journal: len(r.journal),
		Snapshots: r.snapTaken, Oversize: r.oversize, SnapshotBytes: r.snapLen, Replay: r.replayTo,
	}
}

// cloneLine copies a line's text out of its source's buffer: the journal
// keeps lines for long.
func cloneLine(l Line) Line {
	raw := strings.Clone(l.Raw)
	l.Raw = raw
	l.Host = within(raw, l.Host)
	l.Program = within(raw, l.Program)
	l.Message = within(raw, l.Message)
	return l
}

// within returns the substring of raw equal to s when raw contains it
// (sharing raw's memory), else a copy of s.
func within(raw, s string) string {
	if s == "" {
		return ""
	}
	if i := strings.Index(raw, s); i >= 0 {
		return raw[i : i+len(s)]
	}
	return strings.Clone(s)
}
