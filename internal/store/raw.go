package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Raw message storage for capture mode.
//
// Capture keeps the exact bytes of every message the capture server
// accepted, zstd-compressed, in the table raw_messages (migration 0002),
// keyed by the queue ID the capture server gave the message, which is also
// the queue_id of its message record. It keeps a read flag and tags per
// message, and applies capture retention (the newest N messages, a maximum
// age) as messages arrive, deleting the oldest message records, their
// child rows and their bytes in one transaction. A trigger deletes the
// bytes of any message record deleted otherwise (Prune).
//
// # Durability
//
// Park compresses a message's bytes and holds them, keyed by queue ID,
// until the store's Handle (or Insert) receives the message record with
// that queue ID: the writer then inserts the bytes in the transaction that
// inserts the record, and applies capture retention in it, so one commit
// (synchronous level of the store) makes both durable, and Handle returns
// nil only after it. Bytes whose record does not follow within ParkTTL
// (its Handle failed before queueing, or it never came) are dropped; Park
// refuses with ErrBusy while MaxParked messages or MaxParkedBytes are held.
//
// Put returns nil only after the transaction holding the bytes has
// committed, with the store's synchronous level: the same guarantee as
// Handle. Concurrent Puts share commits: the first caller to find no
// commit in progress commits every Put queued so far in one transaction
// (and hands the next batch to one of the callers still waiting), so the
// fsync is paid once per batch, on the store's single writer, between its
// record batches.

// Codecs of raw_messages.codec.
const (
	codecDeflate = 1 // reserved: DEFLATE, as transcripts
	codecZstd    = 2
)

// DefaultCaptureKeep is how many messages capture retention keeps by
// default.
const DefaultCaptureKeep = 500

// MaxRawSize bounds a message Capture decompresses (and stores).
const MaxRawSize = 1 << 30

// CaptureOptions configures capture storage.
type CaptureOptions struct {
	// Keep is how many messages are kept, the newest; 0 means
	// DefaultCaptureKeep, a negative number no limit. Up to Keep/16 more
	// may be kept for a moment: retention deletes down to Keep once that
	// many more have arrived.
	Keep int
	// MaxAge deletes messages older than this as new ones arrive; 0: no
	// limit.
	MaxAge time.Duration
	// Level is the zstd level; default zstd.SpeedFastest.
	Level zstd.EncoderLevel
}

// Capture stores the raw bytes of captured messages in a Store. It is safe
// for concurrent use. Close it before the Store.
type Capture struct {
	s    *Store
	opts CaptureOptions
	enc  *zstd.Encoder
	dec  *zstd.Decoder
	// prep are statements prepared on the writer's connection, by their
	// SQL (see rawPrepared); read-only after NewCapture.
	prep map[string]*sql.Stmt

	mu       sync.Mutex
	pending  []*rawPut
	flushing bool
}

type rawPut struct {
	c       *Capture  // whose retention applies (Park)
	at      time.Time // when parked
	queueID string
	ts      int64
	size    int
	data    []byte
	done    chan error // buffered, 1; errLead hands over the next commit
}

var errLead = errors.New("store: lead the next raw commit")

// RawMeta describes a kept message.
type RawMeta struct {
	QueueID string
	Time    time.Time
	Size    int64
	Read    bool
	Tags    []string
}

