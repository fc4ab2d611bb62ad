package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Deferred derived rows.
//
// (Records of the acknowledgement log, acklog.go, are inserted with their
// derived rows at once; what follows is for records committed directly.)
//
// A record is acknowledged once its own row has committed: the records row
// (with the record as JSON), its transcript and, in capture mode, its raw
// bytes. Everything else is derived from those and written later, for
// many records at once: recipients, refused recipients, deliveries, reply
// codes, full text, terms and roll-ups. A commit that carries one message
// then dirties a few pages instead of some twenty, and the derived rows of
// hundreds of records share the pages they touch.
//
// The writer writes the derived rows it holds in a transaction of their
// own when it has been idle for indexIdle and before any other work on
// the write connection (jobs: deletions, retention, marks); and in the
// transaction of a batch that brings the records waiting to indexBatch or
// more (a bulk load gains nothing by committing twice). Capture
// retention, which deletes records inside a batch's transaction, writes
// them first in that transaction should it delete one of them. So nothing is
// deleted before its derived rows exist: the roll-ups' delete triggers
// subtract only what was added, and the full-text index only sees rowids
// it holds.
//
// Every read waits for the derived rows of every record acknowledged
// before it (caughtUp), so a reader never sees a record without them.
//
// The table index_mark holds the highest record id whose derived rows are
// written, moved in the transaction that writes them. A crash between the
// two kinds of commit leaves records above the mark; Open derives their
// rows from what was stored (the body JSON, through prepareRow, the same
// code as a new record) before anything else runs.

// How long derived rows wait; variables so that tests can make them wait
// longer or less.
var (
	indexBatch = 256                  // records whose derived rows wait at most
	indexIdle  = 5 * time.Millisecond // idle time after which the writer writes them
)

// deferred are the records whose derived rows are not written yet; it is
// the writer's.
type deferred struct {
	rows  []*row // committed, in id order
	tent  []*row // inserted in the open transaction
	taken []*row // committed rows indexed in the open transaction
	mark  int64  // index_mark as committed; 0 until known
	next  int64  // index_mark once the open transaction commits; 0: unchanged
}

// begin starts the bookkeeping of a transaction.
func (d *deferred) begin() {
	d.tent, d.taken, d.next = nil, nil, 0
}

// committed settles the bookkeeping of a committed transaction.
func (d *deferred) committed() {
	for _, rw := range d.tent {
		// Only what the derived rows need stays in memory.
		rw.rec, rw.transcript, rw.raw = nil, nil, nil
	}
	d.rows = append(d.rows, d.tent...)
	if d.next != 0 {
		d.mark = d.next
	}
	d.tent, d.taken, d.next = nil, nil, 0
}

// rolledBack settles the bookkeeping of a transaction that rolled back:
// its records do not exist, and the committed rows it indexed are not.
func (d *deferred) rolledBack() {
	if len(d.taken) > 0 {
		d.rows = append(d.taken, d.rows...)
	}
	d.tent, d.taken, d.next = nil, nil, 0
}

// indexNow writes, in tx, the derived rows of every record committed
// before tx and of those inserted in it, and moves the mark.
func (in *inserts) indexNow(ctx context.Context, tx *sql.Tx) error {
	d := &in.idx
	if len(d.rows) == 0 && len(d.tent) == 0 {
		return nil
	}
	all := make([]*row, 0, len(d.rows)+len(d.tent))
	all = append(append(all, d.rows...), d.tent...)
	if err := in.index(ctx, tx, all); err != nil {
		return err
	}
	last := all[len(all)-1].id
	if _, err := tx.ExecContext(ctx, `UPDATE index_mark SET upto = max(upto, ?) WHERE one = 1`, last); err != nil {
		return fmt.Errorf("store: index mark: %w", err)
	}
	// The tentative rows are indexed with the transaction that inserts
	// them: once it commits they are not pending.
	d.taken = append(d.taken, d.rows...)
	d.rows = nil
	d.tent = nil
	d.next = last
	return nil
}

