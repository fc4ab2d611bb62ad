package postfix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

func TestParse(t *testing.T) {
	tests := []struct {
		prog, msg string
		check     func(e Event) bool
	}{
		{"postfix/smtp", "ABCDEF123: to=<a@b>, orig_to=<x@y>, relay=mx[1.2.3.4]:25, conn_use=2, delay=1.5, delays=0.1/0.2/0.3/0.9, dsn=4.2.2, status=deferred (host mx[1.2.3.4] said: 452 4.2.2 Mailbox full, try later (in reply to RCPT TO command))",
			func(e Event) bool {
				return e.Kind == KindDelivery && e.To == "a@b" && e.OrigTo == "x@y" && e.Relay == "mx[1.2.3.4]:25" && e.Delay == 1.5 &&
					e.Delays == "0.1/0.2/0.3/0.9" && e.DSN == "4.2.2" && e.Status == "deferred" && e.Code == 452 && e.Enhanced == "4.2.2" &&
					strings.HasSuffix(e.Text, "(in reply to RCPT TO command)")
			}},
		{"postfix/qmgr", "4Qx7Yv1Xr7z9vLn: from=<>, size=2379, nrcpt=1 (queue active)",
			func(e Event) bool {
				return e.Kind == KindQueued && e.HasFrom && e.From == "" && e.Size == 2379 && e.Nrcpt == 1
			}},
		{"postfix/qmgr", "ABCDEF123: from=<a@b>, status=expired, returned to sender",
			func(e Event) bool { return e.Kind == KindExpired && e.From == "a@b" }},
		{"postfix/smtpd", "NOQUEUE: reject: RCPT from h[2001:db8::1]: 554 5.7.1 <x@y>: Relay access denied; from=<a b@c> to=<x@y> proto=ESMTP helo=<h>",
			func(e Event) bool {
				return e.Kind == KindReject && e.QueueID == "" && e.ClientIP == "2001:db8::1" && e.Code == 554 && e.Enhanced == "5.7.1" &&
					e.From == "a b@c" && e.To == "x@y" && e.Proto == "ESMTP" && e.Helo == "h"
			}},
		{"postfix/smtpd", "warning: h[1.2.3.4]: SASL PLAIN authentication failed: authentication failure, sasl_username=u",
			func(e Event) bool {
				return e.Kind == KindSASLFailed && e.SASLMethod == "PLAIN" && e.SASLUser == "u" && e.ClientIP == "1.2.3.4"
			}},
		{"postfix/smtpd", "warning: hostname x does not resolve to address 1.2.3.4",
			func(e Event) bool { return e.Kind == KindDiagnostic && e.Level == "warning" }},
		{"postfix/bounce", "ABCDEF123: sender non-delivery notification: 123456ABC",
			func(e Event) bool { return e.Kind == KindNotification && e.NewQID == "123456ABC" }},
		{"postfix/smtpd", "disconnect from h[1.2.3.4] ehlo=1 quit=1 commands=2",
			func(e Event) bool { return e.Kind == KindDisconnect && e.Counters == "ehlo=1 quit=1 commands=2" }},
		{"postfix/smtpd", "something new", func(e Event) bool { return e.Kind == KindUnknown }},
		{"postfix/smtpd", "ABCDEF123: something new", func(e Event) bool { return e.Kind == KindUnknown }},
	}
	for _, tc := range tests {
		if e := Parse(tc.prog, tc.msg); !tc.check(e) {
			t.Errorf("Parse(%q, %q) = %+v", tc.prog, tc.msg, e)
		}
	}
}

func TestClaims(t *testing.T) {
	for p, want := range map[string]bool{
		"postfix/smtpd": true, "postfix/submission/smtpd": true, "postfix-lab/qmgr": true, "mta-out/smtp": true,
		"smtpd": false, "exim": false, "opendkim": false, "sm-mta": false,
	} {
		if Claims(p) != want {
			t.Errorf("Claims(%q) = %v", p, !want)
		}
	}
}

// TestFlushAfterIdle: a message with no line for the flush time is emitted
// incomplete; one that is removed is complete.
func TestFlushAfterIdle(t *testing.T) {
	c := NewCorrelator(mtalog.CorrelatorOptions{})
	var got []record.Record
	emit := func(r *record.Record) { got = append(got, *r) }
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feed := func(d time.Duration, msg string) {
		if !c.Feed(mtalog.Line{Time: t0.Add(d), Host: "h", Program: "postfix/qmgr", PID: 1, Message: msg}, emit) {
			t.Fatalf("not understood: %s", msg)
		}
	}
	feed(0, "AAAAAA1: from=<a@b>, size=1, nrcpt=1 (queue active)")
	feed(time.Second, "BBBBBB2: from=<a@b>, size=1, nrcpt=1 (queue active)")
	feed(time.Hour, "BBBBBB2: removed")
	c.Flush(t0.Add(time.Minute), emit)
	if len(got) != 2 || got[0].QueueID != "BBBBBB2" || len(got[0].Flags) != 0 || got[1].QueueID != "AAAAAA1" || got[1].Flags[0] != FlagIncomplete {
		t.Fatalf("got %+v", got)
	}
}

func FuzzPostfix(f *testing.F) {
	for _, name := range []string{"real-3.7.log", "synthetic.log"} {
		data, _ := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "postfix", name))
		for _, raw := range strings.Split(string(data), "\n") {
			if l, err := mtalog.ParseLine(raw, time.Now()); err == nil {
				f.Add(l.Program, l.Message)
			}
		}
	}
	f.Fuzz(func(t *testing.T, prog, msg string) {
		_ = Parse(prog, msg)
		c := NewCorrelator(mtalog.CorrelatorOptions{MaxOpen: 4})
		l := mtalog.Line{Time: time.Unix(0, 0), Host: "h", Program: prog, PID: 1, Message: msg}
		emit := func(*record.Record) {}
		for i := 0; i < 3; i++ {
			c.Feed(l, emit)
		}
		c.Flush(time.Time{}, emit)
	})
}
