package pcapsmtp

import (
	"bytes"
	"time"
)

// half is what one direction of a conversation has sent and the decoder has
// not consumed yet, with the capture time of every byte: the time of the
// packet that made it available in order.
type half struct {
	buf   []byte
	off   int   // read position in buf
	base  int64 // stream offset of buf[0]
	total int64 // stream offset of the end of buf
	marks []mark

	scanned  int  // bytes after off already searched for a terminator
	skipToLF bool // drop bytes up to and including the next LF (resynchronising)
	mid      bool // the capture did not see this direction's first byte
	ended    bool // FIN or RST seen
	rst      bool
	endTS    time.Time
	dropped  int64 // bytes received and dropped (not SMTP, encrypted, out of step)
	gapAt    int64 // stream offset of the first gap not yet read past, when gapSeen
	gapSeen  bool
}

// noteGap remembers that bytes are missing at the end of what was received,
// unless an earlier gap is still ahead of the read position.
func (h *half) noteGap() {
	if !h.gapSeen || h.gapAt < h.base+int64(h.off) {
		h.gapAt, h.gapSeen = h.total, true
	}
}

// beforeGap returns the unread bytes that precede the first gap ahead of
// the read position, and whether there is such a gap.
func (h *half) beforeGap() ([]byte, bool) {
	u := h.unread()
	pos := h.base + int64(h.off)
	if !h.gapSeen || h.gapAt < pos {
		return u, false
	}
	return u[:min(int64(len(u)), h.gapAt-pos)], true
}

// mark says that the bytes before stream offset end arrived at ts.
type mark struct {
	end int64
	ts  time.Time
}

func (h *half) append(ts time.Time, b []byte) {
	if len(b) == 0 {
		return
	}
	if h.off == len(h.buf) {
		h.base += int64(h.off)
		h.buf, h.off = h.buf[:0], 0
	}
	h.buf = append(h.buf, b...)
	h.total += int64(len(b))
	if n := len(h.marks); n > 0 && h.marks[n-1].ts.Equal(ts) {
		h.marks[n-1].end = h.total
		return
	}
	h.marks = append(h.marks, mark{end: h.total, ts: ts})
}

func (h *half) unread() []byte { return h.buf[h.off:] }

func (h *half) len() int { return len(h.buf) - h.off }

// consume drops n unread bytes.
func (h *half) consume(n int) {
	h.off += n
	h.scanned = 0
	pos := h.base + int64(h.off)
	i := 0
	for i < len(h.marks)-1 && h.marks[i].end <= pos {
		i++
	}
	if i > 0 {
		h.marks = h.marks[i:]
	}
	switch {
	case h.off == len(h.buf):
		h.base += int64(h.off)
		h.buf, h.off = h.buf[:0], 0
		if cap(h.buf) > 1<<20 {
			h.buf = nil // do not keep a large message's memory for the rest of the connection
		}
	case h.off > 64<<10 && h.off > len(h.buf)/2:
		n := copy(h.buf, h.buf[h.off:])
		h.base += int64(h.off)
		h.buf, h.off = h.buf[:n], 0
	}
}

// drop discards everything unread and counts it.
func (h *half) drop() {
	h.dropped += int64(h.len())
	h.consume(h.len())
}

// tsAt is the capture time of unread byte i.
func (h *half) tsAt(i int) time.Time {
	pos := h.base + int64(h.off) + int64(i)
	for _, m := range h.marks {
		if m.end > pos {
			return m.ts
		}
	}
	if n := len(h.marks); n > 0 {
		return h.marks[n-1].ts
	}
	return time.Time{}
}

// cutPartialLine drops unread bytes after the last LF, the start of a line
// whose rest a gap has lost; it reports whether there were any.
func (h *half) cutPartialLine() bool {
	u := h.unread()
	keep := bytes.LastIndexByte(u, '\n') + 1
	if keep == len(u) {
		return false
	}
	h.dropped += int64(len(u) - keep)
	h.buf = h.buf[:h.off+keep]
	h.total = h.base + int64(len(h.buf))
	for len(h.marks) > 1 && h.marks[len(h.marks)-2].end >= h.total {
		h.marks = h.marks[:len(h.marks)-1]
	}
	if n := len(h.marks); n > 0 {
		h.marks[n-1].end = h.total
	}
	h.scanned = 0
	return true
}

// skipLine consumes through the next LF when skipToLF is set; it reports
// whether the half is in step again.
func (h *half) skipLine() bool {
	if !h.skipToLF {
		return true
	}
	u := h.unread()
	i := bytes.IndexByte(u, '\n')
	if i < 0 {
		h.dropped += int64(len(u))
		h.consume(len(u))
		return false
	}
	h.dropped += int64(i + 1)
	h.consume(i + 1)
	h.skipToLF = false
	return true
}
