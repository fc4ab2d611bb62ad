package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/smtp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/smtpd"
)

// ReleaseRequest is the body of POST /api/messages/{id}/release.
type ReleaseRequest struct {
	Host string `json:"host"`
	Port int    `json:"port"` // default 25, or 465 with implicit TLS
	// TLS is how the connection is secured: starttls (the default: the
	// server must offer STARTTLS), implicit (TLS from the first byte, as on
	// port 465) or none. With starttls and implicit the certificate must
	// verify unless SkipVerify is set.
	TLS      string   `json:"tls"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	From     *string  `json:"from"` // envelope sender; default the captured one
	To       []string `json:"to"`   // default the captured recipients
	// SkipVerify accepts any certificate from the server (a test server's).
	SkipVerify bool `json:"skip_verify"`
}

// ReleaseResult answers a release: the relay's message record (with its
// transcript; the password never appears in it).
type ReleaseResult struct {
	Status string         `json:"status"` // the record's status: sent when the server answered 250
	Record *record.Record `json:"record,omitempty"`
}

const maxReleaseRcpts = 100

// release sends a captured message on to a server of the user's choice.
// It runs the relay backend of `smtplog proxy` on an in-process pipe, so the
// release is one relay session (both legs logged, AUTH redacted) recorded
// through Options.Release like any other.
func (a *API) release(w http.ResponseWriter, r *http.Request) {
	it, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	var req ReleaseRequest
	if !decodeBody(w, r, &req) {
		return
	}
	req.Host = strings.TrimSpace(req.Host)
	var mode string
	port := 25
	switch req.TLS {
	case "none":
		mode = relay.TLSNone
	case "", "starttls":
		mode = relay.TLSRequired
	case "implicit":
		mode, port = relay.TLSImplicit, 465
	default:
		writeError(w, http.StatusBadRequest, "tls must be starttls, implicit or none")
		return
	}
	if req.Port == 0 {
		req.Port = port
	}
	switch {
	case req.Host == "" || len(req.Host) > 253 || strings.ContainsAny(req.Host, " /\r\n"):
		writeError(w, http.StatusBadRequest, "host is required: the SMTP server's name or address")
		return
	case req.Port < 1 || req.Port > 65535:
		writeError(w, http.StatusBadRequest, "port must be 1-65535")
		return
	case req.Password != "" && req.Username == "":
		writeError(w, http.StatusBadRequest, "a password needs a username")
		return
	}
	from := ""
	if it.Record.MailFrom != nil {
		from = *it.Record.MailFrom
	}
	if req.From != nil {
		from = *req.From
	}
	to := req.To
	if len(to) == 0 {
		to = it.Record.RcptTo
	}
	if len(to) == 0 || len(to) > maxReleaseRcpts {
		writeError(w, http.StatusBadRequest, "to: give 1 to 100 recipients")
		return
	}
	for _, a := range append([]string{from}, to...) {
		if strings.ContainsAny(a, "<>\r\n\x00 ") {
			writeError(w, http.StatusBadRequest, "addresses are plain addresses, without angle brackets or spaces")
			return
		}
	}
	_, raw, err := a.cap.Get(r.Context(), qid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cfg := relay.Config{Upstream: net.JoinHostPort(req.Host, strconv.Itoa(req.Port)), TLSMode: mode,
		RootCAs: a.opts.ReleaseRootCAs, SkipVerify: req.SkipVerify, DialTimeout: 15 * time.Second,
		CommandTimeout: time.Minute, DataTimeout: 5 * time.Minute}
	if err := cfg.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, clip(err.Error(), 200))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	rec, reason, sendErr := a.sendVia(ctx, cfg, req.Username, req.Password, from, to, raw)
	res := ReleaseResult{Record: rec}
	if rec != nil {
		res.Status = string(rec.Status)
	}
	switch {
	case rec == nil && sendErr != nil:
		// The relay session's reason (e.g. "upstream TLS failed:
		// certificate not trusted: …") says more than the relay's reply.
		why := sendErr.Error()
		if reason != "" {
			why = reason
		}
		writeError(w, http.StatusBadGateway, "release failed: "+clip(redact(why, req.Password), 300))
	case sendErr != nil || res.Status != string(record.StatusAccepted):
		writeJSON(w, http.StatusBadGateway, res)
	default:
		res.Status = "sent"
		writeJSON(w, http.StatusOK, res)
	}
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}

// sendVia runs one relay session over an in-process pipe and sends the
// message through it with net/smtp. It returns the session's message
// record and the reason its session record gives for a failure.
func (a *API) sendVia(ctx context.Context, cfg relay.Config, user, pass, from string, to []string, raw []byte) (*record.Record, string, error) {
	var mu sync.Mutex
	var msg *record.Record
	var reason string
	handler := record.HandlerFunc(func(ctx context.Context, r *record.Record) error {
		mu.Lock()
		switch r.Type {
		case record.TypeMessage:
			c := *r
			msg = &c
		case record.TypeSession:
			reason = r.Reason
		}
		mu.Unlock()
		return a.opts.Release.Handle(ctx, r)
	})
	srv := smtpd.New(smtpd.Config{Hostname: "smtplog-release", Source: record.SourceProxy, Handler: handler,
		AllowInsecureAuth: true, DataPolicy: smtpd.DataNormalize, Upstream: cfg.Upstream, Logger: a.log,
		Limits: smtpd.Limits{MaxMessageBytes: max(int64(len(raw))+1<<20, 64<<20)}}, relay.New(cfg))
	client, server := net.Pipe()
	l := &oneConn{c: server, done: make(chan struct{})}
	served := make(chan struct{})
	go func() { // owned here: ends when the listener closes (Shutdown below)
		defer close(served)
		_ = srv.Serve(l)
	}()
	defer func() {
		client.Close()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()
	if d, ok := ctx.Deadline(); ok {
		_ = client.SetDeadline(d)
	}
	err := smtpSend(client, user, pass, from, to, raw)
	client.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // waits for the session record
	mu.Lock()
	defer mu.Unlock()
	return msg, reason, err
}

func smtpSend(conn net.Conn, user, pass, from string, to []string, raw []byte) error {
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("smtplog-release"); err != nil {
		return err
	}
	if user != "" {
		if err := c.Auth(smtp.PlainAuth("", user, pass, "localhost")); err != nil {
			return errors.New("authentication failed: " + err.Error())
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, t := range to {
		if err := c.Rcpt(t); err != nil {
			return err
		}
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(raw); err != nil {
		return err
	}
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// oneConn is a listener that yields one connection, then blocks until
// closed.
type oneConn struct {
	mu     sync.Mutex
	c      net.Conn
	done   chan struct{}
	closed bool
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

func (l *oneConn) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "release" }
