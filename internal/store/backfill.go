package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// backfillWindow is how many record ids one backfill transaction covers.
const backfillWindow = 5000

// A backfill gives the records stored before a schema version the terms
// that version added. Its migration makes the progress table, with the
// highest record id done so far; the next open adds the terms, a window of
// record ids per transaction, resuming where a stopped run left off. The
// terms are keyed, so a record that already has them (inserted since)
// gets nothing twice. Once all have them, the progress table goes.
type backfill struct {
	table string // progress table
	what  string // for messages: "recipient domain terms"
	last  string // query: the highest record id that may need terms
	// rows selects (record id, timestamp, value) of the ids in (?, ?]
	// whose value is not NULL, and tag is the term tag of value.
	rows []string
	tags []byte
}

var backfills = []backfill{
	{ // migration 0006
		table: "rcpt_domain_backfill", what: "recipient domain terms",
		last: `SELECT coalesce(max(record_id), 0) FROM rcpts`,
		rows: []string{`SELECT record_id, ts, domain FROM rcpts WHERE record_id > ? AND record_id <= ? AND domain IS NOT NULL`},
		tags: []byte{tagRcptDom},
	},
	{ // migration 0007
		table: "key_terms_backfill", what: "queue and session ID terms",
		last: `SELECT coalesce(max(id), 0) FROM records`,
		rows: []string{
			`SELECT id, ts, queue_id FROM records WHERE id > ? AND id <= ? AND queue_id IS NOT NULL`,
			`SELECT id, ts, session_id FROM records WHERE id > ? AND id <= ? AND session_id IS NOT NULL`,
		},
		tags: []byte{tagQueueID, tagSession},
	},
}

// runBackfills runs the backfills that a migration left to do.
func runBackfills(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	for _, b := range backfills {
		if err := b.run(ctx, db, log); err != nil {
			return fmt.Errorf("store: %s: %w", b.what, err)
		}
	}
	return nil
}

func (b backfill) run(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, b.table).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil // done before
	}
	var done, last int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce((SELECT done FROM `+b.table+` WHERE one = 1), 0), (`+b.last+`)`).Scan(&done, &last); err != nil {
		return err
	}
	if last-done > 10*backfillWindow {
		log.Info("store: adding the "+b.what+" of earlier records (once, after an upgrade)", "records", last-done)
	}
	for lo := done; lo < last; lo += backfillWindow {
		hi := min(lo+backfillWindow, last)
		if err := b.window(ctx, db, lo, hi); err != nil {
			return fmt.Errorf("records %d to %d: %w", lo+1, hi, err)
		}
	}
	_, err := db.ExecContext(ctx, `DROP TABLE `+b.table)
	return err
}

// window adds the terms of the records with ids in (lo, hi] and records
// the progress, in one transaction.
func (b backfill) window(ctx context.Context, db *sql.DB, lo, hi int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var ts []term
	for i, q := range b.rows {
		rows, err := tx.QueryContext(ctx, q, lo, hi)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id, t int64
			var v string
			if err := rows.Scan(&id, &t, &v); err != nil {
				rows.Close()
				return err
			}
			ts = append(ts, term{bucketOf(t), termHash(b.tags[i], v), id})
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	terms, buckets := termArgs(ts)
	for _, x := range []struct {
		t    table
		args []any
	}{{tTerms, terms}, {tBuckets, buckets}} {
		for args := x.args; len(args) > 0; {
			n := min(len(args), rowsPerStmt*x.t.cols)
			if _, err := tx.ExecContext(ctx, x.t.sql(n/x.t.cols), args[:n]...); err != nil {
				return err
			}
			args = args[n:]
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+b.table+` SET done = ? WHERE one = 1`, hi); err != nil {
		return err
	}
	return tx.Commit()
}
