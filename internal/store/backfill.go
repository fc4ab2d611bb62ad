package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// backfillWindow is how many record ids one backfill transaction covers.
const backfillWindow = 5000

// backfillRcptDomains gives the records stored before schema version 6
// the terms of their recipients' domains (migration 0006), a window of
// record ids per transaction, resuming where a stopped run left off. The
// terms are keyed, so a record that already has them (inserted since)
// gets nothing twice. Once all have them, the progress table goes.
func backfillRcptDomains(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'rcpt_domain_backfill'`).Scan(&n); err != nil {
		return fmt.Errorf("store: recipient domain terms: %w", err)
	}
	if n == 0 {
		return nil // done before
	}
	var done, last int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce((SELECT done FROM rcpt_domain_backfill WHERE one = 1), 0),
		coalesce((SELECT max(record_id) FROM rcpts), 0)`).Scan(&done, &last); err != nil {
		return fmt.Errorf("store: recipient domain terms: %w", err)
	}
	if last-done > 10*backfillWindow {
		log.Info("store: adding the recipient domains of earlier records to the search terms (once, after an upgrade)", "records", last-done)
	}
	for lo := done; lo < last; lo += backfillWindow {
		hi := min(lo+backfillWindow, last)
		if err := backfillWindowTx(ctx, db, lo, hi); err != nil {
			return fmt.Errorf("store: recipient domain terms of records %d to %d: %w", lo+1, hi, err)
		}
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE rcpt_domain_backfill`); err != nil {
		return fmt.Errorf("store: recipient domain terms: %w", err)
	}
	return nil
}

// backfillWindowTx adds the terms of the records with ids in (lo, hi] and
// records the progress, in one transaction.
func backfillWindowTx(ctx context.Context, db *sql.DB, lo, hi int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT record_id, domain, ts FROM rcpts
		WHERE record_id > ? AND record_id <= ? AND domain IS NOT NULL`, lo, hi)
	if err != nil {
		return err
	}
	var ts []term
	for rows.Next() {
		var id, t int64
		var d string
		if err := rows.Scan(&id, &d, &t); err != nil {
			rows.Close()
			return err
		}
		ts = append(ts, term{bucketOf(t), termHash(tagRcptDom, d), id})
	}
	if err := rows.Close(); err != nil {
		return err
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
	if _, err := tx.ExecContext(ctx, `UPDATE rcpt_domain_backfill SET done = ? WHERE one = 1`, hi); err != nil {
		return err
	}
	return tx.Commit()
}