// NewCapture returns capture storage on s.
func NewCapture(s *Store, opts CaptureOptions) (*Capture, error) {
	if opts.Keep == 0 {
		opts.Keep = DefaultCaptureKeep
	}
	if opts.MaxAge < 0 {
		return nil, errors.New("store: negative capture MaxAge")
	}
	if opts.Level == 0 {
		opts.Level = zstd.SpeedFastest
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("store: zstd: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxRawSize+1),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("store: zstd: %w", err)
	}
	c := &Capture{s: s, opts: opts, enc: enc, dec: dec}
	if err := c.prepare(context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the compressors and prepared statements. It does not
// close the Store.
func (c *Capture) Close() error {
	for _, st := range c.prep {
		st.Close()
	}
	c.dec.Close()
	return c.enc.Close()
}

// The statements of capture retention, which runs in every commit that
// brings messages while more than Keep are kept: parsing them each time
// cost more than running them, so they are prepared once, on the writer's
// connection, after its temporary tables exist.
var (
	rawTempTables = []string{
		`CREATE TEMP TABLE IF NOT EXISTS raw_doomed (queue_id TEXT PRIMARY KEY)`,
		`CREATE TEMP TABLE IF NOT EXISTS raw_doomed_records (id INTEGER PRIMARY KEY, session_id TEXT)`,
	}
	rawIDSpan    = `SELECT coalesce((SELECT max(id) FROM raw_messages) - (SELECT min(id) FROM raw_messages) + 1, 0)`
	rawKeepCut   = `SELECT id FROM raw_messages ORDER BY id DESC LIMIT 1 OFFSET ?`
	rawAgeCheck  = `SELECT 1 FROM raw_messages WHERE ts < ? LIMIT 1`
	rawDoomByID  = `INSERT OR IGNORE INTO raw_doomed SELECT queue_id FROM raw_messages WHERE id <= ?`
	rawDoomByAge = `INSERT OR IGNORE INTO raw_doomed SELECT queue_id FROM raw_messages WHERE ts < ?`
	rawPutSQL    = `INSERT INTO raw_messages (queue_id, ts, size, codec, data) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (queue_id) DO UPDATE SET ts = excluded.ts, size = excluded.size, codec = excluded.codec, data = excluded.data`
	rawDoomedClear   = []string{`DELETE FROM raw_doomed`, `DELETE FROM raw_doomed_records`}
	rawDoomedRecords = []string{
		`INSERT OR IGNORE INTO raw_doomed_records SELECT id, session_id FROM records
			WHERE queue_id IN (SELECT queue_id FROM raw_doomed) AND type = 'message' AND source = 'capture'`,
		// Session records whose every message goes.
		`INSERT OR IGNORE INTO raw_doomed_records SELECT s.id, s.session_id FROM records s
			WHERE s.session_id IN (SELECT session_id FROM raw_doomed_records WHERE session_id IS NOT NULL)
			AND s.type = 'session' AND s.source = 'capture'
			AND NOT EXISTS (SELECT 1 FROM records m WHERE m.session_id = s.session_id AND m.type = 'message' AND m.source = 'capture'
				AND m.id NOT IN (SELECT id FROM raw_doomed_records))`,
	}
	rawDoomedMaxID = `SELECT coalesce(max(id), 0) FROM raw_doomed_records`
	rawDeletes     = append(deleteRecordsIn("raw_doomed_records"),
		`DELETE FROM raw_messages WHERE queue_id IN (SELECT queue_id FROM raw_doomed)`)
)

func rawPrepared() []string {
	q := append([]string{rawIDSpan, rawKeepCut, rawAgeCheck, rawDoomByID, rawDoomByAge, rawPutSQL, rawDoomedMaxID}, rawTempTables...)
	q = append(q, rawDoomedClear...)
	q = append(q, rawDoomedRecords...)
	return append(q, rawDeletes...)
}

func (c *Capture) prepare(ctx context.Context) error {
	if err := c.s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range rawTempTables {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("store: capture tables: %w", err)
	}
	c.prep = map[string]*sql.Stmt{}
	for _, q := range rawPrepared() {
		st, err := c.s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("store: prepare capture statement: %w", err)
		}
		c.prep[q] = st
	}
	return nil
}

// exec runs q in tx, prepared when it is one of rawPrepared. (Should the
// writer's connection ever be replaced, database/sql prepares again on the
// new one; deleteRaw creates the temporary tables first, so that works.)
// exec runs q in tx, with c's prepared statement when it has one; c may
// be nil (bytes read back from the acknowledgement log at Open).
func (c *Capture) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if c == nil {
		return tx.ExecContext(ctx, q, args...)
	}
	if st := c.prep[q]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

func (c *Capture) queryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	if st := c.prep[q]; st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, q, args...)
}

// Bounds of the bytes Park holds.
const (
	ParkTTL        = 2 * time.Minute
	MaxParked      = 10000
	MaxParkedBytes = 1 << 30 // compressed
)

// Park holds the exact bytes of one message under queueID until the
// message record with that queue ID reaches the store, which commits both
// in one transaction (see Durability). body is not kept after Park
// returns. The bytes are durable only once that record's Handle returned
// nil.
func (c *Capture) Park(queueID string, body []byte) error {
	p, err := c.rawPut(queueID, body)
	if err != nil {
		return err
	}
	p.c, p.done = c, nil
	return c.s.park(p)
}

