package store

import (
	"math"
	"testing"
)

func TestBucketOf(t *testing.T) {
	for _, c := range []struct{ ts, want int64 }{
		{0, 0}, {bucketNanos - 1, 0}, {bucketNanos, 1}, {-1, -1}, {-bucketNanos, -1}, {-bucketNanos - 1, -2},
		{math.MinInt64, math.MinInt64/bucketNanos - 1}, {math.MaxInt64, math.MaxInt64 / bucketNanos},
	} {
		if got := bucketOf(c.ts); got != c.want {
			t.Errorf("bucketOf(%d) = %d, want %d", c.ts, got, c.want)
		}
	}
}

func TestBucketRange(t *testing.T) {
	r := allBuckets()
	r.after(bucketNanos + 5)
	r.before(3 * bucketNanos) // last timestamp 3*bucketNanos-1 is in bucket 2
	if r != (bucketRange{1, 2}) {
		t.Errorf("range %+v, want {1 2}", r)
	}
	r = allBuckets()
	r.before(math.MinInt64)
	if r.lo <= r.hi {
		t.Errorf("before the first timestamp: range %+v is not empty", r)
	}
}

func TestTermHashTagged(t *testing.T) {
	if termHash(tagSender, "a@b") == termHash(tagRcpt, "a@b") {
		t.Error("the same value under two fields hashes the same")
	}
	if termHash(tagSender, "a@b") != termHash(tagSender, "a@b") {
		t.Error("hash not deterministic")
	}
}
