package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/follow"
	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// followGuarantee is the --follow part of `smtplog ingest --help`.
const followGuarantee = `With --follow, each FILE is followed like tail -F (across rename and
copytruncate rotation) and read from its beginning on the first start.
Messages that see no line for --flush-after are emitted as incomplete,
checked every --flush-every of wall-clock time. With --checkpoint-dir,
a state file per FILE records, after every batch of lines, where reading
must resume, the correlators' open messages there (a snapshot, in a file
of its own next to the state file, retaken once as many bytes of lines
as it holds were read, at least 64 KiB, and when the FILE is quiet), and
how much of --out and --unparsed was written by then; it is saved only
after that batch's records and unparsed lines were written and synced. A
restart (after a stop, a crash or kill -9) first cuts --out and
--unparsed back to what the newest state file says was written, restores
the snapshot, replays the few lines read since it and holds back the
records and unparsed lines already written: every record and every
unparsed line is written exactly once, and messages open at the stop
come out whole. With --db instead of --out, each batch's records are
saved as a pending batch in --checkpoint-dir, stored durably in the store,
and then the state that covers them is saved; a restart that finds a
pending batch stores those of its records that the store lacks (by time
and content) and resumes after it: no stored record is lost or repeated.
Limits: with --out - (standard output) the output cannot be cut back, so
a crash can repeat the records of the one batch in flight; an MTA whose
correlator cannot be snapshotted resumes where its messages were last
all complete, and when they are never all complete for --max-journal
lines (or a snapshot would exceed 64 MiB) the FILE is cut there
(counted), and a message open across such a cut can come out as two
incomplete records after a restart; lines lost by rotation itself
(copytruncate's window, rotated files compressed before they were read)
are reported, not recovered. The replay assumes that an MTA's records
depend only on its correlator's state and the lines after it; replays
that differ are counted. Use one --checkpoint-dir per output.`

// followState is the state file of one followed FILE.
type followState struct {
	Path     string             `json:"path"`
	Output   int64              `json:"output"`   // bytes of --out written when saved
	Unparsed int64              `json:"unparsed"` // bytes of --unparsed written when saved
	Resume   mtalog.ResumeState `json:"resume"`   // without its Snapshot, kept apart:
	// SnapshotFile names the file, next to the state file, that holds
	// Resume.Snapshot (the correlators' open state at Resume.From), and
	// SnapshotSHA256 is its digest. A snapshot is written once, under a
	// name of its own, before the first state file that names it; the one
	// it replaces is removed after.
	SnapshotFile   string `json:"snapshot_file,omitempty"`
	SnapshotSHA256 string `json:"snapshot_sha256,omitempty"`
	// FirstLine is the file's first line when Resume.From is the position
	// just after it (a first start); it is replayed before From.
	FirstLine string `json:"first_line,omitempty"`
}

// pendingBatch is a batch of records on its way into the store (--db):
// saved before they are inserted, removed once the state that covers them
// is. A restart that finds one inserts those of its records the store does
// not hold yet and takes its state: the store cannot commit a batch and
// the state file in one transaction, so a crash between the two is
// repaired this way.
type pendingBatch struct {
	State   followState       `json:"state"`
	Records []json.RawMessage `json:"records"`
}

// stateBase is a state file's path without ".json": its snapshot files and
// pending batch are named after it.
func stateBase(state string) string { return strings.TrimSuffix(state, ".json") }

func pendingName(state string) string { return stateBase(state) + ".pending" }

// pendingState names the state file of a pending batch.
func pendingState(pending string) string { return strings.TrimSuffix(pending, ".pending") + ".json" }

// stateName names the state file of path: readable, and unique by the
// absolute path.
func stateName(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	h := sha256.Sum256([]byte(abs))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, filepath.Base(path))
	return base + "-" + hex.EncodeToString(h[:6]) + ".json"
}

// writeFileAtomic replaces path with b: a temporary file in the same
// directory, synced, renamed over path, and the directory synced. A crash
// leaves the old or the new content, never a torn one.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// countingFile is an output file and the bytes it holds.
type countingFile struct {
	f    *os.File
	size int64
}

func (c *countingFile) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	c.size += int64(n)
	return n, err
}

