// Package mtalog turns MTA log lines (Postfix, Exim, Sendmail, OpenSMTPD)
// into smtplog records. Line sources (files, followed files, syslog) yield
// Lines; one subpackage per MTA parses a Line's message purely and
// correlates lines by queue ID into records.
package mtalog

import (
	"strings"
	"time"
	"unsafe"

	"github.com/smtplog/smtplog/internal/record"
)

// Line is one log line with its syslog-style prefix split off.
type Line struct {
	Time    time.Time // from the prefix; year inferred where the prefix has none
	Host    string    // the host that wrote the line
	Program string    // e.g. "postfix/smtpd", "postfix/submission/smtpd", "exim", "sm-mta", "smtpd"
	PID     int       // 0 when absent
	Message string    // the text after "program[pid]: "
	Raw     string    // the whole line as read, without its newline
	Origin  string    // where it came from: a file name, "-", or a syslog peer
	// Truncated is set when the line was longer than the source's limit and
	// Raw (and Message) hold only its beginning.
	Truncated bool
}

// detach returns l with its strings in memory of its own: one copy of Raw,
// which Host, Program and Message are re-sliced from when they lie within
// it (as the prefix parsers make them), and a copy of any that does not.
// A correlator that keeps a piece of a detached line holds that line
// alive, not the read chunk it came from.
func (l Line) detach() Line {
	raw := strings.Clone(l.Raw)
	l.Host = rebase(l.Host, l.Raw, raw)
	l.Program = rebase(l.Program, l.Raw, raw)
	l.Message = rebase(l.Message, l.Raw, raw)
	l.Raw = raw
	return l
}

// rebase returns the part of to at the place s has in from, when s lies
// within from, else a copy of s.
func rebase(s, from, to string) string {
	if s == "" {
		return ""
	}
	p, f := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(from)))
	if f <= p && p+uintptr(len(s)) <= f+uintptr(len(from)) {
		off := int(p - f)
		return to[off : off+len(s)]
	}
	return strings.Clone(s)
}

// Correlator turns the lines of one MTA into records, joining lines by queue
// ID (or session ID). Implementations keep bounded state.
type Correlator interface {
	// Feed consumes one line and passes every record it completes to emit.
	// It reports false when the line was not understood, so the caller can
	// count it and keep it as unparsed.
	Feed(l Line, emit func(*record.Record)) bool
	// Flush emits what is still open: everything when before is zero,
	// otherwise what has seen no line since before. Records flushed before
	// their last expected line carry the flag "incomplete".
	Flush(before time.Time, emit func(*record.Record))
}

// A PreparedFeeder is a Correlator that can be fed lines whose message was
// parsed ahead of it (see Dialect.NewPrepared).
type PreparedFeeder interface {
	Correlator
	// FeedPrepared is Feed of l, whose parse is the i-th of p.
	FeedPrepared(l *Line, p Prepared, i int, emit func(*record.Record)) bool
}

// Prepared holds the parses of a batch of lines, made by a dialect's pure
// parser on the goroutine that reads the lines, for its PreparedFeeder.
type Prepared interface {
	// Prepare parses l into the i-th slot. It must be pure: it runs on
	// another goroutine than the correlator, and l's strings are all the
	// parse may share.
	Prepare(i int, l *Line)
}

// A Recycler is a Correlator that can reuse the memory of the records it
// emitted (their structs and slices, never their strings) once the Handler
// is done with them: the Pipeline tells it so when PipelineOptions.Recycle
// promises that the Handler keeps nothing of a record but its strings.
type Recycler interface {
	Correlator
	// Handled reports that every record emitted so far was handled.
	Handled()
}
