package store

import (
	"bufio"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// The acknowledgement log.
//
// A store on disk acknowledges a record once the record is in its
// acknowledgement log: two append-only files in the directory PATH-ack
// beside the database, one written at a time. Handle and Insert append
// the record there themselves (one write, and with SyncFull one fsync
// shared by the callers that wrote meanwhile), and return. The writer
// inserts the records of the log into SQLite later, many at once with
// their derived rows, in a transaction that also moves ack_mark (migration
// 0005, which counts the frames' sequence numbers): when indexIdle has
// passed without a new record, when ackBatch records wait, before any job
// (deletions above all) and before any read (caughtUp). Before each such
// transaction the writer switches appends to the other file; once it has
// committed, it empties the file it took the records from.
//
// A commit that carries one message dirties a dozen pages, each written
// to the WAL again by the next commit; records that share a transaction
// share those pages, and a client no longer waits for SQLite at all. The
// guarantee is the same as a commit's at the store's synchronous level:
// with SyncNormal a record whose Handle returned nil survives a crash of
// the process (the write is in the kernel's page cache), with SyncFull a
// power loss too (the log was synced).
//
// At Open, the records of both files above ack_mark are inserted (in
// sequence order, as new records are) and the files emptied, before
// anything else runs. A frame cut short or damaged (a crash in the middle
// of a write, which was then not acknowledged) ends the reading of its
// file.
//
// Only one process uses the log of a database: the first to open the
// store takes an exclusive lock (PATH-ack/lock). Another process that
// opens the same database meanwhile (smtplog search beside smtplog serve)
// leaves the log and the derived rows of the first alone, commits its own
// records directly with their derived rows, and sees the first's records
// once they are in SQLite: within indexIdle of a quiet moment, or
// ackBatch records. Records get their ids inside the transaction that
// inserts them, so that two processes never give the same one.
//
// The frame format is written here, not taken from a library: it is a
// length, a CRC-32C and the record's parts, and every library for
// write-ahead logs brings a segment manager and its own recovery rules
// around those few lines.
//
// Frame: uint32 payload length, uint32 CRC-32C of the payload, both
// little-endian, then the payload: uint64 sequence number (ack_mark
// counts in them; the record's id is given when it is inserted), the
// record's JSON (body column), its compressed transcript, and a flag byte
// followed, when 1, by the raw message (queue ID, arrival, size, zstd
// bytes). Byte strings are uvarint-length-prefixed.

// ackBatch is how many records of the log wait at most before the writer
// inserts them, when they come without a pause: more would share more
// pages per transaction, but hold more memory (a variable, so that tests
// can change it).
var ackBatch = 128

// Bound of the frame bytes the log holds before Handle waits for the
// writer (one frame larger than that still goes in alone); the bound of
// its records is Options.QueueSize.
const (
	maxAckBytes = 64 << 20
	// A frame longer than this is damage, not a record.
	maxFrame = MaxRawSize + 256<<20
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)
	// errAckDown: the log failed and is not used any more; the caller
	// commits directly.
	errAckDown = errors.New("store: acknowledgement log not in use")
)

type ackLog struct {
	dir  string
	lock *os.File
	sync bool
	kick chan struct{} // buffered, 1: records wait to be inserted
	// waiting counts the acknowledged records not yet in SQLite.
	waiting atomic.Int64

	mu           sync.Mutex
	files        [2]*ackFile
	cur          int    // the file appends go to
	next         int64  // the sequence number of the next frame
	pending      []*row // appended to files[cur], in id order
	bytes        int    // the frame bytes of pending and taken
	pendingBytes int
	room         chan struct{}
	closed       bool
	err          error // set when the log failed; appends then return errAckDown
	buf          []byte

	smu sync.Mutex // one sync at a time

	// The writer's: rows taken from the other file and not yet inserted
	// (a failed transaction leaves them for the next), and that file.
	taken     []*row
	takenFile int
}

type ackFile struct {
	f       logFile
	size    int64        // ackLog.mu
	appends atomic.Int64 // so far
	synced  int64        // ackLog.smu: the appends synced
}

