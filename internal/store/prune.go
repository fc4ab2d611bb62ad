package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// PruneResult says what Prune did.
type PruneResult struct {
	Deleted int64 // records
	Bytes   int64 // bytes in use afterwards
}

const pruneChunk = 2000

// Prune deletes records older than olderThan (unless it is zero) and then
// the oldest records while the database holds more than maxBytes (unless
// it is 0), in transactions of a few thousand records that interleave with
// the writer's batches. Freed pages are returned to the file system.
// "Holds" counts pages in use (page_count - freelist_count), so the limit
// applies to the data, not to free space awaiting reuse.
func (s *Store) Prune(ctx context.Context, olderThan time.Time, maxBytes int64) (PruneResult, error) {
	var res PruneResult
	if !olderThan.IsZero() {
		cut := unixNano(olderThan)
		for {
			n, err := s.deleteOldest(ctx, &cut)
			res.Deleted += n
			if err != nil {
				return res, err
			}
			if n < pruneChunk {
				break
			}
		}
	}
	used, err := s.usedBytes(ctx)
	if err != nil {
		return res, err
	}
	for maxBytes > 0 && used > maxBytes {
		n, err := s.deleteOldest(ctx, nil)
		res.Deleted += n
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
		if used, err = s.usedBytes(ctx); err != nil {
			return res, err
		}
	}
	if res.Deleted > 0 {
		if err := s.dropOldTerms(ctx); err != nil {
			return res, err
		}
		err := s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "PRAGMA incremental_vacuum")
			return err
		})
		if err != nil {
			return res, fmt.Errorf("store: prune: vacuum: %w", err)
		}
	}
	res.Bytes = used
	return res, nil
}

// deleteOldest deletes up to pruneChunk of the oldest records, only those
// before *cut when cut is not nil.
func (s *Store) deleteOldest(ctx context.Context, cut *int64) (int64, error) {
	var n int64
	err := s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM doomed`); err != nil {
			return err
		}
		var res sql.Result
		var err error
		if cut != nil {
			res, err = tx.ExecContext(ctx, `INSERT INTO doomed SELECT id FROM records INDEXED BY records_ts
				WHERE ts < ? ORDER BY ts LIMIT ?`, *cut, pruneChunk)
		} else {
			res, err = tx.ExecContext(ctx, `INSERT INTO doomed SELECT id FROM records INDEXED BY records_ts
				ORDER BY ts LIMIT ?`, pruneChunk)
		}
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		for _, q := range deleteRecordsIn("doomed") {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	return n, nil
}

// deleteRecordsIn returns the statements that delete the records whose
// IDs the table ids holds (a column "id"), with their rows in every child
// table; the roll-up triggers see them go.
func deleteRecordsIn(ids string) []string {
	sel := "(SELECT id FROM " + ids + ")"
	return []string{
		`DELETE FROM rcpts WHERE record_id IN ` + sel,
		`DELETE FROM rejected WHERE record_id IN ` + sel,
		`DELETE FROM deliveries WHERE record_id IN ` + sel,
		`DELETE FROM codes WHERE record_id IN ` + sel,
		`DELETE FROM transcripts WHERE record_id IN ` + sel,
		`DELETE FROM fts WHERE rowid IN ` + sel,
		`DELETE FROM records WHERE id IN ` + sel,
	}
}

// usedBytes is the size of the pages in use.
func (s *Store) usedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	err := s.r.QueryRowContext(ctx, `SELECT p.page_count, f.freelist_count, s.page_size
		FROM pragma_page_count p, pragma_freelist_count f, pragma_page_size s`).Scan(&pages, &free, &size)
	if err != nil {
		return 0, fmt.Errorf("store: database size: %w", err)
	}
	return (pages - free) * size, nil
}

// Size returns the bytes in use in the database.
func (s *Store) Size(ctx context.Context) (int64, error) {
	if err := s.caughtUp(ctx); err != nil {
		return 0, fmt.Errorf("store: database size: %w", err)
	}
	return s.usedBytes(ctx)
}

// dropOldTerms deletes the terms (and buckets) older than the oldest
// record's bucket: what retention left behind. Terms of records deleted
// otherwise (capture retention) stay until their bucket is that old; a
// lookup verifies every term against the record, so they cost only space.
func (s *Store) dropOldTerms(ctx context.Context) error {
	err := s.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var oldest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT min(ts) FROM records`).Scan(&oldest); err != nil {
			return err
		}
		cut := int64(math.MaxInt64)
		if oldest.Valid {
			cut = bucketOf(oldest.Int64)
		}
		// 4-hour buckets before the oldest record's, and day buckets
		// (compact.go) of the days before its day.
		for _, q := range []string{`DELETE FROM terms WHERE bucket < ?`, `DELETE FROM buckets WHERE b < ?`} {
			if _, err := tx.ExecContext(ctx, q, cut); err != nil {
				return err
			}
		}
		if cut == math.MaxInt64 {
			cut = dayBucket(cut) + 1 // no records: every day bucket goes
		} else {
			cut = dayBucket(cut)
		}
		for _, q := range []string{`DELETE FROM terms WHERE bucket >= ? AND bucket < ?`, `DELETE FROM buckets WHERE b >= ? AND b < ?`} {
			if _, err := tx.ExecContext(ctx, q, dayBase, cut); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: prune: old terms: %w", err)
	}
	return nil
}
