// Package store keeps records in an embedded SQLite database
// (modernc.org/sqlite, pure Go): versioned embedded migrations, one batched
// writer, indexed lookups for search and trace, dashboard aggregates,
// retention by age and size, and an FTS5 index on subjects and reply texts.
//
// # Durability
//
// Store implements record.Handler. Handle returns nil only once the record
// is durable: in the acknowledgement log of a store on disk (acklog.go),
// or in a committed transaction. With SyncFull (PRAGMA synchronous=FULL in
// WAL mode, and the log fsynced) a record whose Handle returned nil
// survives a crash of the process (kill -9) and of the machine (power
// loss), on storage that honours fsync. (SyncNormal survives kill -9 but
// could lose the last records to a power loss, so it is only an option for
// those who accept that.) Many Handle calls share one fsync.
//
// When the writer falls behind and its queue is full, Handle waits at most
// Options.BusyTimeout (or until ctx is done) and then returns an error
// wrapping ErrBusy: the caller pushes back (the relay answers 451), nothing
// is dropped silently. An error from Handle means the record may or may not
// have been stored (for example when ctx ended while its batch committed); it
// was not acknowledged.
//
// # Layout
//
// Message and session records share one table, so that search, keyset
// paging and retention cover both with one query; recipients, refused
// recipients, deliveries, reply codes, transcripts and the full-text index
// are child tables keyed by the record's id. The columns that terms compare
// against are derived with package query's functions, which Match uses too,
// so the SQL and the in-memory matcher agree by construction. The writer
// numbers records itself and inserts a batch with multi-row statements,
// table by table.
//
// The records of the acknowledgement log are inserted with their derived
// rows (recipients, codes, terms, full text, roll-ups) in one transaction.
// Where records commit before they are acknowledged (in memory, or beside
// another process that holds the log), only what cannot be derived commits
// first: the records row, its transcript and its raw bytes; the derived
// rows follow for many records at once, before any read or deletion can
// miss them, and are rebuilt at Open for the records a crash left without
// them (index.go).
//
// The dashboard's aggregates (Stats) come from hourly roll-ups that the
// derived rows add to and that deletions subtract from (rollup.go), so
// their cost grows with the hours of a range, not with the records in it.
//
// The full-text table uses FTS5's contentless_delete (SQLite 3.43 or
// later), so that retention can delete from it; an older sqlite3 shell can
// still run PRAGMA integrity_check and read every other table.
//
// # Cost
//
// The indexes that a new record adds to are kept local to the writer's
// recent pages: records_ts and the child tables' keys grow in time or ID
// order; exact keys (Message-ID, queue and session IDs, sender, client
// address, recipient and recipient domain) go to one "terms" table keyed
// by a 4-hour time bucket first (terms.go), so a batch dirties the current
// bucket's pages rather than one page per key across a large index; days
// two days old are moved to one bucket each (compact.go), so that a lookup
// probes a bucket per day. One index remains keyed by values in no time
// order, the sender domain's, whose few keys are each appended to in time
// order and serve the search by sender domain newest first; capture
// retention's indexes cover capture records only. bench/store.sh shows
// what they cost.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/smtplog/smtplog/internal/record"
)

var (
	// ErrBusy means the writer's queue stayed full: push back and retry later.
	ErrBusy = errors.New("store: busy, writer queue full")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNotFound means no record matched a lookup.
	ErrNotFound = errors.New("store: not found")
)

var _ record.Handler = (*Store)(nil)

// Sync is the SQLite synchronous level used for commits.
type Sync string

const (
	SyncFull   Sync = "FULL"   // default: acknowledged records survive power loss
	SyncNormal Sync = "NORMAL" // acknowledged records survive a process crash only
)

// Options configures a Store. The zero value is usable.
type Options struct {
	Sync        Sync          // default SyncFull
	MaxBatch    int           // records per transaction at most; default 5000
	MaxDelay    time.Duration // how long the writer waits to fill a batch; default 0: commit what is queued (group commit)
	QueueSize   int           // records in the acknowledgement log waiting for the writer, or writes in its queue (one per Handle, or per 256 records of an Insert); default 10000
	BusyTimeout time.Duration // how long Handle waits for room in a full queue; default 1s
	ReadConns   int           // reader connections; default 4
	CacheKiB    int           // SQLite page cache per connection; default 16384
	Retention   Retention     // automatic pruning; off when both limits are zero
	Now         func() time.Time
	Logger      *slog.Logger // for automatic retention's outcome; default: discard
}