// indexThrough makes sure, in tx, that the record id and those before it
// have their derived rows: a record about to be deleted must have them.
func (in *inserts) indexThrough(ctx context.Context, tx *sql.Tx, id int64) error {
	if id <= in.idx.mark || in.idx.next >= id {
		return nil
	}
	return in.indexNow(ctx, tx)
}

// catchUp inserts the records of the acknowledgement log and writes the
// derived rows the writer holds. It runs on the writer goroutine.
func (s *Store) catchUp(ctx context.Context) error {
	if err := s.applyAcked(ctx); err != nil {
		return err
	}
	return s.flushIndex(ctx)
}

// flushIndex writes the derived rows the writer holds, in a transaction of
// their own. It runs on the writer goroutine.
func (s *Store) flushIndex(ctx context.Context) error {
	if len(s.ins.idx.rows) == 0 {
		return nil
	}
	return s.tx(ctx, s.ins.indexNow)
}

// caughtUp returns once every record acknowledged before the call is in
// SQLite with its derived rows; readers call it first. It costs an atomic
// load when nothing waits.
func (s *Store) caughtUp(ctx context.Context) error {
	if s.unindexed.Load() == 0 && s.ack.count() == 0 {
		return nil
	}
	// A job without fn: the writer writes them, nothing else. Once the
	// writer has stopped, it wrote them as it stopped, or Open will.
	return s.submit(ctx, &job{done: make(chan error, 1)}, s.writerDone, nil)
}

// indexBacklog writes the derived rows of the records above the mark: those
// a crash left between their commit and their derived rows'. It runs in
// Open, before the writer starts and before anything reads or deletes.
func (s *Store) indexBacklog(ctx context.Context) error {
	var mark int64
	if err := s.w.QueryRowContext(ctx, `SELECT upto FROM index_mark WHERE one = 1`).Scan(&mark); err != nil {
		return fmt.Errorf("store: index mark: %w", err)
	}
	s.ins.idx.mark = mark
	const chunk = 1000
	total := 0
	for {
		rws, last, err := s.unindexedRows(ctx, s.ins.idx.mark, chunk)
		if err != nil {
			return err
		}
		if last == 0 {
			break
		}
		total += len(rws)
		s.ins.idx.rows = rws
		err = s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			if err := s.ins.indexNow(ctx, tx); err != nil {
				return err
			}
			if s.ins.idx.next == last {
				return nil
			}
			// The last ones read did not decode: move past them.
			if _, err := tx.ExecContext(ctx, `UPDATE index_mark SET upto = max(upto, ?) WHERE one = 1`, last); err != nil {
				return err
			}
			s.ins.idx.next = last
			return nil
		})
		if err != nil {
			s.ins.idx.rows = nil
			return fmt.Errorf("store: index records stored before a crash: %w", err)
		}
	}
	if total > 0 {
		s.opts.Logger.Info("store: indexed the records a crash left unindexed", "records", total)
	}
	return nil
}

// unindexedRows reads up to n records above mark and derives their rows,
// returning them and the highest id read (0 when none). A record whose
// body does not decode is left out, with a warning: it stays readable as
// stored, and cannot be derived from.
func (s *Store) unindexedRows(ctx context.Context, mark int64, n int) ([]*row, int64, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT id, body FROM records WHERE id > ? ORDER BY id LIMIT ?`, mark, n)
	if err != nil {
		return nil, 0, fmt.Errorf("store: read unindexed records: %w", err)
	}
	defer rows.Close()
	var out []*row
	var last int64
	for rows.Next() {
		var id int64
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, 0, fmt.Errorf("store: read unindexed records: %w", err)
		}
		last = id
		var r record.Record
		if err := json.Unmarshal(body, &r); err != nil {
			s.opts.Logger.Warn("store: a record's stored JSON does not decode; it is not indexed", "id", id, "err", err)
			continue
		}
		rw, err := s.prepareRow(&r)
		if err != nil {
			s.opts.Logger.Warn("store: a stored record cannot be indexed", "id", id, "err", err)
			continue
		}
		rw.id = id
		rw.rec, rw.transcript, rw.raw = nil, nil, nil
		out = append(out, rw)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: read unindexed records: %w", err)
	}
	return out, last, nil
}