// openCommitted opens path for appending after cutting it back to keep
// bytes (when it is longer: the writes of a batch whose state was never
// saved). keep < 0 keeps it whole.
func openCommitted(path string, keep int64) (*countingFile, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size, cut := st.Size(), int64(0)
	if keep >= 0 && size > keep {
		if err := f.Truncate(keep); err != nil {
			f.Close()
			return nil, 0, err
		}
		cut, size = size-keep, keep
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return &countingFile{f: f, size: size}, cut, nil
}

// followRun is one `ingest --follow`: the followed files share one output;
// a mutex serialises their batches and the idle flushes, so that every
// state file describes the output as it was when it was saved.
type followRun struct {
	c       ingestConfig
	mu      sync.Mutex
	out     *countingFile // nil for standard output
	bw      *bufio.Writer
	w       *record.Writer
	un      *countingFile
	unw     *bufio.Writer
	sources []*followSource
	// With --db: the records of the batch being committed, and the store.
	db      *store.Store
	pending []*record.Record
}

type followSource struct {
	path    string
	state   string // state file, "" without --checkpoint-dir
	from    json.RawMessage
	res     *mtalog.Resumer
	parse   mtalog.LineParser
	lastT   time.Time
	lastAt  json.RawMessage // position after the last line fed
	clock   logClock
	started bool
	f       *follow.Follower
	// firstFrom is the position after the file's first line, and
	// firstLine that line, while the state resumes from there.
	firstFrom   json.RawMessage
	firstLine   string
	replayFirst string // the first line, to feed before the follower's lines
	// The snapshot file the saved state (or the pending batch) names: its
	// sequence number, name and digest.
	snapSeq  uint64
	snapFile string
	snapSum  string
	keptSnap string // the snapshot file the saved state file names
}

func runFollow(ctx context.Context, e *env, c ingestConfig) (err error) {
	r := &followRun{c: c}
	states := map[string]followState{}
	var pendings []string
	if c.checkpointDir != "" {
		if err := os.MkdirAll(c.checkpointDir, 0o750); err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		names, err := filepath.Glob(filepath.Join(c.checkpointDir, "*.json"))
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
			}
			var st followState
			if err := json.Unmarshal(b, &st); err != nil {
				return exitError{code: 1, msg: fmt.Sprintf("ingest: state file %s: %v", n, err)}
			}
			states[filepath.Base(n)] = st
		}
		if pendings, err = filepath.Glob(filepath.Join(c.checkpointDir, "*.pending")); err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		if len(pendings) > 0 && c.dbPath == "" {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %s holds a batch of records on its way into a store: run again with the same --db", pendings[0])}
		}
	}
	if c.dbPath != "" {
		db, err := store.Open(ctx, c.dbPath, store.Options{})
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		defer func() {
			if cerr := db.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
				err = exitError{code: 1, msg: fmt.Sprintf("ingest: %v", cerr)}
			}
		}()
		r.db = db
		for _, n := range pendings {
			st, added, err := resolvePending(ctx, db, n)
			if err != nil {
				return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
			}
			fmt.Fprintf(e.stderr, "smtplog ingest: %s: finished a batch interrupted on its way into the store: %d records were missing\n", n, added)
			states[filepath.Base(pendingState(n))] = st
		}
	}
	// Every state file of the directory counts: the newest one says how
	// much of the output was written by a saved batch.
	keepOut, keepUn := int64(-1), int64(-1)
	for _, st := range states {
		keepOut, keepUn = max(keepOut, st.Output), max(keepUn, st.Unparsed)
	}
	var out io.Writer = e.stdout
	if c.outPath != "-" && c.outPath != "" {
		f, cut, err := openCommitted(c.outPath, keepOut)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		defer f.f.Close()
		if cut > 0 {
			fmt.Fprintf(e.stderr, "smtplog ingest: %s: cut %d bytes written after the last saved state\n", c.outPath, cut)
		}
		r.out, out = f, f
	}
	r.bw = bufio.NewWriterSize(out, 256<<10)
	r.w = record.NewWriter(r.bw, c.format)
	if c.unparsed != "" {
		f, _, err := openCommitted(c.unparsed, keepUn)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		defer f.f.Close()
		r.un, r.unw = f, bufio.NewWriterSize(f, 64<<10)
	}

	parse := mtalog.ParserFor(c.dialects, c.mta)
	for _, path := range c.files {
		s := &followSource{path: path, parse: parse}
		var st followState
		if c.checkpointDir != "" {
			name := stateName(path)
			s.state = filepath.Join(c.checkpointDir, name)
			st = states[name]
		}
		if c.checkpointDir != "" {
			if err := loadSnapshot(s, &st); err != nil {
				return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
			}
		}
		s.from = st.Resume.From
		if st.FirstLine != "" {
			s.firstFrom, s.firstLine, s.replayFirst = st.Resume.From, st.FirstLine, st.FirstLine
		}
		po := mtalog.PipelineOptions{
			Dialects: c.dialects, MTA: c.mta, FlushAfter: c.flushAfter,
			Correlator: mtalog.CorrelatorOptions{Host: c.host},
			Handler: record.HandlerFunc(func(_ context.Context, rec *record.Record) error {
				if r.db != nil {
					r.pending = append(r.pending, rec)
					return nil
				}
				return r.w.Write(rec)
			}),
		}
		if r.unw != nil {
			po.Unparsed = r.unw
		}
		res, err := mtalog.NewResumer(mtalog.ResumeOptions{Pipeline: po, MaxLines: c.maxJournal, Ephemeral: c.checkpointDir == ""}, st.Resume)
		if err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
		s.res = res
		if len(st.Resume.From) > 0 {
			var ck follow.Checkpoint
			_ = json.Unmarshal(st.Resume.From, &ck)
			how := "no message was open there"
			if len(st.Resume.Snapshot) > 0 {
				how = fmt.Sprintf("open messages restored from a snapshot of %d bytes", len(st.Resume.Snapshot))
			}
			fmt.Fprintf(e.stderr, "smtplog ingest: %s: resuming at offset %d (%s), %d lines to replay\n", path, ck.Offset, how, st.Resume.Lines)
		}
		load := func(context.Context) (follow.Checkpoint, bool, error) {
			if len(s.from) == 0 {
				return follow.Checkpoint{}, false, nil
			}
			var ck follow.Checkpoint
			if err := json.Unmarshal(s.from, &ck); err != nil {
				return ck, false, fmt.Errorf("state file %s: %w", s.state, err)
			}
			return ck, true, nil
		}
		f, err := follow.New(follow.Config{
			Path: path, Checkpointer: follow.NopSave(load), MaxLineBytes: c.maxLine, PollInterval: c.poll,
			OnEvent: func(ev follow.Event) {
				// Rotation is rare: every event is worth a line, written
				// at once (the followers share standard error).
				detail := ""
				if ev.Detail != "" {
					detail = ": " + ev.Detail
				}
				fmt.Fprintf(e.stderr, "smtplog ingest: %s: %s %s%s\n", path, ev.Kind, ev.File, detail)
			},
		}, func(ctx context.Context, b follow.Batch) error { return r.batch(ctx, s, b) })
		if err != nil {
			return exitError{code: 2, msg: err.Error()}
		}
		s.f = f
		r.sources = append(r.sources, s)
		// A state file from the start, so that a crash in the first batch
		// is cut back too.
		if c.checkpointDir != "" && len(st.Path) == 0 {
			if err := r.save(s, st.Resume); err != nil {
				return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
			}
		}
	}

	var g group
	gctx := g.start(ctx)
	for _, s := range r.sources {
		g.run(func() error { return s.f.Run(gctx) })
	}
	g.run(func() error { return r.idleFlusher(gctx) })
	runErr := g.wait()
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil // stopped: every saved state is consistent
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ferr := r.flushOutputs(); ferr != nil && runErr == nil {
		runErr = ferr
	}
	if r.db != nil && len(r.pending) > 0 && c.checkpointDir == "" {
		// Fed but not committed (stopped in a batch): with no state to
		// resume from, store them now.
		if ierr := r.db.Load(context.WithoutCancel(ctx), r.pending); ierr != nil && runErr == nil {
			runErr = fmt.Errorf("store records: %w", ierr)
		}
	}
	for _, s := range r.sources {
		rs := s.res.ResumeStats()
		fst := s.f.Stats()
		fmt.Fprintf(e.stderr, "smtplog ingest: %s: %s; %d rotations, %d truncations, %d possible losses; %d lines replayed, %d records held back in replay, %d journal cuts, %d replay mismatches; %d snapshots (%d too large, last %d bytes)\n",
			s.path, s.res.Stats().Summary(), fst.Rotations, fst.Truncations, fst.PossibleLoss, rs.Replay, rs.Held, rs.Cuts, rs.Mismatch, rs.Snapshots, rs.Oversize, rs.SnapshotBytes)
	}
	if runErr != nil {
		return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", runErr)}
	}
	return nil
}