// Retention says what automatic pruning keeps.
type Retention struct {
	MaxAge   time.Duration // delete records older than this; 0: no limit
	MaxBytes int64         // delete the oldest records while the database holds more; 0: no limit
	Every    time.Duration // how often; default 10 minutes
}

func (o *Options) defaults() error {
	if o.Sync == "" {
		o.Sync = SyncFull
	}
	if o.Sync != SyncFull && o.Sync != SyncNormal {
		return fmt.Errorf("store: unknown sync level %q: use FULL or NORMAL", o.Sync)
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 5000
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = time.Second
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = 16384
	}
	if o.ReadConns <= 0 {
		o.ReadConns = 4
	}
	if o.Retention.Every <= 0 {
		o.Retention.Every = 10 * time.Minute
	}
	if o.Retention.MaxAge < 0 || o.Retention.MaxBytes < 0 {
		return errors.New("store: negative retention limit")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Store is a SQLite record store. It is safe for concurrent use.
type Store struct {
	opts    Options
	memory  bool
	w       *sql.DB    // one connection, used only by the writer goroutine
	r       *sql.DB    // readers; the same as w for :memory:
	ins     inserts    // used by the writer goroutine only
	compact compaction // day buckets (compact.go); the writer goroutine's
	// ack is the acknowledgement log (acklog.go); nil in memory, or when
	// another process holds it (shared).
	ack    *ackLog
	shared bool
	// unindexed is how many committed records wait for their derived rows
	// (index.go); the writer sets it after each commit, before it
	// acknowledges.
	unindexed atomic.Int64
	parked    parked // raw message bytes waiting for their records (raw.go)
	// moved counts the records the writer has taken out of the
	// acknowledgement log or its queue into the database: whether it is
	// making room, for Load.
	moved atomic.Int64

	queue   chan *item
	jobs    chan *job
	closing chan struct{}
	mu      sync.RWMutex // guards closed and the closing of queue
	closed  bool
	once    sync.Once

	wctx       context.Context // the writer's; cancelled only by an expired Close
	wcancel    context.CancelFunc
	writerDone chan struct{}
	retainDone chan struct{}
}

// item is one batch of records from one caller, acknowledged together.
type item struct {
	rows []*row
	done chan error // buffered, 1
}

// job is work other than inserting that needs the write connection. The
// writer writes the derived rows it holds first, in the same transaction;
// a job without fn asks for only that.
type job struct {
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error
}

// Open opens or creates the database at path (":memory:" for a private
// in-memory one), applies pending migrations and starts the writer.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	s := &Store{
		opts:       opts,
		memory:     path == ":memory:",
		queue:      make(chan *item, opts.QueueSize),
		jobs:       make(chan *job),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		retainDone: make(chan struct{}),
	}
	var err error
	if s.memory {
		// Every connection to ":memory:" is a database of its own: use one.
		s.w, err = sql.Open("sqlite", "file::memory:?"+params(opts, false).Encode())
		if err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		s.w.SetMaxOpenConns(1)
		s.w.SetMaxIdleConns(1)
		s.w.SetConnMaxLifetime(0)
		s.w.SetConnMaxIdleTime(0)
		s.r = s.w
	} else {
		if err := create(ctx, path); err != nil {
			return nil, err
		}
		s.w, err = sql.Open("sqlite", "file:"+url.PathEscape(path)+"?"+params(opts, false).Encode())
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		s.w.SetMaxOpenConns(1)
		s.w.SetMaxIdleConns(1)
		s.w.SetConnMaxLifetime(0)
		s.w.SetConnMaxIdleTime(0)
	}
	if err := migrate(ctx, s.w); err != nil {
		s.w.Close()
		return nil, err
	}
	if err := s.ins.prepare(ctx, s.w); err != nil {
		s.w.Close()
		return nil, err
	}
	fail := func(err error) (*Store, error) {
		if s.ack != nil {
			s.ack.close()
		}
		s.ins.close()
		s.w.Close()
		return nil, err
	}
	if !s.memory {
		if s.ack, err = openAckLog(path, opts.Sync == SyncFull); err != nil {
			// Most likely the database belongs to another user, who
			// writes it: commit directly, as beside another process.
			opts.Logger.Warn("store: no acknowledgement log; every record commits before it is acknowledged", "err", err)
			s.ack = nil
		}
		// Without it, another process holds the log and writes: its
		// derived rows and its log are its own.
		s.shared = s.ack == nil
	}
	// The records a crash left without derived rows get them, and those
	// it left in the acknowledgement log are inserted, before the
	// roll-ups are checked, so that a rebuild never counts one twice.
	if !s.shared {
		if err := s.indexBacklog(ctx); err != nil {
			return fail(err)
		}
	}
	if s.ack != nil {
		if err := s.replayAckLog(ctx); err != nil {
			return fail(err)
		}
	}
	if err := rebuildRollups(ctx, s.w, opts.Logger); err != nil {
		return fail(err)
	}
	if !s.shared {
		if err := runBackfills(ctx, s.w, opts.Logger); err != nil {
			return fail(err)
		}
	}
	if !s.memory {
		s.r, err = sql.Open("sqlite", "file:"+url.PathEscape(path)+"?"+params(opts, true).Encode())
		if err != nil {
			return fail(fmt.Errorf("store: open %s for reading: %w", path, err))
		}
		s.r.SetMaxOpenConns(opts.ReadConns)
		s.r.SetMaxIdleConns(opts.ReadConns)
	}
	s.wctx, s.wcancel = context.WithCancel(context.WithoutCancel(ctx))
	go s.writer()
	if opts.Retention.MaxAge > 0 || opts.Retention.MaxBytes > 0 {
		go s.retain()
	} else {
		close(s.retainDone)
	}
	return s, nil
}

