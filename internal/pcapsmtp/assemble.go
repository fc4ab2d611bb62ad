package pcapsmtp

import (
	"net/netip"
	"slices"
	"time"
)

// TCP reassembly, per connection and direction: segments are put in
// sequence order, bytes already delivered (retransmissions, duplicates,
// overlaps) are dropped, and segments ahead of a hole wait, within bounded
// memory, until the hole is filled or they are older than GapWait, when
// the hole becomes a gap. A connection ends when both directions ended
// (FIN or RST), when it is idle for IdleTimeout, or at Close.

// Bounded memory for out-of-order segments, counted in pages of 1900 bytes
// as before.
const (
	pageSize        = 1900
	maxPagesPerHalf = 4096
	maxPagesTotal   = 64 << 10
)

type flowKey struct{ src, dst netip.AddrPort }

// queued is a segment that arrived ahead of its direction's next byte.
type queued struct {
	seq   uint32
	data  []byte
	fin   bool
	ts    time.Time
	pages int
}

type halfConn struct {
	nextSeq  uint32 // the next byte expected, when valid
	valid    bool
	closed   bool
	lastSeen time.Time
	finSeq   uint32 // where a FIN seen ahead of nextSeq ends the stream, when finValid
	finValid bool
	q        []queued // sorted by sequence number
	pages    int
}

// tcpConn is one connection; h[0] is the direction of its first packet.
type tcpConn struct {
	key     flowKey
	h       [2]halfConn
	s       *stream
	removed bool
}

func (c *tcpConn) lastSeen() time.Time {
	if c.h[0].lastSeen.After(c.h[1].lastSeen) {
		return c.h[0].lastSeen
	}
	return c.h[1].lastSeen
}

type assembler struct {
	d       *Decoder
	conns   map[flowKey]*tcpConn
	order   []*tcpConn // in creation order, for deterministic flushes
	pages   int
	scratch []byte
}

func newAssembler(d *Decoder) *assembler {
	return &assembler{d: d, conns: make(map[flowKey]*tcpConn)}
}

// seqDiff is a-b in sequence space.
func seqDiff(a, b uint32) int { return int(int32(a - b)) }

func (a *assembler) assemble(t *tcpSegment, ts time.Time) {
	k := flowKey{t.src, t.dst}
	c, dir := a.conns[k], 0
	if c == nil {
		if c = a.conns[flowKey{t.dst, t.src}]; c != nil {
			dir = 1
		}
	}
	if c != nil && t.syn && c.h[0].closed && c.h[1].closed {
		a.remove(c) // a new connection on the same addresses
		c = nil
	}
	if c == nil {
		s := a.d.newStream(t, ts)
		if s == nil {
			return
		}
		c = &tcpConn{key: k, s: s}
		a.conns[k] = c
		a.order = append(a.order, c)
		dir = 0
	}
	h := &c.h[dir]
	if h.lastSeen.Before(ts) {
		h.lastSeen = ts
	}
	start := !h.valid && t.syn
	if !c.s.Accept(t, ts, dir, h.valid, &start) {
		return
	}
	if h.closed {
		return
	}
	if t.syn && h.valid {
		return // a SYN on a synchronised direction carries no stream data
	}
	seq, data := t.seq, t.payload
	queue := true
	if !h.valid {
		switch {
		case t.syn:
			seq++
			h.nextSeq, h.valid, queue = seq, true, false
		case start:
			h.nextSeq, h.valid, queue = seq, true, false
		}
	} else {
		diff := seqDiff(seq, h.nextSeq)
		switch {
		case diff > 0: // ahead of a hole
		case (t.rst && diff < 0) || (t.fin && seqDiff(seq+uint32(len(data)), h.nextSeq) < 0):
			return // an old RST or FIN, out of window for the receiver
		default:
			queue = false
		}
	}
	if t.rst && queue {
		return // a RST not at the next byte is dropped by the receiver
	}
	if t.fin && queue {
		h.finSeq, h.finValid = seq+uint32(len(data)), true
	}
	end := t.rst || t.fin
	sent := false
	var next uint32
	if queue {
		if len(data) > 0 {
			a.insert(h, seq, data, t.fin, ts)
		}
		if (h.pages >= maxPagesPerHalf || a.pages >= maxPagesTotal) && len(h.q) > 0 {
			q := a.pop(h)
			next, sent = a.send(c, dir, q.seq, q.data, q.fin, ts), true
		}
	} else {
		if over := seqDiff(h.nextSeq, seq); over > 0 {
			data = data[min(over, len(data)):]
			seq = h.nextSeq
		}
		if len(data) > 0 || end || start {
			next, sent = a.send(c, dir, seq, data, end, ts), true
		}
	}
	if sent {
		h.nextSeq, h.valid = next, true
		if t.fin {
			h.nextSeq++
		}
	}
}

