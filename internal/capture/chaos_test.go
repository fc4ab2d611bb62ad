package capture_test

import (
	"math/rand/v2"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

func withChaos(t *testing.T, rules ...string) (string, *record.Collector, *chaos.Chaos) {
	t.Helper()
	rs, err := chaos.ParseRules(rules...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chaos.New(rs, rand.NewPCG(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	addr, recs := start(t, capture.Config{Chaos: c})
	return addr, recs, c
}

func expectReply(t *testing.T, c *testenv.RawSMTP, line string, want string) {
	t.Helper()
	if line != "" {
		c.Send(line + "\r\n")
	}
	if got := c.Read().String(); got != want {
		t.Fatalf("%s: got %q, want %q", line, got, want)
	}
}

func waitRecords(t *testing.T, recs *record.Collector, n int) []record.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(recs.Records()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return recs.Records()
}

func TestChaosConnect(t *testing.T) {
	addr, recs, _ := withChaos(t, "CONNECT:127.0.0.0/8=554 5.7.1 Go away")
	c := testenv.DialSMTPFrom(t, "", addr, 554)
	if !c.Closed() {
		t.Error("connection left open after a CONNECT rule")
	}
	r := waitRecords(t, recs, 1)
	if len(r) != 1 || r[0].Type != record.TypeSession || !strings.Contains(r[0].Reason, "chaos") {
		t.Errorf("records %+v", r)
	}
}

func TestChaosEhlo(t *testing.T) {
	addr, _, ch := withChaos(t, "EHLO:bad.example=550 5.7.1 Not you")
	c := testenv.DialSMTP(t, addr)
	expectReply(t, c, "EHLO bad.example", "550 5.7.1 Not you")
	c = testenv.DialSMTP(t, addr)
	expectReply(t, c, "HELO BAD.example", "550 5.7.1 Not you")
	c = testenv.DialSMTP(t, addr)
	c.Cmd("EHLO good.example", 250)
	// Rules change at run time: now every EHLO is answered 421, which closes.
	rs, _ := chaos.ParseRules("HELO=421 4.3.2 Busy")
	if err := ch.Set(rs); err != nil {
		t.Fatal(err)
	}
	expectReply(t, c, "EHLO good.example", "421 4.3.2 Busy")
	if !c.Closed() {
		t.Error("421 did not close")
	}
}

func TestChaosMailAndRcpt(t *testing.T) {
	addr, recs, _ := withChaos(t,
		"MAIL:*@bad.example=553 5.1.8 Bad sender domain",
		"RCPT:*@fail.example=550 5.1.1 No such user",
		"RCPT:later@*=451 4.7.1 Try again later",
		"MAIL:quit@*=421 4.3.0 Closing")
	c := testenv.DialSMTP(t, addr)
	c.Cmd("EHLO client.example", 250)
	expectReply(t, c, "MAIL FROM:<app@bad.example>", "553 5.1.8 Bad sender domain")
	c.Cmd("MAIL FROM:<app@good.example>", 250)
	expectReply(t, c, "RCPT TO:<bob@fail.example>", "550 5.1.1 No such user")
	expectReply(t, c, "RCPT TO:<later@ok.example>", "451 4.7.1 Try again later")
	c.Cmd("RCPT TO:<alice@ok.example>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: t\r\n\r\nbody\r\n.\r\n")
	c.Expect(250)
	expectReply(t, c, "MAIL FROM:<quit@good.example>", "421 4.3.0 Closing")
	if !c.Closed() {
		t.Error("421 did not close")
	}
	var msg *record.Record
	for _, r := range waitRecords(t, recs, 2) {
		if r.Type == record.TypeMessage && r.Status == record.StatusAccepted {
			msg = &r
		}
	}
	if msg == nil || len(msg.RejectedRcpt) != 2 || msg.RejectedRcpt[0].SMTPResponse != "550 5.1.1 No such user" || len(msg.RcptTo) != 1 {
		t.Errorf("message record %+v", msg)
	}
}

// TestChaosData: a DATA rule answers at the DATA command (the engine asks
// the backend before its 354), so the client never sends the content; at
// the first BDAT the chunk is read and refused.
func TestChaosData(t *testing.T) {
	addr, recs, _ := withChaos(t, "DATA:*@big.example=552 5.3.4 Message too big")
	c := testenv.DialSMTP(t, addr)
	c.Cmd("EHLO client.example", 250)
	c.Cmd("MAIL FROM:<app@x.example>", 250)
	c.Cmd("RCPT TO:<u@big.example>", 250)
	c.Send("DATA\r\n")
	expectReply(t, c, "", "552 5.3.4 Message too big")
	c.Cmd("MAIL FROM:<app@x.example>", 250)
	c.Cmd("RCPT TO:<u@small.example>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: t\r\n\r\nbody\r\n.\r\n")
	c.Expect(250)
	r := waitRecords(t, recs, 2)
	if r[0].Status != record.StatusRejected || r[0].SMTPResponse != "552 5.3.4 Message too big" || r[1].Status != record.StatusAccepted {
		t.Errorf("records %s %q / %s", r[0].Status, r[0].SMTPResponse, r[1].Status)
	}
	// BDAT: the first chunk is read (the stream stays in step) and refused.
	c.Cmd("MAIL FROM:<app@x.example>", 250)
	c.Cmd("RCPT TO:<u@big.example>", 250)
	c.Send("BDAT 5 LAST\r\nhello")
	expectReply(t, c, "", "552 5.3.4 Message too big")
	c.Cmd("NOOP", 250)
}

func TestChaosEndOfData(t *testing.T) {
	addr, recs, _ := withChaos(t, "EOD=451 4.3.0 Queue full, try later", "EOD:*@close.example=421 4.3.2 Shutting down")
	for _, tc := range []struct {
		rcpt, want string
		closed     bool
	}{
		{"u@close.example", "451 4.3.0 Queue full, try later", false},
	} {
		c := testenv.DialSMTP(t, addr)
		c.Cmd("EHLO client.example", 250)
		c.Cmd("MAIL FROM:<app@x.example>", 250)
		c.Cmd("RCPT TO:<"+tc.rcpt+">", 250)
		c.Cmd("DATA", 354)
		c.Send("Subject: t\r\n\r\nbody\r\n.\r\n")
		expectReply(t, c, "", tc.want)
	}
	// Rules are tried in order: with the 421 rule first, it closes.
	addr, recs, _ = withChaos(t, "EOD:*@close.example=421 4.3.2 Shutting down", "EOD=451 4.3.0 Queue full, try later")
	c := testenv.DialSMTP(t, addr)
	c.Cmd("EHLO client.example", 250)
	c.Cmd("MAIL FROM:<app@x.example>", 250)
	c.Cmd("RCPT TO:<u@close.example>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: t\r\n\r\nbody\r\n.\r\n")
	expectReply(t, c, "", "421 4.3.2 Shutting down")
	if !c.Closed() {
		t.Error("421 did not close")
	}
	r := waitRecords(t, recs, 1)
	if r[0].Type != record.TypeMessage || r[0].Status != record.StatusDeferred {
		t.Errorf("record %s %s", r[0].Type, r[0].Status)
	}
}

// TestChaosGoClient: Go's net/smtp sees the configured error.
func TestChaosGoClient(t *testing.T) {
	addr, _, _ := withChaos(t, "RCPT=451 4.7.1 Try again later")
	err := smtp.SendMail(addr, nil, "a@x.example", []string{"b@y.example"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "451") || !strings.Contains(err.Error(), "4.7.1 Try again later") {
		t.Errorf("SendMail: %v", err)
	}
}

// TestChaosProbabilityThroughEngine: a seeded 10% RCPT rule refuses an
// exact, reproducible number of 200 recipients.
func TestChaosProbabilityThroughEngine(t *testing.T) {
	addr, _, _ := withChaos(t, "RCPT=452 4.5.3 Too many recipients@10%")
	c := testenv.DialSMTP(t, addr)
	c.Cmd("EHLO client.example", 250)
	c.Cmd("MAIL FROM:<app@x.example>", 250)
	refused := 0
	for i := 0; i < 90; i++ {
		c.Send("RCPT TO:<u@y.example>\r\n")
		switch rep := c.Read(); rep.Code {
		case 250:
		case 452:
			refused++
		default:
			t.Fatalf("reply %v", rep)
		}
	}
	// Replicate the draws: one Float64 per RCPT from PCG(1, 1).
	want, r := 0, rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 90; i++ {
		if r.Float64()*100 < 10 {
			want++
		}
	}
	if refused != want || want == 0 {
		t.Errorf("refused %d, want %d", refused, want)
	}
}
