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
}

// NewTranscript starts a transcript at start with at most max lines.
func NewTranscript(start time.Time, max int) *Transcript {
	return &Transcript{Start: start, Max: max}
}

// Add appends one line. dir is "C" or "S"; leg is "" for the client leg or
// "upstream".
func (t *Transcript) Add(now time.Time, dir, leg, line string) {
	if t == nil {
		return
	}
	if t.Max > 0 && len(t.Lines) >= t.Max {
		t.Omitted++
		return
	}
	t.Lines = append(t.Lines, record.TranscriptLine{
		TMS:  record.MS(now.Sub(t.Start)),
		Dir:  dir,
		Leg:  leg,
		Line: line,
	})
}

// AddReply appends every line of a reply as the server sent it.
func (t *Transcript) AddReply(now time.Time, leg string, r Reply) {
	if t == nil {
		return
	}
	wire := strings.TrimSuffix(string(r.Wire()), "\r\n")
	for _, l := range strings.Split(wire, "\r\n") {
		t.Add(now, "S", leg, l)
	}
}

// Since returns the lines added from index i on, for a message record's
// share of a session transcript.
func (t *Transcript) Since(i int) []record.TranscriptLine {
	if t == nil || i >= len(t.Lines) {
		return nil
	}
	out := make([]record.TranscriptLine, len(t.Lines)-i)
	copy(out, t.Lines[i:])
	return out
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
