package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpwire"
	"github.com/smtplog/smtplog/internal/testenv"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

// fakeBackend answers like a permissive MTA and remembers what it got.
type fakeBackend struct {
	mu       sync.Mutex
	mails    []string
	rcpts    []string
	bodies   [][]byte
	authLine []string
	panicOn  string
	caps     Caps
}

func (b *fakeBackend) Open(context.Context, *Conn) (Session, error) { return &fakeSession{b: b}, nil }

type fakeSession struct {
	b         *fakeBackend
	authRound int
}

func (s *fakeSession) Hello(_ context.Context, name string, _ bool) (smtpwire.Reply, Caps) {
	if name == "refused.example" {
		return smtpwire.NewReply(550, "5.7.1", "Go away"), Caps{}
	}
	return smtpwire.NewReply(250, "", "ok"), s.b.caps
}

func (s *fakeSession) Mail(_ context.Context, p smtpwire.Path) smtpwire.Reply {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.b.panicOn == "MAIL" {
		panic("boom")
	}
	s.b.mails = append(s.b.mails, p.Addr)
	return smtpwire.NewReply(250, "2.1.0", "Ok")
}

func (s *fakeSession) Rcpt(_ context.Context, p smtpwire.Path) smtpwire.Reply {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if strings.HasPrefix(p.Addr, "bad") {
		return smtpwire.NewReply(550, "5.1.1", "<"+p.Addr+">: Recipient address rejected")
	}
	s.b.rcpts = append(s.b.rcpts, p.Addr)
	return smtpwire.NewReply(250, "2.1.5", "Ok")
}

func (s *fakeSession) Data(_ context.Context, m *Message) DataResult {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.bodies = append(s.b.bodies, append([]byte(nil), m.Body...))
	return DataResult{Reply: smtpwire.NewReply(250, "2.0.0", "Ok: queued as ABC123"), QueueID: "ABC123"}
}

func (s *fakeSession) Reset(context.Context) smtpwire.Reply {
	return smtpwire.NewReply(250, "2.0.0", "Ok")
}
func (s *fakeSession) Noop(context.Context) smtpwire.Reply {
	return smtpwire.NewReply(250, "2.0.0", "Ok")
}
func (s *fakeSession) Close(context.Context, string) {}

func (s *fakeSession) AuthStep(_ context.Context, mech, line string, first bool) smtpwire.Reply {
	s.b.mu.Lock()
	s.b.authLine = append(s.b.authLine, line)
	s.b.mu.Unlock()
	if line == "*" {
		return smtpwire.NewReply(501, "5.7.0", "Authentication aborted")
	}
	if mech == "LOGIN" && s.authRound < 2 {
		s.authRound++
		return smtpwire.NewReply(334, "", "VXNlcm5hbWU6")
	}
	if mech == "PLAIN" && first && line == "AUTH PLAIN" {
		return smtpwire.NewReply(334, "", "")
	}
	return smtpwire.NewReply(235, "2.7.0", "Authentication successful")
}

func allCaps() Caps {
	return Caps{Pipelining: true, EightBitMIME: true, SMTPUTF8: true, Chunking: true, DSN: true, Enhanced: true, AuthMechs: []string{"PLAIN", "LOGIN"}}
}

type harness struct {
	t    *testing.T
	srv  *Server
	addr string
	be   *fakeBackend
	recs *record.Collector
}

func start(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cert, err := tlsutil.SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, be: &fakeBackend{caps: allCaps()}, recs: &record.Collector{}}
	cfg := Config{
		Hostname: "test.example",
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Source:   record.SourceProxy,
		Handler:  h.recs,
		Limits:   Limits{CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	h.srv = New(cfg, h.be)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go h.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	return h
}

func (h *harness) dial() *testenv.RawSMTP {
	h.t.Helper()
	return testenv.DialSMTP(h.t, h.addr)
}

func (h *harness) wait(n int) []record.Record {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ch := h.recs.Changed()
		r := h.recs.Records()
		if len(r) >= n {
			return r
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			var types []string
			for _, x := range r {
				types = append(types, string(x.Type)+"/"+x.Status+x.CloseReason)
			}
			h.t.Fatalf("got %d records, want %d: %q", len(r), n, types)
		}
	}
}

