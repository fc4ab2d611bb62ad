package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/mailhdr"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpwire"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

// Replies the engine gives itself. Texts are fixed: no client bytes are
// ever echoed.
var (
	replyBadLine      = smtpwire.NewReply(500, "5.5.2", "Error: bare <CR> or <LF>, NUL or control character in command")
	replyLineTooLong  = smtpwire.NewReply(500, "5.5.2", "Error: line too long")
	replyUnknown      = smtpwire.NewReply(500, "5.5.2", "Error: command not recognized")
	replyNonSMTP      = smtpwire.NewReply(521, "5.5.1", "Error: non-SMTP command")
	replyHeloFirst    = smtpwire.NewReply(503, "5.5.1", "Error: send HELO/EHLO first")
	replyNestedMail   = smtpwire.NewReply(503, "5.5.1", "Error: nested MAIL command")
	replyNeedMail     = smtpwire.NewReply(503, "5.5.1", "Error: need MAIL command")
	replyNeedRcpt     = smtpwire.NewReply(554, "5.5.1", "Error: no valid recipients")
	replySyncError    = smtpwire.NewReply(554, "5.5.0", "Error: SMTP protocol synchronization")
	replyTimeout      = smtpwire.NewReply(421, "4.4.2", "Error: timeout exceeded")
	replyTooManyErrs  = smtpwire.NewReply(421, "4.7.0", "Error: too many errors")
	replyShutdown     = smtpwire.NewReply(421, "4.3.2", "Service shutting down, try again later")
	replyInternal     = smtpwire.NewReply(421, "4.3.0", "Internal error, try again later")
	replyTooLarge     = smtpwire.NewReply(552, "5.3.4", "Error: message too large")
	replyBareContent  = smtpwire.NewReply(554, "5.6.0", "Error: message refused: bare <CR> or <LF>, or NUL, in content (RFC 5321 section 2.3.8)")
	replyRecordFailed = smtpwire.NewReply(451, "4.3.0", "Error: could not record the message, try again later")
	replyBye          = smtpwire.NewReply(221, "2.0.0", "Bye")
	replyOK           = smtpwire.NewReply(250, "2.0.0", "Ok")
)

func syntax(usage string) smtpwire.Reply {
	return smtpwire.NewReply(501, "5.5.4", "Syntax: "+usage)
}

type conn struct {
	s           *Server
	nc          net.Conn
	br          *bufio.Reader
	bw          *bufio.Writer
	client      netip.AddrPort
	server      netip.AddrPort
	clientIP    string // client.Addr() and server.Addr() as text, made once
	serverIP    string // for the message and session records alike
	implicitTLS bool

	ctx    context.Context
	cancel context.CancelFunc

	info       *Conn
	sess       Session
	transcript *smtpwire.Transcript
	start      time.Time
	tlsState   *tls.ConnectionState
	tlsError   string

	helo       string
	ehlo       bool
	caps       Caps // what was advertised after the last EHLO
	authMech   string
	authUser   string
	authResult string
	authed     bool

	tx          *transaction
	bufs        *connBufs     // br, bw and dataBuf, from the server's free list
	dataBuf     *bytes.Buffer // reused for each message's content
	messages    int
	errCount    int
	errs        []string
	anomalies   []string
	closeReason string
	reason      string

	idle     atomic.Bool
	stateMu  sync.Mutex
	closed   bool
	sessDone bool
}

type transaction struct {
	start       time.Time
	from        smtpwire.Path
	rcpts       []smtpwire.Path
	rejected    []record.Rejection
	phases      map[string]float64
	bdat        *bytes.Buffer
	bdatScan    smtpwire.ChunkScanner
	bdatSize    int64
	bdatTooBig  bool
	rcptElapsed time.Duration
}

func newConnState(s *Server, nc net.Conn, implicitTLS bool) *conn {
	now := s.cfg.Now()
	c := &conn{
		s:           s,
		nc:          nc,
		implicitTLS: implicitTLS,
		client:      addrPort(nc.RemoteAddr()),
		server:      addrPort(nc.LocalAddr()),
		start:       now,
	}
	c.clientIP, c.serverIP = c.client.Addr().String(), c.server.Addr().String()
	c.transcript = smtpwire.NewTranscript(now, s.cfg.Limits.MaxTranscriptLines)
	c.transcript.TapMax = 1000
	c.info = &Conn{
		SessionID:  record.NewID(now),
		Client:     c.client,
		Server:     c.server,
		Transcript: c.transcript,
		Host:       s.cfg.Hostname,
	}
	c.bufs = s.getBufs(nc)
	c.br, c.bw, c.dataBuf = c.bufs.br, c.bufs.bw, c.bufs.data
	return c
}

