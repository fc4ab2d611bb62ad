package api_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/capture/api"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

// releaseMsg is a message as an application sends it: CRLF line ends,
// every header a relaying MTA would otherwise add, and a line that starts
// with a dot (stuffed on the wire at each hop).
func releaseMsg(subject string) string {
	return "From: App <app@dev.example>\r\nTo: User <u@example.com>\r\nSubject: " + subject + "\r\n" +
		"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@dev.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"Release me.\r\n.a line that starts with a dot\r\n..and one with two\r\n\r\n-- \r\nApp\r\n"
}

// captureMsg sends a message to the capture server as the application
// would, and returns its record ID and the bytes sent.
func (e *env) captureMsg(t *testing.T, subject string) (id, msg string) {
	t.Helper()
	msg = releaseMsg(subject)
	if _, _, err := testenv.SendMail(e.smtp, nil, "app@dev.example", []string{"u@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	return e.assertRaw(t, subject, []byte(msg)), msg
}

// release posts a release request and decodes the answer.
func (e *env) release(t *testing.T, id string, req map[string]any) (int, api.ReleaseResult, string) {
	t.Helper()
	resp, b := e.do(t, "POST", "/api/messages/"+id+"/release", req)
	var res api.ReleaseResult
	if resp.StatusCode == 200 || resp.StatusCode == 502 {
		_ = json.Unmarshal(b, &res)
	}
	return resp.StatusCode, res, string(b)
}

// releaseSession waits for the stored relay session record of a release
// and returns it with its transcript.
func (e *env) releaseSession(t *testing.T, sessionID string) record.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var res struct {
			Record   *record.Record  `json:"record"`
			Messages []record.Record `json:"messages"`
		}
		resp, b := e.do(t, "GET", "/api/sessions/"+url.PathEscape(sessionID), nil)
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			if res.Record != nil {
				return *res.Record
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session record %s stored: %d %s", sessionID, resp.StatusCode, clip(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReleased asserts what a user sees of a successful release: the
// answer, the relay message record stored with the peer's final reply,
// and the relay session record with the peer's side of the dialogue.
func (e *env) checkReleased(t *testing.T, code int, res api.ReleaseResult, body, peer string, to []string) *record.Record {
	t.Helper()
	if code != 200 || res.Status != "sent" || res.Record == nil {
		t.Fatalf("release: %d %s", code, body)
	}
	r := res.Record
	if r.Type != record.TypeMessage || r.Source != record.SourceProxy || r.Upstream != peer || r.ReplyCode != 250 ||
		r.MailFrom == nil || *r.MailFrom != "app@dev.example" || !slices.Equal(r.RcptTo, to) {
		t.Errorf("release record: type %s source %s upstream %s reply %d %q from %v to %q", r.Type, r.Source, r.Upstream, r.ReplyCode, r.SMTPResponse, r.MailFrom, r.RcptTo)
	}
	// The message record is in the store, as any relay record.
	var found struct {
		Records []record.Record `json:"records"`
	}
	e.getJSON(t, "/api/search?q="+url.QueryEscape("type:message source:proxy session:"+r.SessionID), &found)
	if len(found.Records) != 1 || found.Records[0].SMTPResponse != r.SMTPResponse || found.Records[0].Status != record.StatusAccepted {
		t.Errorf("stored release message records %+v, want one with %q", found.Records, r.SMTPResponse)
	}
	s := e.releaseSession(t, r.SessionID)
	if s.Source != record.SourceProxy || s.Upstream != peer || s.Messages != 1 || s.CloseReason != record.CloseQuit {
		t.Errorf("release session: source %s upstream %s messages %d close %s", s.Source, s.Upstream, s.Messages, s.CloseReason)
	}
	var upstream []string
	for _, l := range s.Transcript {
		if l.Leg == "upstream" {
			upstream = append(upstream, l.Dir+": "+l.Line)
		}
	}
	if !slices.Contains(upstream, "S: "+r.SMTPResponse) {
		t.Errorf("the session transcript lacks the peer's reply %q on the upstream leg:\n%s", r.SMTPResponse, strings.Join(upstream, "\n"))
	}
	return r
}

// TestReleaseToSink releases a captured message to Postfix's smtp-sink,
// over plain SMTP to other recipients than the captured ones, and reads
// what the sink received.
func TestReleaseToSink(t *testing.T) {
	sink := testenv.StartSink(t, "-d", "%H%M%S.", "-h", "sink.test")
	e := start(t, api.Options{}, nil)
	id, msg := e.captureMsg(t, "release to sink")

	to := []string{"ops@release.test", "qa@release.test"}
	code, res, body := e.release(t, id, map[string]any{"host": "127.0.0.1", "port": sink.Port(), "tls": "none", "to": to})
	r := e.checkReleased(t, code, res, body, sink.Addr(), to)
	if r.UpstreamTLS == nil || r.UpstreamTLS.Used {
		t.Errorf("upstream TLS %+v, want none", r.UpstreamTLS)
	}
	if !strings.HasPrefix(r.SMTPResponse, "250 2.0.0 Ok") {
		t.Errorf("sink reply %q", r.SMTPResponse)
	}

	d, err := testenv.ReadSinkDump(sink.WaitDumps(t, 1, 30*time.Second)[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.MailFrom != "app@dev.example" || !slices.Equal(d.RcptTo, to) {
		t.Errorf("the sink got envelope %q → %q", d.MailFrom, d.RcptTo)
	}
	if want := strings.ReplaceAll(msg, "\r\n", "\n"); string(d.Message) != want {
		t.Errorf("the sink got\n%q\nwant the captured bytes\n%q", d.Message, want)
	}

	// The default is STARTTLS, required: smtp-sink offers none, so
	// nothing is sent.
	code, _, body = e.release(t, id, map[string]any{"host": "127.0.0.1", "port": sink.Port()})
	if code != 502 {
		t.Errorf("release with STARTTLS to a server without it: %d %s, want 502", code, body)
	}
	// Implicit TLS to a plain SMTP server: the handshake fails.
	code, _, body = e.release(t, id, map[string]any{"host": "127.0.0.1", "port": sink.Port(), "tls": "implicit"})
	if code != 502 {
		t.Errorf("release with implicit TLS to a plain server: %d %s, want 502", code, body)
	}
	if n := len(sink.DumpFiles(t)); n != 1 {
		t.Errorf("the sink has %d messages, want only the first release", n)
	}
}

func TestReleaseRequestErrors(t *testing.T) {
	e := start(t, api.Options{}, nil)
	sendGo(t, e.smtp, "bad release", "")
	id := e.recordIDOf(t, "bad release")
	for _, req := range []map[string]any{
		{"host": "127.0.0.1", "tls": "tls"},
		{"host": "127.0.0.1", "tls": "ssl"},
		{"host": ""},
		{"host": "127.0.0.1", "port": 70000},
		{"host": "127.0.0.1", "to": []string{"<x@y.test>"}},
		{"host": "127.0.0.1", "password": "p"},
		{"host": "127.0.0.1", "insecure": true},
	} {
		if code, _, body := e.release(t, id, req); code != 400 {
			t.Errorf("%v: %d %s, want 400", req, code, body)
		}
	}
}

// TestReleaseToPostfix releases captured messages to a real Postfix, with
// STARTTLS on its SMTP port and with implicit TLS on a wrapper-mode
// port, its certificate checked against the release CA. Postfix relays
// each message on to smtp-sink, which shows what Postfix received; the
// Postfix log shows the queue ID and envelope of each release.
func TestReleaseToPostfix(t *testing.T) {
	sink := testenv.StartSink(t, "-d", "%H%M%S.", "-h", "sink.test")
	smtps := testenv.FreeAddr(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr(), MasterCF: []string{testenv.SMTPSService(smtps)}})
	testenv.WaitTLS(t, smtps, pf.CA())
	_, p, _ := net.SplitHostPort(smtps)
	port, _ := strconv.Atoi(p)
	e := start(t, api.Options{ReleaseRootCAs: pf.CA().CertPool()}, nil)
	delivered := 0

	// released checks Postfix's side of a release: its log has the
	// client, the Message-ID, the envelope and the delivery under the
	// queue ID the relay recorded, and the message smtp-sink got from
	// Postfix is the captured one under Postfix's Received header.
	released := func(t *testing.T, r *record.Record, msg, syslogName string, to []string) {
		t.Helper()
		qid := r.QueueID
		if qid == "" || r.SMTPResponse != "250 2.0.0 Ok: queued as "+qid {
			t.Fatalf("release record queue ID %q, reply %q", qid, r.SMTPResponse)
		}
		q := regexp.QuoteMeta(qid)
		pf.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(syslogName)+`/smtpd\[\d+\]: `+q+`: client=[^\[ ]*\[127\.0\.0\.1\]`), 30*time.Second)
		mid := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(strings.SplitN(msg, "Message-ID: ", 2)[1], "\r\n", 2)[0], "<"), ">")
		if got := pf.QueueIDFor(t, mid, 30*time.Second); got != qid {
			t.Errorf("Postfix logged Message-ID %s under %s, the release record says %s", mid, got, qid)
		}
		pf.WaitLog(t, regexp.MustCompile(q+`: from=<app@dev\.example>, size=\d+, nrcpt=`+strconv.Itoa(len(to))+` `), 30*time.Second)
		sent := pf.WaitLogN(t, regexp.MustCompile(q+`: to=<[^>]+>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent`), len(to), 30*time.Second)
		for _, rcpt := range to {
			if !slices.ContainsFunc(sent, func(l string) bool { return strings.Contains(l, "to=<"+rcpt+">") }) {
				t.Errorf("no delivery to %s in\n%s", rcpt, strings.Join(sent, "\n"))
			}
		}
		delivered++
		files := sink.WaitDumps(t, delivered, 30*time.Second)
		var d testenv.SinkDump
		for _, f := range files {
			x, err := testenv.ReadSinkDump(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(x.Message), " id "+qid) {
				d = x
			}
		}
		if d.Message == nil {
			t.Fatalf("smtp-sink got no message from Postfix's %s", qid)
		}
		if d.MailFrom != "app@dev.example" || !slices.Equal(d.RcptTo, to) {
			t.Errorf("envelope after Postfix %q → %q", d.MailFrom, d.RcptTo)
		}
		want := strings.ReplaceAll(msg, "\r\n", "\n")
		head, ok := strings.CutSuffix(string(d.Message), want)
		if !ok {
			t.Fatalf("Postfix passed on\n%q\nwhich does not end with the captured bytes\n%q", d.Message, want)
		}
		// Postfix added its Received header, and nothing else.
		if !strings.HasPrefix(head, "Received: from smtplog-release (") ||
			strings.Count(head, "\nReceived:") != 0 || !regexp.MustCompile(`\n\tby postfix\.test \(Postfix\) with (ESMTPS|UTF8SMTPS) id `+q+`\b`).MatchString(head) ||
			strings.Count(head, "\n") != strings.Count(head, "\n\t")+1 {
			t.Errorf("Postfix's header before the captured message:\n%s", head)
		}
	}

	t.Run("starttls", func(t *testing.T) {
		id, msg := e.captureMsg(t, "release starttls")
		code, res, body := e.release(t, id, map[string]any{"host": "127.0.0.1", "port": pf.Port()})
		r := e.checkReleased(t, code, res, body, pf.Addr(), []string{"u@example.com"})
		if r.UpstreamTLS == nil || !r.UpstreamTLS.Used || r.UpstreamTLS.Trust != "verified" {
			t.Errorf("upstream TLS %+v, want used and verified", r.UpstreamTLS)
		}
		released(t, r, msg, "postfix", []string{"u@example.com"})
	})

	t.Run("implicit", func(t *testing.T) {
		id, msg := e.captureMsg(t, "release implicit")
		to := []string{"ops@release.test", "qa@release.test"}
		code, res, body := e.release(t, id, map[string]any{"host": "127.0.0.1", "port": port, "tls": "implicit", "to": to})
		r := e.checkReleased(t, code, res, body, smtps, to)
		if r.UpstreamTLS == nil || !r.UpstreamTLS.Used || r.UpstreamTLS.Trust != "verified" || r.UpstreamTLS.Version == "" {
			t.Errorf("upstream TLS %+v, want used and verified", r.UpstreamTLS)
		}
		s := e.releaseSession(t, r.SessionID)
		if len(s.Transcript) == 0 || !strings.HasPrefix(firstUpstream(s.Transcript), "C: [TLS ") {
			t.Errorf("the upstream leg does not start with the TLS handshake: %q", firstUpstream(s.Transcript))
		}
		for _, l := range s.Transcript {
			if l.Leg == "upstream" && strings.Contains(l.Line, "STARTTLS") {
				t.Errorf("STARTTLS on an implicit-TLS leg: %q", l.Line)
			}
		}
		released(t, r, msg, "postfix/smtps", to)
		pf.WaitLog(t, regexp.MustCompile(`postfix/smtps/smtpd\[\d+\]: .*TLS connection established from localhost\[127\.0\.0\.1\]`), 30*time.Second)
	})

	t.Run("implicit-untrusted", func(t *testing.T) {
		// A server that knows no release CA: the certificate does not
		// verify, nothing is sent unless the user skips verification.
		other := start(t, api.Options{ReleaseRootCAs: testenv.NewCA(t).CertPool()}, nil)
		id, msg := other.captureMsg(t, "release untrusted")
		code, _, body := other.release(t, id, map[string]any{"host": "127.0.0.1", "port": port, "tls": "implicit"})
		if code != 502 || !strings.Contains(body, "release failed: upstream TLS failed: certificate not trusted") {
			t.Errorf("release to an untrusted certificate: %d %s, want 502", code, body)
		}
		var sessions struct {
			Records []record.Record `json:"records"`
		}
		other.getJSON(t, "/api/search?q="+url.QueryEscape("type:session source:proxy"), &sessions)
		if len(sessions.Records) != 1 || !strings.Contains(sessions.Records[0].Reason+strings.Join(sessions.Records[0].Errors, " "), "certificate") {
			t.Errorf("the failed release's session record %+v should say why", sessions.Records)
		}

		code, res, body := other.release(t, id, map[string]any{"host": "127.0.0.1", "port": port, "tls": "implicit", "skip_verify": true})
		r := other.checkReleased(t, code, res, body, smtps, []string{"u@example.com"})
		if r.UpstreamTLS == nil || !r.UpstreamTLS.Used || r.UpstreamTLS.Trust != "untrusted" {
			t.Errorf("upstream TLS %+v, want used and untrusted", r.UpstreamTLS)
		}
		released(t, r, msg, "postfix/smtps", []string{"u@example.com"})
		// Postfix's implicit-TLS port took two messages: the one of the
		// implicit subtest and this one, not the refused release.
		if n := len(pf.WaitLog(t, regexp.MustCompile(`postfix/smtps/smtpd\[\d+\]: \w+: client=`), time.Second)); n != 2 {
			t.Errorf("%d transactions on Postfix's implicit-TLS port, want 2", n)
		}
	})
}

func firstUpstream(lines []record.TranscriptLine) string {
	for _, l := range lines {
		if l.Leg == "upstream" {
			return fmt.Sprintf("%s: %s", l.Dir, l.Line)
		}
	}
	return ""
}