func byType(rs []record.Record, t record.Type) []record.Record {
	var out []record.Record
	for _, r := range rs {
		if r.Type == t {
			out = append(out, r)
		}
	}
	return out
}

func TestHappyPathRecords(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	ehlo := c.Cmd("EHLO client.example", 250)
	for _, want := range []string{"PIPELINING", "SIZE 52428800", "STARTTLS", "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(strings.Join(ehlo.Lines, "|"), want) {
			t.Errorf("EHLO lacks %s: %q", want, ehlo.Lines)
		}
	}
	if strings.Contains(strings.Join(ehlo.Lines, "|"), "AUTH") {
		t.Errorf("AUTH offered before TLS: %q", ehlo.Lines)
	}
	// Legitimate RFC 2920 pipelining: MAIL and RCPTs in one write.
	c.Send("MAIL FROM:<app@shop.example> SIZE=100\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<bad@x.example>\r\nRCPT TO:<b@y.example> NOTIFY=FAILURE\r\n")
	c.Expect(250)
	c.Expect(250)
	c.Expect(550)
	c.Expect(250)
	c.Cmd("DATA", 354)
	c.Send("Message-ID: <1@shop.example>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\nFrom: Shop <app@shop.example>\r\n\r\nHello\r\n..dot\r\n.\r\n")
	rep := c.Expect(250)
	if rep.String() != "250 2.0.0 Ok: queued as ABC123" {
		t.Errorf("final reply %q", rep.String())
	}
	c.Cmd("QUIT", 221)
	recs := h.wait(2)
	m := byType(recs, record.TypeMessage)[0]
	if m.Status != "accepted" || m.QueueID != "ABC123" || m.MessageID != "<1@shop.example>" || m.Subject != "café" || *m.MailFrom != "app@shop.example" {
		t.Errorf("message record: %+v", m)
	}
	if len(m.RcptTo) != 2 || len(m.RejectedRcpt) != 1 || m.RejectedRcpt[0].Address != "bad@x.example" || !strings.HasPrefix(m.RejectedRcpt[0].SMTPResponse, "550 5.1.1") {
		t.Errorf("recipients: %q rejected %+v", m.RcptTo, m.RejectedRcpt)
	}
	if m.ReplyCode != 250 || m.EnhancedCode != "2.0.0" || m.Size != int64(len("Message-ID: <1@shop.example>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\nFrom: Shop <app@shop.example>\r\n\r\nHello\r\n.dot\r\n")) {
		t.Errorf("reply/size: %d %s %d", m.ReplyCode, m.EnhancedCode, m.Size)
	}
	if got := string(h.be.bodies[0]); !strings.HasSuffix(got, "Hello\r\n.dot\r\n") {
		t.Errorf("backend body not unstuffed exactly: %q", got)
	}
	if m.TLS == nil || m.TLS.Used || m.Helo != "client.example" || len(m.Transcript) == 0 {
		t.Errorf("tls/helo/transcript: %+v %q %d", m.TLS, m.Helo, len(m.Transcript))
	}
	s := byType(recs, record.TypeSession)[0]
	if s.CloseReason != "quit" || s.Messages != 1 || s.SessionID != m.SessionID || s.End.IsZero() {
		t.Errorf("session record: %+v", s)
	}
	// The seed article's keys come out with exactly those names.
	line, _ := record.MarshalJSONLine(&m)
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"timestamp", "client_ip", "message_id", "mail_from", "rcpt_to", "status", "smtp_response", "queue_id", "size", "tls"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("key %s missing from %s", k, line)
		}
	}
	if _, ok := obj["tls"].(map[string]any)["used"]; !ok {
		t.Errorf("tls.used missing")
	}
}

