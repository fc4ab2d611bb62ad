package testenv

import (
	"bufio"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func testMessage(msgID, to string) string {
	return "From: sender@client.test\r\nTo: " + to + "\r\nSubject: testenv\r\n" +
		"Message-ID: <" + msgID + ">\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\nHello.\r\n"
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// TestPostfixSent proves the basic contract: a private instance accepts
// mail over STARTTLS with a certificate from its CA, answers "queued as
// QID", logs the same QID for the Message-ID, and relays to an smtp-sink
// relay host with status=sent.
func TestPostfixSent(t *testing.T) {
	sink := StartSink(t, "-d", "%H%M%S.")
	pf := StartPostfix(t, PostfixOptions{RelayHost: sink.Addr()})

	reply, _, err := SendMail(pf.Addr(), pf.CA().ClientConfig("127.0.0.1"),
		"sender@client.test", []string{"rcpt@example.test"}, testMessage("sent-1@client.test", "rcpt@example.test"))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	m := queuedAs.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("reply %q has no queued as", reply)
	}
	qid := m[1]
	if got := pf.QueueIDFor(t, "<sent-1@client.test>", 10*time.Second); got != qid {
		t.Fatalf("log queue ID %q, reply queue ID %q", got, qid)
	}
	lines := pf.WaitDelivery(t, qid, "sent", 15*time.Second)
	if !strings.Contains(lines[0], "to=<rcpt@example.test>") || !strings.Contains(lines[0], "relay=127.0.0.1[127.0.0.1]:"+strings.Split(sink.Addr(), ":")[1]) {
		t.Errorf("delivery line %q", lines[0])
	}
	pf.WaitLog(t, regexp.MustCompile(`postfix/smtpd\[\d+\]: Anonymous TLS connection established`), time.Second)

	dumps := sink.WaitDumps(t, 1, 10*time.Second)
	b, err := os.ReadFile(dumps[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Message-ID: <sent-1@client.test>") {
		t.Errorf("sink dump lacks the message:\n%s", b)
	}
}

// TestPostfixOutcomes proves that one instance produces every outcome the
// ingestion tests need within seconds: sent, deferred (retry transport),
// bounced (error transport), deferred by a 4xx from an smtp-sink behind a
// transport entry, RCPT rejected with 550 and 450, and a fast expiry.
func TestPostfixOutcomes(t *testing.T) {
	sink := StartSink(t)
	soft := StartSink(t, "-r", "RCPT")
	pf := StartPostfix(t, PostfixOptions{
		RelayHost:            sink.Addr(),
		DeferDomains:         []string{"defer.test"},
		BounceDomains:        []string{"bounce.test"},
		Transports:           map[string]string{"soft.test": "smtp:[127.0.0.1]:" + strings.Split(soft.Addr(), ":")[1]},
		RejectRecipients:     []string{"nobody@example.test", "gone@"},
		TempRejectRecipients: []string{"busy@example.test"},
		MaximalQueueLifetime: "4s",
		BounceQueueLifetime:  "4s",
	})

	send := func(id, to string) string {
		t.Helper()
		reply, _, err := SendMail(pf.Addr(), nil, "sender@client.test", []string{to}, testMessage(id, to))
		if err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		return queuedAs.FindStringSubmatch(reply)[1]
	}
	sent := send("o-sent@client.test", "a@example.test")
	deferred := send("o-defer@client.test", "a@defer.test")
	bounced := send("o-bounce@client.test", "a@bounce.test")
	soft4xx := send("o-soft@client.test", "a@soft.test")

	pf.WaitDelivery(t, sent, "sent", 15*time.Second)
	if l := pf.WaitDelivery(t, deferred, "deferred", 15*time.Second); !strings.Contains(l[0], "dsn=4.4.1") {
		t.Errorf("deferral %q", l[0])
	}
	if l := pf.WaitDelivery(t, bounced, "bounced", 15*time.Second); !strings.Contains(l[0], "dsn=5.1.1") {
		t.Errorf("bounce %q", l[0])
	}
	if l := pf.WaitDelivery(t, soft4xx, "deferred", 15*time.Second); !strings.Contains(l[0], "said: 450") {
		t.Errorf("4xx deferral %q", l[0])
	}
	// With a 4s queue lifetime the deferred message expires and bounces.
	pf.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(deferred)+`: .*status=expired|`+regexp.QuoteMeta(deferred)+`: to=<a@defer.test>.*status=bounced`), 20*time.Second)

	for _, c := range []struct {
		to   string
		code int
	}{{"nobody@example.test", 550}, {"gone@other.test", 550}, {"busy@example.test", 450}} {
		_, rcptErrs, err := SendMail(pf.Addr(), nil, "sender@client.test", []string{c.to}, testMessage("r@client.test", c.to))
		if err == nil || len(rcptErrs) != 1 {
			t.Fatalf("RCPT %s: accepted (err %v, rcpt errors %v)", c.to, err, rcptErrs)
		}
		var te *textproto.Error
		if !errors.As(rcptErrs[0], &te) || te.Code != c.code {
			t.Errorf("RCPT %s: %v, want %d", c.to, rcptErrs[0], c.code)
		}
	}
	pf.WaitLog(t, regexp.MustCompile(`NOQUEUE: reject: RCPT from .*: 450 4.2.0 <busy@example.test>`), 5*time.Second)
}