// insert queues a segment ahead of a hole, unless one queued already
// holds its bytes.
func (a *assembler) insert(h *halfConn, seq uint32, data []byte, fin bool, ts time.Time) {
	end := seq + uint32(len(data))
	for i := range h.q {
		e := &h.q[i]
		if seqDiff(seq, e.seq) >= 0 && seqDiff(e.seq+uint32(len(e.data)), end) >= 0 && (!fin || e.fin) {
			return
		}
	}
	i := 0
	for i < len(h.q) && seqDiff(h.q[i].seq, seq) <= 0 {
		i++
	}
	p := (len(data) + pageSize - 1) / pageSize
	h.q = slices.Insert(h.q, i, queued{seq: seq, data: slices.Clone(data), fin: fin, ts: ts, pages: p})
	h.pages += p
	a.pages += p
}

func (a *assembler) pop(h *halfConn) queued {
	q := h.q[0]
	h.q[0] = queued{}
	h.q = h.q[1:]
	if len(h.q) == 0 {
		h.q = nil
	}
	h.pages -= q.pages
	a.pages -= q.pages
	return q
}

// send delivers the bytes at seq and the queued ones that follow them
// without a hole, and returns the sequence number after them. A hole
// before seq is reported as a gap.
func (a *assembler) send(c *tcpConn, dir int, seq uint32, data []byte, end bool, ts time.Time) uint32 {
	h := &c.h[dir]
	skip := -1
	if h.valid {
		skip = seqDiff(seq, h.nextSeq)
		if skip < 0 { // overlaps bytes delivered already
			data = data[min(-skip, len(data)):]
			seq, skip = h.nextSeq, 0
		}
	}
	buf := data
	copied := false
	last := seq + uint32(len(data))
	for !end && len(h.q) > 0 {
		over := seqDiff(last, h.q[0].seq)
		if over < 0 {
			break
		}
		q := a.pop(h)
		if over < len(q.data) {
			if !copied {
				buf = append(a.scratch[:0], buf...)
				copied = true
			}
			buf = append(buf, q.data[over:]...)
			last += uint32(len(q.data) - over)
		}
		if q.fin && over <= len(q.data) {
			end = true
		}
	}
	if h.finValid && last == h.finSeq {
		end = true
		h.finValid = false
	}
	c.s.ReassembledSG(dir, skip, buf, end, ts)
	if copied {
		a.scratch = buf[:0]
		if cap(a.scratch) > 1<<20 {
			a.scratch = nil
		}
	}
	if end {
		a.closeHalf(c, dir)
	}
	return last
}

func (a *assembler) closeHalf(c *tcpConn, dir int) {
	h := &c.h[dir]
	h.closed = true
	a.pages -= h.pages
	h.q, h.pages, h.finValid = nil, 0, false
	if c.h[0].closed && c.h[1].closed {
		c.s.ReassemblyComplete()
		a.remove(c)
	}
}

func (a *assembler) remove(c *tcpConn) {
	if c.removed {
		return
	}
	c.removed = true
	if a.conns[c.key] == c {
		delete(a.conns, c.key)
	}
}

// skipFlush gives up waiting for the hole before the first queued segment
// of a direction, or ends the direction when nothing is queued.
func (a *assembler) skipFlush(c *tcpConn, dir int) {
	h := &c.h[dir]
	if len(h.q) == 0 {
		a.closeHalf(c, dir)
		return
	}
	q := a.pop(h)
	next := a.send(c, dir, q.seq, q.data, q.fin, q.ts)
	h.nextSeq, h.valid = next, true
}

// flush delivers the segments queued before t across their holes, and
// ends the connections idle since before tc.
func (a *assembler) flush(t, tc time.Time) {
	for _, c := range a.order {
		if c.removed {
			continue
		}
		for _, dir := range [2]int{1, 0} {
			h := &c.h[dir]
			if h.closed {
				continue
			}
			// Segments are delivered in sequence order: one must not wait
			// longer than those queued behind it.
			for i := len(h.q) - 1; i > 0; i-- {
				if h.q[i].ts.Before(h.q[i-1].ts) {
					h.q[i-1].ts = h.q[i].ts
				}
			}
			for len(h.q) > 0 && h.q[0].ts.Before(t) && !h.closed {
				a.skipFlush(c, dir)
			}
			if !h.closed && len(h.q) == 0 && c.lastSeen().Before(tc) {
				a.closeHalf(c, dir)
			}
		}
	}
	a.compact()
}

// flushAll delivers everything queued and ends every connection.
func (a *assembler) flushAll() {
	for _, c := range a.order {
		if c.removed {
			continue
		}
		for _, dir := range [2]int{1, 0} {
			for !c.h[dir].closed {
				a.skipFlush(c, dir)
			}
		}
	}
	a.compact()
}

func (a *assembler) compact() {
	a.order = slices.DeleteFunc(a.order, func(c *tcpConn) bool { return c.removed })
}
