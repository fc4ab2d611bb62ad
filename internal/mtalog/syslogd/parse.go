package syslogd

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"

	syslog "github.com/leodido/go-syslog/v4"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// ErrUnparsed wraps the reason a message was not understood as syslog. The
// Line returned with it still carries the raw message, so that it can be
// kept as unparsed.
var ErrUnparsed = errors.New("syslog: message not understood")

// Parser turns one syslog message (a frame's payload) into a Line.
//
// RFC 5424 messages go to go-syslog's RFC 5424 machine, a complete and
// fuzzed implementation of the ABNF (structured data included). RFC 3164
// messages are parsed here: 3164 only describes what was seen in the wild,
// and go-syslog's 3164 machine insists on a hostname and a fixed tag shape,
// and infers a missing year as the current one, which is wrong for a
// December line received in January. This parser accepts what rsyslog,
// syslog-ng, util-linux logger and journald send (BSD or RFC 3339
// timestamps, with or without a hostname) and picks the year closest to the
// time of receipt.
//
// A Parser is not safe for concurrent use; use one per goroutine.
type Parser struct {
	// Location is where RFC 3164 timestamps without a zone are taken to be;
	// nil means time.Local.
	Location *time.Location
	m5424    syslog.Machine
}

// Parse parses msg received from origin at now. Line.Raw holds msg; on
// error, Line.Message holds msg too and Line.Time is now.
func (p *Parser) Parse(msg []byte, origin string, now time.Time) (mtalog.Line, error) {
	l := mtalog.Line{Raw: string(msg), Origin: origin, Time: now, Message: string(msg)}
	pri, rest, ok := cutPRI(msg)
	if !ok {
		return l, fmt.Errorf("%w: no <PRI>", ErrUnparsed)
	}
	_ = pri
	if len(rest) >= 2 && rest[0] == '1' && rest[1] == ' ' {
		return p.parse5424(msg, l)
	}
	return p.parse3164(rest, l, now)
}

// cutPRI splits "<PRI>" (RFC 5424 §6.2.1: 1 to 3 digits, at most 191) off.
func cutPRI(b []byte) (int, []byte, bool) {
	if len(b) < 3 || b[0] != '<' {
		return 0, nil, false
	}
	pri := 0
	for i := 1; i < len(b) && i <= 4; i++ {
		c := b[i]
		switch {
		case c == '>' && i > 1:
			if pri > 191 {
				return 0, nil, false
			}
			return pri, b[i+1:], true
		case c >= '0' && c <= '9':
			pri = pri*10 + int(c-'0')
		default:
			return 0, nil, false
		}
	}
	return 0, nil, false
}

func (p *Parser) parse5424(msg []byte, l mtalog.Line) (mtalog.Line, error) {
	if p.m5424 == nil {
		p.m5424 = rfc5424.NewMachine(rfc5424.WithBestEffort())
	}
	m, err := p.m5424.Parse(msg)
	sm, ok := m.(*rfc5424.SyslogMessage)
	if !ok || sm == nil {
		if err == nil {
			err = errors.New("empty")
		}
		return l, fmt.Errorf("%w: rfc5424: %v", ErrUnparsed, err)
	}
	if sm.Timestamp != nil {
		l.Time = *sm.Timestamp
	}
	l.Host = nilDash(sm.Hostname)
	l.Program = nilDash(sm.Appname)
	if pid, err := strconv.Atoi(nilDash(sm.ProcID)); err == nil && pid > 0 {
		l.PID = pid
	}
	l.Message = ""
	if sm.Message != nil {
		// rsyslog's RSYSLOG_SyslogProtocol23Format ends MSG with a LF even
		// inside an octet-counted frame; a log line never ends in one.
		l.Message = strings.TrimRight(*sm.Message, "\r\n")
	}
	if err != nil {
		return l, fmt.Errorf("%w: rfc5424: %v", ErrUnparsed, err)
	}
	return l, nil
}

func nilDash(s *string) string {
	if s == nil || *s == "-" {
		return ""
	}
	return *s
}

