// Package follow follows a log file like `tail -F`: it reads the lines
// appended to a path, across rename rotation, copytruncate rotation, deletion
// and re-creation, and a path that does not exist yet, and keeps a
// checkpoint so that a restarted follower resumes where the consumer left
// off.
//
// # Delivery guarantee
//
// Lines are delivered in file order, in batches, to a Handler. A line is
// delivered only once its newline has been written (a partial last line is
// held until it is completed, or until the file has been rotated away, when
// it is delivered with Unterminated set). After the handler returns nil for
// a batch, the follower calls Checkpointer.Save with the position just after
// the batch; it never saves a position the handler has not acknowledged.
//
//   - Clean stop (context cancelled): the last acknowledged batch has been
//     saved; a restart neither loses nor repeats a line.
//   - Crash (kill -9) with a Checkpointer that saves separately from the
//     consumer (FileCheckpointer): no line is lost; the lines acknowledged
//     after the last completed Save — at most the one batch being saved
//     when the process died — are delivered again.
//   - Crash with a consumer that stores Batch.Checkpoint atomically with its
//     own effects and loads it back (NopSave): exactly once.
//
// Lines are never lost across rename rotation, even those written to the
// old file after the rename: the follower keeps the old file open and only
// moves on once the new file has data and the old one has been read to its
// end. The conditions for this are that each new file is seen at the path at
// least once (rotations slower than the poll interval, as logrotate's are)
// and that a writer stops writing to the old file once it has written to the
// new one. Rotated files compressed before the follower finished them cannot
// be read; that loss is reported (Stats.PossibleLoss, Event).
//
// Copytruncate rotation is detected by the file shrinking or its last-read
// bytes changing; the follower then finishes the copy (a rotated file whose
// bytes match what it had read) and restarts the truncated file at 0. Lines
// the writer wrote between logrotate's copy and its truncate are in neither
// file: copytruncate loses them by nature ("some logging data might be
// lost", logrotate(8)); nothing else is lost or repeated. A file waiting in
// the queue (the follower lagging behind a rename, or a rotation running
// while it lists the files at start) is recognised by its inode and its
// first bytes, observed while it waits; if it was truncated meanwhile, its
// copy is read first, found by those bytes, or the loss is reported.
package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Line is one line of the followed file, without its newline.
type Line struct {
	Text         string
	File         string // the name the file was opened under (the path, or a rotated name)
	Offset       int64  // byte offset of the line's first byte
	Truncated    bool   // the line was longer than MaxLineBytes; Text holds its first MaxLineBytes bytes
	Unterminated bool   // the file was rotated away with this last line lacking its newline
}

// Batch is what the handler receives: lines in file order and the position
// just after the last of them.
type Batch struct {
	Lines      []Line
	Checkpoint Checkpoint
}

// Handler consumes a batch. Returning nil acknowledges every line in it;
// returning an error stops Run with that error, without saving.
type Handler func(ctx context.Context, b Batch) error

// EventKind names what Event reports.
type EventKind string

// Events reported to Config.OnEvent.
const (
	EventOpened       EventKind = "opened"        // began reading a file
	EventRotated      EventKind = "rotated"       // a new file appeared at the path
	EventTruncated    EventKind = "truncated"     // the file shrank or was rewritten (copytruncate)
	EventPossibleLoss EventKind = "possible_loss" // lines may have been lost; Detail says why
)

// Event is a notable thing that happened to the followed file.
type Event struct {
	Kind   EventKind
	File   string
	Detail string
}

// Config configures a Follower. Zero values take the defaults.
type Config struct {
	Path         string       // the file to follow
	Checkpointer Checkpointer // nil: no persistence
	// StartAtEnd, when there is no checkpoint, skips what the file already
	// holds at start; otherwise it is read from its beginning.
	StartAtEnd   bool
	MaxLineBytes int           // longest line delivered whole (default 64 KiB)
	ReadSize     int           // bytes read per system call and per batch at most (default 64 KiB)
	PollInterval time.Duration // polling period, also with fsnotify (default 250 ms)
	NoNotify     bool          // poll only, without fsnotify
	// Rotated are glob patterns, relative to the path's directory, naming
	// rotated files (default: base.[0-9]* and base-[0-9]*). Names ending in
	// .gz, .bz2, .xz, .zst, .lz4 or .Z are never read.
	Rotated []string
	OnEvent func(Event) // optional; called from Run's goroutine
}