// release hands the connection's buffers back to the server, once its
// goroutine is done with them; a second call does nothing.
func (c *conn) release() {
	if c.bufs == nil {
		return
	}
	c.bufs.data = c.dataBuf
	c.s.putBufs(c.bufs)
	c.bufs, c.br, c.bw, c.dataBuf = nil, nil, nil, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (c *conn) now() time.Time { return c.s.cfg.Now() }

// refuse answers a connection over a limit and records it.
func (c *conn) refuse(why string) {
	defer c.nc.Close()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.reply(smtpwire.NewReply(421, "4.7.0", "Error: "+why))
	c.flush()
	c.closeReason = record.CloseError
	c.reason = why
	c.emitSession()
}

// interruptIfIdle makes a session that waits for a command return at once
// (Shutdown); sessions in the middle of a transfer are left to finish.
func (c *conn) interruptIfIdle() {
	if c.idle.Load() {
		c.nc.SetReadDeadline(time.Now())
	}
}

func (c *conn) serve() {
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	defer func() {
		if v := recover(); v != nil {
			c.s.log.Error("panic in SMTP session", "session", c.info.SessionID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.reply(replyInternal)
			c.flush()
			c.closeReason = record.CloseError
			c.reason = "internal error"
			c.errs = append(c.errs, "internal error (panic recovered)")
			c.endTx("internal error")
			c.closeSession()
		}
		c.nc.Close()
		// The client is gone: it no longer counts against the connection
		// limits while its session record waits for its commit, or a
		// client that opens a connection per message would be refused
		// for connections it has already closed.
		c.s.forget(c)
		// Its buffers serve the next connection while the record waits.
		c.release()
		c.emitSession()
	}()

	if c.implicitTLS {
		if !c.handshake() {
			return
		}
	}
	sess, err := c.s.backend.Open(c.ctx, c.info)
	if err != nil {
		rep := smtpwire.NewReply(421, "4.3.0", "Service not available, try again later")
		var re *ReplyError
		if errors.As(err, &re) {
			rep = re.Reply
		}
		c.reply(rep)
		c.flush()
		c.closeReason = record.CloseError
		if re != nil && re.Reason != "" {
			c.reason = re.Reason
		} else {
			c.reason = err.Error()
		}
		if strings.Contains(c.reason, "upstream") {
			c.closeReason = record.CloseUpstreamLost
		}
		return
	}
	c.sess = sess
	c.reply(smtpwire.NewReply(220, "", c.s.cfg.Hostname+" ESMTP smtplog"))
	for c.step() {
	}
	// Whatever the last step answered goes out before the connection closes.
	c.flush()
	c.closeSession()
}

func (c *conn) closeSession() {
	if c.sess != nil && !c.sessDone {
		c.sessDone = true
		reason := c.closeReason
		if reason == "" {
			reason = record.CloseClientLost
		}
		c.sess.Close(context.WithoutCancel(c.ctx), reason)
	}
}

func (c *conn) handshake() bool {
	deadline := time.Now().Add(c.s.cfg.Limits.TLSHandshake)
	tc := tls.Server(c.nc, c.s.cfg.TLS)
	tc.SetDeadline(deadline)
	err := tc.HandshakeContext(c.ctx)
	tc.SetDeadline(time.Time{})
	if err != nil {
		c.tlsError = "handshake failed"
		c.closeReason = record.CloseError
		c.reason = "TLS handshake failed: " + tlsErrorText(err)
		c.errs = append(c.errs, c.reason)
		return false
	}
	st := tc.ConnectionState()
	c.tlsState = &st
	c.nc = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return true
}

// tlsErrorText keeps TLS error texts short and free of peer bytes.
func tlsErrorText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) {
		return "connection closed"
	}
	s := err.Error()
	if i := strings.LastIndex(s, "tls: "); i >= 0 {
		s = s[i:]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return record.Escape(s)
}

// end answers rep and ends the session with closeReason, and reason when
// given; an open transaction is recorded as ended with txWhy. The caller's
// step returns its result (false); serve flushes before closing.
func (c *conn) end(rep smtpwire.Reply, closeReason, reason, txWhy string) bool {
	c.reply(rep)
	c.closeReason = closeReason
	if reason != "" {
		c.reason = reason
	}
	c.endTx(txWhy)
	return false
}

// flush sends buffered replies; a client that does not read them within
// the command timeout is cut off instead of blocking the session forever.
func (c *conn) flush() error {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.Limits.CommandTimeout))
	return c.bw.Flush()
}

func (c *conn) reply(r smtpwire.Reply) {
	w := r.Wire()
	c.transcript.AddWire(c.now(), "", w)
	c.bw.Write(w)
}

func (c *conn) anomaly(a string) {
	for _, x := range c.anomalies {
		if x == a {
			return
		}
	}
	c.anomalies = append(c.anomalies, a)
}

func (c *conn) fail(r smtpwire.Reply, why string) bool {
	c.reply(r)
	c.errCount++
	if why != "" && len(c.errs) < 50 {
		c.errs = append(c.errs, why)
	}
	if c.errCount >= c.s.cfg.Limits.HardErrorLimit {
		return c.end(replyTooManyErrs, record.CloseError, "too many errors", "too many errors")
	}
	return true
}