func TestControlCharactersInCommands(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("EHLO x\rX-Evil: 1", 500)
	c.Cmd("EHLO ok.example", 250)
	c.Cmd("MAIL FROM:<\"a\rX-Injected: 1\"@b.example>", 500)
	c.Cmd("MAIL FROM:<a@b.example>\x00", 500)
	c.Cmd("MAIL FROM:<a@b.example>", 250)
	c.Cmd("RCPT TO:<v@b\rx.example>", 500)
	c.Cmd("RCPT TO:<v@b.example>\x1b[2J", 500)
	c.Cmd("RCPT TO:<v@b.example", 501)
	c.Cmd("QUIT", 221)
	recs := h.wait(1)
	if len(h.be.rcpts) != 0 || len(h.be.mails) != 1 {
		t.Errorf("backend saw %q %q", h.be.mails, h.be.rcpts)
	}
	for _, r := range recs {
		b, _ := record.MarshalJSONLine(&r)
		if strings.ContainsAny(strings.TrimSuffix(string(b), "\n"), "\r\n\x00\x1b") {
			t.Errorf("raw control character in record: %q", b)
		}
		if strings.Contains(string(b), "X-Injected") || strings.Contains(string(b), "X-Evil") {
			t.Errorf("refused command bytes recorded: %s", b)
		}
	}
}

