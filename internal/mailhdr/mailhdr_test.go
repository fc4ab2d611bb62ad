package mailhdr

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	msg := "Received: from b by c; Sat, 28 Nov 2026 10:00:01 +0000\r\n" +
		"Received: from a by b; Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <20261129.abc@app.example>\r\n" +
		"Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?= and\r\n =?ISO-8859-1?Q?caf=E9?=\r\n" +
		"From: =?UTF-8?Q?J=C3=BCrgen?= <j@app.example>\r\n" +
		"To: a@x.example, \"B\" <b@y.example>\r\n" +
		"Cc: c@z.example\r\n" +
		"not a header line\r\n" +
		"Date: Sun, 29 Nov 2026 10:12:34 +0000\r\n" +
		"X-Mailer: app 1.0\r\n" +
		"\r\n" +
		"Subject: in the body, ignored\r\n"
	f := Parse([]byte(msg))
	if f.Subject != "Hello wörld and café" {
		t.Errorf("subject = %q", f.Subject)
	}
	if f.MessageID != "<20261129.abc@app.example>" || f.From != "Jürgen <j@app.example>" {
		t.Errorf("id/from = %q %q", f.MessageID, f.From)
	}
	if strings.Join(f.To, "|") != "a@x.example|B <b@y.example>" || len(f.Cc) != 1 {
		t.Errorf("to/cc = %q %q", f.To, f.Cc)
	}
	if len(f.Received) != 2 || !strings.HasPrefix(f.Received[0], "from b") {
		t.Errorf("received = %q", f.Received)
	}
	if f.UserAgent != "app 1.0" || f.Date == "" {
		t.Errorf("ua/date = %q %q", f.UserAgent, f.Date)
	}
}

func TestDecodeNeverInjects(t *testing.T) {
	// An encoded word that decodes to CR LF must not produce a new line.
	got := Decode("=?UTF-8?B?YQ0KWC1JbmplY3RlZDogMQ==?=")
	if strings.ContainsAny(got, "\r\n") {
		t.Errorf("Decode produced a line break: %q", got)
	}
}

func TestHugeHeaderBounded(t *testing.T) {
	msg := strings.Repeat("X-A: "+strings.Repeat("v", 100)+"\r\n", 10000) + "\r\nbody"
	f := Parse([]byte(msg))
	if !f.Truncated {
		t.Error("huge header not marked truncated")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("Subject: =?UTF-8?B?SGk=?=\r\nFrom: a@b\r\n\r\nx"))
	f.Add([]byte("To: \"a\r\n b\" <x@y>\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Parse(b)
		for _, s := range append([]string{p.Subject, p.From, p.MessageID, p.Date, p.UserAgent}, p.To...) {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("control character in decoded field %q", s)
			}
		}
	})
}