// step reads and handles one command; false ends the session.
func (c *conn) step() bool {
	if c.s.closing.Load() {
		return c.end(replyShutdown, record.CloseShutdown, "", "server shutting down")
	}
	if c.br.Buffered() == 0 {
		if err := c.flush(); err != nil {
			c.lost(err)
			return false
		}
	}
	lim := c.s.cfg.Limits
	deadline := time.Now().Add(lim.CommandTimeout)
	if end := c.start.Add(lim.SessionTimeout); end.Before(deadline) {
		deadline = end
	}
	c.nc.SetReadDeadline(deadline)
	c.idle.Store(true)
	if c.s.closing.Load() {
		c.nc.SetReadDeadline(time.Now())
	}
	line, err := smtpwire.ReadLine(c.br, lim.MaxLineLength)
	c.idle.Store(false)
	if err != nil {
		switch {
		case errors.Is(err, smtpwire.ErrLineTooLong):
			c.anomaly("line_too_long")
			c.transcript.Add(c.now(), "C", "", "[line too long]")
			return c.end(replyLineTooLong, record.CloseError, "line too long", "line too long")
		case errors.Is(err, smtpwire.ErrBareLF), errors.Is(err, smtpwire.ErrBareCR):
			c.anomaly("bare_cr_lf_in_command")
			c.transcript.Add(c.now(), "C", "", "[command with bare CR or LF]")
			return c.fail(replyBadLine, "bare CR or LF in command")
		}
		if isTimeout(err) {
			if c.s.closing.Load() {
				return c.end(replyShutdown, record.CloseShutdown, "", "server shutting down")
			}
			return c.end(replyTimeout, record.CloseTimeout, "timeout waiting for a command", "timeout")
		}
		c.lost(err)
		return false
	}
	cmd, err := smtpwire.ParseCommand(line)
	if err != nil {
		if errors.Is(err, smtpwire.ErrSyntax) {
			c.transcript.Add(c.now(), "C", "", record.Escape(string(line)))
			return c.fail(replyUnknown, "command not recognized")
		}
		c.anomaly("control_character_in_command")
		c.transcript.Add(c.now(), "C", "", "[command with "+err.Error()+"]")
		return c.fail(replyBadLine, err.Error()+" in command")
	}
	if cmd.Verb == "AUTH" {
		c.transcript.Add(c.now(), "C", "", smtpwire.RedactAuth(cmd.Arg))
	} else {
		c.transcript.Add(c.now(), "C", "", string(line))
	}
	return c.dispatch(cmd)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func (c *conn) lost(err error) {
	if c.closeReason == "" {
		c.closeReason = record.CloseClientLost
		if !errors.Is(err, io.EOF) {
			c.reason = "connection error"
		}
	}
	c.endTx("client connection lost")
}

// pipelined reports input the client sent before it could have seen the
// reply to a command that must end a pipelined group (RFC 2920 §3.1), or
// any pipelining when PIPELINING was not offered.
func (c *conn) pipelined() bool {
	return c.br.Buffered() > 0
}

func (c *conn) syncError() bool {
	c.anomaly("unauthorised_pipelining")
	c.transcript.Add(c.now(), "C", "", fmt.Sprintf("[%d bytes pipelined before the reply]", c.br.Buffered()))
	return c.end(replySyncError, record.CloseError, "SMTP protocol synchronization error", "protocol synchronization error")
}

func (c *conn) dispatch(cmd smtpwire.Command) bool {
	ctx := c.ctx
	// Without PIPELINING, every command must wait for its reply.
	if !c.caps.Pipelining && cmd.Verb != "QUIT" && cmd.Verb != "STARTTLS" && cmd.Verb != "BDAT" && c.pipelined() {
		return c.syncError()
	}
	switch cmd.Verb {
	case "EHLO", "HELO":
		if c.pipelined() {
			return c.syncError()
		}
		return c.hello(cmd)
	case "STARTTLS":
		return c.startTLS(cmd)
	case "AUTH":
		return c.auth(cmd)
	case "MAIL":
		return c.mail(cmd)
	case "RCPT":
		return c.rcpt(cmd)
	case "DATA":
		if c.pipelined() {
			return c.syncError()
		}
		return c.data(cmd)
	case "BDAT":
		return c.bdat(cmd)
	case "RSET":
		if cmd.Arg != "" {
			return c.fail(syntax("RSET"), "RSET with argument")
		}
		c.endTx("reset")
		c.reply(c.sess.Reset(ctx))
		return true
	case "NOOP":
		if c.pipelined() {
			return c.syncError()
		}
		c.reply(c.sess.Noop(ctx))
		return true
	case "QUIT":
		return c.end(replyBye, record.CloseQuit, "", "client quit during the transaction")
	case "VRFY":
		c.reply(smtpwire.NewReply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"))
		return true
	case "EXPN":
		c.reply(smtpwire.NewReply(502, "5.5.1", "Error: command not implemented"))
		return true
	case "HELP":
		c.reply(smtpwire.NewReply(214, "2.0.0", "See RFC 5321"))
		return true
	case "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "USER":
		c.anomaly("non_smtp_command")
		return c.end(replyNonSMTP, record.CloseError, "non-SMTP command", "non-SMTP command")
	}
	return c.fail(replyUnknown, "command not recognized")
}

func (c *conn) hello(cmd smtpwire.Command) bool {
	name := strings.TrimSpace(cmd.Arg)
	if name == "" || strings.ContainsAny(name, " \t") {
		return c.fail(syntax(cmd.Verb+" hostname"), "bad "+cmd.Verb)
	}
	c.endTx("new EHLO")
	extended := cmd.Verb == "EHLO"
	rep, caps := c.sess.Hello(c.ctx, name, extended)
	if rep.Code != 250 {
		if rep.Code == 421 {
			c.reply(rep)
			c.flush()
			c.closeReason = record.CloseError
			if c.reason == "" {
				c.reason = rep.String()
			}
			return false
		}
		return c.fail(rep, "")
	}
	c.helo = name
	c.ehlo = extended
	c.authed = false
	if !extended {
		c.caps = Caps{}
		c.reply(smtpwire.NewReply(250, "", c.s.cfg.Hostname))
		return true
	}
	lim := c.s.cfg.Limits.MaxMessageBytes
	if caps.Size > 0 && caps.Size < lim {
		lim = caps.Size
	}
	caps.Size = lim
	if c.tlsState == nil && !c.s.cfg.AllowInsecureAuth {
		// Mechanisms are not offered in the clear (RFC 4954 §4 lets a
		// server hide them); the AUTH command is then answered 538.
		caps.AuthMechs = nil
	}
	if _, ok := c.sess.(AuthSession); !ok {
		caps.AuthMechs = nil
	}
	c.caps = caps
	lines := []string{c.s.cfg.Hostname}
	if caps.Pipelining {
		lines = append(lines, "PIPELINING")
	}
	lines = append(lines, "SIZE "+strconv.FormatInt(lim, 10))
	if c.s.cfg.TLS != nil && c.tlsState == nil {
		lines = append(lines, "STARTTLS")
	}
	if len(caps.AuthMechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(caps.AuthMechs, " "))
	}
	if caps.Enhanced {
		lines = append(lines, "ENHANCEDSTATUSCODES")
	}
	if caps.EightBitMIME {
		lines = append(lines, "8BITMIME")
	}
	if caps.DSN {
		lines = append(lines, "DSN")
	}
	if caps.SMTPUTF8 {
		lines = append(lines, "SMTPUTF8")
	}
	if caps.Chunking {
		lines = append(lines, "CHUNKING")
	}
	c.reply(smtpwire.Reply{Code: 250, Lines: lines})
	return true
}

func (c *conn) startTLS(cmd smtpwire.Command) bool {
	switch {
	case c.s.cfg.TLS == nil:
		return c.fail(smtpwire.NewReply(454, "4.7.0", "TLS not available"), "STARTTLS without TLS configured")
	case c.tlsState != nil:
		return c.fail(smtpwire.NewReply(503, "5.5.1", "Error: TLS already active"), "second STARTTLS")
	case cmd.Arg != "":
		return c.fail(syntax("STARTTLS"), "STARTTLS with argument")
	case !c.ehlo:
		return c.fail(replyHeloFirst, "STARTTLS before EHLO")
	}
	if n := c.br.Buffered(); n > 0 {
		// CVE-2011-0411: commands injected after STARTTLS in the clear must
		// never be executed under TLS. Discard them.
		c.anomaly("pipelined_after_starttls")
		c.transcript.Add(c.now(), "C", "", fmt.Sprintf("[%d bytes after STARTTLS discarded]", n))
		c.br.Discard(n)
	}
	c.reply(smtpwire.NewReply(220, "2.0.0", "Ready to start TLS"))
	if err := c.flush(); err != nil {
		c.lost(err)
		return false
	}
	if !c.handshake() {
		return false
	}
	c.transcript.Add(c.now(), "C", "", "[TLS "+tls.VersionName(c.tlsState.Version)+" "+tls.CipherSuiteName(c.tlsState.CipherSuite)+"]")
	// RFC 3207 §4.2: forget everything learnt before TLS.
	c.endTx("STARTTLS")
	c.helo, c.ehlo, c.caps = "", false, Caps{}
	c.authed, c.authMech, c.authUser, c.authResult = false, "", "", ""
	return true
}

func (c *conn) auth(cmd smtpwire.Command) bool {
	as, ok := c.sess.(AuthSession)
	switch {
	case !c.ehlo:
		return c.fail(replyHeloFirst, "AUTH before EHLO")
	case c.authed:
		return c.fail(smtpwire.NewReply(503, "5.5.1", "Error: already authenticated"), "second AUTH")
	case c.tx != nil:
		return c.fail(smtpwire.NewReply(503, "5.5.1", "Error: MAIL transaction in progress"), "AUTH during transaction")
	case !ok:
		return c.fail(smtpwire.NewReply(502, "5.5.1", "Error: authentication not enabled"), "AUTH not enabled")
	case c.tlsState == nil && !c.s.cfg.AllowInsecureAuth:
		c.authResult = "failure"
		c.authMech = strings.ToUpper(strings.Fields(cmd.Arg + " x")[0])
		return c.fail(smtpwire.NewReply(538, "5.7.11", "Encryption required for requested authentication mechanism"), "AUTH without TLS")
	}
	mech, initial, _ := strings.Cut(cmd.Arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range c.caps.AuthMechs {
		if m == mech {
			offered = true
		}
	}
	if !offered {
		return c.fail(smtpwire.NewReply(504, "5.5.4", "Unrecognized authentication type"), "AUTH mechanism not offered")
	}
	c.authMech = mech
	user := smtpwire.AuthUser(mech, initial, 0)
	rep := as.AuthStep(c.ctx, mech, "AUTH "+cmd.Arg, true)
	for round := 1; rep.Code == 334 && round <= 10; round++ {
		c.reply(rep)
		if err := c.flush(); err != nil {
			c.lost(err)
			return false
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.Limits.CommandTimeout))
		line, err := smtpwire.ReadLine(c.br, 12288)
		if err != nil {
			if errors.Is(err, smtpwire.ErrLineTooLong) || errors.Is(err, smtpwire.ErrBareLF) || errors.Is(err, smtpwire.ErrBareCR) {
				c.transcript.Add(c.now(), "C", "", "[redacted]")
				c.authResult = "aborted"
				as.AuthStep(c.ctx, mech, "*", false)
				return c.fail(smtpwire.NewReply(501, "5.5.2", "Error: malformed authentication response"), "malformed AUTH response")
			}
			if isTimeout(err) {
				return c.end(replyTimeout, record.CloseTimeout, "", "")
			}
			c.lost(err)
			return false
		}
		c.transcript.Add(c.now(), "C", "", "[redacted]")
		resp := string(line)
		if u := smtpwire.AuthUser(mech, resp, round); u != "" && user == "" {
			user = u
		}
		rep = as.AuthStep(c.ctx, mech, resp, false)
		if resp == "*" {
			c.authResult = "aborted"
		}
	}
	if user != "" {
		c.authUser = user
	}
	switch {
	case rep.Code == 235:
		c.authed = true
		c.authResult = "success"
		c.reply(rep)
		return true
	case rep.Code == 334:
		c.authResult = "aborted"
		return c.fail(smtpwire.NewReply(501, "5.7.0", "Error: too many authentication rounds"), "too many AUTH rounds")
	default:
		if c.authResult != "aborted" {
			c.authResult = "failure"
		}
		if rep.Code == 421 {
			return c.end(rep, record.CloseUpstreamLost, "", "")
		}
		return c.fail(rep, "authentication failed")
	}
}

func (c *conn) mail(cmd smtpwire.Command) bool {
	if c.helo == "" {
		return c.fail(replyHeloFirst, "MAIL before HELO")
	}
	if c.tx != nil {
		return c.fail(replyNestedMail, "nested MAIL")
	}
	p, err := smtpwire.ParseMailArg(cmd.Arg)
	if err != nil {
		return c.fail(syntax("MAIL FROM:<address>"), "bad MAIL syntax")
	}
	utf8 := false
	for _, x := range p.Params {
		switch x.Key {
		case "SIZE":
			n, err := strconv.ParseInt(x.Value, 10, 64)
			if err != nil || n < 0 {
				return c.fail(syntax("MAIL FROM:<address> SIZE=number"), "bad SIZE")
			}
			if n > c.caps.Size && c.caps.Size > 0 {
				return c.fail(smtpwire.NewReply(552, "5.3.4", "Message size exceeds fixed limit"), "")
			}
		case "BODY":
			v := strings.ToUpper(x.Value)
			if v != "7BIT" && !(v == "8BITMIME" && c.caps.EightBitMIME) {
				return c.fail(smtpwire.NewReply(555, "5.5.4", "Unsupported BODY parameter"), "")
			}
		case "SMTPUTF8":
			if !c.caps.SMTPUTF8 {
				return c.fail(smtpwire.NewReply(555, "5.5.4", "SMTPUTF8 not offered"), "")
			}
			utf8 = true
		case "RET", "ENVID":
			if !c.caps.DSN {
				return c.fail(smtpwire.NewReply(555, "5.5.4", "DSN not offered"), "")
			}
		case "AUTH":
		default:
			return c.fail(smtpwire.NewReply(555, "5.5.4", "Unsupported option"), "")
		}
	}
	if !utf8 && !isASCII(p.Addr) {
		return c.fail(smtpwire.NewReply(553, "5.6.7", "Non-ASCII address without SMTPUTF8"), "")
	}
	start := c.now()
	c.transcript.StartTap()
	rep := c.sess.Mail(c.ctx, p)
	if rep.Class() != 2 {
		c.transcript.StopTap()
		return c.backendReply(rep)
	}
	c.tx = &transaction{start: start, from: p, phases: map[string]float64{}}
	c.tx.phases["mail"] = record.MS(c.now().Sub(start))
	return c.backendReply(rep)
}

// backendReply sends a backend's reply and closes on 421.
func (c *conn) backendReply(rep smtpwire.Reply) bool {
	c.reply(rep)
	if rep.Code == 421 {
		c.flush()
		if c.closeReason == "" {
			c.closeReason = record.CloseUpstreamLost
		}
		c.endTx(rep.String())
		return false
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (c *conn) rcpt(cmd smtpwire.Command) bool {
	if c.tx == nil {
		return c.fail(replyNeedMail, "RCPT before MAIL")
	}
	p, err := smtpwire.ParseRcptArg(cmd.Arg)
	if err != nil {
		return c.fail(syntax("RCPT TO:<address>"), "bad RCPT syntax")
	}
	if len(c.tx.rcpts) >= c.s.cfg.Limits.MaxRecipients {
		c.reply(smtpwire.NewReply(452, "4.5.3", "Error: too many recipients"))
		return true
	}
	for _, x := range p.Params {
		switch x.Key {
		case "NOTIFY", "ORCPT":
			if !c.caps.DSN {
				return c.fail(smtpwire.NewReply(555, "5.5.4", "DSN not offered"), "")
			}
		default:
			return c.fail(smtpwire.NewReply(555, "5.5.4", "Unsupported option"), "")
		}
	}
	if _, utf := c.tx.from.Param("SMTPUTF8"); !utf && !isASCII(p.Addr) {
		return c.fail(smtpwire.NewReply(553, "5.6.7", "Non-ASCII address without SMTPUTF8"), "")
	}
	start := c.now()
	rep := c.sess.Rcpt(c.ctx, p)
	c.tx.rcptElapsed += c.now().Sub(start)
	if rep.Class() == 2 {
		c.tx.rcpts = append(c.tx.rcpts, p)
	} else {
		c.tx.rejected = append(c.tx.rejected, record.Rejection{Address: p.Addr, SMTPResponse: rep.Full()})
	}
	return c.backendReply(rep)
}

func (c *conn) data(cmd smtpwire.Command) bool {
	switch {
	case cmd.Arg != "":
		return c.fail(syntax("DATA"), "DATA with argument")
	case c.tx == nil:
		return c.fail(replyNeedMail, "DATA before MAIL")
	case c.tx.bdat != nil:
		return c.fail(smtpwire.NewReply(503, "5.5.1", "Error: DATA during BDAT"), "DATA during BDAT")
	case len(c.tx.rcpts) == 0:
		return c.fail(replyNeedRcpt, "DATA without valid recipients")
	}
	if rep, ok := c.dataStart(); !ok {
		return rep
	}
	c.reply(smtpwire.NewReply(354, "", "End data with <CR><LF>.<CR><LF>"))
	if err := c.flush(); err != nil {
		c.lost(err)
		return false
	}
	start := c.now()
	c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.Limits.DataTimeout))
	if c.dataBuf == nil {
		c.dataBuf = &bytes.Buffer{}
	}
	res, err := smtpwire.ReadDataInto(c.br, smtpwire.DataLimits{MaxSize: c.caps.Size, MaxLine: 998}, c.dataBuf)
	if err != nil {
		c.transcript.Add(c.now(), "C", "", "["+strconv.FormatInt(res.Size, 10)+" bytes of DATA, incomplete]")
		if isTimeout(err) {
			return c.end(replyTimeout, record.CloseTimeout, "timeout during DATA", "timeout during DATA")
		}
		c.lost(err)
		return false
	}
	c.transcript.Add(c.now(), "C", "", "["+strconv.FormatInt(res.Size, 10)+" bytes of DATA]")
	c.tx.phases["data_in"] = record.MS(c.now().Sub(start))
	anoms := smtpwire.ContentAnomalies(res.BareLF, res.BareCR, res.NUL)
	if res.LongLines > 0 {
		anoms = append(anoms, "long_lines")
	}
	more := c.finish(res.Body, res.Size, res.TooLarge, anoms, false)
	if c.dataBuf.Cap() > 1<<20 {
		c.dataBuf = nil // do not hold a large message's memory for the rest of the session
	}
	return more
}

// dataStart asks a DataStarter whether the content may come; when it
// refuses, the refusal is the reply to DATA (or to the first BDAT) and the
// transaction ends. It returns (continue session, false) on refusal.
func (c *conn) dataStart() (bool, bool) {
	ds, ok := c.sess.(DataStarter)
	if !ok {
		return true, true
	}
	rep := ds.DataStart(c.ctx)
	if rep.Class() == 2 || rep.Class() == 3 || rep.Code == 0 {
		return true, true
	}
	rec := c.messageRecord(c.tx)
	rec.Status = statusOf(rep)
	tx := c.tx
	c.tx = nil
	c.completeRecord(rec, tx, rep)
	c.emitMessage(rec)
	return c.backendReply(rep), false
}

func (c *conn) bdat(cmd smtpwire.Command) bool {
	size, last, err := smtpwire.ParseBDAT(cmd.Arg)
	if err != nil {
		// The chunk's length is unknown, so the stream cannot be resynchronised.
		return c.end(syntax("BDAT size [LAST]"), record.CloseError, "bad BDAT syntax", "bad BDAT syntax")
	}
	if !c.caps.Chunking {
		return c.end(smtpwire.NewReply(502, "5.5.1", "Error: CHUNKING not offered"), record.CloseError, "BDAT without CHUNKING", "BDAT without CHUNKING")
	}
	tx := c.tx
	valid := tx != nil && len(tx.rcpts) > 0
	if valid && tx.bdat == nil {
		if ds, ok := c.sess.(DataStarter); ok {
			if rep := ds.DataStart(c.ctx); rep.Class() == 4 || rep.Class() == 5 {
				// Refused before the content: read the chunk to stay in
				// step with the client, then answer.
				c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.Limits.DataTimeout))
				if _, err := io.CopyN(io.Discard, c.br, size); err != nil {
					c.lost(err)
					return false
				}
				c.transcript.Add(c.now(), "C", "", fmt.Sprintf("[%d bytes of BDAT, refused]", size))
				rec := c.messageRecord(tx)
				rec.Status = statusOf(rep)
				c.tx = nil
				c.completeRecord(rec, tx, rep)
				c.emitMessage(rec)
				return c.backendReply(rep)
			}
		}
		tx.bdat = &bytes.Buffer{}
	}
	start := c.now()
	c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.Limits.DataTimeout))
	var dst io.Writer = io.Discard
	if valid && !tx.bdatTooBig && tx.bdatSize+size <= c.caps.Size {
		dst = tx.bdat
	} else if valid {
		tx.bdatTooBig = true
	}
	var scanW io.Writer = dst
	if valid {
		scanW = io.MultiWriter(dst, scanWriter{&tx.bdatScan})
	}
	n, err := io.CopyN(scanW, c.br, size)
	c.transcript.Add(c.now(), "C", "", fmt.Sprintf("[%d bytes of BDAT]", n))
	if err != nil {
		if isTimeout(err) {
			return c.end(replyTimeout, record.CloseTimeout, "", "timeout during BDAT")
		}
		c.lost(err)
		return false
	}
	if !valid {
		if tx == nil {
			return c.fail(replyNeedMail, "BDAT before MAIL")
		}
		return c.fail(replyNeedRcpt, "BDAT without valid recipients")
	}
	tx.bdatSize += size
	tx.phases["data_in"] += record.MS(c.now().Sub(start))
	if !last {
		c.reply(smtpwire.NewReply(250, "2.0.0", fmt.Sprintf("%d bytes received", size)))
		return true
	}
	tx.bdatScan.Finish()
	anoms := smtpwire.ContentAnomalies(tx.bdatScan.BareLF, tx.bdatScan.BareCR, tx.bdatScan.NUL)
	return c.finish(tx.bdat.Bytes(), tx.bdatSize, tx.bdatTooBig, anoms, true)
}