func TestUnauthorisedPipelining(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	// V7: a failed RCPT, then DATA with a second transaction behind it.
	c.Send("MAIL FROM:<app@x.example>\r\nRCPT TO:<bad address>\r\nDATA\r\nMAIL FROM:<ceo@bank.test>\r\nRCPT TO:<v@up.test>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
	c.Expect(250)
	c.Expect(501)
	rep := c.Expect(554)
	if rep.Enhanced != "5.5.0" {
		t.Errorf("sync error reply %q", rep.String())
	}
	if !c.Closed() {
		t.Error("connection left open after synchronization error")
	}
	recs := h.wait(1)
	if len(h.be.bodies) != 0 || len(h.be.mails) != 1 {
		t.Errorf("second transaction reached the backend: %q", h.be.mails)
	}
	s := byType(recs, record.TypeSession)[0]
	if !strings.Contains(strings.Join(s.Anomalies, ","), "unauthorised_pipelining") {
		t.Errorf("anomaly not recorded: %+v", s.Anomalies)
	}
}

func TestPipeliningWithoutOffer(t *testing.T) {
	h := start(t, nil)
	h.be.caps.Pipelining = false
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Send("MAIL FROM:<a@x.example>\r\nRCPT TO:<v@up.test>\r\n")
	c.Expect(554)
	if !c.Closed() {
		t.Error("not closed")
	}
}

func TestSequenceErrors(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("MAIL FROM:<a@x.example>", 503)
	c.Cmd("EHLO x.example", 250)
	c.Cmd("RCPT TO:<v@up.test>", 503)
	c.Cmd("DATA", 503)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("MAIL FROM:<b@x.example>", 503)
	c.Cmd("DATA", 554)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Cmd("RSET", 250)
	c.Cmd("RCPT TO:<v@up.test>", 503)
	c.Cmd("FOO bar", 500)
	c.Cmd("NOOP", 250)
	c.Send("GET / HTTP/1.1\r\n")
	c.Expect(521)
	if !c.Closed() {
		t.Error("HTTP request did not close the connection")
	}
	recs := h.wait(2)
	if len(h.be.mails) != 1 {
		t.Errorf("nested MAIL reached the backend: %q", h.be.mails)
	}
	if m := byType(recs, record.TypeMessage); len(m) != 1 || m[0].Status != "aborted" || m[0].Reason != "reset" {
		t.Errorf("reset transaction record: %+v", m)
	}
}

func TestStartTLSInjection(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Send("STARTTLS\r\nMAIL FROM:<inj@evil.example>\r\n")
	c.Expect(220)
	tc := tls.Client(c.NC, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Upgrade(tc)
	// Nothing injected was executed, and the pre-TLS EHLO is forgotten.
	c.Send("MAIL FROM:<a@x.example>\r\n")
	c.Expect(503)
	ehlo := c.Cmd("EHLO y.example", 250)
	joined := strings.Join(ehlo.Lines, "|")
	if strings.Contains(joined, "STARTTLS") || !strings.Contains(joined, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after TLS: %q", ehlo.Lines)
	}
	c.Cmd("STARTTLS", 503)
	c.Cmd("QUIT", 221)
	recs := h.wait(1)
	if len(h.be.mails) != 0 {
		t.Fatalf("injected MAIL executed: %q", h.be.mails)
	}
	s := byType(recs, record.TypeSession)[0]
	if !s.TLS.Used || s.TLS.Version == "" || s.Helo != "y.example" || !strings.Contains(strings.Join(s.Anomalies, ","), "pipelined_after_starttls") {
		t.Errorf("session after STARTTLS: tls=%+v helo=%q anomalies=%q", s.TLS, s.Helo, s.Anomalies)
	}
}

// smuggling is the twelve end-of-data sequences of the SMTP-smuggling
// research (SEC Consult, hannob/smtpsmug, The-Login).
var smuggling = []string{"\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n"}

func TestSmugglingRefused(t *testing.T) {
	h := start(t, nil)
	for _, seq := range smuggling {
		c := h.dial()
		c.Cmd("EHLO x.example", 250)
		c.Cmd("MAIL FROM:<app@x.example>", 250)
		c.Cmd("RCPT TO:<v@up.test>", 250)
		c.Cmd("DATA", 354)
		c.Send("Subject: s\r\n\r\nbody" + seq + "MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<v@up.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nSMUGGLED\r\n.\r\n")
		rep := c.Expect(554)
		if rep.Enhanced != "5.6.0" {
			t.Errorf("%q: reply %q", seq, rep.String())
		}
		// The session goes on: the client may send a clean message.
		c.Cmd("NOOP", 250)
		c.Cmd("QUIT", 221)
	}
	if len(h.be.bodies) != 0 || len(h.be.mails) != len(smuggling) {
		t.Errorf("backend got %d bodies and MAILs %q", len(h.be.bodies), h.be.mails)
	}
	for _, m := range byType(h.wait(2*len(smuggling)), record.TypeMessage) {
		if m.Status != "rejected" || len(m.Anomalies) == 0 {
			t.Errorf("smuggling record: status %s anomalies %q", m.Status, m.Anomalies)
		}
	}
}

func TestSmugglingNormalized(t *testing.T) {
	h := start(t, func(c *Config) { c.DataPolicy = DataNormalize })
	for _, seq := range smuggling {
		c := h.dial()
		c.Cmd("EHLO x.example", 250)
		c.Cmd("MAIL FROM:<app@x.example>", 250)
		c.Cmd("RCPT TO:<v@up.test>", 250)
		c.Cmd("DATA", 354)
		c.Send("Subject: s\r\n\r\nbody" + seq + "MAIL FROM:<ceo@bank.test>\r\n.\r\n")
		c.Expect(250)
		c.Cmd("QUIT", 221)
	}
	for i, b := range h.be.bodies {
		stripped := strings.ReplaceAll(string(b), "\r\n", "")
		if strings.ContainsAny(stripped, "\r\n") {
			t.Errorf("%q: bare CR/LF passed on after normalising: %q", smuggling[i], b)
		}
	}
}

func TestLimits(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Limits.MaxMessageBytes = 1000
		c.Limits.MaxRecipients = 2
		c.Limits.MaxLineLength = 100
	})
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Cmd("MAIL FROM:<a@x.example> SIZE=5000", 552)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v1@up.test>", 250)
	c.Cmd("RCPT TO:<v2@up.test>", 250)
	c.Cmd("RCPT TO:<v3@up.test>", 452)
	c.Cmd("DATA", 354)
	c.Send(strings.Repeat("0123456789\r\n", 200) + ".\r\n")
	c.Expect(552)
	c.Cmd("NOOP", 250) // still in sync
	c.Send(strings.Repeat("A", 5000) + "\r\n")
	c.Expect(500)
	if !c.Closed() {
		t.Error("not closed after an over-long line")
	}
	if len(h.be.bodies) != 0 {
		t.Error("oversized message passed on")
	}
}

