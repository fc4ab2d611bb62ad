package mtalog

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// ErrNoPrefix reports a line that matches none of the known log line shapes.
var ErrNoPrefix = errors.New("mtalog: no known log line prefix")

// ParseLine splits a log line's prefix off its message. It knows these
// shapes, with or without a leading "<PRI>" (RFC 3164 on the wire):
//
//	Nov 29 10:12:34 host prog[pid]: msg                      traditional syslog (RFC 3164), Postfix's maillog_file
//	2026-11-29T10:12:34.123456+01:00 host prog[pid]: msg     RFC 3339 high precision (rsyslog)
//	2026-11-29T10:12:34+0100 host prog[pid]: msg             journalctl -o short-iso (and short-iso-precise)
//	<34>1 2026-11-29T10:12:34Z host prog pid msgid - msg     RFC 5424
//
// A traditional timestamp has no year and no zone: the zone is ref's
// location, and the year is ref's, or the one before when that would put
// the line more than a day after ref (a December line read in January).
// The returned Line's strings share raw's memory. ParseLine never panics;
// a line of no known shape is ErrNoPrefix.
func ParseLine(raw string, ref time.Time) (Line, error) {
	return parseLine(raw, ref, nil)
}

// stampCache remembers the last 15-byte traditional timestamp
// ("Nov 29 10:12:34") a parser turned into a time, with the reference time
// it was parsed against: consecutive lines usually share the second, and
// time.Date is the dearest part of a prefix. It belongs to one parser
// value; the entry is replaced whole through an atomic pointer, so a parser
// shared by several goroutines stays correct (they merely miss more).
type stampCache struct {
	last atomic.Pointer[stampEntry]
}

type stampEntry struct {
	k0, k1 uint64 // the stamp's bytes 0-7 and 7-14, compared as two words
	ref    time.Time
	t      time.Time
}

// le64 reads 8 bytes little-endian; the compiler makes it one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// parseLine is ParseLine with an optional timestamp cache.
func parseLine(raw string, ref time.Time, c *stampCache) (Line, error) {
	var l Line
	err := parseLineTo(&l, raw, ref, c)
	return l, err
}