type scanWriter struct{ s *smtpwire.ChunkScanner }

func (w scanWriter) Write(b []byte) (int, error) { w.s.Scan(b); return len(b), nil }

// finish ends a transaction after its content arrived.
func (c *conn) finish(body []byte, size int64, tooLarge bool, anoms []string, bdat bool) bool {
	tx := c.tx
	for _, a := range anoms {
		c.anomaly(a)
	}
	rec := c.messageRecord(tx)
	rec.Size = size
	rec.Anomalies = append(rec.Anomalies, anoms...)
	var rep smtpwire.Reply
	switch {
	case tooLarge:
		rep = replyTooLarge
		rec.Status = record.StatusRejected
		rec.Reason = "message too large"
	case len(anoms) > 0 && hasBare(anoms) && c.s.cfg.DataPolicy == DataReject:
		rep = replyBareContent
		rec.Status = record.StatusRejected
		rec.Reason = "bare CR or LF, or NUL, in content"
	default:
		msg := &Message{From: tx.from, Rcpts: tx.rcpts, Body: body, Anomalies: anoms, BDAT: bdat}
		if hasBare(anoms) && c.s.cfg.DataPolicy == DataNormalize {
			msg.Body = smtpwire.Normalize(body)
			rec.Flags = append(rec.Flags, "normalized")
		}
		mailhdr.Fill(rec, body)
		start := c.now()
		dr := c.sess.Data(c.ctx, msg)
		tx.phases["backend"] = record.MS(c.now().Sub(start))
		rep = dr.Reply
		rec.QueueID = dr.QueueID
		rec.Reason = dr.Reason
		rec.Status = dr.Status
		sent := msg.Body
		if dr.Sent != nil {
			sent = dr.Sent
		}
		sum := sha256.Sum256(sent)
		rec.BodySHA256 = hex.EncodeToString(sum[:])
		if rec.Status == "" {
			rec.Status = statusOf(rep)
		}
		if dr.Close {
			c.tx = nil
			c.completeRecord(rec, tx, rep)
			c.emitMessage(rec)
			c.reply(rep)
			c.flush()
			c.closeReason = record.CloseUpstreamLost
			if c.reason == "" {
				c.reason = dr.Reason
			}
			return false
		}
	}
	c.tx = nil
	c.completeRecord(rec, tx, rep)
	if err := c.emitMessage(rec); err != nil && rep.Class() == 2 {
		// DESIGN §6: what cannot be recorded is not acknowledged.
		rep = replyRecordFailed
	}
	c.reply(rep)
	return true
}