func TestTimeouts(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Limits.CommandTimeout = 600 * time.Millisecond
		c.Limits.DataTimeout = 600 * time.Millisecond
	})
	// Idle: 421 4.4.2.
	c := h.dial()
	rep := c.Read()
	if rep.Code != 421 || rep.Enhanced != "4.4.2" {
		t.Errorf("idle: %q", rep.String())
	}
	// Slowloris: one byte every 200 ms never completes a command in time;
	// the deadline is per command, not reset per byte.
	c = h.dial()
	start := time.Now()
	done := make(chan smtpwire.Reply, 1)
	go func() {
		r, _, _ := smtpwire.ReadReply(c.BR, 512)
		done <- r
	}()
	for _, b := range []byte("NOOP") {
		c.NC.Write([]byte{b})
		time.Sleep(200 * time.Millisecond)
	}
	r := <-done
	if r.Code != 421 || time.Since(start) > 3*time.Second {
		t.Errorf("slowloris: %q after %v", r.String(), time.Since(start))
	}
	// DATA trickle.
	c = h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: slow\r\n")
	c.Expect(421)
	recs := h.wait(4)
	var aborted bool
	for _, m := range byType(recs, record.TypeMessage) {
		aborted = aborted || m.Status == "aborted"
	}
	if !aborted || len(h.be.bodies) != 0 {
		t.Errorf("DATA timeout: aborted record %v, bodies %d", aborted, len(h.be.bodies))
	}
	for _, s := range byType(recs, record.TypeSession) {
		if s.CloseReason != "timeout" {
			t.Errorf("close reason %q", s.CloseReason)
		}
	}
}

func TestConnectionFlood(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Limits.MaxConnections = 20
		c.Limits.MaxPerIP = 5
	})
	// A flood from 127.0.0.2 holds connections; only 5 are served.
	var held []net.Conn
	refused := 0
	for i := 0; i < 12; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, nc)
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		rep, _, err := smtpwire.ReadReply(bufio.NewReader(nc), 512)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code == 421 {
			refused++
		}
	}
	if refused != 7 {
		t.Errorf("refused %d of 12 flood connections, want 7", refused)
	}
	// A normal client still gets through.
	c := h.dial()
	c.Cmd("EHLO ok.example", 250)
	c.Cmd("QUIT", 221)
	for _, nc := range held {
		nc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.srv.Active(); n != 0 {
		t.Errorf("%d sessions left after the flood", n)
	}
}

func TestPanicRecovered(t *testing.T) {
	h := start(t, nil)
	h.be.panicOn = "MAIL"
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Cmd("MAIL FROM:<a@x.example>", 421)
	h.be.mu.Lock()
	h.be.panicOn = ""
	h.be.mu.Unlock()
	c = h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("QUIT", 221)
	recs := h.wait(2)
	var found bool
	for _, s := range byType(recs, record.TypeSession) {
		found = found || s.CloseReason == "error" && s.Reason == "internal error" && strings.Contains(strings.Join(s.Errors, ","), "panic recovered")
	}
	if !found {
		t.Error("no session record of the recovered panic")
	}
}