// parseLineTo is parseLine into *l, which it overwrites.
func parseLineTo(l *Line, raw string, ref time.Time, c *stampCache) error {
	*l = Line{Raw: raw}
	s := raw
	rfc5424 := false
	if len(s) > 0 && s[0] == '<' {
		i := 1
		for i < len(s) && i <= 4 && isDigit(s[i]) {
			i++
		}
		if i == 1 || i >= len(s) || s[i] != '>' {
			return ErrNoPrefix
		}
		s = s[i+1:]
		if len(s) > 2 && s[0] == '1' && s[1] == ' ' {
			rfc5424 = true
			s = s[2:]
		}
	}
	if rfc5424 {
		return parse5424(l, s)
	}
	var rest string
	var ok bool
	if len(s) >= 15 && isUpper(s[0]) {
		l.Time, rest, ok = parseStamp3164(s, ref, c)
	} else if len(s) >= 19 && isDigit(s[0]) {
		l.Time, rest, ok = parseStamp3339(s)
	}
	if !ok || len(rest) == 0 || rest[0] != ' ' {
		return ErrNoPrefix
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	// The host is short: a loop finds its end sooner than IndexByte.
	sp := 0
	for sp < len(rest) && rest[sp] != ' ' {
		sp++
	}
	if sp == 0 || sp == len(rest) {
		return ErrNoPrefix
	}
	l.Host = rest[:sp]
	rest = rest[sp+1:]
	if !splitTag(l, rest) {
		return ErrNoPrefix
	}
	return nil
}

// splitTag parses "prog[pid]: msg" or "prog: msg" into l.
func splitTag(l *Line, s string) bool {
	// The tag ends at the first ": " (or ":" at the end of the line),
	// within 256 bytes and before any other space: at the colon before
	// the first space, or without a space at the last byte.
	end := len(s) - 1
	if sp := strings.IndexByte(s, ' '); sp >= 0 {
		end = sp - 1
	}
	if end <= 0 || end >= 256 || s[end] != ':' {
		return false
	}
	tag := s[:end]
	if tag[len(tag)-1] == ']' {
		ob := strings.LastIndexByte(tag, '[')
		if ob <= 0 {
			return false
		}
		pid, ok := atoi(tag[ob+1 : len(tag)-1])
		if !ok {
			return false
		}
		l.PID = pid
		tag = tag[:ob]
	}
	l.Program = tag
	if end+2 <= len(s) {
		l.Message = s[end+2:]
	}
	return true
}

// parse5424 parses what follows "<PRI>1 " (RFC 5424 section 6):
// TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG].
func parse5424(l *Line, s string) error {
	var fields [5]string
	for i := range fields {
		sp := strings.IndexByte(s, ' ')
		if sp <= 0 {
			return ErrNoPrefix
		}
		fields[i] = s[:sp]
		s = s[sp+1:]
	}
	if fields[0] != "-" {
		t, rest, ok := parseStamp3339(fields[0])
		if !ok || rest != "" {
			return ErrNoPrefix
		}
		l.Time = t
	}
	if fields[1] != "-" {
		l.Host = fields[1]
	}
	if fields[2] != "-" {
		l.Program = fields[2]
	}
	if pid, ok := atoi(fields[3]); ok {
		l.PID = pid
	}
	// STRUCTURED-DATA: "-" or one or more [id param="value"...] elements,
	// where '"', '\' and ']' are escaped with a backslash inside values.
	switch {
	case strings.HasPrefix(s, "-"):
		s = s[1:]
	case strings.HasPrefix(s, "["):
		inQuote := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if inQuote {
				if c == '\\' {
					i++
				} else if c == '"' {
					inQuote = false
				}
				continue
			}
			if c == '"' {
				inQuote = true
			} else if c == ']' && (i+1 == len(s) || s[i+1] != '[') {
				break
			}
		}
		if i >= len(s) {
			return ErrNoPrefix
		}
		s = s[i+1:]
	default:
		return ErrNoPrefix
	}
	if s != "" && s[0] != ' ' {
		return ErrNoPrefix
	}
	if s != "" {
		s = s[1:]
	}
	l.Message = strings.TrimPrefix(s, "\ufeff")
	if l.Program == "" {
		return ErrNoPrefix
	}
	return nil
}

// parseStamp3164 parses "Mmm dd hh:mm:ss" with an optional fraction. A
// stamp without a fraction is looked up in and saved to c when c is not nil
// and ref is not zero (a zero ref takes the current year, which may change).
func parseStamp3164(s string, ref time.Time, c *stampCache) (time.Time, string, bool) {
	cacheable := c != nil && !ref.IsZero() && (len(s) == 15 || s[15] != '.')
	if cacheable {
		// The same 15 bytes and the same ref give the same time: the
		// result depends on nothing else when there is no fraction.
		if e := c.last.Load(); e != nil && e.k0 == le64(s[0:8]) && e.k1 == le64(s[7:15]) && e.ref == ref {
			return e.t, s[15:], true
		}
	}
	mon := monthOf(s[0:3])
	if mon == 0 || s[3] != ' ' {
		return time.Time{}, "", false
	}
	var day int
	switch {
	case s[4] == ' ' && isDigit(s[5]):
		day = int(s[5] - '0')
	case isDigit(s[4]) && isDigit(s[5]):
		day = int(s[4]-'0')*10 + int(s[5]-'0')
	default:
		return time.Time{}, "", false
	}
	if s[6] != ' ' {
		return time.Time{}, "", false
	}
	h, m, sec, ok := parseClock(s[7:15])
	if !ok || day < 1 || day > 31 {
		return time.Time{}, "", false
	}
	rest := s[15:]
	nsec, rest := parseFraction(rest)
	loc := ref.Location()
	year := ref.Year()
	if ref.IsZero() {
		year = time.Now().Year()
	}
	t := time.Date(year, mon, day, h, m, sec, nsec, loc)
	if !ref.IsZero() && t.Sub(ref) > 24*time.Hour {
		t = time.Date(year-1, mon, day, h, m, sec, nsec, loc)
	}
	if cacheable && nsec == 0 {
		c.last.Store(&stampEntry{k0: le64(s[0:8]), k1: le64(s[7:15]), ref: ref, t: t})
	}
	return t, rest, true
}

