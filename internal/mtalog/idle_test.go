package mtalog

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestIdleQueue drives an IdleQueue with touches mostly forward in time and
// some far back, and checks what Pop takes against the plain scan a Flush
// used to make.
func TestIdleQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q IdleQueue[int]
	entries := make([]*IdleEntry[int], 200)
	for i := range entries {
		entries[i] = &IdleEntry[int]{Value: i}
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	for step := range 20000 {
		e := entries[rng.IntN(len(entries))]
		switch r := rng.IntN(100); {
		case r < 70:
			now = now.Add(time.Duration(rng.IntN(3)) * time.Second)
			q.Touch(e, now)
		case r < 85:
			q.Touch(e, now.Add(-time.Duration(rng.IntN(600))*time.Second))
		case r < 95:
			q.Remove(e)
		default:
			before := now.Add(-time.Duration(rng.IntN(300)) * time.Second)
			if rng.IntN(20) == 0 {
				before = time.Time{}
			}
			var want []int
			for _, x := range entries {
				if x.Queued() && (before.IsZero() || x.Last().Before(before)) {
					want = append(want, x.Value)
				}
			}
			var got []int
			var prev time.Time
			for {
				v, ok := q.Pop(before)
				if !ok {
					break
				}
				if entries[v].Last().Before(prev) {
					t.Fatalf("step %d: popped %d at %v after %v", step, v, entries[v].Last(), prev)
				}
				prev = entries[v].Last()
				got = append(got, v)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: popped %v, want %v", step, got, want)
			}
		}
		n := 0
		for _, x := range entries {
			if x.Queued() {
				n++
			}
		}
		if n != q.Len() {
			t.Fatalf("step %d: Len %d, %d queued", step, q.Len(), n)
		}
	}
}