// pageSize is the page size of a new database. Pages of 16 KiB rather than
// SQLite's 4 KiB make a quarter as many WAL frames, each a write (and a
// read and a write again at the checkpoint), for the same rows: a bulk load
// of a million records spent a third less time committing; the B-trees are
// shallower too, so a lookup reads fewer pages.
var pageSize = 16384

// create makes the database file at path, when there is none, with
// pageSize pages. The page size of a database is fixed once it has a
// first page, which auto_vacuum and journal_mode, set when the connection
// opens (params), would write with the default size. An existing file,
// even one another process made just before, keeps its own.
func create(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?_pragma=page_size("+strconv.Itoa(pageSize)+")")
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	defer db.Close()
	for _, q := range []string{"PRAGMA auto_vacuum = INCREMENTAL", "PRAGMA journal_mode = WAL"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("store: create %s: %w", path, err)
		}
	}
	return db.Close()
}

// params are the connection settings. WAL lets readers run beside the
// writer; busy_timeout covers the moments a reader needs a lock the writer
// holds (checkpoints).
func params(o Options, readOnly bool) url.Values {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", string(o.Sync))
	v.Set("_busy_timeout", "10000")
	v.Set("_auto_vacuum", "INCREMENTAL")
	v.Set("_txlock", "immediate")
	v.Add("_pragma", "cache_size(-"+strconv.Itoa(o.CacheKiB)+")")
	// Checkpoint the WAL every 16 MiB rather than 4: fewer, larger copies
	// into the database on the writer's path.
	v.Add("_pragma", "wal_autocheckpoint(4000)")
	v.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		v.Set("_query_only", "1")
		v.Set("_txlock", "deferred")
	}
	return v
}

func (s *Store) closeDBs() {
	if s.r != nil && s.r != s.w {
		s.r.Close()
	}
	s.w.Close()
}

// Handle stores r and returns once it is durable: in the acknowledgement
// log, or in a committed transaction. See the package documentation for
// what an error means.
func (s *Store) Handle(ctx context.Context, r *record.Record) error {
	rw, err := s.prepareRow(r)
	if err != nil {
		return err
	}
	if s.ack != nil {
		if err := s.ack.append(ctx, []*row{rw}, s.opts.QueueSize, s.opts.BusyTimeout); err != errAckDown {
			return err
		}
	}
	it := &item{rows: []*row{rw}, done: make(chan error, 1)}
	if err := s.enqueue(ctx, it); err != nil {
		return err
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: waiting for commit: %w", ctx.Err())
	}
}