// batch feeds one batch of a followed file and commits it: the records
// are written and synced before the state that covers them is saved.
func (r *followRun) batch(ctx context.Context, s *followSource, b follow.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !s.started && len(b.Lines) > 0 {
		s.started = true
		if err := s.firstStart(b); err != nil {
			return err
		}
	}
	if s.replayFirst != "" {
		// The line before the position resumed from (see firstStart).
		l := mtalog.ParseKept(s.parse, s.replayFirst, now, &s.lastT)
		l.Origin = s.path
		s.replayFirst = ""
		s.clock.fed(l.Time, now)
		if err := s.res.Feed(ctx, l); err != nil {
			return err
		}
	}
	for _, fl := range b.Lines {
		l := mtalog.ParseKept(s.parse, fl.Text, now, &s.lastT)
		l.Origin = s.path
		l.Truncated = fl.Truncated
		s.clock.fed(l.Time, now)
		if err := s.res.Feed(ctx, l); err != nil {
			return err
		}
	}
	at, err := json.Marshal(b.Checkpoint)
	if err != nil {
		return err
	}
	s.lastAt = at
	return r.commit(ctx, s)
}

// firstStart handles the first batch of a first start: the position to
// resume from is the start of the file, which a checkpoint cannot name by
// content (a copytruncate would leave a different file under the same
// inode at offset 0). So it is the position after the first line, named
// by the file's identity and that line's bytes, and the first line itself
// is kept in the state file to be replayed before it.
func (s *followSource) firstStart(b follow.Batch) error {
	first := b.Lines[0]
	if len(s.from) > 0 || first.Offset != 0 || first.File != s.path || first.Truncated || first.Unterminated {
		return nil
	}
	text := first.Text
	head := (text + "\n")[:min(len(text)+1, 1024)]
	lastLen := min(len(text), 256)
	at, err := json.Marshal(follow.Checkpoint{
		Path: s.path, Dev: b.Checkpoint.Dev, Ino: b.Checkpoint.Ino, Offset: int64(len(text)) + 1,
		HeadHash: sha256Hex(head), LastLine: 0, LastLen: lastLen, LastHash: sha256Hex(text[:lastLen]),
	})
	if err != nil {
		return err
	}
	s.res.SetStart(at)
	s.firstFrom, s.firstLine = at, text
	return nil
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// commit writes out what s let out and saves its state.
func (r *followRun) commit(ctx context.Context, s *followSource) error {
	if err := r.flushOutputs(); err != nil {
		return err
	}
	if r.c.checkpointDir != "" {
		if r.out != nil {
			if err := r.out.f.Sync(); err != nil {
				return fmt.Errorf("sync %s: %w", r.c.outPath, err)
			}
		}
		if r.un != nil {
			if err := r.un.f.Sync(); err != nil {
				return fmt.Errorf("sync %s: %w", r.c.unparsed, err)
			}
		}
	}
	st, err := s.res.Commit(context.WithoutCancel(ctx), s.lastAt)
	if err != nil {
		return err
	}
	if r.db == nil {
		return r.save(s, st)
	}
	// --db: the batch's records go into the store, then the state that
	// covers them is saved; a pending batch saved before the insert lets
	// a restart after a crash between the two finish it (pendingBatch).
	fst, err := r.stateFor(s, st)
	if err != nil {
		return err
	}
	pending := ""
	if len(r.pending) > 0 {
		if s.state != "" {
			pending = pendingName(s.state)
			if err := writePending(pending, fst, r.pending); err != nil {
				return err
			}
		}
		// Committed even when stopping: the batch was fed, its state follows.
		if err := r.db.Load(context.WithoutCancel(ctx), r.pending); err != nil {
			return fmt.Errorf("store records: %w", err)
		}
		clear(r.pending)
		r.pending = r.pending[:0]
	}
	if err := r.writeState(s, fst); err != nil {
		return err
	}
	if pending != "" {
		if err := os.Remove(pending); err != nil {
			return fmt.Errorf("remove pending batch: %w", err)
		}
	}
	return nil
}

// flushOutputs writes out the buffered records and unparsed lines (not
// the records for the store: commit inserts those).
func (r *followRun) flushOutputs() error {
	if err := r.bw.Flush(); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	if r.unw != nil {
		if err := r.unw.Flush(); err != nil {
			return fmt.Errorf("write unparsed lines: %w", err)
		}
	}
	return nil
}

func (r *followRun) save(s *followSource, st mtalog.ResumeState) error {
	fst, err := r.stateFor(s, st)
	if err != nil {
		return err
	}
	return r.writeState(s, fst)
}

// stateFor returns the state file's content for st, writing st's snapshot
// to a file of its own first when it is a new one.
func (r *followRun) stateFor(s *followSource, st mtalog.ResumeState) (followState, error) {
	fst := followState{Path: s.path, Resume: st}
	if s.state == "" {
		return fst, nil
	}
	fst.Resume.Snapshot = nil
	if len(st.Snapshot) > 0 {
		if st.SnapshotSeq != s.snapSeq || s.snapFile == "" {
			name := filepath.Base(stateBase(s.state)) + ".snap-" + strconv.FormatUint(st.SnapshotSeq, 10)
			if err := writeFileAtomic(filepath.Join(filepath.Dir(s.state), name), st.Snapshot); err != nil {
				return fst, fmt.Errorf("save snapshot: %w", err)
			}
			s.snapSeq, s.snapFile, s.snapSum = st.SnapshotSeq, name, sha256Hex(string(st.Snapshot))
		}
		fst.SnapshotFile, fst.SnapshotSHA256 = s.snapFile, s.snapSum
	}
	if s.firstLine != "" && bytes.Equal(st.From, s.firstFrom) {
		fst.FirstLine = s.firstLine
	}
	if r.out != nil {
		fst.Output = r.out.size
	}
	if r.un != nil {
		fst.Unparsed = r.un.size
	}
	return fst, nil
}

// writeState saves a state file, then removes the snapshot files it no
// longer names.
func (r *followRun) writeState(s *followSource, fst followState) error {
	if s.state == "" {
		return nil
	}
	b, err := json.Marshal(fst)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.state, append(b, '\n')); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if fst.SnapshotFile != s.keptSnap {
		s.keptSnap = fst.SnapshotFile
		return removeSnapshots(s.state, fst.SnapshotFile)
	}
	return nil
}