func hasBare(anoms []string) bool {
	for _, a := range anoms {
		if a == "bare_lf_in_data" || a == "bare_cr_in_data" || a == "nul_in_data" {
			return true
		}
	}
	return false
}

func statusOf(rep smtpwire.Reply) string {
	switch rep.Class() {
	case 2:
		return record.StatusAccepted
	case 4:
		return record.StatusDeferred
	default:
		return record.StatusRejected
	}
}

func (c *conn) completeRecord(rec *record.Record, tx *transaction, rep smtpwire.Reply) {
	rec.SMTPResponse = rep.Full()
	rec.ReplyCode = rep.Code
	rec.EnhancedCode = rep.Enhanced
	now := c.now()
	rec.LatencyMS = record.MS(now.Sub(tx.start))
	if tx.rcptElapsed > 0 {
		tx.phases["rcpt"] = record.MS(tx.rcptElapsed)
	}
	rec.PhasesMS = tx.phases
	if !c.s.cfg.NoMessageTranscript {
		// The final reply is added to the transcript by reply(); include it.
		rec.Transcript = c.transcript.Tap()
		rec.Transcript = append(rec.Transcript, record.TranscriptLine{TMS: record.MS(now.Sub(c.start)), Dir: "S", Line: strings.TrimSuffix(string(rep.Wire()), "\r\n")})
	}
	c.transcript.StopTap()
}

