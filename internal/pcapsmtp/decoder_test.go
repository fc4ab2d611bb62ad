package pcapsmtp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/pcapsmtp/pcaptest"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

// step is one write of a scripted conversation: side 0 is the client, 1
// the server.
type step struct {
	side int
	data string
}

func c(s string) step { return step{0, s} }
func s(s string) step { return step{1, s} }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// script writes conversations into a capture, each on its own connection,
// 1 ms between writes.
type script struct {
	client, server netip.AddrPort
	steps          []step
	end            string // "fin" (default), "rst", "open"
}

func capture(t testing.TB, convs ...script) []pcaptest.Packet {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcaptest.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []pcaptest.Packet
	w.Packets = &pkts
	ts := t0
	for i, cv := range convs {
		if !cv.client.IsValid() {
			cv.client = netip.MustParseAddrPort(fmt.Sprintf("192.0.2.10:%d", 40000+i))
		}
		if !cv.server.IsValid() {
			cv.server = netip.MustParseAddrPort("198.51.100.25:25")
		}
		conn := w.Conn(ts, cv.client, cv.server)
		for _, st := range cv.steps {
			ts = ts.Add(time.Millisecond)
			conn.Send(ts, st.side, []byte(st.data))
		}
		ts = ts.Add(time.Millisecond)
		switch cv.end {
		case "rst":
			conn.Reset(ts, 0)
		case "open":
		default:
			conn.Close(ts, 0)
			conn.Close(ts, 1)
		}
	}
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	return pkts
}