// logFile is what the log needs of a file: an interface, so that tests
// can make writes and syncs fail as a full or failing disk does.
type logFile interface {
	io.ReaderAt
	WriteAt(b []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
	Name() string
}

// openAckLog opens the log of the database at path, or returns nil when
// another process holds it.
func openAckLog(path string, syncFull bool) (*ackLog, error) {
	dir := path + "-ack"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: acknowledgement log: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: acknowledgement log: %w", err)
	}
	if ok, err := tryLock(lock); err != nil || !ok {
		lock.Close()
		if err != nil {
			return nil, fmt.Errorf("store: acknowledgement log lock: %w", err)
		}
		return nil, nil
	}
	a := &ackLog{dir: dir, lock: lock, sync: syncFull, kick: make(chan struct{}, 1), room: make(chan struct{})}
	for i, name := range []string{"a", "b"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("store: acknowledgement log: %w", err)
		}
		a.files[i] = &ackFile{f: f}
	}
	if syncFull {
		// The files' directory entries must survive a power loss too.
		if err := syncDir(dir); err != nil {
			a.close()
			return nil, fmt.Errorf("store: acknowledgement log: %w", err)
		}
	}
	return a, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (a *ackLog) close() {
	for _, af := range a.files {
		if af != nil {
			af.f.Close()
		}
	}
	a.lock.Close() // releases the lock
}

// append writes rows to the log, numbering them, and returns once they
// are acknowledged: written, and with SyncFull synced. While maxRows
// records wait to be inserted, it waits at most busy (or until ctx ends)
// for room. errAckDown means the log is not in use and the rows were not
// written.
func (a *ackLog) append(ctx context.Context, rows []*row, maxRows int, busy time.Duration) error {
	size := 0
	for _, rw := range rows {
		size += rw.frameSize()
	}
	a.mu.Lock()
	var t *time.Timer
	for !a.closed && a.err == nil && a.waiting.Load() > 0 &&
		(a.waiting.Load()+int64(len(rows)) > int64(maxRows) || a.bytes+size > maxAckBytes) {
		room := a.room
		a.mu.Unlock()
		if t == nil {
			t = time.NewTimer(busy)
			defer t.Stop()
		}
		select {
		case <-room:
		case <-t.C:
			return fmt.Errorf("%w: %d records wait to be inserted", ErrBusy, a.waiting.Load())
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
		a.mu.Lock()
	}
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	if a.err != nil {
		a.mu.Unlock()
		return errAckDown
	}
	buf := a.buf[:0]
	for _, rw := range rows {
		rw.seq = a.next
		a.next++
		n := len(buf)
		buf = rw.appendFrame(buf)
		rw.frameLen = len(buf) - n
	}
	af := a.files[a.cur]
	n, err := af.f.WriteAt(buf, af.size)
	if err != nil {
		// Nothing of it is acknowledged; cut what was written, so that the
		// next frame follows the last whole one.
		if terr := af.f.Truncate(af.size); terr != nil {
			a.err = fmt.Errorf("cutting a failed write: %w", terr)
		}
		a.mu.Unlock()
		return fmt.Errorf("store: acknowledgement log: %w", err)
	}
	af.size += int64(n)
	seq := af.appends.Add(1)
	a.pending = append(a.pending, rows...)
	a.pendingBytes += len(buf)
	a.bytes += len(buf)
	a.waiting.Add(int64(len(rows)))
	if cap(buf) <= 1<<20 {
		a.buf = buf
	} else {
		a.buf = nil
	}
	a.mu.Unlock()
	if a.sync {
		if err := a.syncFile(af, seq); err != nil {
			// The rows may be inserted all the same: "may or may not
			// have been stored".
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
			return fmt.Errorf("store: acknowledgement log: %w", err)
		}
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// syncFile syncs af to its storage unless the append numbered seq was
// synced by another caller's sync already.
func (a *ackLog) syncFile(af *ackFile, seq int64) error {
	a.smu.Lock()
	defer a.smu.Unlock()
	if af.synced >= seq {
		return nil
	}
	upto := af.appends.Load()
	if err := af.f.Sync(); err != nil {
		return err
	}
	af.synced = upto
	return nil
}

// count is how many acknowledged records wait to be inserted; 0 without
// a log.
func (a *ackLog) count() int64 {
	if a == nil {
		return 0
	}
	return a.waiting.Load()
}

// take returns the rows the writer is to insert next: those a failed
// transaction left, or else every pending row, appends moving to the
// other file.
func (a *ackLog) take() []*row {
	if len(a.taken) > 0 {
		return a.taken
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return nil
	}
	a.taken, a.takenFile = a.pending, a.cur
	a.pending, a.pendingBytes = nil, 0
	a.cur ^= 1
	return a.taken
}

// inserted is called once the first n rows take returned have committed:
// they make room, and once all have, their file is emptied.
func (a *ackLog) inserted(n int) {
	bytes := 0
	for _, rw := range a.taken[:n] {
		bytes += rw.frameLen
	}
	a.taken = a.taken[n:]
	var err error
	if len(a.taken) == 0 {
		a.taken = nil
		// Appends go to the other file until the next take: no lock
		// needed to empty this one.
		err = a.files[a.takenFile].f.Truncate(0)
	}
	a.mu.Lock()
	if a.taken == nil && err == nil {
		a.files[a.takenFile].size = 0
	} // else its frames stay, all at or below ack_mark: never inserted again
	a.waiting.Add(-int64(n))
	a.bytes -= bytes
	close(a.room)
	a.room = make(chan struct{})
	a.mu.Unlock()
}

// shut refuses appends from now on: Close inserts what is in the log.
func (a *ackLog) shut() {
	a.mu.Lock()
	a.closed = true
	close(a.room)
	a.room = make(chan struct{})
	a.mu.Unlock()
}

// frameSize is about the bytes of rw's frame.
func (rw *row) frameSize() int {
	n := 32 + len(rw.body()) + len(rw.transcript)
	if rw.raw != nil {
		n += 32 + len(rw.raw.queueID) + len(rw.raw.data)
	}
	return n
}

// body is the record's JSON, the last column of rw.rec.
func (rw *row) body() []byte {
	b, _ := rw.rec[len(rw.rec)-1].([]byte)
	return b
}

func (rw *row) appendFrame(buf []byte) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, 8)...)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(rw.seq))
	buf = appendBytes(buf, rw.body())
	buf = appendBytes(buf, rw.transcript)
	if p := rw.raw; p != nil {
		buf = append(buf, 1)
		buf = appendBytes(buf, []byte(p.queueID))
		buf = binary.AppendVarint(buf, p.ts)
		buf = binary.AppendUvarint(buf, uint64(p.size))
		buf = appendBytes(buf, p.data)
	} else {
		buf = append(buf, 0)
	}
	payload := buf[start+8:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, crcTable))
	return buf
}