// Insert stores many records and returns once all are durable, as Handle
// does; for records that belong together, from a caller that pushes back
// on ErrBusy as Handle's do (bulk loads use Load). On error some of them
// may have been stored.
func (s *Store) Insert(ctx context.Context, recs []*record.Record) error {
	return s.insert(ctx, recs, false)
}

// Load stores many records as Insert does, for inputs that can slow down
// rather than refuse: a log being imported or followed. Where Insert
// returns ErrBusy once the writer's queue has stayed full for
// Options.BusyTimeout (the relay answers 451 and its client retries),
// Load waits for room for as long as the writer keeps making some. It
// gives up with ErrBusy only when the writer has inserted nothing for
// loadStall (its errors are in the log), or when ctx ends. As with
// Insert, on error some of the records may have been stored, none twice.
func (s *Store) Load(ctx context.Context, recs []*record.Record) error {
	return s.insert(ctx, recs, true)
}

// loadStall is how long Load waits for a writer that makes no room at
// all: long enough for a checkpoint or a retention pass on a slow disk,
// short enough that an import stuck on a failing database says so. (A
// variable for tests.)
var loadStall = time.Minute

// patiently runs try, which returns ErrBusy when the writer's queue
// stayed full for Options.BusyTimeout, until it succeeds or fails
// otherwise, as long as the writer moves records between the tries; see
// Load.
func (s *Store) patiently(ctx context.Context, try func() error) error {
	last := s.moved.Load()
	var stalled time.Duration
	for {
		err := try()
		if !errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return err
		}
		if m := s.moved.Load(); m != last {
			last, stalled = m, 0
			continue
		}
		if stalled += s.opts.BusyTimeout; stalled >= loadStall {
			return fmt.Errorf("%w (the writer inserted nothing for %s)", err, stalled)
		}
	}
}

// insert is Insert, or Load when patient.
func (s *Store) insert(ctx context.Context, recs []*record.Record, patient bool) error {
	const chunk = 256
	var pending []*item
	for len(recs) > 0 {
		n := min(chunk, len(recs))
		it := &item{rows: make([]*row, 0, n), done: make(chan error, 1)}
		for _, r := range recs[:n] {
			rw, err := s.prepareRow(r)
			if err != nil {
				return err
			}
			it.rows = append(it.rows, rw)
		}
		recs = recs[n:]
		// Each try either stores the whole chunk or none of it, so a
		// patient caller never stores a record twice.
		try := func(f func() error) error {
			if patient {
				return s.patiently(ctx, f)
			}
			return f()
		}
		if s.ack != nil {
			err := try(func() error { return s.ack.append(ctx, it.rows, s.opts.QueueSize, s.opts.BusyTimeout) })
			if err == nil {
				continue
			}
			if err != errAckDown {
				return err
			}
		}
		if err := try(func() error { return s.enqueue(ctx, it) }); err != nil {
			return err
		}
		pending = append(pending, it)
	}
	for _, it := range pending {
		select {
		case err := <-it.done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("store: waiting for commit: %w", ctx.Err())
		}
	}
	return nil
}

func (s *Store) enqueue(ctx context.Context, it *item) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.queue <- it:
		return nil
	default:
	}
	t := time.NewTimer(s.opts.BusyTimeout)
	defer t.Stop()
	select {
	case s.queue <- it:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	case <-s.closing:
		return ErrClosed
	}
}

// do runs fn in a write transaction of its own on the writer goroutine,
// between batches.
func (s *Store) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.submit(ctx, &job{fn: fn, done: make(chan error, 1)}, s.closing, ErrClosed)
}