func pcapBytes(t testing.TB, pkts []pcaptest.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := pcaptest.WriteAll(&buf, pkts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decode runs the decoder over a capture and returns the records (as
// JSON round trips, like a reader of the output sees them) and the error.
func decode(t testing.TB, file []byte) ([]record.Record, *pcapsmtp.Stats, error) {
	t.Helper()
	var recs []record.Record
	d := pcapsmtp.NewDecoder(pcapsmtp.Options{Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
		b, err := record.MarshalJSONLine(r)
		if err != nil {
			return err
		}
		var back record.Record
		if err := json.Unmarshal(b, &back); err != nil {
			return err
		}
		recs = append(recs, back)
		return nil
	})})
	err := d.ReadFrom(context.Background(), bytes.NewReader(file))
	if cerr := d.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	return recs, d.Stats(), err
}

func byType(recs []record.Record, typ record.Type) []record.Record {
	var out []record.Record
	for _, r := range recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

const msg1 = "Message-ID: <one@example.org>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\nFrom: Ann <ann@example.org>\r\nTo: bob@example.net\r\nReceived: from b by c\r\nReceived: from a by b\r\n\r\nHello\r\n..dot\r\n"

// plain is an ordinary session: greeting, EHLO, one accepted message with
// a refused recipient, QUIT.
func plain() script {
	return script{steps: []step{
		s("220 mx.example.net ESMTP Postfix\r\n"),
		c("EHLO client.example.org\r\n"),
		s("250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
		c("MAIL FROM:<ann@example.org>\r\n"),
		s("250 2.1.0 Ok\r\n"),
		c("RCPT TO:<bob@example.net>\r\n"),
		s("250 2.1.5 Ok\r\n"),
		c("RCPT TO:<nobody@example.net>\r\n"),
		s("550 5.1.1 <nobody@example.net>: Recipient address rejected\r\n"),
		c("DATA\r\n"),
		s("354 End data with <CR><LF>.<CR><LF>\r\n"),
		c(strings.ReplaceAll(msg1, "\r\n..dot", "\r\n..dot") + ".\r\n"),
		s("250 2.0.0 Ok: queued as 4QxYz1AbCd\r\n"),
		c("QUIT\r\n"),
		s("221 2.0.0 Bye\r\n"),
	}}
}

func TestPlainSession(t *testing.T) {
	recs, st, err := decode(t, pcapBytes(t, capture(t, plain())))
	if err != nil {
		t.Fatal(err)
	}
	ms, ss := byType(recs, record.TypeMessage), byType(recs, record.TypeSession)
	if len(ms) != 1 || len(ss) != 1 {
		t.Fatalf("%d messages, %d sessions: %+v", len(ms), len(ss), recs)
	}
	m, sr := ms[0], ss[0]
	if m.Source != record.SourcePcap || m.SessionID == "" || m.SessionID != sr.SessionID {
		t.Errorf("source %q session %q/%q", m.Source, m.SessionID, sr.SessionID)
	}
	if m.ClientIP != "192.0.2.10" || m.ClientPort != 40000 || m.ServerIP != "198.51.100.25" || m.ServerPort != 25 || m.Helo != "client.example.org" {
		t.Errorf("addresses %s:%d → %s:%d helo %q", m.ClientIP, m.ClientPort, m.ServerIP, m.ServerPort, m.Helo)
	}
	if m.MailFrom == nil || *m.MailFrom != "ann@example.org" || !slices.Equal(m.RcptTo, []string{"bob@example.net"}) {
		t.Errorf("envelope %v %v", m.MailFrom, m.RcptTo)
	}
	if len(m.RejectedRcpt) != 1 || m.RejectedRcpt[0].Address != "nobody@example.net" || !strings.HasPrefix(m.RejectedRcpt[0].SMTPResponse, "550 5.1.1") {
		t.Errorf("rejected %+v", m.RejectedRcpt)
	}
	if m.MessageID != "<one@example.org>" || m.Subject != "café" || m.From != "Ann <ann@example.org>" || len(m.Received) != 2 || m.Received[0] != "from b by c" {
		t.Errorf("headers %q %q %q %q", m.MessageID, m.Subject, m.From, m.Received)
	}
	body := strings.ReplaceAll(msg1, "\r\n..dot", "\r\n.dot")
	if m.Size != int64(len(body)) || m.BodySHA256 != sha(body) {
		t.Errorf("size %d (want %d) sha %s", m.Size, len(body), m.BodySHA256)
	}
	if m.Status != record.StatusAccepted || m.QueueID != "4QxYz1AbCd" || m.ReplyCode != 250 || m.EnhancedCode != "2.0.0" || m.SMTPResponse != "250 2.0.0 Ok: queued as 4QxYz1AbCd" {
		t.Errorf("outcome %q %q %d %q %q", m.Status, m.QueueID, m.ReplyCode, m.EnhancedCode, m.SMTPResponse)
	}
	// MAIL at +4 ms, final reply at +13 ms.
	if m.LatencyMS != 9 || !m.Timestamp.Equal(t0.Add(4*time.Millisecond)) {
		t.Errorf("latency %v timestamp %v", m.LatencyMS, m.Timestamp)
	}
	if m.TLS == nil || m.TLS.Used {
		t.Errorf("tls %+v", m.TLS)
	}
	if len(m.Transcript) < 8 || m.Transcript[0].Line != "MAIL FROM:<ann@example.org>" || m.Transcript[len(m.Transcript)-1].Line != "250 2.0.0 Ok: queued as 4QxYz1AbCd" {
		t.Errorf("message transcript %+v", m.Transcript)
	}
	if sr.CloseReason != record.CloseQuit || sr.Messages != 1 || len(sr.Flags) != 0 || len(sr.Anomalies) != 0 {
		t.Errorf("session %q %d %v %v", sr.CloseReason, sr.Messages, sr.Flags, sr.Anomalies)
	}
	if sr.DurationMS != 16 || sr.Transcript[0].Line != "220 mx.example.net ESMTP Postfix" || sr.Transcript[0].TMS != 1 {
		t.Errorf("duration %v transcript %+v", sr.DurationMS, sr.Transcript[:2])
	}
	if st.Sessions != 1 || st.Messages != 1 || st.OtherTCP != 0 {
		t.Errorf("stats %+v", st)
	}
}

func sha(s string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))
}

// TestPipelined: commands sent together are paired with their replies in
// order, and the transcript shows them as they were on the wire.
func TestPipelined(t *testing.T) {
	sc := script{steps: []step{
		s("220 mx ESMTP\r\n"),
		c("EHLO c\r\n"),
		s("250-mx\r\n250 PIPELINING\r\n"),
		c("MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
		s("250 ok\r\n450 4.2.0 busy\r\n250 ok\r\n354 go\r\n"),
		c("Subject: x\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<z@y>\r\nRCPT TO:<c@x>\r\nQUIT\r\n"),
		s("250 2.0.0 Ok: queued as AAA\r\n250 reset\r\n250 ok\r\n250 ok\r\n221 bye\r\n"),
	}}
	recs, _, err := decode(t, pcapBytes(t, capture(t, sc)))
	if err != nil {
		t.Fatal(err)
	}
	ms := byType(recs, record.TypeMessage)
	if len(ms) != 2 {
		t.Fatalf("%d messages: %+v", len(ms), ms)
	}
	if *ms[0].MailFrom != "" || !slices.Equal(ms[0].RcptTo, []string{"b@x"}) || ms[0].RejectedRcpt[0].Address != "a@x" || ms[0].QueueID != "AAA" {
		t.Errorf("first: %+v", ms[0])
	}
	if ms[1].Status != record.StatusAborted || ms[1].Reason != "connection closed during the transaction" && ms[1].Reason != "reset" {
		t.Errorf("second: %q %q", ms[1].Status, ms[1].Reason)
	}
	ss := byType(recs, record.TypeSession)[0]
	var lines []string
	for _, l := range ss.Transcript {
		lines = append(lines, l.Dir+" "+l.Line)
	}
	want := "C MAIL FROM:<>|C RCPT TO:<a@x>|C RCPT TO:<b@x>|C DATA|S 250 ok|S 450 4.2.0 busy|S 250 ok|S 354 go"
	if got := strings.Join(lines[4:12], "|"); got != want {
		t.Errorf("transcript order:\n got %s\nwant %s", got, want)
	}
}

// TestBDAT: CHUNKING (RFC 3030), a chunk split across packets.
func TestBDAT(t *testing.T) {
	body := "Message-ID: <bdat@x>\r\n\r\n" + strings.Repeat("0123456789", 400) + "\r\n"
	half := len(body) / 2
	sc := script{steps: []step{
		s("220 mx ESMTP\r\n"),
		c("EHLO c\r\n"),
		s("250-mx\r\n250 CHUNKING\r\n"),
		c("MAIL FROM:<a@x>\r\n"), s("250 ok\r\n"),
		c("RCPT TO:<b@x>\r\n"), s("250 ok\r\n"),
		c(fmt.Sprintf("BDAT %d\r\n%s", half, body[:half])), s("250 2.0.0 chunk\r\n"),
		c(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body)-half, body[half:half+100])),
		c(body[half+100:]),
		s("250 2.0.0 Ok: queued as BDAT1\r\n"),
		c("QUIT\r\n"), s("221 bye\r\n"),
	}}
	recs, _, err := decode(t, pcapBytes(t, capture(t, sc)))
	if err != nil {
		t.Fatal(err)
	}
	ms := byType(recs, record.TypeMessage)
	if len(ms) != 1 || ms[0].MessageID != "<bdat@x>" || ms[0].Size != int64(len(body)) || ms[0].BodySHA256 != sha(body) || ms[0].QueueID != "BDAT1" || ms[0].Status != "accepted" {
		t.Fatalf("%+v", ms)
	}
}