// endTx records a transaction that ended without content (RSET, QUIT, a
// lost connection, a new EHLO): when it had recipients it becomes a
// message record with status aborted, or rejected when every recipient
// was refused.
func (c *conn) endTx(why string) {
	tx := c.tx
	if tx == nil {
		return
	}
	c.tx = nil
	if len(tx.rcpts) == 0 && len(tx.rejected) == 0 {
		return
	}
	rec := c.messageRecord(tx)
	rec.Abort(why)
	rec.LatencyMS = record.MS(c.now().Sub(tx.start))
	rec.PhasesMS = tx.phases
	if !c.s.cfg.NoMessageTranscript {
		rec.Transcript = c.transcript.Tap()
	}
	c.transcript.StopTap()
	if tx.bdat != nil {
		rec.Size = tx.bdatSize
	}
	c.emitMessage(rec)
}

func (c *conn) messageRecord(tx *transaction) *record.Record {
	rec := c.baseRecord(record.TypeMessage)
	rec.Timestamp = tx.start
	rec.MailFrom = record.Ptr(tx.from.Addr)
	if len(tx.rcpts) > 0 {
		rec.RcptTo = make([]string, 0, len(tx.rcpts))
	}
	for _, r := range tx.rcpts {
		rec.RcptTo = append(rec.RcptTo, r.Addr)
	}
	rec.RejectedRcpt = tx.rejected
	return rec
}