func (c *Capture) rawPut(queueID string, body []byte) (*rawPut, error) {
	if queueID == "" {
		return nil, errors.New("store: raw message without a queue ID")
	}
	if len(body) > MaxRawSize {
		return nil, fmt.Errorf("store: raw message of %d bytes is over the limit of %d", len(body), MaxRawSize)
	}
	return &rawPut{
		queueID: queueID,
		ts:      unixNano(c.s.opts.Now()),
		size:    len(body),
		data:    c.enc.EncodeAll(body, make([]byte, 0, len(body)/3+64)),
		done:    make(chan error, 1),
	}, nil
}

// parked is what Park holds, on the Store so that every Capture of it
// shares one map that the writer path consults.
type parked struct {
	mu    sync.Mutex
	m     map[string]*rawPut
	bytes int
	swept time.Time
	cnt   atomic.Int64 // len(m), read without mu
}

func (s *Store) park(p *rawPut) error {
	now := time.Now()
	p.at = now
	pk := &s.parked
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.m == nil {
		pk.m = map[string]*rawPut{}
	}
	if now.Sub(pk.swept) > ParkTTL/4 || len(pk.m) >= MaxParked || pk.bytes+len(p.data) > MaxParkedBytes {
		pk.swept = now
		for q, o := range pk.m {
			if now.Sub(o.at) > ParkTTL {
				delete(pk.m, q)
				pk.bytes -= len(o.data)
			}
		}
	}
	if o, ok := pk.m[p.queueID]; ok {
		delete(pk.m, p.queueID)
		pk.bytes -= len(o.data)
	}
	if len(pk.m) >= MaxParked || (len(pk.m) > 0 && pk.bytes+len(p.data) > MaxParkedBytes) {
		pk.cnt.Store(int64(len(pk.m)))
		return fmt.Errorf("%w: %d messages (%d bytes) wait for their records", ErrBusy, len(pk.m), pk.bytes)
	}
	pk.m[p.queueID] = p
	pk.bytes += len(p.data)
	pk.cnt.Store(int64(len(pk.m)))
	return nil
}

