package postfix

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"time"
)

// Replay writes n copies of a Postfix log to w, each with fresh queue IDs
// and process IDs, so that every copy is its own set of messages and
// sessions: a large log made from real Postfix output, for benchmarks.
// Queue IDs are the 11-hex-digit IDs of Debian's Postfix; copy i keeps
// their first six digits and replaces the last five with i (mod 2^20), and
// prefixes every pid with i.
//
// With advance false every copy keeps the original times, so the log time
// stands still after the first copy. With advance true the copies follow
// one another as a continuous log does: copy i is moved n-1-i times the
// span of the original (its first to its last line, plus a second) into
// the past, so the last copy keeps the original times, times never go
// backwards, and idle flushes and content-filter link windows expire as in
// a real log. Only traditional syslog stamps ("Nov 30 01:44:09") are moved.
func Replay(w io.Writer, log []byte, n int, advance bool) error {
	qid := regexp.MustCompile(`\b[0-9A-F]{11}\b`)
	pid := regexp.MustCompile(`\[(\d+)\]: `)
	var span time.Duration
	if advance {
		first, last, ok := stampRange(log)
		if ok {
			span = last.Sub(first) + time.Second
		}
	}
	var buf bytes.Buffer
	for i := range n {
		buf.Reset()
		c := qid.ReplaceAllFunc(log, func(b []byte) []byte { return fmt.Appendf(nil, "%s%05X", b[:6], i&0xFFFFF) })
		c = pid.ReplaceAllFunc(c, func(b []byte) []byte { return fmt.Appendf(nil, "[%d%s", i, b[1:]) })
		if span > 0 {
			shiftStamps(c, -time.Duration(n-1-i)*span)
		}
		buf.Write(c)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	return nil
}

// stampYear is the year stamps are moved in: not a leap year, so that no
// moved stamp is a February 29th that a reader would put in March.
const stampYear = 2025

// parseStamp parses a traditional syslog stamp at the start of a line.
func parseStamp(line []byte) (time.Time, bool) {
	if len(line) < len(time.Stamp) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.Stamp, string(line[:len(time.Stamp)]))
	if err != nil {
		return time.Time{}, false
	}
	return t.AddDate(stampYear-t.Year(), 0, 0), true
}

// stampRange returns the earliest and latest stamps of log's lines.
func stampRange(log []byte) (first, last time.Time, ok bool) {
	for line := range bytes.Lines(log) {
		t, sok := parseStamp(line)
		if !sok {
			continue
		}
		if !ok || t.Before(first) {
			first = t
		}
		if !ok || t.After(last) {
			last = t
		}
		ok = true
	}
	return first, last, ok
}

// shiftStamps moves the stamp of every line of log by d, in place.
func shiftStamps(log []byte, d time.Duration) {
	for len(log) > 0 {
		line := log
		if i := bytes.IndexByte(log, '\n'); i >= 0 {
			line, log = log[:i], log[i+1:]
		} else {
			log = nil
		}
		if t, ok := parseStamp(line); ok {
			t = t.Add(d)
			t = t.AddDate(stampYear-t.Year(), 0, 0) // a move across New Year keeps the month and day
			copy(line, t.Format(time.Stamp))
		}
	}
}
