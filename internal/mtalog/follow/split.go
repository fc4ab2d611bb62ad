package follow

import "bytes"

// splitter cuts a byte stream into lines with bounded memory: at most max
// bytes of an unfinished line are kept; the rest of an over-long line is
// skipped up to its newline and the line delivered truncated.
type splitter struct {
	max       int
	pend      []byte // the unfinished line's first bytes (≤ max)
	consumed  int64  // bytes of the unfinished line consumed so far (kept or skipped)
	committed int64  // file offset just after the last complete line = start of the unfinished one
}

func (sp *splitter) reset(at int64, max int) {
	*sp = splitter{max: max, committed: at}
}

// feed consumes data, which follows the bytes fed before, and calls emit for
// every line it completes.
func (sp *splitter) feed(data []byte, emit func(Line)) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i >= 0 && sp.consumed == 0 && i <= sp.max {
			// Fast path: the whole line is in data.
			emit(Line{Text: string(data[:i]), Offset: sp.committed})
			sp.committed += int64(i) + 1
			data = data[i+1:]
			continue
		}
		part := data
		if i >= 0 {
			part = data[:i]
		}
		if room := sp.max - len(sp.pend); room > 0 {
			sp.pend = append(sp.pend, part[:min(room, len(part))]...)
		}
		sp.consumed += int64(len(part))
		if i < 0 {
			return
		}
		emit(Line{Text: string(sp.pend), Offset: sp.committed, Truncated: sp.consumed > int64(sp.max)})
		sp.committed += sp.consumed + 1
		sp.pend = sp.pend[:0]
		sp.consumed = 0
		data = data[i+1:]
	}
}

// flush returns the unfinished line, if any, as an unterminated line; the
// committed offset moves past it.
func (sp *splitter) flush(name string) (Line, bool) {
	if sp.consumed == 0 {
		return Line{}, false
	}
	l := Line{Text: string(sp.pend), File: name, Offset: sp.committed, Truncated: sp.consumed > int64(sp.max), Unterminated: true}
	sp.committed += sp.consumed
	sp.pend = sp.pend[:0]
	sp.consumed = 0
	return l, true
}
