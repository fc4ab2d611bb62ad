package mtalog

import (
	"slices"
	"time"
)

// IdleQueue orders a correlator's open entries (messages, sessions) by the
// log time each last saw a line, so that a Flush finds the idle ones
// without looking at the others: its cost follows what it takes, not what
// is open. Log time mostly increases, so an entry touched at or after the
// latest time goes to the back of a list, in O(1); one touched earlier
// (the lines of hosts whose clocks differ, or of files merged out of
// order) goes into its place near the back, or else into a heap, in
// O(log n). The zero value is an empty queue. It is not safe for
// concurrent use.
type IdleQueue[T any] struct {
	front, back *IdleEntry[T] // the list, least recently seen first
	heap        []*IdleEntry[T]
	n           int
}

// IdleEntry is an entry of an IdleQueue, kept in the entry's own struct;
// Value names it (a key, or the struct itself). An entry is in at most one
// queue; its zero value is in none.
type IdleEntry[T any] struct {
	Value      T
	last       time.Time
	prev, next *IdleEntry[T]
	pos        int // 0: not queued, -1: in the list, i+1: heap[i]
}

// Last is the time the entry was last touched.
func (e *IdleEntry[T]) Last() time.Time { return e.last }

// Queued reports whether the entry is in a queue.
func (e *IdleEntry[T]) Queued() bool { return e.pos != 0 }

// idleWalk is how far back from the list's back an entry touched at an
// earlier time is placed before it goes to the heap instead.
const idleWalk = 8

// Len is the number of queued entries.
func (q *IdleQueue[T]) Len() int { return q.n }

// Touch sets e's last time to t and queues it (again) in its place.
func (q *IdleQueue[T]) Touch(e *IdleEntry[T], t time.Time) {
	if e.pos == -1 && e == q.back && !t.Before(e.last) {
		e.last = t // already where it belongs
		return
	}
	q.Remove(e)
	e.last = t
	q.n++
	at := q.back // e goes after at
	for i := 0; at != nil && t.Before(at.last); i++ {
		if i == idleWalk {
			e.pos = len(q.heap) + 1
			q.heap = append(q.heap, e)
			q.up(len(q.heap) - 1)
			return
		}
		at = at.prev
	}
	e.pos = -1
	e.prev = at
	if at == nil {
		e.next = q.front
		q.front = e
	} else {
		e.next = at.next
		at.next = e
	}
	if e.next == nil {
		q.back = e
	} else {
		e.next.prev = e
	}
}

// TouchInOrder touches, in q, the entry of every item at its time, least
// recent first (items are sorted so, stably), which leaves q as the run of
// lines that saw them would have: how a correlator restores a snapshot.
func TouchInOrder[S, T any](q *IdleQueue[T], items []S, last func(S) time.Time, entry func(S) *IdleEntry[T]) {
	slices.SortStableFunc(items, func(a, b S) int { return last(a).Compare(last(b)) })
	for _, it := range items {
		q.Touch(entry(it), last(it))
	}
}

// Remove takes e out of the queue, if it is queued.
func (q *IdleQueue[T]) Remove(e *IdleEntry[T]) {
	switch {
	case e.pos == 0:
		return
	case e.pos == -1:
		if e.prev == nil {
			q.front = e.next
		} else {
			e.prev.next = e.next
		}
		if e.next == nil {
			q.back = e.prev
		} else {
			e.next.prev = e.prev
		}
		e.prev, e.next = nil, nil
	default:
		i, last := e.pos-1, len(q.heap)-1
		if i != last {
			q.swap(i, last)
		}
		q.heap[last] = nil
		q.heap = q.heap[:last]
		if i != last {
			q.down(i)
			q.up(i)
		}
	}
	e.pos = 0
	q.n--
}

// oldest returns the least recently seen entry, or nil.
func (q *IdleQueue[T]) oldest() *IdleEntry[T] {
	e := q.front
	if len(q.heap) > 0 && (e == nil || q.heap[0].last.Before(e.last)) {
		e = q.heap[0]
	}
	return e
}

// Oldest returns the last time of the least recently seen entry; false
// when the queue is empty.
func (q *IdleQueue[T]) Oldest() (time.Time, bool) {
	if e := q.oldest(); e != nil {
		return e.last, true
	}
	return time.Time{}, false
}

// Pop takes the least recently seen entry out of the queue and returns its
// Value, when it was last seen before before (or whenever, when before is
// zero); false when there is none such.
func (q *IdleQueue[T]) Pop(before time.Time) (T, bool) {
	e := q.oldest()
	if e == nil || !before.IsZero() && !e.last.Before(before) {
		var zero T
		return zero, false
	}
	q.Remove(e)
	return e.Value, true
}

func (q *IdleQueue[T]) less(i, j int) bool { return q.heap[i].last.Before(q.heap[j].last) }

func (q *IdleQueue[T]) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].pos, q.heap[j].pos = i+1, j+1
}

func (q *IdleQueue[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *IdleQueue[T]) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q.heap) {
			return
		}
		m := l
		if r := l + 1; r < len(q.heap) && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q.swap(i, m)
		i = m
	}
}

// PopStale appends to s the entries of q (keyed by their Value) last seen
// before before (every one when before is zero), marked session, taking
// them out of q; SortStale then orders them as a Flush emits them.
func PopStale(s []Stale, q *IdleQueue[string], before time.Time, session bool) []Stale {
	for {
		e := q.oldest()
		if e == nil || !before.IsZero() && !e.last.Before(before) {
			return s
		}
		q.Remove(e)
		s = append(s, Stale{Key: e.Value, Last: e.last, Session: session})
	}
}