// submit hands j to the writer and returns what it did; should stopped
// close before the writer takes j, it returns whenStopped instead.
func (s *Store) submit(ctx context.Context, j *job, stopped <-chan struct{}, whenStopped error) error {
	select {
	case s.jobs <- j:
	case <-stopped:
		return whenStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer owns the write connection: it commits queued records in batches,
// writes their derived rows (index.go) and runs jobs between them, until
// the queue is closed and drained.
func (s *Store) writer() {
	defer close(s.writerDone)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	var batch []*item
	for {
		var first *item
		var idleC <-chan time.Time
		var kick <-chan struct{}
		// The idle timer writes what waits, and goes on moving a day's
		// terms (compact.go) once all is quiet.
		if len(s.ins.idx.rows) > 0 || s.ack.count() > 0 || s.compact.more {
			idle.Reset(indexIdle)
			idleC = idle.C
		}
		if s.ack != nil {
			kick = s.ack.kick
		}
		select {
		case it, ok := <-s.queue:
			idle.Stop()
			if !ok {
				if err := s.catchUp(s.writeCtx()); err != nil {
					s.opts.Logger.Warn("store: records and derived rows left for the next open", "err", err)
				}
				return
			}
			first = it
		case j := <-s.jobs:
			idle.Stop()
			j.done <- s.runJob(j)
			continue
		case <-kick:
			// A record was acknowledged; the idle timer restarts.
			idle.Stop()
			if s.ack.count() >= int64(ackBatch) {
				s.logIndexErr(s.applyAcked(s.writeCtx()))
				s.compactNow()
			}
			continue
		case <-idleC:
			s.logIndexErr(s.catchUp(s.writeCtx()))
			s.compactNow()
			continue
		}
		// Records committed directly come after those acknowledged before
		// them.
		if err := s.applyAcked(s.writeCtx()); err != nil {
			first.done <- err
			continue
		}
		batch = append(batch[:0], first)
		n := len(first.rows)
		var timer <-chan time.Time
		var t *time.Timer
		if s.opts.MaxDelay > 0 {
			t = time.NewTimer(s.opts.MaxDelay)
			timer = t.C
		}
	fill:
		for n < s.opts.MaxBatch {
			select {
			case it, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, it)
				n += len(it.rows)
				continue
			default:
			}
			if timer == nil {
				break
			}
			select {
			case it, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, it)
				n += len(it.rows)
			case <-timer:
				break fill
			}
		}
		if t != nil {
			t.Stop()
		}
		var rows []*row
		for _, it := range batch {
			rows = append(rows, it.rows...)
		}
		err := s.tx(s.writeCtx(), func(ctx context.Context, tx *sql.Tx) error {
			if err := s.ins.insertRows(ctx, tx, rows); err != nil {
				return err
			}
			if s.shared || len(s.ins.idx.rows)+n >= indexBatch {
				// Enough wait (or a bulk load brings them): their
				// derived rows cost less in this transaction than in one
				// more, and held rows never outgrow indexBatch plus a
				// batch, even should writing them keep failing. Beside
				// another process's writer, at once: the mark is shared.
				if err := s.ins.indexNow(ctx, tx); err != nil {
					return err
				}
			}
			return s.insertRaw(ctx, tx, rows)
		})
		if err == nil {
			s.moved.Add(int64(n))
		}
		for i, it := range batch {
			it.done <- err
			batch[i] = nil
		}
		s.compactNow()
	}
}

// runJob runs j in a transaction that first writes the derived rows the
// writer holds: no job (a deletion above all) ever sees a record without
// them.
func (s *Store) runJob(j *job) error {
	if j.fn == nil {
		return s.catchUp(s.writeCtx())
	}
	if err := s.applyAcked(s.writeCtx()); err != nil {
		return err
	}
	return s.tx(s.writeCtx(), func(ctx context.Context, tx *sql.Tx) error {
		if err := s.ins.indexNow(ctx, tx); err != nil {
			return err
		}
		s.ins.deleted = true // a job may delete anything
		return j.fn(ctx, tx)
	})
}

// writeCtx is the context of the writer's statements. Until Close begins
// it has no Done channel: the driver then runs a statement as it is,
// where with one it starts a goroutine and sets up an interrupt for every
// statement, which cost a sizeable share of a one-message commit. Once
// Close begins, an expired deadline must interrupt the final flush, so
// the statements get the cancellable context.
func (s *Store) writeCtx() context.Context {
	select {
	case <-s.closing:
		return s.wctx
	default:
		return context.Background()
	}
}