// Stats are counters since New.
type Stats struct {
	Lines          int64
	Bytes          int64
	TruncatedLines int64 // over-long lines cut to MaxLineBytes
	Rotations      int64
	Truncations    int64
	PossibleLoss   int64
}

// Follower follows one path. Run it once.
type Follower struct {
	cfg     Config
	handler Handler

	lines, bytes, truncLines, rotations, truncations, possibleLoss atomic.Int64
}

// New checks cfg and returns a Follower.
func New(cfg Config, h Handler) (*Follower, error) {
	if cfg.Path == "" {
		return nil, errors.New("follow: empty path")
	}
	if h == nil {
		return nil, errors.New("follow: nil handler")
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = 64 << 10
	}
	if cfg.ReadSize <= 0 {
		cfg.ReadSize = 64 << 10
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	base := filepath.Base(cfg.Path)
	if cfg.Rotated == nil {
		cfg.Rotated = []string{globEscape(base) + ".[0-9]*", globEscape(base) + "-[0-9]*"}
	}
	for _, p := range cfg.Rotated {
		if _, err := filepath.Match(p, base); err != nil {
			return nil, fmt.Errorf("follow: rotated pattern %q: %w", p, err)
		}
	}
	return &Follower{cfg: cfg, handler: h}, nil
}

// Stats returns the counters; safe to call while Run runs.
func (f *Follower) Stats() Stats {
	return Stats{
		Lines: f.lines.Load(), Bytes: f.bytes.Load(), TruncatedLines: f.truncLines.Load(),
		Rotations: f.rotations.Load(), Truncations: f.truncations.Load(), PossibleLoss: f.possibleLoss.Load(),
	}
}

type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return fileID{}
}

// source is one open file being read.
type source struct {
	f    *os.File
	name string
	id   fileID
	sp   splitter
	read int64  // offset of the next byte to read
	tail []byte // the last ≤ tailWindow bytes read, ending at read
	head []byte // the file's first ≤ headWindow bytes
	// seen is, for a queued file not yet read, the largest size observed;
	// with head it tells, when the follower switches to the file, whether
	// it was truncated (copytruncate) while it waited.
	seen int64
}

func (s *source) remember(b []byte) {
	// The head may already hold bytes observed while the file was queued.
	if start, h := s.read-int64(len(b)), int64(len(s.head)); h < headWindow && start <= h && h < s.read {
		from := h - start
		s.head = append(s.head, b[from:min(int64(len(b)), from+headWindow-h)]...)
	}
	if len(b) >= tailWindow {
		s.tail = append(s.tail[:0], b[len(b)-tailWindow:]...)
		return
	}
	keep := min(len(s.tail), tailWindow-len(b))
	s.tail = append(s.tail[:0], s.tail[len(s.tail)-keep:]...)
	s.tail = append(s.tail, b...)
}

// intact reports whether a queued file still holds what was observed of
// it: it did not shrink and its first bytes are unchanged.
func (s *source) intact() bool {
	fi, err := s.f.Stat()
	return err == nil && fi.Size() >= s.seen && sameBytes(s.f, 0, s.head)
}

// observe records, for a queued file not yet read, its size and its first
// bytes, up to headWindow; a file that is no longer intact is left as it
// was observed, for the check when the follower switches to it.
func (s *source) observe() {
	if s.read != 0 || s.sp.consumed != 0 || !s.intact() {
		return
	}
	fi, err := s.f.Stat()
	if err != nil {
		return
	}
	s.seen = max(s.seen, fi.Size())
	if h := int64(len(s.head)); h < headWindow && fi.Size() > h {
		b := make([]byte, min(fi.Size(), headWindow)-h)
		n, _ := s.f.ReadAt(b, h)
		s.head = append(s.head, b[:n]...)
	}
}

// Bounds: files queued, and identities of finished files remembered.
const (
	maxQueue = 64
	maxDone  = 64
)

// doneFile names a file read to its end: by identity and, since a deleted
// file's inode can be reused, by the hash of its first bytes.
type doneFile struct {
	id       fileID
	headLen  int
	headHash string
}

