package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// Day buckets.
//
// New terms go to 4-hour buckets (terms.go), which keeps the pages a batch
// dirties few, but a lookup without a time range probes every bucket: 200
// of them in a store of 34 days, each a page read. Once a day is well
// behind the newest bucket, nothing much is added to it any more, and the
// writer moves its terms into one bucket for the whole day (dayBucket):
// the probes of a lookup then number the days plus the hours of the last
// two days, divided by six.
//
// The move runs on the writer between batches, in slices of the hash space
// (compactSlices), one transaction each, so that a batch never waits long
// behind it. A term is in its 4-hour bucket or in its day bucket, never
// lost between: each slice copies and deletes in one transaction. Terms
// added later to a moved day (an old log imported late) go to its 4-hour
// buckets again and are moved the next time round.

const (
	bucketsPerDay = 6 // 4-hour buckets in a day
	// dayBase + the day number is a day bucket: far above every 4-hour
	// bucket number an int64 of nanoseconds gives (about ±640,000).
	dayBase int64 = 1 << 40
	// compactSlices is how many transactions the move of a day takes.
	compactSlices = 16
)

// compactEvery is how often the writer looks for a day to move, and
// compactAfter how far (in 4-hour buckets) behind the newest the oldest
// one must be before its day is moved: two days. (Variables for tests.)
var (
	compactEvery       = time.Second
	compactAfter int64 = 2 * bucketsPerDay
)

// dayBucket returns the day bucket of the day that 4-hour bucket b is in.
func dayBucket(b int64) int64 { return dayBase + floorDiv(b, bucketsPerDay) }

// compaction is the writer's state of the move of one day.
type compaction struct {
	checked time.Time
	rolled  time.Time // when rollDay last found nothing to do
	// more says that the last step did something, so that more may be
	// due: the writer's idle timer then goes on calling compactNow.
	more  bool
	day   int64 // the day's first 4-hour bucket; valid when slice > 0
	slice int   // the next slice to move; 0: no day under way
}

// sliceRange returns the hashes of slice i of compactSlices.
func sliceRange(i int) (lo, hi int64) {
	const width = int64(1) << 60 // 2⁶⁴ / compactSlices
	lo = math.MinInt64 + int64(i)*width
	return lo, lo + (width - 1)
}

// compactStep moves one slice of a day's terms into its day bucket, in a
// transaction of its own, if a day is due; it looks for one at most every
// compactEvery. It runs on the writer goroutine, between batches.
func (s *Store) compactStep(ctx context.Context) error {
	c := &s.compact
	if c.slice == 0 {
		now := time.Now()
		if now.Sub(c.checked) < compactEvery {
			return nil
		}
		c.checked = now
	}
	var moved bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		moved, err = c.step(ctx, tx)
		return err
	})
	if err != nil {
		c.slice = 0 // the day again, later
		c.more = false
		return fmt.Errorf("store: day buckets: %w", err)
	}
	if moved && c.slice == 0 {
		c.checked = time.Time{} // a day done: the next may be due at once
	}
	c.more = moved
	return nil
}

// step moves, in tx, the next slice of the day under way, or the first
// slice of the oldest day due; it reports whether it moved one. Should tx
// roll back, the caller sets c.slice to 0: the day is looked for again,
// and moving a slice twice changes nothing.
func (c *compaction) step(ctx context.Context, tx *sql.Tx) (bool, error) {
	if c.slice == 0 {
		var first sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT min(b) FROM buckets
			WHERE b < ? AND b < (SELECT max(b) FROM buckets WHERE b < ?) - ?`,
			dayBase, dayBase, compactAfter).Scan(&first)
		if err != nil || !first.Valid {
			return false, err
		}
		c.day = floorDiv(first.Int64, bucketsPerDay) * bucketsPerDay
		c.slice = 1
	}
	lo, hi := sliceRange(c.slice - 1)
	day := dayBucket(c.day)
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO buckets (b) VALUES (?)`, day); err != nil {
		return false, err
	}
	for b := c.day; b < c.day+bucketsPerDay; b++ {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO terms (bucket, h, rid)
			SELECT ?, h, rid FROM terms WHERE bucket = ? AND h BETWEEN ? AND ?`, day, b, lo, hi); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM terms WHERE bucket = ? AND h BETWEEN ? AND ?`, b, lo, hi); err != nil {
			return false, err
		}
	}
	if c.slice < compactSlices {
		c.slice++
		return true, nil
	}
	c.slice = 0
	_, err := tx.ExecContext(ctx, `DELETE FROM buckets WHERE b BETWEEN ? AND ?
		AND NOT EXISTS (SELECT 1 FROM terms WHERE bucket = buckets.b)`, c.day, c.day+bucketsPerDay-1)
	return true, err
}
