package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/sink/file"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/smtpwire"
	"github.com/smtplog/smtplog/internal/testenv"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

const (
	canaryUser = "canary-user"
	canaryPass = "pw-CANARY-7f3a9d"
)

// proxy is an in-process smtplog relay writing JSON lines to a file.
type proxy struct {
	addr    string
	logPath string
	recs    *record.Collector
	srv     *smtpd.Server
	opLog   *bytes.Buffer
}

func startProxy(t *testing.T, rc relay.Config, mod func(*smtpd.Config)) *proxy {
	t.Helper()
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	tcfg, err := tlsutil.ServerConfig("", "", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{logPath: filepath.Join(t.TempDir(), "records.jsonl"), recs: &record.Collector{}, opLog: &bytes.Buffer{}}
	out, err := file.Open(p.logPath, record.FormatJSON, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := smtpd.Config{
		Hostname: "relay.test",
		TLS:      tcfg,
		Source:   record.SourceProxy,
		Handler:  record.Multi{out, p.recs},
		Upstream: rc.Upstream,
		Limits:   smtpd.Limits{CommandTimeout: 20 * time.Second, DataTimeout: 20 * time.Second},
		Logger:   newDebugLogger(p.opLog),
	}
	if mod != nil {
		mod(&cfg)
	}
	p.srv = smtpd.New(cfg, relay.New(rc))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	go p.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
		out.Close()
	})
	return p
}