func TestBDAT(t *testing.T) {
	h := start(t, func(c *Config) { c.Limits.MaxMessageBytes = 1000 })
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Send("BDAT 12\r\nSubject: a\r\n")
	c.Expect(250)
	c.Send("BDAT 8 LAST\r\n\r\nbody\r\n")
	c.Expect(250)
	if got := string(h.be.bodies[0]); got != "Subject: a\r\n\r\nbody\r\n" {
		t.Errorf("BDAT body %q", got)
	}
	// Too large: consumed, refused, still in sync.
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Send("BDAT 2000 LAST\r\n" + strings.Repeat("x", 2000))
	c.Expect(552)
	// A bare LF in a chunk is refused like in DATA.
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Send("BDAT 9 LAST\r\na\n.\nb\r\n\r\n")
	c.Expect(554)
	c.Cmd("NOOP", 250)
	// BDAT then close mid-chunk: aborted, nothing passed on.
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Send("BDAT 100\r\nonly a few")
	c.NC.Close()
	recs := h.wait(5)
	if len(h.be.bodies) != 1 {
		t.Errorf("backend got %d bodies", len(h.be.bodies))
	}
	last := byType(recs, record.TypeMessage)
	if st := last[len(last)-1].Status; st != "aborted" {
		t.Errorf("truncated chunk status %q", st)
	}
}

const canary = "pw-CANARY-7f3a9d"

