package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/capture/api"
	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/testenv"
	"github.com/smtplog/smtplog/internal/web"
)

type env struct {
	smtp string // host:port
	http string // base URL
	st   *store.Store
	api  *api.API
	ca   *testenv.CA
}

func start(t *testing.T, opts api.Options, ch *chaos.Chaos) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "smtplog.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(st, ch, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	_, _, cert := ca.Leaf(t, "localhost", "127.0.0.1")
	srv := smtpd.New(smtpd.Config{Hostname: "capture.test", Source: record.SourceCapture, Handler: st,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, AllowInsecureAuth: true, DataPolicy: smtpd.DataAccept,
		Limits: smtpd.Limits{MaxMessageBytes: 40 << 20}},
		capture.New(capture.Config{Keep: a.Keep, Chaos: ch}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	h, err := web.New(web.Config{Store: st, Routes: a.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		h.Close()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		a.Close()
		st.Close(ctx)
	})
	return &env{smtp: l.Addr().String(), http: hs.URL, st: st, api: a, ca: ca}
}

func (e *env) do(t *testing.T, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.http+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, b := e.do(t, "GET", path, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, clip(b))
	}
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// recordIDOf waits for the capture record of the message whose subject is
// given and returns its record ID.
func (e *env) recordIDOf(t *testing.T, subject string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var res struct {
			Records []struct {
				ID      string `json:"id"`
				Subject string `json:"subject"`
			} `json:"records"`
		}
		e.getJSON(t, "/api/search?q=source:capture", &res)
		for _, r := range res.Records {
			if r.Subject == subject {
				return r.ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no record with subject %q", subject)
	return ""
}

func (e *env) assertRaw(t *testing.T, subject string, want []byte) string {
	t.Helper()
	id := e.recordIDOf(t, subject)
	resp, got := e.do(t, "GET", "/api/messages/"+id+"/raw", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "message/rfc822" {
		t.Fatalf("raw: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: raw bytes differ: got %d bytes, want %d\n%q\n%q", subject, len(got), len(want), clip(got), clip(want))
	}
	return id
}

const secret = "pw-CANARY-9c2e11"

func multipart(subject string) string {
	return "From: App <app@dev.example>\r\nTo: User <u@example.com>\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "") + "@dev.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n" +
		"--OUT\r\nContent-Type: multipart/related; boundary=\"REL\"\r\n\r\n" +
		"--REL\r\nContent-Type: multipart/alternative; boundary=\"ALT\"\r\n\r\n" +
		"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello   plain\r\nworld\r\n" +
		"--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p onclick=\"alert(1)\">Hello</p><img src=\"cid:logo@x\" alt=\"logo\"><img src=\"https://tracker.example/p.gif\"><script>alert(2)</script></body></html>\r\n" +
		"--ALT--\r\n" +
		"--REL\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n" +
		"--REL--\r\n" +
		"--OUT\r\nContent-Type: text/html; name=\"evil.html\"\r\nContent-Disposition: attachment; filename=\"evil.html\"\r\n\r\n<script>alert(3)</script>\r\n" +
		"--OUT--\r\n"
}

// TestGoClient sends with Go's net/smtp: plain, AUTH, STARTTLS,
// multipart with an inline image and an attachment, SMTPUTF8 and 25 MiB;
// every message comes back byte for byte.
func TestGoClient(t *testing.T) {
	e := start(t, api.Options{}, nil)
	send := func(subject, body string, auth bool, starttls bool, utf8From string) {
		t.Helper()
		c, err := smtp.Dial(e.smtp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if starttls {
			if err := c.StartTLS(e.ca.ClientConfig("localhost")); err != nil {
				t.Fatal(err)
			}
		}
		if auth {
			if err := c.Auth(smtp.PlainAuth("", "dev-user", secret, "127.0.0.1")); err != nil {
				t.Fatal(err)
			}
		}
		from := "app@dev.example"
		if utf8From != "" {
			from = utf8From
		}
		if err := c.Mail(from); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("u@example.com"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		c.Quit()
	}
	plain := "Subject: go plain\r\n\r\nhello\r\n.leading dot\r\n"
	send("go plain", plain, false, false, "")
	e.assertRaw(t, "go plain", []byte(plain))

	authed := "Subject: go auth tls\r\n\r\nhello\r\n"
	send("go auth tls", authed, true, true, "")
	e.assertRaw(t, "go auth tls", []byte(authed))

	mp := multipart("go multipart")
	send("go multipart", mp, false, false, "")
	id := e.assertRaw(t, "go multipart", []byte(mp))
	checkView(t, e, id)

	u := "Subject: go utf8 ✓\r\nFrom: Jürgen <jürgen@bücher.example>\r\n\r\nGrüße\r\n"
	send("go utf8 ✓", u, false, false, "jürgen@bücher.example")
	e.assertRaw(t, "go utf8 ✓", []byte(u))

	var big strings.Builder
	big.WriteString("Subject: go 25MiB\r\n\r\n")
	rnd := rand.New(rand.NewPCG(1, 2))
	line := make([]byte, 76)
	for big.Len() < 25<<20 {
		for i := range line {
			line[i] = byte('!' + rnd.IntN(90))
		}
		big.Write(line)
		big.WriteString("\r\n")
	}
	send("go 25MiB", big.String(), false, false, "")
	e.assertRaw(t, "go 25MiB", []byte(big.String()))

	// Nothing the server answers carries the password.
	var all bytes.Buffer
	for _, p := range []string{"/api/search?q=source:capture", "/api/v1/messages", "/api/v2/messages?limit=3"} {
		_, b := e.do(t, "GET", p, nil)
		all.Write(b)
	}
	testenv.AssertNoSecret(t, secret, all.Bytes())
}

func checkView(t *testing.T, e *env, id string) {
	t.Helper()
	var v struct {
		Message struct {
			Root    map[string]any `json:"root"`
			Headers []any          `json:"headers"`
			Text    string         `json:"text"`
			HTML    string         `json:"html"`
		} `json:"message"`
		HTML *struct {
			URL    string   `json:"url"`
			Remote []string `json:"remote"`
		} `json:"html"`
		Attachments []struct{ PartID, FileName, ContentType string } `json:"attachments"`
		Inline      []struct{ PartID, FileName, ContentType string } `json:"inline"`
		Checks      []map[string]any                                 `json:"checks"`
	}
	e.getJSON(t, "/api/messages/"+id+"/view", &v)
	if v.Message.Root == nil || len(v.Message.Headers) == 0 || !strings.Contains(v.Message.Text, "Hello") || v.Message.HTML != "" {
		t.Errorf("view message: %+v", v.Message)
	}
	if v.HTML == nil || len(v.HTML.Remote) != 1 || len(v.Attachments) != 1 || len(v.Inline) != 1 {
		t.Fatalf("view: %+v", v)
	}
	// The HTML document: sanitised, sandboxed, remote image blocked, the
	// inline image carried as a data: URL (the frame may not fetch parts).
	resp, b := e.do(t, "GET", v.HTML.URL, nil)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.HasPrefix(csp, "sandbox; default-src 'none'; img-src 'self' data:;") ||
		bytes.Contains(b, []byte("<script")) || bytes.Contains(b, []byte("onclick")) || bytes.Contains(b, []byte("tracker.example")) ||
		!bytes.Contains(b, []byte(`<img src="data:image/png;base64,`)) {
		t.Errorf("html: %d %q\n%s", resp.StatusCode, csp, b)
	}
	resp, b = e.do(t, "GET", v.HTML.URL+"?remote=1", nil)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "https:") || !bytes.Contains(b, []byte("tracker.example")) {
		t.Errorf("html remote=1: %q %s", resp.Header.Get("Content-Security-Policy"), b)
	}
	// The inline image inline; the HTML attachment never inline.
	resp, b = e.do(t, "GET", "/api/messages/"+id+"/part/"+v.Inline[0].PartID, nil)
	if resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "inline") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || len(b) != 8 {
		t.Errorf("inline part: %v %d bytes", resp.Header, len(b))
	}
	resp, _ = e.do(t, "GET", "/api/messages/"+id+"/part/"+v.Attachments[0].PartID, nil)
	if !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("html attachment: %v", resp.Header)
	}
	if resp, _ := e.do(t, "GET", "/api/messages/"+id+"/part/9.9", nil); resp.StatusCode != 404 {
		t.Errorf("unknown part: %d", resp.StatusCode)
	}
}

// wireBytes is what an SMTP client that fixes line ends puts between DATA
// and the final dot, un-dot-stuffed: CRLF line ends, a final CRLF.
func wireBytes(msg string) []byte {
	s := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return []byte(s)
}

// TestSwaks: swaks sends plain, AUTH over STARTTLS, multipart and 8-bit
// UTF-8 with SMTPUTF8 (swaks fixes bare LF to CRLF).
func TestSwaks(t *testing.T) {
	bin := testenv.NeedBinary(t, "swaks")
	e := start(t, api.Options{}, nil)
	host, port, _ := net.SplitHostPort(e.smtp)
	dir := t.TempDir()
	cases := []struct {
		subject, msg string
		args         []string
	}{
		{"swaks plain", "Subject: swaks plain\nFrom: a@dev.example\n\nline one\n..dot\n", nil},
		{"swaks auth", "Subject: swaks auth\r\n\r\nauth body\r\n", []string{"--tls", "--tls-verify", "--tls-ca-path", e.ca.CertFile(), "--tls-sni", "localhost",
			"--auth", "PLAIN", "--auth-user", "dev-user", "--auth-password", secret}},
		{"swaks multipart", multipart("swaks multipart"), nil},
	}
	for i, c := range cases {
		f := filepath.Join(dir, strconv.Itoa(i)+".eml")
		os.WriteFile(f, []byte(c.msg), 0o600)
		args := append([]string{"--server", host, "--port", port, "--from", "app@dev.example", "--to", "u@example.com",
			"--helo", "swaks.test", "--data", "@" + f, "--silent", "2"}, c.args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks %s: %v\n%s", c.subject, err, out)
		}
		testenv.AssertNoSecret(t, secret, out)
		// swaks sends the file with CRLF line ends, then its own CRLF
		// before the final dot.
		e.assertRaw(t, c.subject, append(wireBytes(c.msg), "\r\n"...))
	}
}

// TestPythonSmtplib: Python's smtplib sends plain, AUTH after STARTTLS and
// SMTPUTF8; sendmail() turns bare LF into CRLF.
func TestPythonSmtplib(t *testing.T) {
	py := testenv.NeedBinary(t, "python3")
	e := start(t, api.Options{}, nil)
	host, port, _ := net.SplitHostPort(e.smtp)
	script := `
import smtplib, ssl, sys
host, port, ca, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msgs = [
  ("plain", b"Subject: py plain\nFrom: a@dev.example\n\nline\n.dot\n", False, False),
  ("tls", b"Subject: py auth\r\n\r\nauthed\r\n", True, False),
  ("utf8", "Subject: py utf8 \u2713\r\nFrom: J\u00fcrgen <j\u00fcrgen@b\u00fccher.example>\r\n\r\nGr\u00fc\u00dfe\r\n".encode(), False, True),
]
for name, body, tls, utf8 in msgs:
    s = smtplib.SMTP(host, port, timeout=30)
    s.ehlo("py.test")
    if tls:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        s.starttls(context=ctx)
        s.ehlo("py.test")
        s.login("dev-user", pw)
    frm = "j\u00fcrgen@b\u00fccher.example" if utf8 else "app@dev.example"
    s.sendmail(frm, ["u@example.com"], body, mail_options=["SMTPUTF8"] if utf8 else [])
    s.quit()
`
	out, err := exec.Command(py, "-c", script, host, port, e.ca.CertFile(), secret).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	testenv.AssertNoSecret(t, secret, out)
	// sendmail() sends bytes as given (bare LF kept), doubles a dot at a
	// line start (after LF too, where the server does not undo it: only
	// CRLF ends an SMTP line), and adds CRLF before the final dot.
	e.assertRaw(t, "py plain", []byte("Subject: py plain\nFrom: a@dev.example\n\nline\n..dot\n\r\n"))
	e.assertRaw(t, "py auth", []byte("Subject: py auth\r\n\r\nauthed\r\n"))
	e.assertRaw(t, "py utf8 ✓", []byte("Subject: py utf8 ✓\r\nFrom: Jürgen <jürgen@bücher.example>\r\n\r\nGrüße\r\n"))
}

func sendGo(t *testing.T, addr, subject, extra string) {
	t.Helper()
	msg := "From: Sender Name <app@dev.example>\r\nTo: u@example.com\r\nCc: c@example.com\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@dev.example>\r\n" + extra + "\r\nBody of " + subject + "\r\n"
	if _, _, err := testenv.SendMail(addr, nil, "app@dev.example", []string{"u@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
}

// Mailpit's documented shapes, as a client written against its API reads
// them.
type mpAddr struct {
	Name    string
	Address string
}

type mpSummary struct {
	ID          string
	MessageID   string
	Read        bool
	From        *mpAddr
	To          []mpAddr
	Cc          []mpAddr
	Bcc         []mpAddr
	ReplyTo     []mpAddr
	Subject     string
	Created     time.Time
	Tags        []string
	Size        float64
	Attachments int
	Snippet     string
}

type mpList struct {
	Total         int         `json:"total"`
	Unread        int         `json:"unread"`
	Count         int         `json:"count"`
	MessagesCount int         `json:"messages_count"`
	Start         int         `json:"start"`
	Tags          []string    `json:"tags"`
	Messages      []mpSummary `json:"messages"`
}

type mpAttachment struct {
	PartID, FileName, ContentType, ContentID string
	Size                                     float64
}

type mpMessage struct {
	ID, MessageID, Subject, Text, HTML, ReturnPath string
	From                                           *mpAddr
	To, Cc, Bcc, ReplyTo                           []mpAddr
	Date                                           time.Time
	Tags                                           []string
	Size                                           float64
	Inline, Attachments                            []mpAttachment
}

// requireKeys checks that every field a client reads is present (not just
// zero after decoding).
func requireKeys(t *testing.T, raw json.RawMessage, keys ...string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v in %s", err, clip(raw))
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing in %s", k, clip(raw))
		}
	}
}

func TestMailpitAPI(t *testing.T) {
	e := start(t, api.Options{}, nil)
	sendGo(t, e.smtp, "first mail", "")
	sendGo(t, e.smtp, "second mail", "")
	mp := multipart("third mail")
	if _, _, err := testenv.SendMail(e.smtp, nil, "app@dev.example", []string{"u@example.com"}, mp); err != nil {
		t.Fatal(err)
	}
	e.recordIDOf(t, "third mail")

	var rawList struct {
		Messages []json.RawMessage `json:"messages"`
	}
	_, b := e.do(t, "GET", "/api/v1/messages", nil)
	requireKeys(t, b, "total", "unread", "count", "messages_count", "start", "tags", "messages")
	json.Unmarshal(b, &rawList)
	if len(rawList.Messages) != 3 {
		t.Fatalf("messages: %s", clip(b))
	}
	requireKeys(t, rawList.Messages[0], "ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Created", "Tags", "Size", "Attachments", "Snippet")

	var l mpList
	e.getJSON(t, "/api/v1/messages?limit=2", &l)
	if l.Total != 3 || l.Unread != 3 || l.Count != 2 || l.Start != 0 || l.Messages[0].Subject != "third mail" ||
		l.Messages[0].Attachments != 1 || l.Messages[1].From.Address != "app@dev.example" || l.Messages[1].From.Name != "Sender Name" ||
		l.Messages[1].Cc[0].Address != "c@example.com" || l.Messages[1].Snippet != "Body of second mail" || l.Messages[1].Created.IsZero() {
		t.Fatalf("list: %+v", l)
	}
	e.getJSON(t, "/api/v1/messages?start=2&limit=2", &l)
	if l.Count != 1 || l.Start != 2 || l.Messages[0].Subject != "first mail" {
		t.Errorf("page 2: %+v", l)
	}

	var m mpMessage
	_, b = e.do(t, "GET", "/api/v1/message/latest", nil)
	requireKeys(t, b, "ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject", "Date", "Tags", "Text", "HTML", "Size", "Inline", "Attachments")
	json.Unmarshal(b, &m)
	if m.Subject != "third mail" || !strings.Contains(m.Text, "Hello") || !strings.Contains(m.HTML, "cid:logo@x") ||
		len(m.Inline) != 1 || m.Inline[0].ContentID != "logo@x" || len(m.Attachments) != 1 || m.Attachments[0].FileName != "evil.html" {
		t.Fatalf("message: %+v", m)
	}
	var att json.RawMessage
	json.Unmarshal(mustField(t, b, "Attachments"), &[]*json.RawMessage{&att})
	requireKeys(t, att, "PartID", "FileName", "ContentType", "ContentID", "Size")

	// Fetching marked it read.
	e.getJSON(t, "/api/v1/messages", &l)
	if l.Unread != 2 || !l.Messages[0].Read {
		t.Errorf("read after fetch: %+v", l)
	}

	var hdr map[string][]string
	e.getJSON(t, "/api/v1/message/"+m.ID+"/headers", &hdr)
	if hdr["Subject"][0] != "third mail" || hdr["Content-Type"] == nil {
		t.Errorf("headers: %v", hdr)
	}
	resp, raw := e.do(t, "GET", "/api/v1/message/"+m.ID+"/raw", nil)
	if resp.StatusCode != 200 || string(raw) != mp {
		t.Errorf("raw: %d", resp.StatusCode)
	}
	resp, part := e.do(t, "GET", "/api/v1/message/"+m.ID+"/part/"+m.Inline[0].PartID, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || len(part) != 8 {
		t.Errorf("part: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := e.do(t, "GET", "/api/v1/message/NOPE/raw", nil); resp.StatusCode != 404 {
		t.Errorf("unknown ID: %d", resp.StatusCode)
	}

	// Search: Mailpit's syntax.
	for q, want := range map[string]int{
		"subject:mail":            3,
		"subject:\"second mail\"": 1,
		"from:app@dev.example":    3,
		"to:u@example.com":        3,
		"second":                  1,
		"is:read":                 1,
		"is:unread":               2,
		"-subject:first":          2,
	} {
		var s mpList
		e.getJSON(t, "/api/v1/search?query="+urlQ(q), &s)
		if s.MessagesCount != want || len(s.Messages) != want || s.Total != 3 {
			t.Errorf("search %q: %d matched, %d listed, total %d; want %d", q, s.MessagesCount, len(s.Messages), s.Total, want)
		}
	}
	// Tags through our API, then tag: in search and Tags in info.
	first := e.recordIDOf(t, "first mail")
	if resp, b := e.do(t, "PUT", "/api/messages/"+first+"/tags", map[string]any{"tags": []string{"signup"}}); resp.StatusCode != 200 {
		t.Fatalf("tags: %d %s", resp.StatusCode, b)
	}
	var s mpList
	e.getJSON(t, "/api/v1/search?query=tag:signup", &s)
	if len(s.Messages) != 1 || s.Messages[0].Subject != "first mail" || s.Messages[0].Tags[0] != "signup" {
		t.Errorf("tag search: %+v", s)
	}

	_, b = e.do(t, "GET", "/api/v1/info", nil)
	requireKeys(t, b, "Version", "LatestVersion", "Database", "DatabaseSize", "Messages", "Unread", "Tags", "RuntimeStats")
	var info struct {
		Messages, Unread int
		DatabaseSize     float64
		Tags             map[string]int
		RuntimeStats     struct{ Uptime, Memory, SMTPAccepted float64 }
	}
	json.Unmarshal(b, &info)
	if info.Messages != 3 || info.Tags["signup"] != 1 || info.DatabaseSize <= 0 || info.RuntimeStats.SMTPAccepted != 3 {
		t.Errorf("info: %s", b)
	}

	// Delete by IDs, then all.
	if resp, _ := e.do(t, "DELETE", "/api/v1/messages", map[string]any{"IDs": []string{m.ID}}); resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	e.getJSON(t, "/api/v1/messages", &l)
	if l.Total != 2 {
		t.Errorf("after delete: %+v", l)
	}
	if resp, _ := e.do(t, "DELETE", "/api/v1/messages", nil); resp.StatusCode != 200 {
		t.Fatalf("delete all: %d", resp.StatusCode)
	}
	e.getJSON(t, "/api/v1/messages", &l)
	if l.Total != 0 || len(l.Messages) != 0 {
		t.Errorf("after delete all: %+v", l)
	}
	var recs struct{ Records []any }
	e.getJSON(t, "/api/search?q=source:capture", &recs)
	if len(recs.Records) != 0 {
		t.Errorf("records left after delete all: %d", len(recs.Records))
	}
}

func mustField(t *testing.T, b []byte, k string) []byte {
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	return m[k]
}

func urlQ(s string) string {
	return strings.NewReplacer("%", "%25", " ", "%20", "\"", "%22", ":", "%3A", "@", "%40", "+", "%2B", "&", "%26").Replace(s)
}

// MailHog's documented v2 shapes.
type mhPath struct {
	Relays  []string
	Mailbox string
	Domain  string
	Params  string
}

type mhItem struct {
	ID      string
	From    mhPath
	To      []mhPath
	Content struct {
		Headers map[string][]string
		Body    string
		Size    int
		MIME    *struct{ Parts []json.RawMessage }
	}
	Created time.Time
	MIME    *struct{ Parts []json.RawMessage }
	Raw     struct {
		From string
		To   []string
		Data string
		Helo string
	}
}

type mhList struct {
	Total int      `json:"total"`
	Count int      `json:"count"`
	Start int      `json:"start"`
	Items []mhItem `json:"items"`
}

func TestMailHogAPI(t *testing.T) {
	e := start(t, api.Options{}, nil)
	sendGo(t, e.smtp, "hog one", "")
	mp := multipart("hog two")
	if _, _, err := testenv.SendMail(e.smtp, nil, "other@dev.example", []string{"x@example.org"}, mp); err != nil {
		t.Fatal(err)
	}
	e.recordIDOf(t, "hog two")
	_, b := e.do(t, "GET", "/api/v2/messages", nil)
	requireKeys(t, b, "total", "count", "start", "items")
	var raw struct{ Items []json.RawMessage }
	json.Unmarshal(b, &raw)
	requireKeys(t, raw.Items[0], "ID", "From", "To", "Content", "Created", "MIME", "Raw")
	requireKeys(t, mustField(t, raw.Items[0], "Content"), "Headers", "Body", "Size", "MIME")
	requireKeys(t, mustField(t, raw.Items[0], "Raw"), "From", "To", "Data", "Helo")
	requireKeys(t, mustField(t, raw.Items[0], "From"), "Relays", "Mailbox", "Domain", "Params")

	var l mhList
	e.getJSON(t, "/api/v2/messages?limit=10", &l)
	if l.Total != 2 || l.Count != 2 || len(l.Items) != 2 {
		t.Fatalf("list: %+v", l)
	}
	two := l.Items[0]
	if two.Content.Headers["Subject"][0] != "hog two" || two.From.Mailbox != "other" || two.From.Domain != "dev.example" ||
		two.To[0].Mailbox != "x" || two.Raw.Data != mp || two.Raw.From != "other@dev.example" || two.Raw.To[0] != "x@example.org" ||
		two.Raw.Helo == "" || two.MIME == nil || len(two.MIME.Parts) != 2 || !strings.HasPrefix(two.Content.Body, "--OUT") {
		t.Errorf("item: %+v", two)
	}
	for _, c := range []struct {
		kind, q string
		want    int
	}{{"from", "other@dev.example", 1}, {"to", "u@example.com", 1}, {"containing", "hog", 2}, {"containing", "two", 1}} {
		var s mhList
		e.getJSON(t, "/api/v2/search?kind="+c.kind+"&query="+urlQ(c.q), &s)
		if s.Total != c.want || len(s.Items) != c.want {
			t.Errorf("search %s=%s: %d", c.kind, c.q, s.Total)
		}
	}
}

func TestRetentionThroughAPI(t *testing.T) {
	e := start(t, api.Options{Keep: 3}, nil)
	for i := range 6 {
		sendGo(t, e.smtp, fmt.Sprintf("keep %d", i), "")
	}
	e.recordIDOf(t, "keep 5")
	var l mpList
	e.getJSON(t, "/api/v1/messages", &l)
	if l.Total != 3 || l.Messages[0].Subject != "keep 5" || l.Messages[2].Subject != "keep 3" {
		t.Fatalf("kept: %+v", l)
	}
	var recs struct{ Records []struct{ Subject string } }
	e.getJSON(t, "/api/search?q=source:capture", &recs)
	// keep 2's record may have been stored after keep 5's put pruned.
	if len(recs.Records) > 4 {
		t.Errorf("%d records kept", len(recs.Records))
	}
}

func TestOwnEndpoints(t *testing.T) {
	e := start(t, api.Options{}, nil)
	sendGo(t, e.smtp, "own one", "")
	sendGo(t, e.smtp, "own two", "")
	id := e.recordIDOf(t, "own one")
	if resp, b := e.do(t, "PUT", "/api/messages/"+id+"/read", nil); resp.StatusCode != 200 || !strings.Contains(string(b), "true") {
		t.Errorf("read: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "PUT", "/api/messages/"+id+"/read", map[string]any{"read": false}); resp.StatusCode != 200 || !strings.Contains(string(b), "false") {
		t.Errorf("unread: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do(t, "PUT", "/api/messages/"+id+"/tags", map[string]any{"bogus": 1}); resp.StatusCode != 400 {
		t.Errorf("unknown field: %d", resp.StatusCode)
	}
	for _, p := range []string{"/api/messages/abc/raw", "/api/messages/-1/view", "/api/messages/99999/raw"} {
		if resp, _ := e.do(t, "GET", p, nil); resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := e.do(t, "DELETE", "/api/messages/"+id, nil); resp.StatusCode != 200 {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/api/messages/"+id+"/raw", nil); resp.StatusCode != 404 {
		t.Errorf("raw after delete: %d", resp.StatusCode)
	}
	if resp, b := e.do(t, "DELETE", "/api/messages", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"deleted":1`) {
		t.Errorf("delete all: %d %s", resp.StatusCode, b)
	}
}

// TestChaosAPI: rules PUT through the API are what SMTP answers.
func TestChaosAPI(t *testing.T) {
	ch, err := chaos.New(nil, rand.NewPCG(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, api.Options{}, ch)
	resp, b := e.do(t, "PUT", "/api/chaos", map[string]any{"rules": []any{
		"RCPT:*@fail.example=550 5.1.1 No such user",
		map[string]any{"trigger": "MAIL", "pattern": "slow@*", "code": 451, "enhanced": "4.7.1", "text": "Try later"},
	}})
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"code":550`) {
		t.Fatalf("put: %d %s", resp.StatusCode, b)
	}
	c, err := smtp.Dial(e.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	isReply := func(err error, code int, msg string) bool {
		var te *textproto.Error
		return errors.As(err, &te) && te.Code == code && te.Msg == msg
	}
	err = c.Mail("slow@dev.example")
	if !isReply(err, 451, "4.7.1 Try later") {
		t.Errorf("MAIL: %v", err)
	}
	c.Reset()
	if err := c.Mail("app@dev.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@fail.example"); !isReply(err, 550, "5.1.1 No such user") {
		t.Errorf("RCPT: %v", err)
	}
	if err := c.Rcpt("x@ok.example"); err != nil {
		t.Errorf("RCPT ok: %v", err)
	}
	if resp, _ := e.do(t, "PUT", "/api/chaos", map[string]any{"rules": []any{"RCPT=999"}}); resp.StatusCode != 400 {
		t.Errorf("bad rule: %d", resp.StatusCode)
	}
	var got struct{ Rules []map[string]any }
	e.getJSON(t, "/api/chaos", &got)
	if len(got.Rules) != 2 {
		t.Errorf("rules: %+v", got)
	}
}