// parseStamp3339 parses "YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|+hhmm)".
func parseStamp3339(s string) (time.Time, string, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') {
		return time.Time{}, "", false
	}
	y, ok1 := atoiN(s[0:4])
	mo, ok2 := atoiN(s[5:7])
	d, ok3 := atoiN(s[8:10])
	h, m, sec, ok4 := parseClock(s[11:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || mo < 1 || mo > 12 || d < 1 || d > 31 {
		return time.Time{}, "", false
	}
	rest := s[19:]
	nsec, rest := parseFraction(rest)
	if rest == "" {
		return time.Time{}, "", false
	}
	var off int
	switch rest[0] {
	case 'Z', 'z':
		rest = rest[1:]
	case '+', '-':
		var oh, om int
		var ok bool
		switch {
		case len(rest) >= 6 && rest[3] == ':':
			oh, ok1 = atoiN(rest[1:3])
			om, ok = atoiN(rest[4:6])
			ok = ok && ok1
			if ok {
				off = oh*3600 + om*60
			}
			if rest[0] == '-' {
				off = -off
			}
			rest = rest[6:]
		case len(rest) >= 5:
			oh, ok1 = atoiN(rest[1:3])
			om, ok = atoiN(rest[3:5])
			ok = ok && ok1
			if ok {
				off = oh*3600 + om*60
			}
			if rest[0] == '-' {
				off = -off
			}
			rest = rest[5:]
		}
		if !ok || oh > 23 || om > 59 {
			return time.Time{}, "", false
		}
	default:
		return time.Time{}, "", false
	}
	t := time.Date(y, time.Month(mo), d, h, m, sec, nsec, time.UTC).Add(-time.Duration(off) * time.Second)
	return t, rest, true
}

func parseClock(s string) (h, m, sec int, ok bool) {
	if len(s) != 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, false
	}
	h, ok1 := atoiN(s[0:2])
	m, ok2 := atoiN(s[3:5])
	sec, ok3 := atoiN(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 60 {
		return 0, 0, 0, false
	}
	return h, m, sec, true
}

// parseFraction parses an optional ".ddd…" and returns nanoseconds.
func parseFraction(s string) (int, string) {
	if len(s) < 2 || s[0] != '.' || !isDigit(s[1]) {
		return 0, s
	}
	i := 1
	n, scale := 0, 100000000
	for ; i < len(s) && isDigit(s[i]); i++ {
		if scale > 0 {
			n += int(s[i]-'0') * scale
			scale /= 10
		}
	}
	return n, s[i:]
}

func monthOf(s string) time.Month {
	switch s {
	case "Jan":
		return time.January
	case "Feb":
		return time.February
	case "Mar":
		return time.March
	case "Apr":
		return time.April
	case "May":
		return time.May
	case "Jun":
		return time.June
	case "Jul":
		return time.July
	case "Aug":
		return time.August
	case "Sep":
		return time.September
	case "Oct":
		return time.October
	case "Nov":
		return time.November
	case "Dec":
		return time.December
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// atoiN parses a fixed-width run of digits.
func atoiN(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// atoi parses a non-negative decimal of at most 9 digits.
func atoi(s string) (int, bool) {
	if len(s) > 9 {
		return 0, false
	}
	return atoiN(s)
}