// removeSnapshots removes the snapshot files of a state file but keep.
func removeSnapshots(state, keep string) error {
	old, err := filepath.Glob(stateBase(state) + ".snap-*")
	if err != nil {
		return err
	}
	for _, f := range old {
		if filepath.Base(f) != keep {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// loadSnapshot reads the snapshot file st names into st.Resume.Snapshot,
// checking its digest, and notes it in s.
func loadSnapshot(s *followSource, st *followState) error {
	if st.SnapshotFile == "" {
		return removeSnapshots(s.state, "")
	}
	path := filepath.Join(filepath.Dir(s.state), filepath.Base(st.SnapshotFile))
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.state, err)
	}
	if sum := sha256Hex(string(b)); sum != st.SnapshotSHA256 {
		return fmt.Errorf("state file %s: snapshot %s is damaged (SHA-256 %s, want %s)", s.state, path, sum, st.SnapshotSHA256)
	}
	st.Resume.Snapshot = b
	s.snapSeq, s.snapFile, s.snapSum, s.keptSnap = st.Resume.SnapshotSeq, filepath.Base(st.SnapshotFile), st.SnapshotSHA256, filepath.Base(st.SnapshotFile)
	return removeSnapshots(s.state, s.snapFile)
}

// writePending saves the batch recs, on its way into the store, with the
// state that covers it.
func writePending(path string, fst followState, recs []*record.Record) error {
	p := pendingBatch{State: fst, Records: make([]json.RawMessage, len(recs))}
	for i, rec := range recs {
		b, err := record.MarshalJSONLine(rec)
		if err != nil {
			return err
		}
		p.Records[i] = bytes.TrimSuffix(b, []byte("\n"))
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("save pending batch: %w", err)
	}
	return nil
}

// resolvePending finishes the pending batch saved in path: it inserts the
// records the store does not hold (a crash came before or while they
// were inserted), saves the batch's state as the state file and removes
// the pending batch; it returns that state and how many records it
// inserted. A record counts as held when the store has one with the same
// time and the same content; those of the batch that the store holds more
// than once count once each.
func resolvePending(ctx context.Context, db *store.Store, path string) (followState, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return followState{}, 0, err
	}
	var p pendingBatch
	if err := json.Unmarshal(b, &p); err != nil {
		return followState{}, 0, fmt.Errorf("pending batch %s: %w", path, err)
	}
	want := map[string][]*record.Record{} // content without transcript -> records
	times := map[time.Time]bool{}
	for _, raw := range p.Records {
		rec := new(record.Record)
		if err := json.Unmarshal(raw, rec); err != nil {
			return followState{}, 0, fmt.Errorf("pending batch %s: %w", path, err)
		}
		k, err := storedContent(rec)
		if err != nil {
			return followState{}, 0, err
		}
		want[k] = append(want[k], rec)
		times[rec.Timestamp.UTC()] = true
	}
	held := map[string]int{}
	for t := range times {
		q, err := query.Parse("after:"+t.Format(time.RFC3339Nano)+" before:"+t.Add(time.Nanosecond).Format(time.RFC3339Nano), time.Now())
		if err != nil {
			continue // a time the store cannot search by: insert
		}
		for page := (store.Page{Limit: 1000}); ; {
			res, err := db.Search(ctx, q, page)
			if err != nil {
				return followState{}, 0, fmt.Errorf("pending batch %s: %w", path, err)
			}
			for _, it := range res.Items {
				k, err := storedContent(&it.Record)
				if err != nil {
					return followState{}, 0, err
				}
				held[k]++
			}
			if res.Next == "" {
				break
			}
			page.Cursor = res.Next
		}
	}
	var missing []*record.Record
	for k, recs := range want {
		if n := len(recs) - held[k]; n > 0 {
			missing = append(missing, recs[:n]...)
		}
	}
	if len(missing) > 0 {
		if err := db.Load(context.WithoutCancel(ctx), missing); err != nil {
			return followState{}, 0, fmt.Errorf("store records: %w", err)
		}
	}
	state := pendingState(path)
	sb, err := json.Marshal(p.State)
	if err != nil {
		return followState{}, 0, err
	}
	if err := writeFileAtomic(state, append(sb, '\n')); err != nil {
		return followState{}, 0, fmt.Errorf("save state: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return followState{}, 0, err
	}
	return p.State, len(missing), nil
}

// storedContent is a record as the store keeps it (without transcript),
// to compare records by content.
func storedContent(r *record.Record) (string, error) {
	c := *r
	c.Transcript = nil
	b, err := record.MarshalJSONLine(&c)
	return string(b), err
}

// idleFlusher emits, every --flush-every of wall-clock time, the messages
// that have seen no line for --flush-after: log time stands still when an
// MTA is quiet.
func (r *followRun) idleFlusher(ctx context.Context) error {
	t := time.NewTicker(r.c.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if err := r.flushIdle(ctx, now); err != nil {
				return err
			}
		}
	}
}

func (r *followRun) flushIdle(ctx context.Context, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sources {
		if s.lastAt == nil {
			continue // nothing fed yet
		}
		if err := s.res.FlushIdle(ctx, s.clock.idleBefore(now, r.c.flushAfter)); err != nil {
			return err
		}
		if err := r.commit(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// group runs goroutines until the first fails or the parent context ends,
// then cancels the rest and waits for them (errgroup's shape).
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func (g *group) start(ctx context.Context) context.Context {
	ctx, g.cancel = context.WithCancel(ctx)
	return ctx
}

func (g *group) run(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() {
				g.err = err
				g.cancel()
			})
		}
	}()
}

func (g *group) wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

// checkFollowable rejects inputs --follow cannot follow.
func checkFollowable(args []string) error {
	for _, a := range args {
		if a == "-" {
			return errors.New("--follow follows files; standard input (-) cannot be followed")
		}
		if st, err := os.Stat(a); err == nil && !st.Mode().IsRegular() {
			return fmt.Errorf("--follow: %s is not a regular file", a)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
