package pcapsmtp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp/pcaptest"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

const (
	canaryUser = "canary-user"
	canaryPass = "pw-CANARY-7f3a9d"
)

// saslPostfix starts a Postfix that authenticates canaryUser with Cyrus
// SASL against its own sasldb and, for this capture, also without TLS
// (smtpd_tls_auth_only = no), so that AUTH is in the capture.
func saslPostfix(t *testing.T) *testenv.Postfix {
	t.Helper()
	o := testenv.PostfixOptions{Hostname: "postfix.test", RejectRecipients: []string{"refused@"}}
	testenv.PostfixSASL(t, &o, "postfix.test", canaryUser, canaryPass, false)
	return testenv.StartPostfix(t, o)
}

func swaks(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.NeedBinary(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out)
}

// TestPostfixCapture captures swaks and a raw client talking to a real
// Postfix through a recording forwarder, decodes the capture and checks
// the records against what Postfix logged.
func TestPostfixCapture(t *testing.T) {
	pf := saslPostfix(t)
	var file bytes.Buffer
	w, err := pcaptest.NewWriter(&file)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := pcaptest.NewForwarder(w, pf.Addr())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(fw.Addr())
	base := []string{"-s", host, "-p", port, "--helo", "app.example", "-f", "app@shop.example"}
	run := func(name string, extra ...string) string {
		out := swaks(t, append(append(slices.Clone(base), "--header", "Message-Id: <"+name+"@shop.example>", "--header", "Subject: pcap "+name), extra...)...)
		if !strings.Contains(out, "queued as") {
			t.Fatalf("swaks %s:\n%s", name, out)
		}
		return out
	}
	run("plain", "-t", "a@dest.example,refused@dest.example")
	run("auth", "-t", "a@dest.example", "--auth", "PLAIN", "--auth-user", canaryUser, "--auth-password", canaryPass)
	run("login", "-t", "b@dest.example", "--auth", "LOGIN", "--auth-user", canaryUser, "--auth-password", canaryPass)
	run("pipelined", "-t", "a@dest.example,b@dest.example", "--pipeline")
	run("tls", "-t", "a@dest.example", "--tls", "--tls-sni", "mx.dest.example")
	// BDAT (RFC 3030), which swaks does not speak.
	rc := testenv.DialSMTP(t, fw.Addr())
	rc.Cmd("EHLO raw.example", 250)
	rc.Cmd("MAIL FROM:<raw@shop.example>", 250)
	rc.Cmd("RCPT TO:<c@dest.example>", 250)
	body := "Message-Id: <bdat@shop.example>\r\nSubject: chunks\r\n\r\n" + strings.Repeat("chunked content\r\n", 200)
	rc.Send(fmt.Sprintf("BDAT %d\r\n%s", 100, body[:100]))
	rc.Expect(250)
	rc.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body)-100, body[100:]))
	bdatReply := rc.Expect(250)
	rc.Cmd("QUIT", 221)
	rc.NC.Close()
	// A client that gives up in the middle of DATA.
	cut := testenv.DialSMTP(t, fw.Addr())
	cut.Cmd("EHLO cut.example", 250)
	cut.Cmd("MAIL FROM:<cut@shop.example>", 250)
	cut.Cmd("RCPT TO:<a@dest.example>", 250)
	cut.Cmd("DATA", 354)
	cut.Send("Message-Id: <cut@shop.example>\r\n\r\nhalf a mess")
	time.Sleep(100 * time.Millisecond)
	cut.NC.Close()

	// Close waits until every forwarded connection has ended.
	fw.Close()
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}

	recs, st, err := decode(t, file.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string]record.Record{}
	for _, r := range byType(recs, record.TypeMessage) {
		msgs[r.MessageID] = r
	}
	sessions := byType(recs, record.TypeSession)
	if st.Sessions != 7 || len(sessions) != 7 {
		t.Fatalf("stats %+v; %d session records", st, len(sessions))
	}
	for _, name := range []string{"plain", "auth", "login", "pipelined", "bdat"} {
		id := "<" + name + "@shop.example>"
		m, ok := msgs[id]
		if !ok {
			t.Errorf("no record for %s", id)
			continue
		}
		qid := pf.QueueIDFor(t, id, 20*time.Second)
		if m.QueueID != qid || m.Status != record.StatusAccepted || m.ReplyCode != 250 || m.EnhancedCode != "2.0.0" || m.Size == 0 || m.BodySHA256 == "" || len(m.Flags) != 0 {
			t.Errorf("%s: queue %q (Postfix logged %q) status %q reply %d %q size %d sha %q flags %v", name, m.QueueID, qid, m.Status, m.ReplyCode, m.EnhancedCode, m.Size, m.BodySHA256, m.Flags)
		}
		if m.ClientIP != "127.0.0.1" || m.ServerIP != "127.0.0.1" || strconv.Itoa(m.ServerPort) != strconv.Itoa(pf.Port()) || m.TLS == nil || m.TLS.Used {
			t.Errorf("%s: %s:%d → %s:%d tls %+v", name, m.ClientIP, m.ClientPort, m.ServerIP, m.ServerPort, m.TLS)
		}
	}
	if m := msgs["<plain@shop.example>"]; m.MailFrom == nil || *m.MailFrom != "app@shop.example" || !slices.Equal(m.RcptTo, []string{"a@dest.example"}) ||
		len(m.RejectedRcpt) != 1 || m.RejectedRcpt[0].Address != "refused@dest.example" || !strings.HasPrefix(m.RejectedRcpt[0].SMTPResponse, "550 5.1.1") ||
		m.Subject != "pcap plain" || m.Helo != "app.example" || len(m.Received) != 0 {
		t.Errorf("plain: %+v", m)
	}
	for _, name := range []string{"auth", "login"} {
		if m := msgs["<"+name+"@shop.example>"]; m.Username != canaryUser {
			t.Errorf("%s: username %q", name, m.Username)
		}
	}
	if m := msgs["<pipelined@shop.example>"]; !slices.Equal(m.RcptTo, []string{"a@dest.example", "b@dest.example"}) {
		t.Errorf("pipelined: %v", m.RcptTo)
	}
	if m := msgs["<bdat@shop.example>"]; m.Size != int64(len(body)) || m.SMTPResponse != bdatReply.Full() {
		t.Errorf("bdat: size %d (want %d), reply %q (client saw %q)", m.Size, len(body), m.SMTPResponse, bdatReply.Full())
	}
	if m, ok := msgs["<cut@shop.example>"]; !ok || m.Status != record.StatusAborted || m.Size == 0 {
		t.Errorf("cut: %+v", m)
	}
	if _, ok := msgs["<tls@shop.example>"]; ok {
		t.Errorf("a message record from inside TLS")
	}
	established := regexp.MustCompile(`TLS connection established from [^:]*: (TLSv[0-9.]+) with cipher (\S+)`)
	var tlsSessions, authed int
	for _, s := range sessions {
		if s.TLS != nil && s.TLS.Used {
			tlsSessions++
			if !slices.Contains(s.Flags, "content_encrypted") || s.Messages != 0 || s.Helo != "app.example" {
				t.Errorf("STARTTLS session: flags %v messages %d helo %q", s.Flags, s.Messages, s.Helo)
			}
			// What Postfix negotiated, in its words: "TLS connection
			// established from ...: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384".
			m := established.FindStringSubmatch(pf.WaitLog(t, established, 20*time.Second)[0])
			version := strings.Replace(m[1], "TLSv", "TLS ", 1)
			t.Logf("STARTTLS session: tls %+v; Postfix logged %q", s.TLS, m[0])
			// OpenSSL names TLS 1.3 suites as the IANA registry does, and
			// older ones its own way.
			if s.TLS.Version != version || s.TLS.Cipher == "" || (version == "TLS 1.3" && s.TLS.Cipher != m[2]) ||
				s.TLS.SNI != "mx.dest.example" || !slices.Contains(s.TLS.OfferedVersions, version) || s.TLS.Error != "" {
				t.Errorf("STARTTLS session: tls %+v; Postfix logged %q", s.TLS, m[0])
			}
		} else if s.Messages < 1 || (s.CloseReason != record.CloseQuit && s.CloseReason != record.CloseClientLost) {
			t.Errorf("session %s: %d messages, close %q flags %v anomalies %v", s.Helo, s.Messages, s.CloseReason, s.Flags, s.Anomalies)
		}
		if s.Auth != nil {
			authed++
			if s.Auth.Username != canaryUser || s.Auth.Result != "success" {
				t.Errorf("auth %+v", s.Auth)
			}
		}
	}
	if tlsSessions != 1 || authed != 2 {
		t.Errorf("%d TLS sessions, %d authenticated", tlsSessions, authed)
	}
	// Neither the JSON nor the text output holds the password in any form.
	var out bytes.Buffer
	jw, tw := record.NewWriter(&out, record.FormatJSON), record.NewWriter(&out, record.FormatText)
	for i := range recs {
		jw.Write(&recs[i])
		tw.Write(&recs[i])
	}
	testenv.AssertNoSecret(t, canaryPass, out.Bytes())
	if !bytes.Contains(file.Bytes(), []byte("AUTH PLAIN")) {
		t.Error("the capture lacks the AUTH exchange it was meant to hold")
	}
}