// TestPostfixTwoInstances proves that instances in one process are
// independent: own ports, logs and queues; stopping one leaves the other
// running; and without a relay host mail stays queued.
func TestPostfixTwoInstances(t *testing.T) {
	a := StartPostfix(t, PostfixOptions{Lenient: true, NoTLS: true})
	b := StartPostfix(t, PostfixOptions{Hostname: "b.test"})
	if a.Addr() == b.Addr() || a.LogPath() == b.LogPath() || a.QueueDir() == b.QueueDir() {
		t.Fatalf("instances share resources: %s %s", a.Addr(), b.Addr())
	}
	reply, _, err := SendMail(b.Addr(), nil, "s@client.test", []string{"r@example.test"}, testMessage("two@client.test", "r@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	qid := queuedAs.FindStringSubmatch(reply)[1]
	b.WaitDelivery(t, qid, "deferred", 10*time.Second)
	q := b.Queue(t)
	if len(q) != 1 || q[0].QueueID != qid || q[0].Sender != "s@client.test" || len(q[0].Recipients) != 1 ||
		!strings.Contains(q[0].Recipients[0].DelayReason, "no relay host") {
		t.Errorf("queue = %+v", q)
	}
	if strings.Contains(a.Log(t), qid) {
		t.Errorf("instance a logged b's message")
	}
	if got := strings.TrimSpace(a.Command(t, "postconf", "-h", "smtpd_forbid_bare_newline")); got != "no" {
		t.Errorf("lenient smtpd_forbid_bare_newline = %q", got)
	}
	if got := strings.TrimSpace(b.Command(t, "postconf", "-h", "smtpd_forbid_bare_newline")); got != "reject" {
		t.Errorf("strict smtpd_forbid_bare_newline = %q", got)
	}

	a.Stop()
	if _, _, err := SendMail(a.Addr(), nil, "s@client.test", []string{"r@example.test"}, "x\r\n"); err == nil {
		t.Errorf("stopped instance still accepts mail")
	}
	if err := probeGreeting(b.Addr()); err != nil {
		t.Errorf("b after stopping a: %v", err)
	}
}

// TestPostfixCheck proves that the harness lays out the instance the way
// Postfix expects: "postfix check" finds nothing to warn about.
func TestPostfixCheck(t *testing.T) {
	pf := StartPostfix(t, PostfixOptions{})
	out := pf.Command(t, "postfix", "check")
	if strings.TrimSpace(out) != "" {
		t.Errorf("postfix check: %s", out)
	}
	if log := pf.Log(t); strings.Contains(log, "warning:") || strings.Contains(log, "fatal:") {
		t.Errorf("postfix log has warnings:\n%s", log)
	}
}

// TestPostfixEHLO proves the advertised extensions: STARTTLS (unless
// NoTLS), 8BITMIME, SMTPUTF8, the configured SIZE and XCLIENT.
func TestPostfixEHLO(t *testing.T) {
	pf := StartPostfix(t, PostfixOptions{MessageSizeLimit: 123456, XClientHosts: "127.0.0.1"})
	c, err := smtp.Dial(pf.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for ext, param := range map[string]string{"STARTTLS": "", "8BITMIME": "", "SMTPUTF8": "", "SIZE": "123456", "XCLIENT": ""} {
		ok, p := c.Extension(ext)
		if !ok || (param != "" && p != param) {
			t.Errorf("EHLO %s: %v %q", ext, ok, p)
		}
	}

	plain := StartPostfix(t, PostfixOptions{NoTLS: true})
	c2, err := smtp.Dial(plain.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c2.Extension("STARTTLS"); ok {
		t.Errorf("NoTLS instance offers STARTTLS")
	}
	if ok, _ := c2.Extension("XCLIENT"); ok {
		t.Errorf("XCLIENT offered without XClientHosts")
	}
}

// TestPostfixBareLF proves the smuggling switch: the strict default refuses
// a message with a bare LF in DATA from a loopback client, a Lenient
// instance accepts it, and so does a strict one reconfigured at run time.
func TestPostfixBareLF(t *testing.T) {
	msg := "Subject: bare\r\n\r\nline one\nline two\r\n.\r\n"
	strict := StartPostfix(t, PostfixOptions{NoTLS: true})
	for _, c := range []struct {
		name string
		pf   func() *Postfix
		code string
	}{
		{"strict", func() *Postfix { return strict }, "5"},
		{"lenient", func() *Postfix { return StartPostfix(t, PostfixOptions{Lenient: true, NoTLS: true}) }, "250"},
		{"reconfigured", func() *Postfix {
			strict.Reconfigure(t, map[string]string{"smtpd_forbid_bare_newline": "no"})
			return strict
		}, "250"},
	} {
		pf := c.pf()
		conn, err := net.DialTimeout("tcp", pf.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		read := func() string {
			var last string
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return "read error: " + err.Error()
				}
				last = l
				if len(l) < 4 || l[3] != '-' {
					return strings.TrimSpace(last)
				}
			}
		}
		read() // greeting
		for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<a@client.test>", "RCPT TO:<b@example.test>", "DATA"} {
			conn.Write([]byte(cmd + "\r\n"))
			if reply := read(); reply[0] != '2' && reply[0] != '3' {
				t.Fatalf("%s: %s", cmd, reply)
			}
		}
		conn.Write([]byte(msg))
		if reply := read(); !strings.HasPrefix(reply, c.code) {
			t.Errorf("%s: reply to bare-LF message %q, want %s…", c.name, reply, c.code)
		}
		conn.Close()
	}
}
