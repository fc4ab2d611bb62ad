package smtpwire

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wireByBuffer is how Wire rendered a reply before it sized its buffer up
// front; the bytes on the wire must not change.
func wireByBuffer(r Reply) []byte {
	var b bytes.Buffer
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		b.WriteString(strconv.Itoa(r.Code))
		if i < len(lines)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if r.Enhanced != "" {
			b.WriteString(r.Enhanced)
			if l != "" {
				b.WriteByte(' ')
			}
		}
		b.WriteString(sanitizeText(l))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

var wireCases = []Reply{
	NewReply(250, "2.0.0", "Ok"),
	NewReply(220, "", "mx.example ESMTP smtplog"),
	NewReply(354, "", "End data with <CR><LF>.<CR><LF>"),
	NewReply(250, "2.0.0", ""),
	{Code: 250},
	{Code: 250, Lines: []string{"mx.example", "PIPELINING", "SIZE 52428800", "8BITMIME"}},
	{Code: 550, Enhanced: "5.1.1", Lines: []string{"first", "", "third"}},
	NewReply(451, "4.3.0", "injected\r\n250 ok\x00\x7f"),
	NewReply(250, "", "caf\xc3\xa9 \xff\xfe invalid\ttab"),
	{Code: 1234, Enhanced: "2.0.0", Lines: []string{"odd code"}},
}

func TestWireMatchesBuffer(t *testing.T) {
	for _, r := range wireCases {
		if got, want := r.Wire(), wireByBuffer(r); !bytes.Equal(got, want) {
			t.Errorf("Wire(%+v) = %q, want %q", r, got, want)
		}
	}
}

// TestAddWireMatchesSplit: the transcript lines of a reply are those of
// the rendered bytes split at CRLF, as AddReply made them before.
func TestAddWireMatchesSplit(t *testing.T) {
	now := time.Unix(0, 0)
	for _, r := range wireCases {
		tr := NewTranscript(now, 0)
		tr.AddReply(now, "upstream", r)
		want := strings.Split(strings.TrimSuffix(string(wireByBuffer(r)), "\r\n"), "\r\n")
		if len(tr.Lines) != len(want) {
			t.Fatalf("%+v: %d lines, want %d", r, len(tr.Lines), len(want))
		}
		for i, l := range tr.Lines {
			if l.Line != want[i] || l.Dir != "S" || l.Leg != "upstream" {
				t.Errorf("%+v line %d = %+v, want %q", r, i, l, want[i])
			}
		}
	}
}

// TestTapReuse: a transaction's tap holds only its own lines, also when
// the storage of the one before is reused, and copies handed out earlier
// do not change.
func TestTapReuse(t *testing.T) {
	now := time.Unix(0, 0)
	tr := NewTranscript(now, 3)
	tr.Add(now, "C", "", "MAIL FROM:<a@x>")
	tr.StartTap()
	tr.Add(now, "S", "", "250 ok")
	first := tr.Tap()
	tr.StopTap()
	tr.Add(now, "C", "", "RSET")
	tr.Add(now, "C", "", "MAIL FROM:<b@x>")
	tr.StartTap()
	tr.Add(now, "S", "", "250 second")
	second := tr.Tap()
	tr.StopTap()
	if len(first) != 2 || first[0].Line != "MAIL FROM:<a@x>" || first[1].Line != "250 ok" {
		t.Errorf("first tap = %+v", first)
	}
	if len(second) != 2 || second[0].Line != "MAIL FROM:<b@x>" || second[1].Line != "250 second" {
		t.Errorf("second tap = %+v", second)
	}
	if len(tr.Lines) != 3 || tr.Omitted != 2 {
		t.Errorf("lines %d omitted %d, want 3 and 2", len(tr.Lines), tr.Omitted)
	}
	tr.StartTap()
	if got := tr.Tap(); len(got) != 1 || got[0].Line != "250 second" {
		t.Errorf("tap after restart = %+v", got)
	}
}
