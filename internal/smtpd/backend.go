// Package smtpd is smtplog's SMTP session engine: it speaks the server side
// of SMTP (RFC 5321) with ESMTP extensions (RFC 1870 SIZE, RFC 2920
// PIPELINING, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3030 CHUNKING,
// RFC 3461 DSN, RFC 2034 ENHANCEDSTATUSCODES, RFC 3207 STARTTLS, RFC 4954
// AUTH), strictly, and hands each step to a Backend. The relay backend asks
// an upstream MTA; the capture backend answers itself.
//
// Strictness (DESIGN §6): bare CR, bare LF and NUL are refused in commands
// and, by default, in DATA; unauthorised pipelining is answered "554 5.5.0"
// and the connection closed; bytes sent after STARTTLS before the handshake
// are discarded; all state is reset after TLS; every read has a deadline;
// sessions and connections per IP are limited; a panic in one connection is
// recovered and answered 421.
package smtpd

import (
	"context"
	"net/netip"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpwire"
)

// Backend opens one Session per accepted connection.
type Backend interface {
	// Open is called before the greeting. An error refuses the connection:
	// if it is a *ReplyError its reply is sent, otherwise 421 4.3.0.
	Open(ctx context.Context, c *Conn) (Session, error)
}

// Session handles the commands of one connection. All calls come from the
// connection's goroutine, one at a time.
type Session interface {
	// Hello answers EHLO/HELO and says which extensions the backend can
	// serve (the engine adds STARTTLS itself and filters the rest).
	Hello(ctx context.Context, name string, extended bool) (smtpwire.Reply, Caps)
	Mail(ctx context.Context, from smtpwire.Path) smtpwire.Reply
	Rcpt(ctx context.Context, to smtpwire.Path) smtpwire.Reply
	// Data delivers one message; Body holds the exact bytes (unstuffed).
	Data(ctx context.Context, m *Message) DataResult
	Reset(ctx context.Context) smtpwire.Reply
	Noop(ctx context.Context) smtpwire.Reply
	// Close ends the session; reason is one of record.Close*.
	Close(ctx context.Context, reason string)
}

// AuthSession is implemented by sessions that support AUTH. Step receives
// the client's raw line (the AUTH command first, then each continuation)
// and returns the reply: 334 for another round, 235 on success.
// Implementations must never log or record the line.
type AuthSession interface {
	AuthStep(ctx context.Context, mechanism, line string, first bool) smtpwire.Reply
}

// DataStarter is implemented by sessions that decide at the DATA command
// (or the first BDAT) whether to take the content: a reply other than 2xx
// or 3xx refuses it before the client sends it.
type DataStarter interface {
	DataStart(ctx context.Context) smtpwire.Reply
}

// Annotator is implemented by sessions that add their own facts to the
// session record (upstream TLS, close reasons).
type Annotator interface {
	Annotate(r *record.Record)
}

// Caps are the ESMTP extensions a backend can serve.
type Caps struct {
	Pipelining   bool
	EightBitMIME bool
	SMTPUTF8     bool
	Chunking     bool
	DSN          bool
	Enhanced     bool
	Size         int64    // 0: no limit of its own
	AuthMechs    []string // upper case; empty: no AUTH
}

// Message is one message handed to Session.Data. Body is only valid
// during the call: a backend that keeps the message must copy it.
type Message struct {
	From      smtpwire.Path
	Rcpts     []smtpwire.Path
	Body      []byte
	Anomalies []string // e.g. "bare_lf" when the policy accepts them
	BDAT      bool
}

// DataResult is the outcome of Session.Data.
type DataResult struct {
	Reply   smtpwire.Reply
	QueueID string
	Status  string // overrides the status derived from the reply (e.g. "aborted")
	Reason  string // in words, for the record
	Close   bool   // close the client connection after the reply
	// Sent is what was passed on (after any normalisation), when it differs
	// from Body, so the record's hash is of what left.
	Sent []byte
}

// Conn describes the connection a session serves. Backends may add lines
// of their own leg to Transcript.
type Conn struct {
	SessionID  string
	Client     netip.AddrPort
	Server     netip.AddrPort
	Transcript *smtpwire.Transcript
	Host       string
}

// ReplyError refuses a connection with a chosen reply.
type ReplyError struct {
	Reply  smtpwire.Reply
	Reason string
}

func (e *ReplyError) Error() string { return e.Reason }
