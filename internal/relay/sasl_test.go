package relay_test

import (
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/testenv"
)

// saslPostfix starts a Postfix that authenticates canaryUser with Cyrus
// SASL against its own sasldb, so AUTH is tested end to end against a
// real MTA's SASL, not a stand-in.
func saslPostfix(t *testing.T, relayHost string) *testenv.Postfix {
	t.Helper()
	o := testenv.PostfixOptions{RelayHost: relayHost, Hostname: "postfix.test"}
	testenv.PostfixSASL(t, &o, "postfix.test", canaryUser, canaryPass, true)
	return testenv.StartPostfix(t, o)
}

// TestAuthThroughToPostfixSASL: AUTH PLAIN and LOGIN from swaks, over
// STARTTLS on both legs, to Postfix's SASL; the seed article's record comes
// out with every one of its keys, and the canary password nowhere.
func TestAuthThroughToPostfixSASL(t *testing.T) {
	sink := testenv.StartSink(t)
	pf := saslPostfix(t, sink.Addr())
	p := startProxy(t, relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSRequired, RootCAs: pf.CA().CertPool(), ServerName: "127.0.0.1"}, nil)
	host, port, _ := net.SplitHostPort(p.addr)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out := swaks(t, "-s", host, "-p", port, "--tls", "--auth", mech, "--auth-user", canaryUser, "--auth-password", canaryPass,
			"-f", "app@shop.example", "-t", "a@dest.example,b@dest.example", "--header", "Message-Id: <sasl-"+mech+"@shop.example>")
		if !strings.Contains(out, "235 2.7.0") || !strings.Contains(out, "queued as") {
			t.Fatalf("swaks AUTH %s:\n%s", mech, out)
		}
	}
	bad := swaks(t, "-s", host, "-p", port, "--tls", "--auth", "PLAIN", "--auth-user", canaryUser, "--auth-password", "wrong-"+canaryPass, "-t", "a@dest.example")
	if !strings.Contains(bad, "535") {
		t.Fatalf("wrong password not refused:\n%s", bad)
	}
	ms := p.waitMessages(t, 2)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		m := findByMsgID(ms, "<sasl-"+mech+"@shop.example>")
		if m == nil {
			t.Fatalf("no record for %s", mech)
		}
		qid := pf.QueueIDFor(t, "<sasl-"+mech+"@shop.example>", 20*time.Second)
		if m.QueueID != qid || m.Username != canaryUser {
			t.Errorf("%s: queue %q (Postfix %q) user %q", mech, m.QueueID, qid, m.Username)
		}
		pf.WaitLog(t, regexp.MustCompile(qid+`: client=.*sasl_method=`+mech+`, sasl_username=`+canaryUser), 10*time.Second)
	}
	// The seed article's keys, read back from the file.
	raw, _ := os.ReadFile(p.logPath)
	var line string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, `"message_id":"<sasl-PLAIN@shop.example>"`) {
			line = l
		}
	}
	for _, key := range []string{`"timestamp":"`, `"client_ip":"127.0.0.1"`, `"username":"canary-user"`, `"message_id":"<sasl-PLAIN@shop.example>"`,
		`"mail_from":"app@shop.example"`, `"rcpt_to":["a@dest.example","b@dest.example"]`, `"status":"accepted"`, `"smtp_response":"250 2.0.0 Ok: queued as `,
		`"queue_id":"`, `"size":`, `"tls":{"used":true,"version":"TLS 1.3","cipher":"TLS_`} {
		if !strings.Contains(line, key) {
			t.Errorf("record lacks %s:\n%s", key, line)
		}
	}
	ss := p.waitSessions(t, 3)
	var failures int
	for _, s := range ss {
		if s.Auth != nil && s.Auth.Result == "failure" {
			failures++
		}
	}
	if failures != 1 {
		t.Errorf("%d failed AUTH sessions recorded, want 1", failures)
	}
	testenv.AssertNoSecret(t, canaryPass, raw, p.opLog.Bytes())
}