func appendBytes(buf, b []byte) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(b))), b...)
}

// ackFrame is a frame read back at Open.
type ackFrame struct {
	seq        int64
	body       []byte
	transcript []byte
	raw        *rawPut
}

// readFrames reads the frames of r up to the first one cut short or
// damaged, and returns them and the bytes left unread.
func readFrames(r io.Reader) (frames []ackFrame, dropped int64, err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return frames, 0, nil
			}
			if err == io.ErrUnexpectedEOF {
				return frames, countRest(br) + int64(len(hdr)), nil
			}
			return nil, 0, err
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if int64(n) > maxFrame {
			return frames, countRest(br) + int64(len(hdr)), nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return frames, int64(len(hdr)) + countRest(br), nil
			}
			return nil, 0, err
		}
		fr, ok := decodeFrame(payload)
		if !ok || crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return frames, int64(len(hdr)) + int64(n) + countRest(br), nil
		}
		frames = append(frames, fr)
	}
}

func countRest(r io.Reader) int64 {
	n, _ := io.Copy(io.Discard, r)
	return n
}

func decodeFrame(p []byte) (fr ackFrame, ok bool) {
	if len(p) < 8 {
		return fr, false
	}
	fr.seq = int64(binary.LittleEndian.Uint64(p))
	p = p[8:]
	if fr.body, p, ok = cutBytes(p); !ok {
		return fr, false
	}
	if fr.transcript, p, ok = cutBytes(p); !ok {
		return fr, false
	}
	if len(fr.transcript) == 0 {
		fr.transcript = nil
	}
	if len(p) < 1 {
		return fr, false
	}
	hasRaw := p[0]
	p = p[1:]
	if hasRaw == 0 {
		return fr, len(p) == 0
	}
	var q, data []byte
	if q, p, ok = cutBytes(p); !ok {
		return fr, false
	}
	ts, n := binary.Varint(p)
	if n <= 0 {
		return fr, false
	}
	p = p[n:]
	size, n := binary.Uvarint(p)
	if n <= 0 || size > MaxRawSize {
		return fr, false
	}
	p = p[n:]
	if data, p, ok = cutBytes(p); !ok || len(p) != 0 {
		return fr, false
	}
	fr.raw = &rawPut{queueID: string(q), ts: ts, size: int(size), data: data}
	return fr, true
}