// TestAuthAndStartTLS: the AUTH user name is recorded, the secret never;
// after STARTTLS the session is marked encrypted and nothing is decoded.
func TestAuthAndStartTLS(t *testing.T) {
	const user, pass = "canary-user", "pw-CANARY-7f3a9d"
	plainIR := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	login := []step{
		s("220 mx ESMTP\r\n"), c("EHLO c\r\n"), s("250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
		c("AUTH LOGIN\r\n"), s("334 VXNlcm5hbWU6\r\n"),
		c(base64.StdEncoding.EncodeToString([]byte(user)) + "\r\n"), s("334 UGFzc3dvcmQ6\r\n"),
		c(base64.StdEncoding.EncodeToString([]byte(pass)) + "\r\n"), s("235 2.7.0 Authentication successful\r\n"),
		c("MAIL FROM:<a@x>\r\n"), s("250 ok\r\n"), c("RCPT TO:<b@x>\r\n"), s("250 ok\r\n"),
		c("DATA\r\n"), s("354 go\r\n"), c("Subject: s\r\n\r\nx\r\n.\r\n"), s("250 ok\r\n"),
		c("QUIT\r\n"), s("221 bye\r\n"),
	}
	plainSess := []step{
		s("220 mx ESMTP\r\n"), c("EHLO c\r\n"), s("250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
		c("AUTH PLAIN " + plainIR + "\r\n"), s("535 5.7.8 Error: authentication failed\r\n"),
		c("QUIT\r\n"), s("221 bye\r\n"),
	}
	tlsSess := []step{
		s("220 mx ESMTP\r\n"), c("EHLO c\r\n"), s("250-mx\r\n250 STARTTLS\r\n"),
		c("STARTTLS\r\n"), s("220 2.0.0 Ready to start TLS\r\n"),
		c("\x16\x03\x01\x00\x05hello"), s("\x16\x03\x03\x00\x05world"),
		c("\x17\x03\x03\x00\x10EHLO encrypted\r\n"),
	}
	recs, st, err := decode(t, pcapBytes(t, capture(t, script{steps: login}, script{steps: plainSess}, script{steps: tlsSess})))
	if err != nil {
		t.Fatal(err)
	}
	ss := byType(recs, record.TypeSession)
	if len(ss) != 3 {
		t.Fatalf("%d sessions", len(ss))
	}
	if a := ss[0].Auth; a == nil || a.Mechanism != "LOGIN" || a.Username != user || a.Result != "success" || ss[0].Username != user {
		t.Errorf("LOGIN: %+v %q", ss[0].Auth, ss[0].Username)
	}
	if m := byType(recs, record.TypeMessage); len(m) != 1 || m[0].Username != user {
		t.Errorf("message username: %+v", m)
	}
	if a := ss[1].Auth; a == nil || a.Mechanism != "PLAIN" || a.Username != user || a.Result != "failure" || ss[1].Username != "" {
		t.Errorf("PLAIN: %+v %q", ss[1].Auth, ss[1].Username)
	}
	tl := ss[2]
	if tl.TLS == nil || !tl.TLS.Used || !slices.Contains(tl.Flags, pcapsmtp.FlagContentEncrypted) || tl.Messages != 0 {
		t.Errorf("STARTTLS session: tls %+v flags %v", tl.TLS, tl.Flags)
	}
	for _, l := range tl.Transcript {
		if strings.Contains(l.Line, "hello") || strings.Contains(l.Line, "encrypted") || strings.ContainsRune(l.Line, 0x16) {
			t.Errorf("encrypted bytes in the transcript: %q", l.Line)
		}
	}
	if st.Encrypted != 1 {
		t.Errorf("stats %+v", st)
	}
	var out bytes.Buffer
	w := record.NewWriter(&out, record.FormatJSON)
	tw := record.NewWriter(&out, record.FormatText)
	for i := range recs {
		w.Write(&recs[i])
		tw.Write(&recs[i])
	}
	testenv.AssertNoSecret(t, pass, out.Bytes())
}

// TestNotSMTP: HTTP, FTP (which also greets with 220) and a server that
// closes at once are not SMTP; they are counted, not recorded.
func TestNotSMTP(t *testing.T) {
	recs, st, err := decode(t, pcapBytes(t, capture(t,
		script{server: netip.MustParseAddrPort("198.51.100.80:80"), steps: []step{c("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), s("HTTP/1.1 200 OK\r\n\r\n")}},
		script{server: netip.MustParseAddrPort("198.51.100.21:21"), steps: []step{s("220 ProFTPD Server ready\r\n"), c("USER anonymous\r\n"), s("331 ok\r\n")}},
		plain(),
	)))
	if err != nil {
		t.Fatal(err)
	}
	if len(byType(recs, record.TypeSession)) != 1 || st.OtherTCP != 2 || st.Sessions != 1 {
		t.Fatalf("stats %+v, %d records", st, len(recs))
	}
}

// TestAnyPortAndIPv6: SMTP is found by content on any port, over IPv6.
func TestAnyPortAndIPv6(t *testing.T) {
	sc := plain()
	sc.client = netip.MustParseAddrPort("[2001:db8::10]:51000")
	sc.server = netip.MustParseAddrPort("[2001:db8::25]:10025")
	recs, _, err := decode(t, pcapBytes(t, capture(t, sc)))
	if err != nil {
		t.Fatal(err)
	}
	ms := byType(recs, record.TypeMessage)
	if len(ms) != 1 || ms[0].ClientIP != "2001:db8::10" || ms[0].ServerIP != "2001:db8::25" || ms[0].ServerPort != 10025 || ms[0].QueueID != "4QxYz1AbCd" {
		t.Fatalf("%+v", ms)
	}
}

// TestCutMidData: a connection reset in the middle of DATA gives an
// aborted message with what arrived.
func TestCutMidData(t *testing.T) {
	sc := plain()
	sc.steps = append(sc.steps[:11:11], c("Message-ID: <cut@x>\r\nSubject: cut\r\n\r\npartial"))
	sc.end = "rst"
	recs, _, err := decode(t, pcapBytes(t, capture(t, sc)))
	if err != nil {
		t.Fatal(err)
	}
	ms := byType(recs, record.TypeMessage)
	if len(ms) != 1 || ms[0].Status != record.StatusAborted || ms[0].MessageID != "<cut@x>" || ms[0].Size == 0 {
		t.Fatalf("%+v", ms)
	}
	ss := byType(recs, record.TypeSession)[0]
	if ss.CloseReason != record.CloseClientLost {
		t.Errorf("close reason %q", ss.CloseReason)
	}
}

// TestCaptureEndsOpen: a connection still open at the end of the capture
// is flushed, flagged incomplete.
func TestCaptureEndsOpen(t *testing.T) {
	sc := plain()
	sc.steps = sc.steps[:7]
	sc.end = "open"
	recs, st, err := decode(t, pcapBytes(t, capture(t, sc)))
	if err != nil {
		t.Fatal(err)
	}
	ss := byType(recs, record.TypeSession)
	if len(ss) != 1 || !slices.Contains(ss[0].Flags, pcapsmtp.FlagIncomplete) || !slices.Contains(ss[0].Anomalies, pcapsmtp.AnomalyCaptureEnded) || st.Incomplete != 1 {
		t.Fatalf("%+v %+v", ss, st)
	}
	if ms := byType(recs, record.TypeMessage); len(ms) != 1 || ms[0].Status != record.StatusAborted {
		t.Fatalf("%+v", ms)
	}
}

// bigSession has a message of several segments, so one can be lost.
func bigSession() script {
	body := "Message-ID: <big@x>\r\nSubject: big\r\n\r\n" + strings.Repeat("line of the message body\r\n", 400)
	sc := plain()
	sc.steps[11] = c(body + ".\r\n")
	return sc
}

func isData(p pcaptest.Packet) bool { return len(pcaptest.Payload(p)) > 0 }

// TestReorderedAndDuplicated: segments swapped and repeated decode to the
// same records as the original capture.
func TestReorderedAndDuplicated(t *testing.T) {
	pkts := capture(t, bigSession(), plain())
	want, _, err := decode(t, pcapBytes(t, pkts))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		mixed := slices.Clone(pkts)
		for i := 0; i < 30; i++ {
			j := 3 + rng.IntN(len(mixed)-4)
			switch rng.IntN(3) {
			case 0:
				if isData(mixed[j]) && isData(mixed[j+1]) {
					mixed[j], mixed[j+1] = mixed[j+1], mixed[j]
				}
			case 1:
				mixed = slices.Insert(mixed, j, mixed[j])
			case 2:
				if isData(mixed[j]) && j+3 < len(mixed) {
					mixed = slices.Insert(mixed, j+3, mixed[j]) // a late retransmission
				}
			}
		}
		got, _, err := decode(t, pcapBytes(t, mixed))
		if err != nil {
			t.Fatal(err)
		}
		if g, w := summary(got), summary(want); g != w {
			t.Fatalf("round %d:\n got %s\nwant %s", round, g, w)
		}
	}
}

// summary is what must not change between captures of one conversation.
func summary(recs []record.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %v %q %s %d %s %q %v|", r.Type, r.Status, r.RcptTo, r.MessageID, r.QueueID, r.Size, r.BodySHA256, r.CloseReason, r.Flags)
	}
	return b.String()
}

// TestGap: a lost segment inside DATA makes that message incomplete; the
// other session is whole.
func TestGap(t *testing.T) {
	pkts := capture(t, bigSession(), plain())
	var drop int
	var seen int
	for i, p := range pkts {
		if pl := pcaptest.Payload(p); len(pl) == pcaptest.MSS {
			seen++
			if seen == 2 {
				drop = i
			}
		}
	}
	if drop == 0 {
		t.Fatal("no full segment to drop")
	}
	recs, st, err := decode(t, pcapBytes(t, slices.Delete(slices.Clone(pkts), drop, drop+1)))
	if err != nil {
		t.Fatal(err)
	}
	ms := byType(recs, record.TypeMessage)
	if len(ms) != 2 {
		t.Fatalf("%d messages", len(ms))
	}
	// The whole session ends first: the other waits for its lost segment
	// until the end of the capture.
	big, other := ms[1], ms[0]
	if big.MessageID != "<big@x>" || !slices.Contains(big.Flags, pcapsmtp.FlagIncomplete) || !slices.Contains(big.Anomalies, pcapsmtp.AnomalyGap) || big.BodySHA256 != "" || big.Status != "accepted" {
		t.Errorf("big: %q flags %v anomalies %v sha %q status %q", big.MessageID, big.Flags, big.Anomalies, big.BodySHA256, big.Status)
	}
	if len(other.Flags) != 0 || other.QueueID != "4QxYz1AbCd" || other.MessageID != "<one@example.org>" {
		t.Errorf("other: %+v", other)
	}
	if st.Incomplete != 1 {
		t.Errorf("stats %+v", st)
	}
	// Dropping any one data packet never crashes and keeps the other session.
	for i, p := range pkts {
		if !isData(p) {
			continue
		}
		recs, _, err := decode(t, pcapBytes(t, slices.Delete(slices.Clone(pkts), i, i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if ss := byType(recs, record.TypeSession); len(ss) != 2 {
			t.Fatalf("dropping packet %d: %d sessions", i, len(ss))
		}
	}
}

// TestTruncatedAndGarbage: a capture cut inside a packet is an error after
// the records decoded so far; a file that is no capture is an error.
func TestTruncatedAndGarbage(t *testing.T) {
	file := pcapBytes(t, capture(t, plain(), bigSession()))
	recs, _, err := decode(t, file[:len(file)-700])
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err %v", err)
	}
	if ms := byType(recs, record.TypeMessage); len(ms) < 1 || ms[0].QueueID != "4QxYz1AbCd" {
		t.Fatalf("records before the cut: %+v", ms)
	}
	for _, junk := range [][]byte{nil, []byte("x"), []byte("From: not a capture\r\n\r\nhello"), bytes.Repeat([]byte{0xff}, 100)} {
		if _, _, err := decode(t, junk); err == nil {
			t.Errorf("%q: no error", junk)
		}
	}
}

// TestIdleFlush: a connection silent for longer than IdleTimeout (capture
// time) is flushed while the capture goes on.
func TestIdleFlush(t *testing.T) {
	open := plain()
	open.steps = open.steps[:3]
	open.end = "open"
	pkts := capture(t, open)
	other := plain()
	other.client = netip.MustParseAddrPort("192.0.2.11:41000")
	later := capture(t, other)
	for i := range later {
		later[i].CI.Timestamp = later[i].CI.Timestamp.Add(time.Hour)
	}
	var order []record.Type
	var flags [][]string
	d := pcapsmtp.NewDecoder(pcapsmtp.Options{IdleTimeout: time.Minute, Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
		order = append(order, r.Type)
		flags = append(flags, r.Flags)
		return nil
	})})
	if err := d.ReadFrom(context.Background(), bytes.NewReader(pcapBytes(t, append(pkts, later...)))); err != nil {
		t.Fatal(err)
	}
	// The silent connection is flushed when capture time has moved on,
	// before the later session's records.
	if len(order) != 3 || order[0] != record.TypeSession || !slices.Contains(flags[0], pcapsmtp.FlagIncomplete) {
		t.Fatalf("before Close: %v %v", order, flags)
	}
	d.Close()
	if len(order) != 3 {
		t.Fatalf("after Close: %v", order)
	}
}