// run holds Run's state; it is owned by Run's goroutine.
type run struct {
	*Follower
	cur   *source
	queue []*source  // files to read after cur, oldest first
	done  []doneFile // the files last finished, newest last (≤ maxDone)
	buf   []byte
	batch []Line
}

// Run follows the path until ctx is done or the handler fails. It returns
// ctx's error after a clean stop.
func (f *Follower) Run(ctx context.Context) error {
	r := &run{Follower: f, buf: make([]byte, f.cfg.ReadSize)}
	defer r.closeAll()

	var events <-chan fsnotify.Event
	var errs <-chan error
	if !f.cfg.NoNotify {
		// fsnotify watches the directory so that creations and renames are
		// seen too; when it cannot (no inotify, limit reached, directory
		// missing) polling alone carries on.
		if w, err := fsnotify.NewWatcher(); err == nil {
			defer w.Close()
			if w.Add(filepath.Dir(f.cfg.Path)) == nil {
				events, errs = w.Events, w.Errors
			}
		}
	}
	if err := r.start(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(f.cfg.PollInterval)
	defer tick.Stop()
	for {
		progressed, err := r.step(ctx)
		if err != nil {
			return err
		}
		if progressed {
			if err := ctx.Err(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case _, ok := <-errs:
			if !ok {
				errs = nil
			}
		}
	}
}

func (r *run) event(kind EventKind, file, detail string) {
	switch kind {
	case EventRotated:
		r.rotations.Add(1)
	case EventTruncated:
		r.truncations.Add(1)
	case EventPossibleLoss:
		r.possibleLoss.Add(1)
	}
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(Event{Kind: kind, File: file, Detail: detail})
	}
}

func (r *run) closeAll() {
	if r.cur != nil {
		r.cur.f.Close()
	}
	for _, s := range r.queue {
		if r.cur == nil || s.f != r.cur.f {
			s.f.Close()
		}
	}
}

func (r *run) open(name string, at int64) (*source, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	s, err := r.source(fh, name, at)
	if err != nil {
		fh.Close()
		return nil, err
	}
	return s, nil
}

// source makes a source of an open file, positioned at at.
func (r *run) source(fh *os.File, name string, at int64) (*source, error) {
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("follow: %s is not a regular file", name)
	}
	s := &source{f: fh, name: name, id: idOf(fi), read: at}
	s.sp.reset(at, r.cfg.MaxLineBytes)
	if at > 0 {
		tailFrom := at - min(at, tailWindow)
		s.tail = make([]byte, at-tailFrom)
		s.head = make([]byte, min(at, headWindow))
		if _, err := fh.ReadAt(s.tail, tailFrom); err != nil {
			return nil, err
		}
		if _, err := fh.ReadAt(s.head, 0); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// rotatedFiles lists the rotated files next to the path, by name.
func (r *run) rotatedFiles() []string {
	dir := filepath.Dir(r.cfg.Path)
	var out []string
	for _, p := range r.cfg.Rotated {
		m, _ := filepath.Glob(filepath.Join(dir, p))
		for _, n := range m {
			if !compressed(n) && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

func compressed(name string) bool {
	for _, s := range []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// start positions the follower from the checkpoint, finishing a file that
// was rotated while the follower was stopped.
func (r *run) start(ctx context.Context) error {
	var ck Checkpoint
	ok := false
	if r.cfg.Checkpointer != nil {
		var err error
		ck, ok, err = r.cfg.Checkpointer.Load(ctx)
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
	}
	if !ok {
		s, err := r.open(r.cfg.Path, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // step opens it once it appears
		}
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		if r.cfg.StartAtEnd {
			if fi, err := s.f.Stat(); err == nil {
				s.f.Close()
				if s, err = r.open(r.cfg.Path, atLineEnd(s.f, fi.Size())); err != nil {
					return fmt.Errorf("follow: %w", err)
				}
			}
		}
		r.cur = s
		r.event(EventOpened, s.name, "")
		return nil
	}

	// Candidates: the path and its rotated files. First by identity (the
	// inode, content verified), then by content alone (a copytruncate copy).
	// Each candidate is opened before it is checked, so that a rename in
	// between cannot swap the file under the check.
	// A rotation running meanwhile can move the file from a name not yet
	// tried to one already tried: the search is repeated a few times.
	found := ""
	var s *source
	for attempt := 0; attempt < 3 && found == ""; attempt++ {
		names := append([]string{r.cfg.Path}, r.rotatedFiles()...)
		for pass := 0; pass < 2 && found == ""; pass++ {
			for _, n := range names {
				fh, err := os.Open(n)
				if err != nil {
					continue
				}
				fi, err := fh.Stat()
				if err != nil || fi.Size() < ck.Offset || (pass == 0 && idOf(fi) != (fileID{ck.Dev, ck.Ino})) || !ck.matches(fh) {
					fh.Close()
					continue
				}
				if s, err = r.source(fh, n, ck.Offset); err != nil {
					fh.Close()
					return fmt.Errorf("follow: %w", err)
				}
				found = n
				break
			}
		}
	}
	if found == "" {
		r.event(EventPossibleLoss, r.cfg.Path, "the checkpoint's file was not found (deleted, compressed or rewritten); starting the path from its beginning")
		s, err := r.open(r.cfg.Path, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		r.cur = s
		r.event(EventOpened, s.name, "")
		return nil
	}
	r.cur = s
	r.event(EventOpened, s.name, fmt.Sprintf("resumed at %d", ck.Offset))
	if found == r.cfg.Path {
		if pfi, err := os.Stat(found); err == nil && idOf(pfi) == s.id {
			return nil
		}
	}
	// The checkpoint's file was rotated (or copied) away: what follows it
	// is every file modified since it, oldest first, and last the path.
	cfi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	// Each file is opened before it is checked (fstat), so that a rotation
	// running meanwhile cannot swap it; the listing is repeated until it
	// shows no file not yet seen, since such a rotation can also move a
	// file from a name not yet listed to one already listed.
	type cand struct {
		q   *source
		mod time.Time
	}
	var later []cand
	seen := map[fileID]bool{s.id: true}
	for attempt := 0; attempt < 4; attempt++ {
		added := false
		for _, n := range r.rotatedFiles() {
			fh, err := os.Open(n)
			if err != nil {
				continue
			}
			fi, err := fh.Stat()
			if err != nil || seen[idOf(fi)] || len(later) >= maxQueue {
				fh.Close()
				continue
			}
			seen[idOf(fi)] = true
			if fi.ModTime().Before(cfi.ModTime()) {
				fh.Close()
				continue
			}
			q, err := r.source(fh, n, 0)
			if err != nil {
				fh.Close()
				continue
			}
			q.observe()
			later = append(later, cand{q, fi.ModTime()})
			added = true
		}
		if !added {
			break
		}
	}
	slices.SortStableFunc(later, func(a, b cand) int { return a.mod.Compare(b.mod) })
	for _, c := range later {
		r.queue = append(r.queue, c.q)
	}
	if q, err := r.open(r.cfg.Path, 0); err == nil && !r.known(q.id) {
		q.observe()
		r.queue = append(r.queue, q)
	} else if err == nil {
		q.f.Close()
	}
	return nil
}

// atLineEnd returns the offset just after the last newline before size.
func atLineEnd(f io.ReaderAt, size int64) int64 {
	const chunk = 4096
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		from := max(0, end-chunk)
		n, _ := f.ReadAt(buf[:end-from], from)
		if i := strings.LastIndexByte(string(buf[:n]), '\n'); i >= 0 {
			return from + int64(i) + 1
		}
		end = from
	}
	return 0
}

func (r *run) known(id fileID) bool {
	if r.cur != nil && r.cur.id == id {
		return true
	}
	for _, q := range r.queue {
		if q.id == id {
			return true
		}
	}
	return false
}

// step reads what is new and handles rotation; it reports whether it made
// progress (read bytes or switched files).
func (r *run) step(ctx context.Context) (bool, error) {
	if r.cur == nil {
		s, err := r.open(r.cfg.Path, 0)
		if err != nil {
			return false, nil // not there yet
		}
		r.cur = s
		r.event(EventOpened, s.name, "")
	}
	// A new file at the path is remembered at once, so that every generation
	// is read even if the path is rotated again before cur is finished.
	if fi, err := os.Stat(r.cfg.Path); err == nil && !r.known(idOf(fi)) && len(r.queue) < maxQueue {
		if q, err := r.open(r.cfg.Path, 0); err == nil {
			if r.known(q.id) {
				q.f.Close()
			} else {
				q.observe()
				r.queue = append(r.queue, q)
				r.event(EventRotated, r.cfg.Path, "")
			}
		}
	}
	for _, q := range r.queue {
		if len(q.head) < headWindow {
			q.observe()
		}
	}
	if err := r.checkTruncated(ctx); err != nil {
		return false, err
	}
	// Decide before draining: once the next file has data, a writer has moved
	// on, so what cur holds after this drain is all it will ever hold.
	nextReady := false
	if len(r.queue) > 0 {
		if fi, err := r.queue[0].f.Stat(); err == nil && fi.Size() > r.queue[0].read {
			nextReady = true
		}
	}
	n, switched, err := r.drain(ctx)
	if err != nil || n > 0 || switched {
		return n > 0 || switched, err
	}
	if !nextReady {
		return false, nil
	}
	// Finish cur: an unterminated last line is delivered as is.
	if l, ok := r.cur.sp.flush(r.cur.name); ok {
		r.batch = append(r.batch, l)
		if err := r.deliver(ctx); err != nil {
			return false, err
		}
	}
	old := r.cur
	r.finished(old)
	r.cur, r.queue = r.queue[0], r.queue[1:]
	if r.cur.f != old.f {
		old.f.Close()
	}
	r.event(EventOpened, r.cur.name, "")
	return true, nil
}

// finished remembers that a file was read to its end.
func (r *run) finished(s *source) {
	if len(r.done) == maxDone {
		r.done = append(r.done[:0], r.done[1:]...)
	}
	r.done = append(r.done, doneFile{id: s.id, headLen: len(s.head), headHash: sum(s.head)})
}

// wasRead reports whether fh is a file already read to its end.
func (r *run) wasRead(fh *os.File, id fileID) bool {
	for _, d := range r.done {
		if d.id == id {
			if h, ok := hashRange(fh, 0, int64(d.headLen)); ok && h == d.headHash {
				return true
			}
		}
	}
	return false
}

// rewrittenQueued handles cur, a file that waited in the queue and was
// truncated meanwhile (copytruncate while the follower lagged behind a
// rename, or while it listed the files at start): what it held is in a
// copy, which is read first; the truncated file follows it from 0. The
// copy may have been read already (queued itself, when it appeared while
// the follower listed the files at start).
func (r *run) rewrittenQueued() {
	s := r.cur
	r.event(EventTruncated, s.name, fmt.Sprintf("truncated or rewritten while queued (had %d bytes)", s.seen))
	restart := &source{f: s.f, name: s.name, id: s.id}
	restart.sp.reset(0, r.cfg.MaxLineBytes)
	cp, read := r.findCopy(s, 0, nil)
	switch {
	case cp != nil:
		r.cur = cp
		r.queue = append([]*source{restart}, r.queue...)
		r.event(EventOpened, cp.name, "copy of "+s.name)
	case read:
		r.cur = restart
	default:
		r.event(EventPossibleLoss, s.name, "truncated while queued and no rotated copy holds what it had")
		r.cur = restart
	}
}

// findCopy looks among the rotated files for a copy of s holding its first
// bytes and, when tail is not empty, tail just before at; the copy is
// positioned at at, with s's splitter state. read reports that the only
// copy found was already read to its end.
func (r *run) findCopy(s *source, at int64, tail []byte) (cp *source, read bool) {
	if at == 0 && len(s.head) == 0 {
		return nil, false // nothing to recognise a copy by
	}
	for _, n := range r.rotatedFiles() {
		fh, err := os.Open(n)
		if err != nil {
			continue
		}
		fi, err := fh.Stat()
		if err != nil || idOf(fi) == s.id || r.known(idOf(fi)) || fi.Size() < max(at, s.seen) ||
			!sameBytes(fh, at-int64(len(tail)), tail) || !sameBytes(fh, 0, s.head) {
			fh.Close()
			continue
		}
		if r.wasRead(fh, idOf(fi)) {
			fh.Close()
			read = true
			continue
		}
		cp = &source{f: fh, name: n, id: idOf(fi), sp: s.sp, read: at, tail: tail, head: s.head}
		if at == 0 {
			cp.sp.reset(0, r.cfg.MaxLineBytes)
			cp.head = nil
		}
		return cp, false
	}
	return nil, read
}

// checkTruncated detects copytruncate: cur shrank below what was read, or
// the bytes last read are no longer there.
func (r *run) checkTruncated(ctx context.Context) error {
	s := r.cur
	if s.read == 0 && s.sp.consumed == 0 {
		// Not read yet: compare with what was observed while it was queued.
		if !s.intact() {
			r.rewrittenQueued()
		}
		return nil
	}
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	if fi.Size() >= s.read && sameBytes(s.f, s.read-int64(len(s.tail)), s.tail) {
		return nil
	}
	r.event(EventTruncated, s.name, fmt.Sprintf("size %d < read offset %d or content changed", fi.Size(), s.read))
	// Look for the copy: a rotated file holding the bytes read so far. It
	// continues exactly where cur was; the truncated file follows it from 0.
	restart := &source{f: s.f, name: s.name, id: s.id}
	restart.sp.reset(0, r.cfg.MaxLineBytes)
	if cp, _ := r.findCopy(s, s.read, s.tail); cp != nil {
		r.cur = cp
		r.queue = append([]*source{restart}, r.queue...)
		return nil
	}
	r.event(EventPossibleLoss, s.name, "truncated and no rotated copy holds the unread rest")
	r.cur = restart
	return nil
}

// drain reads cur to its current end, delivering complete lines batch by
// batch. It returns the number of bytes read, and switched when it found
// cur, a file observed while queued, truncated at its first read and
// switched to its copy instead.
func (r *run) drain(ctx context.Context) (total int64, switched bool, err error) {
	s := r.cur
	for range 64 { // bounded: step checks rotation between rounds
		if err := ctx.Err(); err != nil {
			return total, false, err
		}
		n, err := s.f.ReadAt(r.buf, s.read)
		if s.read == 0 && s.sp.consumed == 0 && (n > 0 || s.seen > 0) {
			// The first read of a file observed while queued: the bytes
			// must be those observed (checkTruncated compared them just
			// before, but the file may have been truncated since).
			k := min(n, len(s.head))
			if !bytes.Equal(r.buf[:k], s.head[:k]) || (n < len(r.buf) && int64(n) < s.seen) {
				r.rewrittenQueued()
				return total, true, nil
			}
		}
		if n > 0 {
			chunk := r.buf[:n]
			s.read += int64(n)
			total += int64(n)
			s.remember(chunk)
			s.sp.feed(chunk, func(l Line) {
				l.File = s.name
				r.batch = append(r.batch, l)
			})
			if err := r.deliver(ctx); err != nil {
				return total, false, err
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return total, false, fmt.Errorf("follow: read %s: %w", s.name, err)
		}
		if n < len(r.buf) {
			return total, false, nil
		}
	}
	return total, false, nil
}

// deliver hands the pending batch to the handler and saves the checkpoint.
func (r *run) deliver(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	// The checkpoint is made from what was read, not read again: the file
	// may have been truncated since.
	s := r.cur
	last := r.batch[len(r.batch)-1]
	lastLen := min(len(last.Text), tailWindow)
	ck := Checkpoint{
		Path: r.cfg.Path, Dev: s.id.dev, Ino: s.id.ino, Offset: s.sp.committed,
		HeadHash: sum(s.head[:min(s.sp.committed, int64(len(s.head)))]),
		LastLine: last.Offset, LastLen: lastLen, LastHash: sum([]byte(last.Text[:lastLen])),
	}
	b := Batch{Lines: r.batch, Checkpoint: ck}
	r.batch = nil
	if err := r.handler(ctx, b); err != nil {
		return err
	}
	var nb int64
	for _, l := range b.Lines {
		nb += int64(len(l.Text)) + 1
		if l.Truncated {
			r.truncLines.Add(1)
		}
	}
	r.lines.Add(int64(len(b.Lines)))
	r.bytes.Add(nb)
	if r.cfg.Checkpointer != nil {
		// The batch is acknowledged: save even if ctx was cancelled meanwhile.
		if err := r.cfg.Checkpointer.Save(context.WithoutCancel(ctx), ck); err != nil {
			return fmt.Errorf("follow: %w", err)
		}
	}
	return nil
}

// globEscape quotes the glob metacharacters of a file name.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