func cutBytes(p []byte) (b, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// replayAckLog inserts the records of the log above ack_mark, in id order
// and in transactions of up to MaxBatch, with their derived rows, and
// empties the files. It runs in Open, before the writer starts.
func (s *Store) replayAckLog(ctx context.Context) error {
	a := s.ack
	var mark int64
	if err := s.w.QueryRowContext(ctx, `SELECT upto FROM ack_mark WHERE one = 1`).Scan(&mark); err != nil {
		return fmt.Errorf("store: acknowledgement mark: %w", err)
	}
	var frames []ackFrame
	for _, af := range a.files {
		fs, dropped, err := readFrames(io.NewSectionReader(af.f, 0, math.MaxInt64))
		if err != nil {
			return fmt.Errorf("store: read acknowledgement log %s: %w", af.f.Name(), err)
		}
		if dropped > 0 {
			s.opts.Logger.Warn("store: the acknowledgement log ends in an unfinished write (never acknowledged); left out",
				"file", af.f.Name(), "bytes", dropped)
		}
		for _, f := range fs {
			if f.seq > mark {
				frames = append(frames, f)
			}
		}
	}
	slices.SortFunc(frames, func(x, y ackFrame) int { return cmp.Compare(x.seq, y.seq) })
	total := 0
	a.next = mark + 1
	for len(frames) > 0 {
		n := min(len(frames), s.opts.MaxBatch)
		var rows []*row
		for _, f := range frames[:n] {
			rw, err := s.frameRow(f)
			if err != nil {
				s.opts.Logger.Warn("store: a record of the acknowledgement log does not decode; left out", "seq", f.seq, "err", err)
				continue
			}
			rows = append(rows, rw)
		}
		last := frames[n-1].seq
		frames = frames[n:]
		err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			return s.insertAcked(ctx, tx, rows, last)
		})
		if err != nil {
			return fmt.Errorf("store: insert the acknowledged records of the log: %w", err)
		}
		a.next = last + 1
		total += len(rows)
	}
	for _, af := range a.files {
		if err := af.f.Truncate(0); err != nil {
			return fmt.Errorf("store: acknowledgement log: %w", err)
		}
	}
	if total > 0 {
		s.opts.Logger.Info("store: inserted the acknowledged records of the log", "records", total)
	}
	return nil
}

// frameRow turns a frame back into the row it was written from.
func (s *Store) frameRow(f ackFrame) (*row, error) {
	var r record.Record
	if err := json.Unmarshal(f.body, &r); err != nil {
		return nil, err
	}
	rw, err := s.prepareRow(&r)
	if err != nil {
		return nil, err
	}
	rw.seq = f.seq
	rw.rec[len(rw.rec)-1] = f.body
	rw.transcript = f.transcript
	rw.raw = f.raw
	return rw, nil
}

// insertAcked inserts rows of the log (in sequence order) in tx with
// their derived rows and raw bytes, and moves ack_mark to last, the
// sequence number of the last frame they come from.
func (s *Store) insertAcked(ctx context.Context, tx *sql.Tx, rows []*row, last int64) error {
	if err := s.ins.insertRows(ctx, tx, rows); err != nil {
		return err
	}
	if err := s.ins.indexNow(ctx, tx); err != nil {
		return err
	}
	if err := s.insertRaw(ctx, tx, rows); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ack_mark SET upto = ? WHERE one = 1`, last); err != nil {
		return fmt.Errorf("store: acknowledgement mark: %w", err)
	}
	return nil
}

// applyAcked inserts the records of the log into SQLite: those waiting
// when it is called, and those a failed earlier attempt left. It runs on
// the writer goroutine.
func (s *Store) applyAcked(ctx context.Context) error {
	a := s.ack
	if a == nil {
		return nil
	}
	for range 2 { // left by a failed attempt, then the pending ones
		rows := a.take()
		if len(rows) == 0 {
			return nil
		}
		// In transactions of Options.MaxBatch at most, each of which
		// makes room: under a load the writer cannot keep up with, a
		// caller then waits for one of them, not for all the log holds.
		// (Smaller ones would make room sooner, but every transaction
		// writes the pages it touched again: a bulk load of 1,024 per
		// transaction ran 20% slower than one of 5,000.)
		for len(rows) > 0 {
			chunk := rows[:min(len(rows), s.opts.MaxBatch)]
			err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
				return s.insertAcked(ctx, tx, chunk, chunk[len(chunk)-1].seq)
			})
			if err != nil {
				return err
			}
			a.inserted(len(chunk))
			s.moved.Add(int64(len(chunk)))
			rows = rows[len(chunk):]
			// A slice of the day buckets' work per transaction of
			// records, so that a bulk load does not leave it behind.
			s.compactNow()
		}
	}
	return nil
}