// records reads the JSON-lines file, as a user would.
func (p *proxy) records(t *testing.T) []record.Record {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []record.Record
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r record.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// waitMessages waits for n message records.
func (p *proxy) waitMessages(t *testing.T, n int) []record.Record {
	t.Helper()
	return p.waitType(t, record.TypeMessage, n)
}

func (p *proxy) waitSessions(t *testing.T, n int) []record.Record {
	t.Helper()
	return p.waitType(t, record.TypeSession, n)
}

// waitType waits for n records of type typ and returns those.
func (p *proxy) waitType(t *testing.T, typ record.Type, n int) []record.Record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var got []record.Record
		for _, r := range p.recs.Records() {
			if r.Type == typ {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d %s records", n, typ)
	return nil
}

func swaks(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.NeedBinary(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out)
}

func findByMsgID(ms []record.Record, id string) *record.Record {
	for i := range ms {
		if ms[i].MessageID == id {
			return &ms[i]
		}
	}
	return nil
}

// TestRelayToPostfix relays swaks's mail to a real Postfix and checks the
// records against Postfix's own log.
func TestRelayToPostfix(t *testing.T) {
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		RelayHost:            sink.Addr(),
		RejectRecipients:     []string{"refused@"},
		TempRejectRecipients: []string{"busy@"},
	})
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSNone}, nil)
	host, port, _ := net.SplitHostPort(p.addr)

	out := swaks(t, "-s", host, "-p", port, "-f", "app@shop.example",
		"-t", "a@dest.example,refused@dest.example,b@dest.example,busy@dest.example",
		"--header", "Message-Id: <relay-1@shop.example>",
		"--header", "Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("swaks did not get a queued reply:\n%s", out)
	}
	m := findByMsgID(p.waitMessages(t, 1), "<relay-1@shop.example>")
	if m == nil {
		t.Fatal("no record for the message")
	}
	qid := pf.QueueIDFor(t, "<relay-1@shop.example>", 20*time.Second)
	if m.QueueID != qid || qid == "" {
		t.Errorf("record queue_id %q, Postfix logged %q", m.QueueID, qid)
	}
	pf.WaitDelivery(t, qid, "sent", 30*time.Second)
	if m.Status != "accepted" || m.Subject != "Hello wörld" || *m.MailFrom != "app@shop.example" || m.ReplyCode != 250 {
		t.Errorf("record: status %q subject %q from %q code %d", m.Status, m.Subject, *m.MailFrom, m.ReplyCode)
	}
	if strings.Join(m.RcptTo, ",") != "a@dest.example,b@dest.example" {
		t.Errorf("rcpt_to %q", m.RcptTo)
	}
	rej := map[string]string{}
	for _, r := range m.RejectedRcpt {
		rej[r.Address] = r.SMTPResponse
	}
	if !strings.HasPrefix(rej["refused@dest.example"], "550 5.1.1") || !strings.HasPrefix(rej["busy@dest.example"], "450 4.2.0") {
		t.Errorf("rejected_rcpt %+v", m.RejectedRcpt)
	}
	if m.TLS == nil || m.TLS.Used || m.UpstreamTLS == nil || m.UpstreamTLS.Used || m.Size == 0 || m.LatencyMS <= 0 {
		t.Errorf("tls %+v upstream %+v size %d latency %v", m.TLS, m.UpstreamTLS, m.Size, m.LatencyMS)
	}
	// The file has the same record, with the seed article's keys.
	var fromFile *record.Record
	for _, r := range p.records(t) {
		if r.MessageID == "<relay-1@shop.example>" {
			fromFile = &r
		}
	}
	if fromFile == nil || fromFile.QueueID != qid {
		t.Fatalf("record missing from the log file")
	}
	raw, _ := os.ReadFile(p.logPath)
	for _, key := range []string{`"timestamp":`, `"client_ip":`, `"message_id":"<relay-1@shop.example>"`, `"mail_from":`, `"rcpt_to":`, `"status":`, `"smtp_response":`, `"queue_id":`, `"size":`, `"tls":{"used":false}`, `"type":"message"`, `"type":"session"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("log file lacks %s", key)
		}
	}
}

// TestRelayTLSBothLegs uses STARTTLS from swaks to smtplog and from
// smtplog to Postfix, with the upstream certificate verified.
func TestRelayTLSBothLegs(t *testing.T) {
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr()})
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSRequired, RootCAs: pf.CA().CertPool(), ServerName: "127.0.0.1"}, nil)
	host, port, _ := net.SplitHostPort(p.addr)
	out := swaks(t, "-s", host, "-p", port, "--tls", "-f", "a@shop.example", "-t", "v@dest.example", "--header", "Message-Id: <tls-1@shop.example>")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("swaks:\n%s", out)
	}
	m := findByMsgID(p.waitMessages(t, 1), "<tls-1@shop.example>")
	if m == nil {
		t.Fatal("no record")
	}
	if m.TLS == nil || !m.TLS.Used || m.TLS.Cipher == "" || m.UpstreamTLS == nil || !m.UpstreamTLS.Used || m.UpstreamTLS.Trust != "verified" {
		t.Fatalf("TLS on both legs not recorded: %+v / %+v", m.TLS, m.UpstreamTLS)
	}
	if qid := pf.QueueIDFor(t, "<tls-1@shop.example>", 20*time.Second); qid != m.QueueID {
		t.Errorf("queue id %q vs %q", m.QueueID, qid)
	}
	if !regexp.MustCompile(`TLS connection established from .*127\.0\.0\.1`).MatchString(pf.Log(t)) {
		t.Errorf("Postfix did not log a TLS connection from the relay")
	}
}

// TestRelayUpstreamTLSRequiredFails: an upstream whose certificate is not
// trusted gets no mail in required mode.
func TestRelayUpstreamTLSRequiredFails(t *testing.T) {
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{})
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSRequired, RootCAs: testenv.NewCA(t).CertPool(), ServerName: "127.0.0.1"}, nil)
	c := testenv.DialSMTP(t, p.addr)
	c.Cmd("EHLO client.example", 421)
	s := p.waitSessions(t, 1)[0]
	if s.UpstreamTLS == nil || s.UpstreamTLS.Used || !strings.Contains(s.Reason, "certificate") {
		t.Errorf("session record: reason %q upstream_tls %+v", s.Reason, s.UpstreamTLS)
	}
	if strings.Contains(pf.Log(t), "MAIL FROM") {
		t.Error("mail reached the upstream")
	}
}

// TestRelayPythonLargeUTF8 sends a 1 MiB message with an attachment, 8-bit
// text and an SMTPUTF8 address with Python's smtplib.
func TestRelayPythonLargeUTF8(t *testing.T) {
	py := testenv.NeedBinary(t, "python3")
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr()})
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSOpportunistic, RootCAs: pf.CA().CertPool(), ServerName: "127.0.0.1"}, nil)
	host, port, _ := net.SplitHostPort(p.addr)
	script := `
import smtplib, sys, os
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "Jürgen <jürgen@bücher.example>"
m["To"] = "empfänger@dest.example"
m["Subject"] = "Grüße aus Köln"
m["Message-ID"] = "<py-utf8@bücher.example>"
m.set_content("Schöne Grüße\n" * 10, charset="utf-8", cte="8bit")
m.add_attachment(os.urandom(1 << 20), maintype="application", subtype="octet-stream", filename="blob.bin")
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)
s.ehlo("python.example")
s.starttls()
s.ehlo("python.example")
r = s.send_message(m, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
print("refused", r)
print(s.noop())
s.quit()
`
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	m := findByMsgID(p.waitMessages(t, 1), "<py-utf8@bücher.example>")
	if m == nil {
		t.Fatal("no record")
	}
	if m.Status != "accepted" || m.Size < 1<<20 || m.Subject != "Grüße aus Köln" || *m.MailFrom != "jürgen@bücher.example" || m.RcptTo[0] != "empfänger@dest.example" {
		t.Errorf("record: %s %d %q %q %q", m.Status, m.Size, m.Subject, *m.MailFrom, m.RcptTo)
	}
	if !m.TLS.Used || !m.UpstreamTLS.Used {
		t.Errorf("tls %+v %+v", m.TLS, m.UpstreamTLS)
	}
	qid := pf.QueueIDFor(t, "<py-utf8@bücher.example>", 20*time.Second)
	if qid != m.QueueID {
		t.Errorf("queue id %q vs Postfix %q", m.QueueID, qid)
	}
	lines := pf.WaitLog(t, regexp.MustCompile(qid+`: .*size=`), 20*time.Second)
	if !strings.Contains(strings.Join(lines, "\n"), fmt.Sprintf("size=%d", m.Size)) {
		// Postfix counts its own Received header too, so sizes differ; the
		// message must at least be over 1 MiB there as well.
		t.Logf("Postfix size line: %s (record size %d)", lines, m.Size)
	}
}

// TestRelayUpstreamErrors: 5xx and 4xx final replies from the upstream are
// relayed with their meaning and recorded.
func TestRelayUpstreamErrors(t *testing.T) {
	for _, tc := range []struct {
		flag   string
		code   int
		status string
	}{
		{"-f", 5, "rejected"},
		{"-r", 4, "deferred"},
	} {
		t.Run(tc.status, func(t *testing.T) {
			sink := testenv.StartSink(t, tc.flag, ".")
			p := startProxy(t, relay.Config{Upstream: sink.Addr(), TLSMode: relay.TLSNone}, nil)
			c := testenv.DialSMTP(t, p.addr)
			c.Cmd("EHLO client.example", 250)
			c.Cmd("MAIL FROM:<a@shop.example>", 250)
			c.Cmd("RCPT TO:<v@dest.example>", 250)
			c.Cmd("DATA", 354)
			c.Send("Subject: x\r\n\r\nbody\r\n.\r\n")
			rep := c.Read()
			if rep.Class() != tc.code {
				t.Fatalf("final reply %q", rep.String())
			}
			c.Cmd("QUIT", 221)
			m := p.waitMessages(t, 1)[0]
			if m.Status != tc.status || m.ReplyCode != rep.Code || m.SMTPResponse != rep.Full() {
				t.Errorf("record %s %d %q, client got %q", m.Status, m.ReplyCode, m.SMTPResponse, rep.Full())
			}
		})
	}
}

// TestRelayUpstreamDown: the client gets 421 4.3.x and a session record
// says why.
func TestRelayUpstreamDown(t *testing.T) {
	p := startProxy(t, relay.Config{Upstream: testenv.FreeAddr(t), TLSMode: relay.TLSNone}, nil)
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	rep, _, err := smtpwire.ReadReply(bufio.NewReader(nc), 512)
	if err != nil || rep.Code != 421 || !strings.HasPrefix(rep.Enhanced, "4.3.") {
		t.Fatalf("reply %q %v", rep.String(), err)
	}
	s := p.waitSessions(t, 1)[0]
	if s.CloseReason != "upstream_lost" || !strings.Contains(s.Reason, "upstream unavailable") {
		t.Errorf("session record: %q %q", s.CloseReason, s.Reason)
	}
}

// TestRelayUpstreamDropsAfterDot: the client gets 451 and the message
// record says aborted, with the reason.
func TestRelayUpstreamDropsAfterDot(t *testing.T) {
	sink := testenv.StartSink(t, "-q", ".")
	p := startProxy(t, relay.Config{Upstream: sink.Addr(), TLSMode: relay.TLSNone}, nil)
	c := testenv.DialSMTP(t, p.addr)
	c.Cmd("EHLO client.example", 250)
	c.Cmd("MAIL FROM:<a@shop.example>", 250)
	c.Cmd("RCPT TO:<v@dest.example>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: x\r\n\r\nbody\r\n.\r\n")
	rep := c.Read()
	if rep.Code != 451 {
		t.Fatalf("reply %q", rep.String())
	}
	m := p.waitMessages(t, 1)[0]
	if m.Status != "aborted" || !strings.Contains(m.Reason, "upstream connection lost") {
		t.Errorf("record %q %q", m.Status, m.Reason)
	}
	if s := p.waitSessions(t, 1)[0]; s.CloseReason != "upstream_lost" {
		t.Errorf("session close %q", s.CloseReason)
	}
}

// TestSmugglingNeverReachesLenientPostfix sends the twelve end-of-data
// sequences through the relay to a Postfix that would accept a bare LF.
func TestSmugglingNeverReachesLenientPostfix(t *testing.T) {
	seqs := []string{"\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n"}
	for _, policy := range []smtpd.DataPolicy{smtpd.DataReject, smtpd.DataNormalize} {
		t.Run(string(policy), func(t *testing.T) {
			pf := testenv.StartPostfix(t, testenv.PostfixOptions{Lenient: true})
			p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSNone}, func(c *smtpd.Config) { c.DataPolicy = policy })
			for i, seq := range seqs {
				c := testenv.DialSMTP(t, p.addr)
				c.Cmd("EHLO client.example", 250)
				c.Cmd("MAIL FROM:<app@shop.example>", 250)
				c.Cmd("RCPT TO:<v@up.test>", 250)
				c.Cmd("DATA", 354)
				c.Send(fmt.Sprintf("Message-ID: <smug-%d@shop.example>\r\nSubject: s\r\n\r\nbody", i) + seq +
					"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<v@up.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nSMUGGLED\r\n.\r\n")
				rep := c.Read()
				want := 554
				if policy == smtpd.DataNormalize {
					want = 250
				}
				if rep.Code != want {
					t.Errorf("%q: reply %q", seq, rep.String())
				}
				c.Cmd("QUIT", 221)
			}
			p.waitMessages(t, len(seqs))
			if policy == smtpd.DataNormalize {
				pf.QueueIDFor(t, fmt.Sprintf("<smug-%d@shop.example>", len(seqs)-1), 20*time.Second)
			}
			log := pf.Log(t)
			if strings.Contains(log, "ceo@bank.test") {
				t.Fatalf("the smuggled message reached Postfix:\n%s", log)
			}
			if policy == smtpd.DataReject && strings.Contains(log, "message-id=<smug-") {
				t.Errorf("a refused message reached Postfix")
			}
			for _, m := range p.waitMessages(t, len(seqs)) {
				if len(m.Anomalies) == 0 {
					t.Errorf("no anomaly recorded for %s", m.MessageID)
				}
			}
		})
	}
}

// fakeUpstream is a scripted SMTP server for cases no real MTA here plays:
// AUTH without a SASL backend, and STARTTLS response injection.
type fakeUpstream struct {
	addr     string
	mu       sync.Mutex
	received []string
}

func startFakeUpstream(t *testing.T, handle func(f *fakeUpstream, c net.Conn, br *bufio.Reader)) *fakeUpstream {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{addr: l.Addr().String()}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(f, c, bufio.NewReader(c))
			}()
		}
	}()
	return f
}

func (f *fakeUpstream) log(s string) {
	f.mu.Lock()
	f.received = append(f.received, s)
	f.mu.Unlock()
}

// authUpstream accepts AUTH PLAIN and LOGIN with the canary credentials.
func authUpstream(f *fakeUpstream, c net.Conn, br *bufio.Reader) {
	w := func(s string) { c.Write([]byte(s + "\r\n")) }
	w("220 fake ESMTP")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.log(line)
		up := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(up, "EHLO"):
			w("250-fake\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
		case strings.HasPrefix(up, "AUTH PLAIN "):
			raw, _ := base64.StdEncoding.DecodeString(line[len("AUTH PLAIN "):])
			if string(raw) == "\x00"+canaryUser+"\x00"+canaryPass {
				w("235 2.7.0 Authentication successful")
			} else {
				w("535 5.7.8 Error: authentication failed")
			}
		case up == "AUTH LOGIN":
			w("334 VXNlcm5hbWU6")
			u, _ := br.ReadString('\n')
			w("334 UGFzc3dvcmQ6")
			pw, _ := br.ReadString('\n')
			ub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(u))
			pb, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(pw))
			if string(ub) == canaryUser && string(pb) == canaryPass {
				w("235 2.7.0 Authentication successful")
			} else {
				w("535 5.7.8 Error: authentication failed")
			}
		case strings.HasPrefix(up, "MAIL"), strings.HasPrefix(up, "RCPT"), up == "RSET", up == "NOOP":
			w("250 2.0.0 Ok")
		case up == "DATA":
			w("354 go ahead")
			for {
				l, err := br.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
			}
			w("250 2.0.0 Ok: queued as FAKE42")
		case up == "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("502 5.5.2 Error: command not recognized")
		}
	}
}

// TestAuthPassThroughNeverLeaksSecret passes AUTH PLAIN and LOGIN through
// the relay, with every kind of output on, and scans everything for the
// canary password.
func TestAuthPassThroughNeverLeaksSecret(t *testing.T) {
	up := startFakeUpstream(t, authUpstream)
	p := startProxy(t, relay.Config{Upstream: up.addr, TLSMode: relay.TLSNone}, nil)
	host, port, _ := net.SplitHostPort(p.addr)
	var outputs []string
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out := swaks(t, "-s", host, "-p", port, "--tls", "--auth", mech, "--auth-user", canaryUser, "--auth-password", canaryPass,
			"-f", "a@shop.example", "-t", "v@dest.example", "--header", "Message-Id: <auth-"+mech+"@shop.example>")
		if !strings.Contains(out, "235 2.7.0") || !strings.Contains(out, "queued as FAKE42") {
			t.Fatalf("swaks AUTH %s:\n%s", mech, out)
		}
	}
	// A failed AUTH, and AUTH before STARTTLS.
	outputs = append(outputs, swaks(t, "-s", host, "-p", port, "--tls", "--auth", "PLAIN", "--auth-user", canaryUser, "--auth-password", canaryPass+"x", "-t", "v@dest.example"))
	c := testenv.DialSMTP(t, p.addr)
	c.Cmd("EHLO x.example", 250)
	c.Cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+canaryUser+"\x00"+canaryPass)), 538)
	c.Cmd("QUIT", 221)

	ms := p.waitMessages(t, 2)
	ss := p.waitSessions(t, 4)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		m := findByMsgID(ms, "<auth-"+mech+"@shop.example>")
		if m == nil || m.Username != canaryUser || m.QueueID != "FAKE42" {
			t.Errorf("%s: message record %+v", mech, m)
		}
	}
	var results []string
	for _, s := range ss {
		if s.Auth != nil {
			results = append(results, s.Auth.Mechanism+":"+s.Auth.Username+":"+s.Auth.Result)
		}
	}
	joined := strings.Join(results, ",")
	for _, want := range []string{"PLAIN:canary-user:success", "LOGIN:canary-user:success", "PLAIN:canary-user:failure"} {
		if !strings.Contains(joined, want) {
			t.Errorf("auth results %q lack %s", joined, want)
		}
	}
	// The upstream really got the credentials (pass-through works)...
	up.mu.Lock()
	gotPlain := strings.Contains(strings.Join(up.received, "\n"), "AUTH PLAIN ")
	up.mu.Unlock()
	if !gotPlain {
		t.Error("AUTH not passed to the upstream")
	}
	// ...but no output of smtplog holds the secret in any encoding.
	raw, _ := os.ReadFile(p.logPath)
	var text bytes.Buffer
	for _, r := range p.recs.Records() {
		text.Write(record.MarshalText(&r))
	}
	testenv.AssertNoSecret(t, canaryPass, raw, text.Bytes(), p.opLog.Bytes())
	_ = outputs
}

// TestUpstreamStartTLSResponseInjection: an upstream that sends extra
// lines with its 220 to STARTTLS is abandoned (NO STARTTLS, client side),
// and in required mode nothing is sent.
func TestUpstreamStartTLSResponseInjection(t *testing.T) {
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	up := startFakeUpstream(t, func(f *fakeUpstream, c net.Conn, br *bufio.Reader) {
		c.Write([]byte("220 evil ESMTP\r\n"))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			f.log(strings.TrimSpace(line))
			switch strings.ToUpper(strings.TrimSpace(line)) {
			case "STARTTLS":
				c.Write([]byte("220 2.0.0 Ready\r\n250-FAKE\r\n250 AUTH PLAIN\r\n"))
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				tc.Handshake()
				b := bufio.NewReader(tc)
				for {
					l, err := b.ReadString('\n')
					if err != nil {
						return
					}
					f.log("TLS:" + strings.TrimSpace(l))
				}
			default:
				c.Write([]byte("250-evil\r\n250 STARTTLS\r\n"))
			}
		}
	})
	p := startProxy(t, relay.Config{Upstream: up.addr, TLSMode: relay.TLSRequired, SkipVerify: true}, nil)
	c := testenv.DialSMTP(t, p.addr)
	c.Cmd("EHLO client.example", 421)
	s := p.waitSessions(t, 1)[0]
	if !strings.Contains(s.Reason, "response injection") {
		t.Errorf("reason %q", s.Reason)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, l := range up.received {
		if strings.HasPrefix(l, "TLS:") {
			t.Errorf("relay talked to the upstream after the injection: %q", l)
		}
	}
}

// TestXClient tells Postfix the real client address.
func TestXClient(t *testing.T) {
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr(), XClientHosts: "127.0.0.0/8"})
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSNone, XClient: true}, nil)
	c := testenv.DialSMTPFrom(t, "127.0.0.5", p.addr, 220)
	c.Cmd("EHLO app.example", 250)
	c.Cmd("MAIL FROM:<a@shop.example>", 250)
	c.Cmd("RCPT TO:<v@dest.example>", 250)
	c.Cmd("DATA", 354)
	c.Send("Message-ID: <xclient-1@shop.example>\r\n\r\nx\r\n.\r\n")
	c.Expect(250)
	c.Cmd("QUIT", 221)
	qid := pf.QueueIDFor(t, "<xclient-1@shop.example>", 20*time.Second)
	lines := pf.WaitLog(t, regexp.MustCompile(qid+`: client=`), 10*time.Second)
	if !strings.Contains(lines[0], "127.0.0.5") {
		t.Errorf("Postfix logged %q, want the real client 127.0.0.5", lines[0])
	}
}

// TestRelayUpstreamImplicitTLS relays to a Postfix port that speaks TLS
// from the first byte (port 465 style): the mail is delivered, the upstream
// leg is recorded as verified TLS, and an untrusted certificate ends the
// session with a 421 greeting before any command reaches Postfix.
func TestRelayUpstreamImplicitTLS(t *testing.T) {
	sink := testenv.StartSink(t)
	smtps := testenv.FreeAddr(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr(), MasterCF: []string{testenv.SMTPSService(smtps)}})
	testenv.WaitTLS(t, smtps, pf.CA())

	p := startProxy(t, relay.Config{Upstream: smtps, TLSMode: relay.TLSImplicit, RootCAs: pf.CA().CertPool(), ServerName: "127.0.0.1"}, nil)
	host, port, _ := net.SplitHostPort(p.addr)
	out := swaks(t, "-s", host, "-p", port, "-f", "a@shop.example", "-t", "v@dest.example", "--header", "Message-Id: <smtps-1@shop.example>")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("swaks:\n%s", out)
	}
	m := findByMsgID(p.waitMessages(t, 1), "<smtps-1@shop.example>")
	if m == nil {
		t.Fatal("no record")
	}
	if m.UpstreamTLS == nil || !m.UpstreamTLS.Used || m.UpstreamTLS.Trust != "verified" || m.UpstreamTLS.Version == "" {
		t.Fatalf("upstream TLS not recorded as verified: %+v", m.UpstreamTLS)
	}
	if qid := pf.QueueIDFor(t, "<smtps-1@shop.example>", 20*time.Second); qid != m.QueueID {
		t.Errorf("queue id %q vs %q", m.QueueID, qid)
	}
	if !regexp.MustCompile(`postfix/smtps/smtpd\[\d+\]: ` + regexp.QuoteMeta(m.QueueID) + `: client=`).MatchString(pf.Log(t)) {
		t.Errorf("Postfix's wrapper-mode smtpd did not take the message %s", m.QueueID)
	}

	bad := startProxy(t, relay.Config{Upstream: smtps, TLSMode: relay.TLSImplicit, RootCAs: testenv.NewCA(t).CertPool(), ServerName: "127.0.0.1"}, nil)
	// The upstream is dialled at connect: the client's greeting is the 421.
	testenv.DialSMTPFrom(t, "", bad.addr, 421)
	s := bad.waitSessions(t, 1)[0]
	if s.UpstreamTLS != nil && s.UpstreamTLS.Used || !strings.Contains(s.Reason, "upstream TLS failed: certificate not trusted") {
		t.Errorf("untrusted upstream: reason %q upstream_tls %+v", s.Reason, s.UpstreamTLS)
	}
}