// parse3164 parses what follows <PRI> in an RFC 3164 message:
// TIMESTAMP SP HOSTNAME SP TAG[PID]: MSG, where TIMESTAMP is "Mmm dd
// hh:mm:ss" or RFC 3339, and HOSTNAME may be missing (messages from
// /dev/log relayed as they are). Without a timestamp the whole is the
// content (RFC 3164 §4.3.2).
func (p *Parser) parse3164(b []byte, l mtalog.Line, now time.Time) (mtalog.Line, error) {
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	if t, n, ok := bsdTime(b, loc, now); ok {
		l.Time, b = t, b[n:]
	} else if t, n, ok := rfc3339Time(b); ok {
		l.Time, b = t, b[n:]
	} else {
		l.Program, l.PID, l.Message = splitTag(b)
		return l, nil
	}
	b = bytes.TrimLeft(b, " ")
	// The hostname is the next word unless that word is already the tag.
	if i := bytes.IndexByte(b, ' '); i > 0 {
		w := b[:i]
		if w[len(w)-1] != ':' && !bytes.Contains(w, []byte("[")) {
			l.Host = string(w)
			b = b[i+1:]
		}
	}
	l.Program, l.PID, l.Message = splitTag(b)
	return l, nil
}

// splitTag splits "prog[pid]: msg" or "prog: msg"; without such a tag the
// whole is the message.
func splitTag(b []byte) (prog string, pid int, msg string) {
	const maxTag = 128
	end := min(len(b), maxTag+16)
	for i := 0; i < end; i++ {
		switch b[i] {
		case ':':
			if i == 0 {
				return "", 0, string(b)
			}
			return string(b[:i]), 0, string(trimOneSpace(b[i+1:]))
		case '[':
			j := bytes.IndexByte(b[i:end], ']')
			if i == 0 || j < 0 || i+j+1 >= len(b) || b[i+j+1] != ':' {
				return "", 0, string(b)
			}
			n, err := strconv.Atoi(string(b[i+1 : i+j]))
			if err != nil || n < 0 {
				n = 0
			}
			return string(b[:i]), n, string(trimOneSpace(b[i+j+2:]))
		case ' ', '\t':
			return "", 0, string(b)
		}
	}
	return "", 0, string(b)
}

func trimOneSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// bsdTime parses "Mmm dd hh:mm:ss" (day space- or zero-padded, or a single
// digit) and infers the year as the one that puts the time closest to now.
func bsdTime(b []byte, loc *time.Location, now time.Time) (time.Time, int, bool) {
	if len(b) < 14 {
		return time.Time{}, 0, false
	}
	mon := 0
	for i, m := range months {
		if string(b[:3]) == m {
			mon = i + 1
		}
	}
	if mon == 0 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	day, i, ok := digits(b, i, 1, 2)
	if !ok || i >= len(b) || b[i] != ' ' || day < 1 || day > 31 {
		return time.Time{}, 0, false
	}
	i++
	hh, i, ok1 := digits(b, i, 2, 2)
	if !ok1 || i >= len(b) || b[i] != ':' {
		return time.Time{}, 0, false
	}
	mm, i, ok2 := digits(b, i+1, 2, 2)
	if !ok2 || i >= len(b) || b[i] != ':' {
		return time.Time{}, 0, false
	}
	ss, i, ok3 := digits(b, i+1, 2, 2)
	if !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, 0, false
	}
	nsec := 0
	if i < len(b) && b[i] == '.' { // rsyslog's high-precision BSD variant
		j := i + 1
		for j < len(b) && j < i+10 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j > i+1 {
			f, _ := strconv.Atoi(string(b[i+1 : j]))
			for k := j - i - 1; k < 9; k++ {
				f *= 10
			}
			nsec, i = f, j
		}
	}
	now = now.In(loc)
	best := time.Time{}
	for _, y := range []int{now.Year() - 1, now.Year(), now.Year() + 1} {
		t := time.Date(y, time.Month(mon), day, hh, mm, ss, nsec, loc)
		if t.Day() != day { // Feb 29 in a common year
			continue
		}
		if best.IsZero() || absDur(t.Sub(now)) < absDur(best.Sub(now)) {
			best = t
		}
	}
	return best, i, !best.IsZero()
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func digits(b []byte, i, minN, maxN int) (int, int, bool) {
	n, v := 0, 0
	for i < len(b) && n < maxN && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int(b[i]-'0')
		i++
		n++
	}
	return v, i, n >= minN
}

// rfc3339Time parses an RFC 3339 timestamp ending at a space.
func rfc3339Time(b []byte) (time.Time, int, bool) {
	if len(b) < 20 || b[4] != '-' || b[10] != 'T' {
		return time.Time{}, 0, false
	}
	i := bytes.IndexByte(b[:min(len(b), 40)], ' ')
	if i < 0 {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b[:i]))
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, i, true
}
