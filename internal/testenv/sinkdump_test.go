package testenv

import (
	"strings"
	"testing"
	"time"
)

// TestReadSinkDump: the envelope and the message come back from a real
// smtp-sink's dump, the message with LF line ends and dot-unstuffed.
func TestReadSinkDump(t *testing.T) {
	s := StartSink(t, "-d", "%H%M%S.")
	msg := "From: a@client.test\r\nSubject: dump\r\nMessage-ID: <dump-1@client.test>\r\n\r\n.leading dot\r\n  indented\r\nlast line\r\n"
	if _, _, err := SendMail(s.Addr(), nil, "a@client.test", []string{"b@example.test", "c@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	d, err := ReadSinkDump(s.WaitDumps(t, 1, 10*time.Second)[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.MailFrom != "a@client.test" || strings.Join(d.RcptTo, ",") != "b@example.test,c@example.test" || d.ClientAddr != "127.0.0.1" || d.Helo != "client.test" {
		t.Errorf("envelope %+v", d)
	}
	if !strings.HasPrefix(d.Received, "Received: from ") || !strings.Contains(d.Received, "\n\tby smtp-sink") {
		t.Errorf("sink's Received header %q", d.Received)
	}
	if want := strings.ReplaceAll(msg, "\r\n", "\n"); string(d.Message) != want {
		t.Errorf("message\n%q, want\n%q", d.Message, want)
	}
}

func TestParseSinkDumpRejectsOtherFiles(t *testing.T) {
	for _, in := range []string{"", "Subject: x\n\nbody\n", "X-Client-Addr: 127.0.0.1\n"} {
		if _, err := ParseSinkDump([]byte(in)); err == nil {
			t.Errorf("%q: parsed", in)
		}
	}
}