// unpark takes the bytes parked under queueID, if any.
func (s *Store) unpark(queueID string) *rawPut {
	pk := &s.parked
	if queueID == "" || pk.cnt.Load() == 0 {
		return nil
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	p := pk.m[queueID]
	if p != nil {
		delete(pk.m, queueID)
		pk.bytes -= len(p.data)
		pk.cnt.Store(int64(len(pk.m)))
	}
	return p
}

// insertRaw inserts the parked bytes of rows, in the transaction that
// inserts the records, and applies the retention of their Captures. Bytes
// read back from the acknowledgement log at Open have no Capture yet: the
// next message's retention covers them.
func (s *Store) insertRaw(ctx context.Context, tx *sql.Tx, rows []*row) error {
	var caps []*Capture
	for _, rw := range rows {
		p := rw.raw
		if p == nil {
			continue
		}
		if err := p.c.putRaw(ctx, tx, p); err != nil {
			return err
		}
		if p.c != nil && !slices.Contains(caps, p.c) {
			caps = append(caps, p.c)
		}
	}
	for _, c := range caps {
		if err := c.retain(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

func (c *Capture) putRaw(ctx context.Context, tx *sql.Tx, p *rawPut) error {
	if _, err := c.exec(ctx, tx, rawPutSQL, p.queueID, p.ts, p.size, codecZstd, p.data); err != nil {
		return fmt.Errorf("store: put raw message: %w", err)
	}
	return nil
}

// Put stores the exact bytes of one message under queueID and returns
// once they are durable (see Durability). body is not kept after Put
// returns. Capture retention is applied in the same transaction.
func (c *Capture) Put(ctx context.Context, queueID string, body []byte) error {
	p, err := c.rawPut(queueID, body)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.pending = append(c.pending, p)
	lead := !c.flushing
	c.flushing = true
	c.mu.Unlock()
	if !lead {
		// Not cancelled by ctx: the batch holding p commits in bounded
		// time (or fails when the store closes), and a caller that leaves
		// could not hand on the lead.
		if err := <-p.done; err != errLead {
			return err
		}
	}
	c.commit(ctx)
	return <-p.done
}

// commit commits what is pending in one transaction, then hands the next
// batch, if any, to the first of its callers.
func (c *Capture) commit(ctx context.Context) {
	c.mu.Lock()
	batch := c.pending
	c.pending = nil
	c.mu.Unlock()
	err := c.s.do(context.WithoutCancel(ctx), func(ctx context.Context, tx *sql.Tx) error {
		for _, p := range batch {
			if err := c.putRaw(ctx, tx, p); err != nil {
				return err
			}
		}
		return c.retain(ctx, tx)
	})
	for _, p := range batch {
		p.done <- err
	}
	c.mu.Lock()
	if len(c.pending) > 0 {
		c.pending[0].done <- errLead
	} else {
		c.flushing = false
	}
	c.mu.Unlock()
}

// keepSlack is how many messages beyond Keep capture retention lets
// arrive before it deletes the oldest down to Keep: a sixteenth of Keep
// (none below 16), so that the cost of a deletion (a dozen statements,
// and the pages it dirties at the old end of every table) is shared by
// many messages instead of paid by each.
func keepSlack(keep int) int { return keep / 16 }

// retain applies capture retention inside tx.
func (c *Capture) retain(ctx context.Context, tx *sql.Tx) error {
	var doom []func(ctx context.Context, tx *sql.Tx) (sql.Result, error)
	if c.opts.Keep > 0 {
		// IDs only grow, so the span of IDs bounds how many rows there
		// are: a cheap test that spares the walk over Keep rows below.
		var span int64
		if err := c.queryRow(ctx, tx, rawIDSpan).Scan(&span); err != nil {
			return fmt.Errorf("store: capture retention: %w", err)
		}
		var cut int64
		err := sql.ErrNoRows
		if span > int64(c.opts.Keep+keepSlack(c.opts.Keep)) {
			err = c.queryRow(ctx, tx, rawKeepCut, c.opts.Keep+keepSlack(c.opts.Keep)).Scan(&cut)
		}
		if err == nil && keepSlack(c.opts.Keep) > 0 {
			err = c.queryRow(ctx, tx, rawKeepCut, c.opts.Keep).Scan(&cut)
		}
		switch {
		case err == nil:
			doom = append(doom, func(ctx context.Context, tx *sql.Tx) (sql.Result, error) {
				return c.exec(ctx, tx, rawDoomByID, cut)
			})
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: capture retention: %w", err)
		}
	}
	if c.opts.MaxAge > 0 {
		cut := unixNano(c.s.opts.Now().Add(-c.opts.MaxAge))
		var one int
		err := c.queryRow(ctx, tx, rawAgeCheck, cut).Scan(&one)
		switch {
		case err == nil:
			doom = append(doom, func(ctx context.Context, tx *sql.Tx) (sql.Result, error) {
				return c.exec(ctx, tx, rawDoomByAge, cut)
			})
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: capture retention: %w", err)
		}
	}
	if len(doom) == 0 {
		return nil
	}
	_, err := c.deleteRaw(ctx, tx, doom...)
	return err
}

// doomSel returns a doom step that runs INSERT OR IGNORE INTO raw_doomed
// sel: sel selects queue IDs.
func (c *Capture) doomSel(sel string, args ...any) func(ctx context.Context, tx *sql.Tx) (sql.Result, error) {
	return func(ctx context.Context, tx *sql.Tx) (sql.Result, error) {
		return c.exec(ctx, tx, `INSERT OR IGNORE INTO raw_doomed `+sel, args...)
	}
}

// deleteRaw deletes the raw messages whose queue IDs the doom steps put
// into raw_doomed, their message records with the records' child rows,
// and the session records left with no message. It returns how many raw
// messages it deleted.
func (c *Capture) deleteRaw(ctx context.Context, tx *sql.Tx, doom ...func(ctx context.Context, tx *sql.Tx) (sql.Result, error)) (int64, error) {
	for _, q := range append(rawTempTables[:len(rawTempTables):len(rawTempTables)], rawDoomedClear...) {
		if _, err := c.exec(ctx, tx, q); err != nil {
			return 0, fmt.Errorf("store: delete raw messages: %w", err)
		}
	}
	var n int64
	for _, d := range doom {
		res, err := d(ctx, tx)
		if err != nil {
			return 0, fmt.Errorf("store: delete raw messages: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("store: delete raw messages: %w", err)
		}
		n += k
	}
	if n == 0 {
		return 0, nil
	}
	for _, q := range rawDoomedRecords {
		if _, err := c.exec(ctx, tx, q); err != nil {
			return 0, fmt.Errorf("store: delete raw messages: %w", err)
		}
	}
	// Retention runs inside a batch's transaction, where records may still
	// wait for their derived rows. Should one of them be doomed, they are
	// all written first, so that the deletions take away only what was
	// added (index.go); retention usually deletes records far older.
	var maxID int64
	if err := c.queryRow(ctx, tx, rawDoomedMaxID).Scan(&maxID); err != nil {
		return 0, fmt.Errorf("store: delete raw messages: %w", err)
	}
	if err := c.s.ins.indexThrough(ctx, tx, maxID); err != nil {
		return 0, err
	}
	c.s.ins.deleted = true
	for _, q := range rawDeletes {
		if _, err := c.exec(ctx, tx, q); err != nil {
			return 0, fmt.Errorf("store: delete raw messages: %w", err)
		}
	}
	return n, nil
}

// Get returns a message's metadata and exact bytes.
func (c *Capture) Get(ctx context.Context, queueID string) (RawMeta, []byte, error) {
	var m RawMeta
	var ts int64
	var codec int
	var tags string
	var data []byte
	if err := c.s.caughtUp(ctx); err != nil {
		return RawMeta{}, nil, fmt.Errorf("store: get raw message: %w", err)
	}
	err := c.s.r.QueryRowContext(ctx, `SELECT ts, size, read, tags, codec, data FROM raw_messages WHERE queue_id = ?`, queueID).
		Scan(&ts, &m.Size, &m.Read, &tags, &codec, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return RawMeta{}, nil, fmt.Errorf("raw message %q: %w", queueID, ErrNotFound)
	}
	if err != nil {
		return RawMeta{}, nil, fmt.Errorf("store: get raw message: %w", err)
	}
	m.QueueID, m.Time, m.Tags = queueID, time.Unix(0, ts).UTC(), parseTags(tags)
	body, err := c.decode(codec, data, m.Size)
	if err != nil {
		return RawMeta{}, nil, fmt.Errorf("store: raw message %q: %w", queueID, err)
	}
	return m, body, nil
}

func (c *Capture) decode(codec int, data []byte, size int64) ([]byte, error) {
	if codec != codecZstd {
		return nil, fmt.Errorf("unknown codec %d", codec)
	}
	if size < 0 || size > MaxRawSize {
		return nil, fmt.Errorf("size %d out of range", size)
	}
	out, err := c.dec.DecodeAll(data, make([]byte, 0, size))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("decompressed %d bytes, stored size %d", len(out), size)
	}
	return out, nil
}

// Meta returns the metadata of the given messages (those that exist), in
// no particular order.
func (c *Capture) Meta(ctx context.Context, queueIDs []string) (map[string]RawMeta, error) {
	out := make(map[string]RawMeta, len(queueIDs))
	if err := c.s.caughtUp(ctx); err != nil {
		return nil, fmt.Errorf("store: raw metadata: %w", err)
	}
	for len(queueIDs) > 0 {
		n := min(len(queueIDs), 500)
		args := make([]any, n)
		for i, q := range queueIDs[:n] {
			args[i] = q
		}
		queueIDs = queueIDs[n:]
		rows, err := c.s.r.QueryContext(ctx, `SELECT queue_id, ts, size, read, tags FROM raw_messages
			WHERE queue_id IN (?`+strings.Repeat(", ?", n-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: raw metadata: %w", err)
		}
		ms, err := scanMeta(rows)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			out[m.QueueID] = m
		}
	}
	return out, nil
}

// List returns the metadata of up to limit messages, newest first,
// skipping the start newest; with the totals of all kept messages.
func (c *Capture) List(ctx context.Context, start, limit int) (ms []RawMeta, total, unread int64, err error) {
	if err := c.s.caughtUp(ctx); err != nil {
		return nil, 0, 0, fmt.Errorf("store: list raw messages: %w", err)
	}
	if err := c.s.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(read = 0), 0) FROM raw_messages`).Scan(&total, &unread); err != nil {
		return nil, 0, 0, fmt.Errorf("store: count raw messages: %w", err)
	}
	rows, err := c.s.r.QueryContext(ctx, `SELECT queue_id, ts, size, read, tags FROM raw_messages ORDER BY id DESC LIMIT ? OFFSET ?`,
		max(limit, 0), max(start, 0))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("store: list raw messages: %w", err)
	}
	ms, err = scanMeta(rows)
	return ms, total, unread, err
}

// Latest returns the queue ID of the newest message.
func (c *Capture) Latest(ctx context.Context) (string, error) {
	var q string
	if err := c.s.caughtUp(ctx); err != nil {
		return "", fmt.Errorf("store: latest raw message: %w", err)
	}
	err := c.s.r.QueryRowContext(ctx, `SELECT queue_id FROM raw_messages ORDER BY id DESC LIMIT 1`).Scan(&q)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("no messages: %w", ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("store: latest raw message: %w", err)
	}
	return q, nil
}

// Tags returns every tag in use, sorted.
func (c *Capture) Tags(ctx context.Context) ([]string, error) {
	if err := c.s.caughtUp(ctx); err != nil {
		return nil, fmt.Errorf("store: tags: %w", err)
	}
	rows, err := c.s.r.QueryContext(ctx, `SELECT DISTINCT j.value FROM raw_messages, json_each(raw_messages.tags) j
		WHERE raw_messages.tags <> '' ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("store: tags: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("store: tags: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func scanMeta(rows *sql.Rows) ([]RawMeta, error) {
	defer rows.Close()
	var out []RawMeta
	for rows.Next() {
		var m RawMeta
		var ts int64
		var tags string
		if err := rows.Scan(&m.QueueID, &ts, &m.Size, &m.Read, &tags); err != nil {
			return nil, fmt.Errorf("store: raw metadata: %w", err)
		}
		m.Time, m.Tags = time.Unix(0, ts).UTC(), parseTags(tags)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: raw metadata: %w", err)
	}
	return out, nil
}

func parseTags(s string) []string {
	if s == "" {
		return nil
	}
	var t []string
	if json.Unmarshal([]byte(s), &t) != nil {
		return nil
	}
	return t
}

// Delete deletes the given messages with their records; it returns how
// many existed.
func (c *Capture) Delete(ctx context.Context, queueIDs ...string) (int64, error) {
	if len(queueIDs) == 0 {
		return 0, nil
	}
	var n int64
	err := c.s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for len(queueIDs) > 0 {
			k := min(len(queueIDs), 500)
			args := make([]any, k)
			for i, q := range queueIDs[:k] {
				args[i] = q
			}
			queueIDs = queueIDs[k:]
			d, err := c.deleteRaw(ctx, tx, c.doomSel(`SELECT queue_id FROM raw_messages WHERE queue_id IN (?`+strings.Repeat(", ?", k-1)+`)`, args...))
			if err != nil {
				return err
			}
			n += d
		}
		return nil
	})
	return n, err
}

// DeleteAll deletes every kept message with its records.
func (c *Capture) DeleteAll(ctx context.Context) (int64, error) {
	var n int64
	for {
		var d int64
		err := c.s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			d, err = c.deleteRaw(ctx, tx, c.doomSel(`SELECT queue_id FROM raw_messages ORDER BY id LIMIT 2000`))
			return err
		})
		n += d
		if err != nil || d == 0 {
			return n, err
		}
	}
}

// SetRead marks messages read or unread; it returns how many exist.
func (c *Capture) SetRead(ctx context.Context, read bool, queueIDs ...string) (int64, error) {
	var n int64
	err := c.s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range queueIDs {
			res, err := tx.ExecContext(ctx, `UPDATE raw_messages SET read = ? WHERE queue_id = ?`, read, q)
			if err != nil {
				return fmt.Errorf("store: mark read: %w", err)
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	return n, err
}

// MaxTags and MaxTagLen bound a message's tags.
const (
	MaxTags   = 50
	MaxTagLen = 100
)

// SetTags replaces a message's tags (trimmed, empty ones and repeats
// dropped, order kept).
func (c *Capture) SetTags(ctx context.Context, queueID string, tags []string) ([]string, error) {
	clean := make([]string, 0, len(tags))
	seen := map[string]bool{}
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" || seen[t] {
			continue
		}
		if len(t) > MaxTagLen || len(clean) == MaxTags {
			return nil, fmt.Errorf("store: at most %d tags of at most %d bytes each", MaxTags, MaxTagLen)
		}
		seen[t] = true
		clean = append(clean, t)
	}
	enc := ""
	if len(clean) > 0 {
		b, _ := json.Marshal(clean)
		enc = string(b)
	}
	err := c.s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE raw_messages SET tags = ? WHERE queue_id = ?`, enc, queueID)
		if err != nil {
			return fmt.Errorf("store: set tags: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("raw message %q: %w", queueID, ErrNotFound)
		}
		return nil
	})
	return clean, err
}