// compactNow moves a slice of a day's terms into its day bucket if one is
// due (compact.go), and sums a day's roll-ups into one row if one is due
// (rollup.go). Beside another process's writer it does nothing: two
// writers would move the same day.
func (s *Store) compactNow() {
	if s.shared {
		return
	}
	if err := s.compactStep(s.writeCtx()); err != nil && s.wctx.Err() == nil {
		s.opts.Logger.Warn("store: moving terms to day buckets", "err", err)
	}
	if err := s.rollStep(s.writeCtx()); err != nil && s.wctx.Err() == nil {
		s.opts.Logger.Warn("store: summing a day's roll-ups", "err", err)
	}
}

// logIndexErr reports a failure to write derived rows outside a reader's
// request; they stay held and the next attempt writes them.
func (s *Store) logIndexErr(err error) {
	if err != nil && s.wctx.Err() == nil {
		s.opts.Logger.Warn("store: writing derived rows", "err", err)
	}
}

// tx runs fn in a write transaction. Deleted records leave what they
// counted in rollup_gone, which becomes negative roll-up rows before the
// commit; a transaction that deleted nothing skips that query.
func (s *Store) tx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	s.ins.idx.begin()
	s.ins.deleted = false
	err := s.runTx(ctx, fn)
	if err != nil {
		s.ins.idx.rolledBack()
	} else {
		s.ins.idx.committed()
	}
	s.unindexed.Store(int64(len(s.ins.idx.rows)))
	return err
}

func (s *Store) runTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if s.ins.deleted {
		if err := s.ins.roll.settleGone(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Close stops accepting records, commits those already queued and closes
// the database. Cancelling ctx does not abort the final flush; its deadline,
// if any, does (the records still queued are then not acknowledged).
func (s *Store) Close(ctx context.Context) error {
	first := false
	s.once.Do(func() {
		first = true
		close(s.closing)
	})
	if !first {
		return ErrClosed
	}
	<-s.retainDone
	if s.ack != nil {
		s.ack.shut()
	}
	s.mu.Lock()
	s.closed = true
	close(s.queue)
	s.mu.Unlock()

	flush := context.WithoutCancel(ctx)
	var cancel context.CancelFunc = func() {}
	if d, ok := ctx.Deadline(); ok {
		flush, cancel = context.WithDeadline(flush, d)
	}
	defer cancel()
	var err error
	select {
	case <-s.writerDone:
	case <-flush.Done():
		s.wcancel()
		<-s.writerDone
		err = fmt.Errorf("store: close: final flush: %w", flush.Err())
	}
	s.wcancel()
	s.ins.close()
	if s.ack != nil {
		s.ack.close()
	}
	if !s.memory {
		// Fold the WAL into the database so the file stands alone.
		if _, cerr := s.w.ExecContext(flush, "PRAGMA wal_checkpoint(TRUNCATE)"); cerr != nil && err == nil && flush.Err() == nil {
			err = fmt.Errorf("store: close: checkpoint: %w", cerr)
		}
	}
	if s.r != s.w {
		if cerr := s.r.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: close readers: %w", cerr)
		}
	}
	if cerr := s.w.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("store: close: %w", cerr)
	}
	return err
}

// retain prunes on a timer until the store closes.
func (s *Store) retain() {
	defer close(s.retainDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // ends a prune in progress when the store closes
		select {
		case <-s.closing:
			cancel()
		case <-stop:
		}
	}()
	t := time.NewTicker(s.opts.Retention.Every)
	defer t.Stop()
	for {
		var older time.Time
		if s.opts.Retention.MaxAge > 0 {
			older = s.opts.Now().Add(-s.opts.Retention.MaxAge)
		}
		res, err := s.Prune(ctx, older, s.opts.Retention.MaxBytes)
		switch {
		case err != nil && ctx.Err() == nil:
			s.opts.Logger.Warn("store: retention", "err", err) // the next tick tries again
		case res.Deleted > 0:
			s.opts.Logger.Info("store: retention", "deleted", res.Deleted, "bytes", res.Bytes)
		}
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