func TestAuthNeverRecordsSecret(t *testing.T) {
	h := start(t, nil)
	tlsDial := func() *testenv.RawSMTP {
		c := h.dial()
		c.Cmd("EHLO x.example", 250)
		c.Cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00canary-user\x00"+canary)), 538)
		c.Cmd("STARTTLS", 220)
		tc := tls.Client(c.NC, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.Upgrade(tc)
		c.Cmd("EHLO x.example", 250)
		return c
	}
	c := tlsDial()
	c.Cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00canary-user\x00"+canary)), 235)
	c.Cmd("AUTH PLAIN", 503)
	c.Cmd("MAIL FROM:<a@x.example>", 250)
	c.Cmd("RCPT TO:<v@up.test>", 250)
	c.Cmd("DATA", 354)
	c.Send("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.Expect(250)
	c.Cmd("QUIT", 221)

	c = tlsDial()
	c.Cmd("AUTH LOGIN", 334)
	c.Cmd(base64.StdEncoding.EncodeToString([]byte("login-user")), 334)
	c.Cmd(base64.StdEncoding.EncodeToString([]byte(canary)), 235)
	c.Cmd("QUIT", 221)

	c = tlsDial()
	c.Cmd("AUTH PLAIN", 334)
	c.Cmd(base64.StdEncoding.EncodeToString([]byte("\x00canary-user\x00"+canary)), 235)
	c.Cmd("QUIT", 221)

	recs := h.wait(4)
	var all strings.Builder
	for _, r := range recs {
		b, _ := record.MarshalJSONLine(&r)
		all.Write(b)
		all.Write(record.MarshalText(&r))
	}
	out := all.String()
	testenv.AssertNoSecret(t, canary, []byte(out))
	auths := map[string]bool{}
	for _, s := range byType(recs, record.TypeSession) {
		if s.Auth != nil {
			auths[s.Auth.Mechanism+":"+s.Auth.Username+":"+s.Auth.Result] = true
		}
	}
	for _, want := range []string{"PLAIN:canary-user:success", "LOGIN:login-user:success"} {
		if !auths[want] {
			t.Errorf("no session with AUTH %s: %v", want, auths)
		}
	}
	if m := byType(recs, record.TypeMessage)[0]; m.Username != "canary-user" {
		t.Errorf("message username %q", m.Username)
	}
	if !strings.Contains(out, "AUTH PLAIN [redacted]") {
		t.Errorf("redacted AUTH line missing from transcript")
	}
}

func TestShutdownEndsIdleSessions(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go h.srv.Shutdown(ctx)
	rep := c.Read()
	if rep.Code != 421 || rep.Enhanced != "4.3.2" {
		t.Errorf("shutdown reply %q", rep.String())
	}
	if s := byType(h.wait(1), record.TypeSession)[0]; s.CloseReason != "shutdown" {
		t.Errorf("close reason %q", s.CloseReason)
	}
}

func TestImplicitTLS(t *testing.T) {
	h := start(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.srv.ServeTLS(l)
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &testenv.RawSMTP{T: t, NC: tc, BR: bufio.NewReader(tc)}
	c.Expect(220)
	ehlo := c.Cmd("EHLO x.example", 250)
	if strings.Contains(strings.Join(ehlo.Lines, "|"), "STARTTLS") {
		t.Error("STARTTLS offered inside TLS")
	}
	c.Cmd("QUIT", 221)
	// TLS 1.1 is refused.
	if _, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
	var ok, failed bool
	for _, s := range byType(h.wait(2), record.TypeSession) {
		ok = ok || s.TLS.Used && s.TLS.Version == "TLS 1.2" && s.CloseReason == "quit"
		failed = failed || !s.TLS.Used && strings.HasPrefix(s.Reason, "TLS handshake failed")
	}
	if !ok || !failed {
		t.Errorf("implicit TLS records: served %v, refused %v", ok, failed)
	}
}

// TestErrorLimit: after the error limit the session ends, and
// commands the client had already pipelined are never executed.
func TestErrorLimit(t *testing.T) {
	h := start(t, func(c *Config) { c.Limits.HardErrorLimit = 5 })
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	for i := 0; i < 4; i++ {
		c.Cmd("BOGUS", 500)
	}
	c.Send("BOGUS\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<v@up.test>\r\nDATA\r\n")
	c.Expect(500)
	c.Expect(421)
	if !c.Closed() {
		t.Error("session not closed after the error limit")
	}
	if len(h.be.mails) != 0 {
		t.Errorf("pipelined commands ran after the limit: %q", h.be.mails)
	}
	// Failed AUTH attempts count too.
	c = h.dial()
	c.Cmd("EHLO x.example", 250)
	for i := 0; i < 4; i++ {
		c.Cmd("AUTH PLAIN AGZvbwBiYXI=", 538)
	}
	c.Send("AUTH PLAIN AGZvbwBiYXI=\r\n")
	c.Expect(538)
	c.Expect(421)
	s := byType(h.wait(2), record.TypeSession)
	for _, r := range s {
		if r.CloseReason != "error" || r.Reason != "too many errors" {
			t.Errorf("session %q %q", r.CloseReason, r.Reason)
		}
	}
}

// TestRefusedHelloAnsweredOnce: a backend's refusal of EHLO is one reply,
// and the session stays in step.
func TestRefusedHelloAnsweredOnce(t *testing.T) {
	h := start(t, nil)
	c := h.dial()
	c.Cmd("EHLO refused.example", 550)
	c.Cmd("NOOP", 250)
	c.Cmd("EHLO ok.example", 250)
	c.Cmd("QUIT", 221)
}

// TestLongSessionKeepsMessageTranscripts: when a session's transcript is
// full, its later messages still carry their own dialogue.
func TestLongSessionKeepsMessageTranscripts(t *testing.T) {
	h := start(t, func(c *Config) { c.Limits.MaxTranscriptLines = 20 })
	c := h.dial()
	c.Cmd("EHLO x.example", 250)
	for i := 0; i < 5; i++ {
		c.Cmd("MAIL FROM:<a@x.example>", 250)
		c.Cmd("RCPT TO:<v@up.test>", 250)
		c.Cmd("DATA", 354)
		c.Send("Subject: x\r\n\r\nhi\r\n.\r\n")
		c.Expect(250)
	}
	c.Cmd("QUIT", 221)
	recs := h.wait(6)
	for _, m := range byType(recs, record.TypeMessage) {
		if len(m.Transcript) != 8 || m.Transcript[0].Line != "MAIL FROM:<a@x.example>" || !strings.HasPrefix(m.Transcript[7].Line, "250 2.0.0") {
			t.Errorf("message transcript: %+v", m.Transcript)
		}
	}
	s := byType(recs, record.TypeSession)[0]
	if len(s.Transcript) != 20 || !strings.HasPrefix(strings.Join(s.Flags, ","), "transcript_truncated:") {
		t.Errorf("session transcript %d lines, flags %q", len(s.Transcript), s.Flags)
	}
}
