package smtpwire

import (
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Transcript records an SMTP dialogue, direction-tagged and timed from its
// start. It is bounded: past Max lines it counts what it left out. Callers
// redact before adding (AUTH payloads become "[redacted]"; DATA content is
// summarised as a byte count).
type Transcript struct {
	Start   time.Time
	Max     int
	Lines   []record.TranscriptLine
	Omitted int

	// A tap copies the lines of one transaction for its message record,
	// independently of Max, so a long session's later messages keep their
	// dialogue; it is bounded by TapMax.
	TapMax  int
	tap     []record.TranscriptLine
	tapping bool
	last    record.TranscriptLine
	hasLast bool
}

// NewTranscript starts a transcript at start with at most max lines.
func NewTranscript(start time.Time, max int) *Transcript {
	// A one-message session (greeting, EHLO and its reply, the
	// transaction, QUIT) takes about twenty lines: room for them up front
	// saves growing the slice through five sizes on every connection.
	n := initialLines
	if max > 0 && max < n {
		n = max
	}
	return &Transcript{Start: start, Max: max, Lines: make([]record.TranscriptLine, 0, n)}
}

// initialLines is the transcript's starting capacity.
const initialLines = 24

// maxKeptTap is the tap capacity kept between transactions; a larger one
// (a transaction with a thousand recipients) is given back.
const maxKeptTap = 64

// Add appends one line. dir is "C" or "S"; leg is "" for the client leg or
// "upstream".
func (t *Transcript) Add(now time.Time, dir, leg, line string) {
	if t == nil {
		return
	}
	l := record.TranscriptLine{
		TMS:  record.MS(now.Sub(t.Start)),
		Dir:  dir,
		Leg:  leg,
		Line: line,
	}
	t.last, t.hasLast = l, true
	if t.tapping && (t.TapMax <= 0 || len(t.tap) < t.TapMax) {
		t.tap = append(t.tap, l)
	}
	if t.Max > 0 && len(t.Lines) >= t.Max {
		t.Omitted++
		return
	}
	t.Lines = append(t.Lines, l)
}

// StartTap begins copying lines for one transaction, starting with the
// line added last (the command that opens the transaction).
func (t *Transcript) StartTap() {
	if t == nil {
		return
	}
	t.tapping = true
	// Tap hands out copies, so the storage is reused across transactions.
	t.tap = t.tap[:0]
	if t.hasLast {
		t.tap = append(t.tap, t.last)
	}
}

// Tap returns a copy of the lines since StartTap.
func (t *Transcript) Tap() []record.TranscriptLine {
	if t == nil || len(t.tap) == 0 {
		return nil
	}
	out := make([]record.TranscriptLine, len(t.tap))
	copy(out, t.tap)
	return out
}

// StopTap ends the transaction's copy.
func (t *Transcript) StopTap() {
	if t == nil {
		return
	}
	t.tapping = false
	if cap(t.tap) > maxKeptTap {
		t.tap = nil
	} else {
		t.tap = t.tap[:0]
	}
}

// AddReply appends every line of a reply as the server sent it.
func (t *Transcript) AddReply(now time.Time, leg string, r Reply) {
	if t == nil {
		return
	}
	t.AddWire(now, leg, r.Wire())
}

// AddWire is AddReply for a reply already rendered by Reply.Wire, for a
// caller that also sends those bytes and so renders them only once.
func (t *Transcript) AddWire(now time.Time, leg string, wire []byte) {
	if t == nil {
		return
	}
	// One string for all the lines; each line is a substring of it.
	rest := strings.TrimSuffix(string(wire), "\r\n")
	for {
		l, after, found := strings.Cut(rest, "\r\n")
		t.Add(now, "S", leg, l)
		if !found {
			return
		}
		rest = after
	}
}

// Len is the number of lines kept.
func (t *Transcript) Len() int {
	if t == nil {
		return 0
	}
	return len(t.Lines)
}

// RedactAuth returns the loggable form of an AUTH command line: the
// mechanism is kept, any initial response becomes "[redacted]".
func RedactAuth(arg string) string {
	mech, rest, _ := strings.Cut(arg, " ")
	if rest == "" {
		return "AUTH " + mech
	}
	return "AUTH " + mech + " [redacted]"
}
