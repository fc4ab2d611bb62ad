package store

import (
	"math"
	"slices"
)

// Exact-key lookups go through the table "terms" (see migration 0001):
// (time bucket of the record's timestamp, hash of a field-tagged value,
// record ID). Keying by the bucket first keeps a batch's new entries on the
// current bucket's pages; a lookup probes each bucket listed in "buckets".

// bucketNanos is the width of a terms bucket. Wider buckets mean fewer
// probes per lookup (one per bucket in the store, about 8 µs each) but more
// pages that new entries scatter over: at 300,000 records a day, 4 hours
// hold about 300,000 terms, some 8 MiB, which stays in the writer's page
// cache (Options.CacheKiB, 16 MiB by default).
const bucketNanos = 4 * int64(3600) * 1e9

// bucketOf returns the bucket of a timestamp in Unix nanoseconds (floor
// division, so that times before 1970 stay in order).
func bucketOf(ts int64) int64 {
	b := ts / bucketNanos
	if ts%bucketNanos < 0 {
		b--
	}
	return b
}

// Field tags of term hashes.
const (
	tagMessageID byte = 'm' // records.message_id
	tagSender    byte = 'f' // records.mail_from, not the null sender
	tagClientIP  byte = 'i' // records.client_ip
	tagRcpt      byte = 'r' // rcpts.addr
	tagRcptDom   byte = 'd' // rcpts.domain
	tagQueueID   byte = 'q' // records.queue_id and deliveries.queue_id
	tagSession   byte = 's' // records.session_id
)

// termHash is the 64-bit FNV-1a hash of tag followed by v, as stored in an
// INTEGER column.
func termHash(tag byte, v string) int64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	h ^= uint64(tag)
	h *= prime
	for i := 0; i < len(v); i++ {
		h ^= uint64(v[i])
		h *= prime
	}
	return int64(h)
}

// term is one row of the terms table.
type term struct{ bucket, h, rid int64 }

func compareTerms(a, b term) int {
	switch {
	case a.bucket != b.bucket:
		return cmpInt(a.bucket, b.bucket)
	case a.h != b.h:
		return cmpInt(a.h, b.h)
	}
	return cmpInt(a.rid, b.rid)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sortTerms sorts ts by key and drops duplicates (a record may name the
// same key twice, e.g. two deliveries with one queue ID).
func sortTerms(ts []term) []term {
	slices.SortFunc(ts, compareTerms)
	return slices.Compact(ts)
}

// termArgs sorts ts (sortTerms) and returns the values of its rows of
// terms and of the buckets they name, for tTerms and tBuckets: in key
// order, so that the B-tree is walked once, page after page.
func termArgs(ts []term) (terms, buckets []any) {
	ts = sortTerms(ts)
	for i, t := range ts {
		terms = append(terms, t.bucket, t.h, t.rid)
		if i == 0 || t.bucket != ts[i-1].bucket {
			buckets = append(buckets, t.bucket)
		}
	}
	return terms, buckets
}

// bucketRange is the range of buckets a lookup probes: all of them, or
// those that a time range [lo, hi) of timestamps in Unix nanoseconds can
// fall in.
type bucketRange struct {
	lo, hi int64 // inclusive
}

// where returns a condition on col (a bucket number) that holds for the
// 4-hour buckets of r and for the day buckets (compact.go) of the days
// they are in, binding values with arg; "" when r is every bucket.
func (r bucketRange) where(col string, arg func(any) string) string {
	if r == allBuckets() {
		return ""
	}
	return "(" + col + " BETWEEN " + arg(r.lo) + " AND " + arg(r.hi) + " OR " +
		col + " BETWEEN " + arg(dayBucket(r.lo)) + " AND " + arg(dayBucket(r.hi)) + ")"
}

func allBuckets() bucketRange { return bucketRange{math.MinInt64, math.MaxInt64} }

// after restricts r to timestamps >= ts; before to timestamps < ts.
func (r *bucketRange) after(ts int64) { r.lo = max(r.lo, bucketOf(ts)) }

func (r *bucketRange) before(ts int64) {
	if ts == math.MinInt64 {
		r.hi = math.MinInt64
		r.lo = math.MaxInt64 // empty
		return
	}
	r.hi = min(r.hi, bucketOf(ts-1))
}

// termSQL returns an expression that is true for the records (aliased r)
// that may have the term (tag, v) in the buckets b probes, with its
// arguments bound through b. The caller must also compare the column
// itself.
func (b *sqlBuilder) termSQL(tag byte, v string) string {
	h := termHash(tag, v)
	if b.seen != nil {
		b.seen[h] = true
	}
	if b.scanTerms[h] {
		// Common enough to be checked record by record (termPlans): the
		// caller's comparison of the column does it.
		return "1"
	}
	s := "r.id IN (SELECT t.rid FROM buckets bk CROSS JOIN terms t ON t.bucket = bk.b AND t.h = " + b.arg(h)
	if w := b.buckets.where("bk.b", b.arg); w != "" {
		s += " WHERE " + w
	}
	return s + ")"
}