func (c *conn) baseRecord(t record.Type) *record.Record {
	r := &record.Record{
		Type:       t,
		Timestamp:  c.start,
		Source:     c.s.cfg.Source,
		Host:       c.s.cfg.Hostname,
		SessionID:  c.info.SessionID,
		ClientIP:   c.clientIP,
		ClientPort: int(c.client.Port()),
		ServerIP:   c.serverIP,
		ServerPort: int(c.server.Port()),
		Helo:       record.Escape(c.helo),
		Upstream:   c.s.cfg.Upstream,
	}
	if c.authed {
		r.Username = c.authUser
	}
	if c.tlsState != nil {
		r.TLS = tlsutil.Describe(*c.tlsState)
	} else {
		r.TLS = &record.TLS{Used: false, Error: c.tlsError}
	}
	if a, ok := c.sess.(Annotator); ok && c.sess != nil {
		a.Annotate(r)
	}
	return r
}

func (c *conn) emitMessage(rec *record.Record) error {
	c.messages++
	err := c.s.cfg.Handler.Handle(context.WithoutCancel(c.ctx), rec)
	if err != nil {
		c.s.log.Error("record not written", "session", c.info.SessionID, "type", "message", "err", err)
	}
	return err
}

func (c *conn) emitSession() {
	c.stateMu.Lock()
	if c.closed {
		c.stateMu.Unlock()
		return
	}
	c.closed = true
	c.stateMu.Unlock()
	r := c.baseRecord(record.TypeSession)
	r.End = c.now()
	r.DurationMS = record.MS(r.End.Sub(c.start))
	if c.authMech != "" {
		r.Auth = &record.Auth{Mechanism: c.authMech, Username: c.authUser, Result: c.authResult}
	}
	r.Messages = c.messages
	r.CloseReason = c.closeReason
	if r.CloseReason == "" {
		r.CloseReason = record.CloseClientLost
	}
	if c.reason != "" && r.Reason == "" {
		r.Reason = c.reason
	}
	r.Errors = c.errs
	r.Anomalies = c.anomalies
	r.Transcript = c.transcript.Lines
	if c.transcript.Omitted > 0 {
		r.Flags = append(r.Flags, fmt.Sprintf("transcript_truncated:%d", c.transcript.Omitted))
	}
	if err := c.s.cfg.Handler.Handle(context.Background(), r); err != nil {
		c.s.log.Error("record not written", "session", c.info.SessionID, "type", "session", "err", err)
	}
}
