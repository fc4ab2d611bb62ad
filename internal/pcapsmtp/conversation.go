package pcapsmtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mailhdr"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpwire"
)

// Dir is the direction of bytes in a conversation.
type Dir int

const (
	FromClient Dir = 0
	FromServer Dir = 1
)

// Flags and anomalies this package puts on records (docs/schema.md).
const (
	FlagIncomplete       = "incomplete"        // the capture lacks part of the conversation
	FlagContentEncrypted = "content_encrypted" // after STARTTLS (or on an implicit-TLS port) nothing is readable
	FlagBodyNotHashed    = "body_not_hashed"   // the content was too large (or had a gap) to hash

	AnomalyGap          = "capture_gap"                    // segments missing from the capture
	AnomalyMidStream    = "capture_started_mid_connection" // the connection's start is not in the capture
	AnomalyCaptureEnded = "capture_ended_before_close"     // the capture ended with the connection open
	AnomalyIdle         = "idle_in_capture"                // flushed after IdleTimeout without a packet
	AnomalyOutOfStep    = "out_of_step"                    // the decoder lost track of the dialogue
	AnomalyBadReply     = "malformed_reply"
)

// How a conversation ended, when it did not end with FIN or RST from both sides.
type endKind int

const (
	endClosed       endKind = iota // FIN or RST
	endIdle                        // no packet for IdleTimeout (capture time)
	endCaptureEnded                // the capture ended
)

type phase int

const (
	phDetect  phase = iota // not yet known to be SMTP
	phCommand              // next: a client command line
	phReply                // next: the server's reply to c.pend
	phAuth                 // next: a client AUTH response line
	phData                 // next: DATA content up to the end-of-data line
	phBDAT                 // next: c.bdatLeft bytes of a BDAT chunk
	phTLS                  // after STARTTLS: everything is encrypted
	phDead                 // not SMTP, or out of step: bytes are counted and dropped
)

type pendKind int

const (
	pkGreeting pendKind = iota
	pkHello
	pkStartTLS
	pkAuth
	pkMail
	pkRcpt
	pkData
	pkDataEnd
	pkBDAT
	pkRset
	pkQuit
	pkOther
)

// pending is the command whose reply is awaited.
type pending struct {
	kind pendKind
	ts   time.Time
	arg  string
	path smtpwire.Path
	ok   bool  // path parsed
	last bool  // BDAT LAST
	size int64 // BDAT chunk size
}

type transaction struct {
	start      time.Time
	from       *string
	rcpts      []string
	rejected   []record.Rejection
	bdat       *bytes.Buffer
	bdatScan   smtpwire.ChunkScanner
	bdatSize   int64
	bdatTooBig bool
	incomplete bool  // a gap lost part of it
	lost       int64 // content bytes lost in gaps
	skipping   bool  // content beyond MaxMessage: counted, not kept
	skipped    int64
	hdr        []byte // the start of skipped content, for its headers
}

// Endpoints are a connection's addresses.
type Endpoints struct {
	Client, Server netip.AddrPort
}

// Conversation decodes one TCP connection's two byte streams into records.
// It is not safe for concurrent use. Feed it with Data, Gap and End, and
// call Finish once; records go to the handler as they complete.
type Conversation struct {
	o   *Options
	h   record.Handler
	err error // the first handler error

	id         string
	ep         Endpoints
	halves     [2]half
	rolesKnown bool
	swappedEP  bool
	start      time.Time
	last       time.Time

	ph       phase
	verdict  int // 0 undecided, 1 SMTP, -1 not SMTP
	pend     pending
	bdatLeft int64

	tr         *smtpwire.Transcript
	helo       string
	tlsUsed    bool
	hello      tlsHandshake // the cleartext start of the TLS handshake
	authMech   string
	authUser   string
	authResult string
	authRound  int
	authed     bool
	tx         *transaction
	messages   int
	anomalies  []string
	flags      []string
	errs       []string
	quit       bool
	last421    string
	gapped     bool
	finished   bool

	content content // of the message whose final reply is awaited

	rd   bytes.Reader
	br   *bufio.Reader
	body bytes.Buffer
}

// Options configure a [Conversation] and a [Decoder]. The zero value is
// usable; Handler must be set.
type Options struct {
	// Handler receives every record.
	Handler record.Handler
	// Host names the observing host in records; empty by default.
	Host string
	// MaxMessage bounds the content kept per message (default 64 MiB);
	// larger messages are counted, their headers decoded from the first
	// part, and their body not hashed.
	MaxMessage int
	// MaxTranscriptLines bounds a session's transcript (default 2000).
	MaxTranscriptLines int
	// IdleTimeout is how long, in capture time, a connection may go without
	// a packet before it is flushed as incomplete (default 10 minutes).
	IdleTimeout time.Duration
	// GapWait is how long, in capture time, the reassembler waits for a
	// missing segment before it gives up on it (default 30 seconds).
	GapWait time.Duration
	// NewID returns a session ID; record.NewID by default.
	NewID func(time.Time) string
}

func (o *Options) withDefaults() *Options {
	c := *o
	if c.MaxMessage <= 0 {
		c.MaxMessage = 64 << 20
	}
	if c.MaxTranscriptLines <= 0 {
		c.MaxTranscriptLines = 2000
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.GapWait <= 0 {
		c.GapWait = 30 * time.Second
	}
	if c.NewID == nil {
		c.NewID = record.NewID
	}
	if c.Handler == nil {
		c.Handler = record.HandlerFunc(func(context.Context, *record.Record) error { return nil })
	}
	return &c
}

// Limits of the line layer. Commands may be long with AUTH (RFC 4954 §4:
// 12288 octets); server replies are short.
const (
	maxCommandLine = 16 << 10
	maxReplyLine   = 16 << 10
	// detectBytes is how much a direction may send before the conversation
	// is known to be SMTP or not.
	detectBytes = 8 << 10
	// maxAhead bounds what one direction may send while the decoder waits
	// for the other (pipelined commands, early replies).
	maxAhead = 8 << 20
)

// NewConversation starts decoding a connection first seen at start.
// rolesKnown says whether ep is certain (a SYN was seen); when it is not,
// the roles are swapped if the content says otherwise.
func NewConversation(opts Options, ep Endpoints, rolesKnown bool, start time.Time) *Conversation {
	return newConversation(opts.withDefaults(), ep, rolesKnown, start)
}

// newConversation is NewConversation with resolved options (the Decoder's).
func newConversation(o *Options, ep Endpoints, rolesKnown bool, start time.Time) *Conversation {
	c := &Conversation{o: o, h: o.Handler, ep: ep, rolesKnown: rolesKnown, start: start, last: start}
	c.br = bufio.NewReaderSize(&c.rd, 4096)
	return c
}

// IsSMTP reports whether the conversation was recognised as SMTP.
func (c *Conversation) IsSMTP() bool { return c.verdict > 0 }

// Err is the first error the handler returned.
func (c *Conversation) Err() error { return c.err }

// MarkMidStream says that the capture did not see the first bytes of
// direction d (no SYN): they may start in the middle of a line.
func (c *Conversation) MarkMidStream(d Dir) {
	c.halves[d].mid = true
}

// Data feeds bytes sent in direction d, captured at ts.
func (c *Conversation) Data(d Dir, ts time.Time, b []byte) {
	if c.finished || len(b) == 0 {
		return
	}
	c.seen(ts)
	h := &c.halves[d]
	if c.ph == phTLS || c.ph == phDead {
		if c.ph == phTLS {
			c.hello.feed(d, b)
		}
		h.dropped += int64(len(b))
		return
	}
	h.append(ts, b)
	c.advance(false)
}

// Gap says that n bytes of direction d are missing from the capture before
// the next Data.
func (c *Conversation) Gap(d Dir, ts time.Time, n int) {
	if c.finished || n <= 0 {
		return
	}
	c.seen(ts)
	c.gapped = true
	c.anomaly(AnomalyGap)
	c.flag(FlagIncomplete)
	if c.tx != nil {
		c.tx.incomplete = true
	}
	h := &c.halves[d]
	switch {
	case c.ph == phTLS:
		c.hello.gap(d)
	case c.ph == phDead:
	case d == FromClient && c.ph == phData:
		// Content lost; the end-of-data line is still found.
		c.tx.lost += int64(n)
	case d == FromClient && c.ph == phBDAT && int64(n) <= c.bdatLeft-int64(h.len()):
		c.bdatLeft -= int64(n)
		if c.tx != nil {
			c.tx.lost += int64(n)
		}
	default:
		// A line lost its end or its start: drop the part before the gap
		// and, when there was one, the rest of the line after it.
		if h.cutPartialLine() {
			h.skipToLF = true
		}
	}
	if c.ph != phTLS {
		h.noteGap() // in case what follows turns out to be a TLS handshake
	}
}

// End says that direction d ended (FIN, or RST when rst) at ts.
func (c *Conversation) End(d Dir, ts time.Time, rst bool) {
	if c.finished {
		return
	}
	c.seen(ts)
	h := &c.halves[d]
	if !h.ended {
		h.ended, h.endTS = true, ts
	}
	h.rst = h.rst || rst
	c.advance(false)
}

// Done reports whether both directions ended, or one was reset.
func (c *Conversation) Done() bool {
	a, b := &c.halves[0], &c.halves[1]
	return (a.ended && b.ended) || a.rst || b.rst
}

func (c *Conversation) seen(ts time.Time) {
	if ts.After(c.last) {
		c.last = ts
	}
}

func (c *Conversation) anomaly(a string) {
	if !slices.Contains(c.anomalies, a) {
		c.anomalies = append(c.anomalies, a)
	}
}

func (c *Conversation) flag(f string) {
	if !slices.Contains(c.flags, f) {
		c.flags = append(c.flags, f)
	}
}

// reader returns a bufio.Reader over b, reused between calls.
func (c *Conversation) reader(b []byte) *bufio.Reader {
	c.rd.Reset(b)
	c.br.Reset(&c.rd)
	return c.br
}

// advance decodes as much as the buffered bytes allow. With force (at the
// end) an undecided conversation is decided on what there is.
func (c *Conversation) advance(force bool) {
	for {
		var progress bool
		switch c.ph {
		case phDetect:
			progress = c.detect(force)
		case phCommand:
			progress = c.command()
		case phReply:
			progress = c.replyStep()
		case phAuth:
			progress = c.authResponse()
		case phData:
			progress = c.data()
		case phBDAT:
			progress = c.bdatChunk()
		case phTLS, phDead:
			if c.ph == phTLS {
				// What arrived with (or before) the switch to TLS.
				for d := range c.halves {
					h := &c.halves[d]
					if h.skipToLF {
						c.hello.gap(Dir(d)) // not known to start a record
					}
					b, gap := h.beforeGap()
					c.hello.feed(Dir(d), b)
					if gap {
						c.hello.gap(Dir(d))
					}
				}
			}
			c.halves[0].drop()
			c.halves[1].drop()
			return
		}
		if !progress {
			break
		}
	}
	c.checkAhead()
}

// checkAhead gives up on a conversation whose one direction runs far ahead
// of what the decoder can pair it with (one direction missing from the
// capture, or a dialogue the decoder misread).
func (c *Conversation) checkAhead() {
	if c.ph == phDead || c.ph == phTLS || c.ph == phDetect {
		return
	}
	waitingForServer := c.ph == phReply
	ahead := &c.halves[FromClient]
	if !waitingForServer {
		ahead = &c.halves[FromServer]
	}
	if ahead.len() > maxAhead {
		c.outOfStep()
	}
}

func (c *Conversation) outOfStep() {
	c.anomaly(AnomalyOutOfStep)
	c.flag(FlagIncomplete)
	c.ph = phDead
	c.halves[0].drop()
	c.halves[1].drop()
}

// ---- detection

func firstLine(b []byte) ([]byte, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, false
	}
	return bytes.TrimRight(b[:i], "\r"), true
}

func isHello(b []byte) bool {
	if len(b) < 5 || b[4] != ' ' {
		return false
	}
	v := strings.ToUpper(string(b[:4]))
	return v == "EHLO" || v == "HELO" || v == "LHLO"
}

func isReplyStart(b []byte) bool {
	return len(b) >= 4 && b[0] >= '2' && b[0] <= '5' && b[1] >= '0' && b[1] <= '9' && b[2] >= '0' && b[2] <= '9' && (b[3] == ' ' || b[3] == '-')
}

func isTLSRecord(b []byte) bool { return len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03 }

// implicitTLSPorts are ports where SMTP starts with a TLS handshake (RFC
// 8314 submissions).
func implicitTLSPort(p uint16) bool { return p == 465 }

func (c *Conversation) swap() {
	c.halves[0], c.halves[1] = c.halves[1], c.halves[0]
	c.ep.Client, c.ep.Server = c.ep.Server, c.ep.Client
	c.rolesKnown = true
	c.swappedEP = !c.swappedEP
}

// swapped reports whether the conversation swapped the roles it was
// started with.
func (c *Conversation) swapped() bool { return c.swappedEP }

// detect decides whether the conversation is SMTP: a greeting that says
// SMTP, or any reply-shaped greeting answered by EHLO, HELO or LHLO. FTP,
// which also greets with 220, is told apart by the client's first command.
func (c *Conversation) detect(force bool) bool {
	cb, sb := c.halves[FromClient].unread(), c.halves[FromServer].unread()
	if !c.rolesKnown && (isHello(sb) || isReplyStart(cb) && !isReplyStart(sb) ||
		isTLSRecord(sb) && implicitTLSPort(c.ep.Client.Port())) {
		c.swap()
		cb, sb = sb, cb
	}
	if isTLSRecord(cb) && implicitTLSPort(c.ep.Server.Port()) {
		for d := range c.halves {
			if c.halves[d].mid {
				c.hello.gap(Dir(d)) // the capture did not see where the handshake starts
			}
		}
		c.decide(true)
		c.tlsUsed = true
		c.flag(FlagContentEncrypted)
		c.ph = phTLS
		return true
	}
	sLine, sOK := firstLine(sb)
	cLine, cOK := firstLine(cb)
	cTooLong := len(cb) > detectBytes || (c.halves[FromClient].ended && !cOK)
	sTooLong := len(sb) > detectBytes || (c.halves[FromServer].ended && !sOK)
	switch {
	case c.halves[FromServer].mid:
		// The server's first bytes may be the tail of anything; the client
		// must send a command we know.
		if cOK && knownVerb(cLine) {
			return c.decide(true)
		}
		if cOK || cTooLong || force {
			return c.decide(false)
		}
	case len(sb) >= 4 && !isReplyStart(sb):
		return c.decide(false)
	case sOK:
		if bytes.Contains(bytes.ToUpper(sLine), []byte("SMTP")) {
			return c.decide(true)
		}
		if cOK {
			return c.decide(isHello(cLine))
		}
		if cTooLong || force {
			return c.decide(false)
		}
	case cOK && isHello(cLine):
		// No greeting (yet): decide when the server speaks, or on what the
		// client said when the server never does.
		if sTooLong || force || (len(sb) == 0 && c.halves[FromServer].ended) {
			return c.decide(true)
		}
	case cOK, cTooLong, sTooLong, force:
		return c.decide(false)
	}
	return false
}

func knownVerb(line []byte) bool {
	cmd, err := smtpwire.ParseCommand(line)
	if err != nil {
		return false
	}
	switch cmd.Verb {
	case "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "STARTTLS", "AUTH", "VRFY":
		return true
	}
	return false
}

func (c *Conversation) decide(smtp bool) bool {
	if !smtp {
		c.verdict = -1
		c.ph = phDead
		return true
	}
	c.verdict = 1
	c.id = c.o.NewID(c.start)
	c.tr = smtpwire.NewTranscript(c.start, c.o.MaxTranscriptLines)
	c.tr.TapMax = 1000
	if c.halves[FromClient].mid || c.halves[FromServer].mid {
		c.anomaly(AnomalyMidStream)
		c.flag(FlagIncomplete)
	}
	if c.halves[FromServer].mid || c.halves[FromServer].len() == 0 && c.halves[FromServer].ended {
		c.ph = phCommand
		// Drop the tail of whatever reply the capture started in.
		c.halves[FromServer].skipToLF = c.halves[FromServer].mid
		c.halves[FromClient].skipToLF = c.halves[FromClient].mid && !knownVerbStart(c.halves[FromClient].unread())
		if c.halves[FromServer].len() > 0 && isReplyStart(c.halves[FromServer].unread()) {
			c.halves[FromServer].skipToLF = false
			c.ph = phReply
			c.pend = pending{kind: pkOther, ts: c.start}
		}
		return true
	}
	c.ph = phReply
	c.pend = pending{kind: pkGreeting, ts: c.start}
	return true
}

func knownVerbStart(b []byte) bool {
	l, ok := firstLine(b)
	return ok && knownVerb(l)
}

// ---- client side

type lineResult int

const (
	lineOK lineResult = iota
	lineMore
	lineTooLong
	lineBad // bare CR or LF
)

// readLine takes the next client line (without CRLF) through smtpwire's
// line reader. The returned slice is valid until the next read.
func (c *Conversation) readLine(h *half, max int) ([]byte, time.Time, lineResult) {
	if !h.skipLine() {
		return nil, time.Time{}, lineMore
	}
	u := h.unread()
	i := bytes.IndexByte(u[h.scanned:], '\n')
	if i < 0 {
		h.scanned = len(u)
		if len(u) > max {
			ts := h.tsAt(len(u) - 1)
			h.dropped += int64(len(u))
			h.consume(len(u))
			h.skipToLF = true
			return nil, ts, lineTooLong
		}
		return nil, time.Time{}, lineMore
	}
	n := h.scanned + i + 1
	ts := h.tsAt(n - 1)
	line, err := smtpwire.ReadLine(c.reader(u[:n]), max)
	line = slices.Clone(line)
	h.consume(n)
	switch {
	case err == nil:
		return line, ts, lineOK
	case errors.Is(err, smtpwire.ErrLineTooLong):
		return nil, ts, lineTooLong
	default:
		return nil, ts, lineBad
	}
}

var knownVerbs = map[string]bool{
	"EHLO": true, "HELO": true, "LHLO": true, "STARTTLS": true, "AUTH": true, "MAIL": true, "RCPT": true,
	"DATA": true, "BDAT": true, "RSET": true, "NOOP": true, "QUIT": true, "VRFY": true, "EXPN": true,
	"HELP": true, "XCLIENT": true, "XFORWARD": true, "ETRN": true, "TURN": true, "ATRN": true, "BURL": true,
}

func (c *Conversation) command() bool {
	h := &c.halves[FromClient]
	line, ts, res := c.readLine(h, maxCommandLine)
	switch res {
	case lineMore:
		return false
	case lineTooLong:
		c.anomaly("line_too_long")
		c.tr.Add(ts, "C", "", "[line too long]")
		c.expect(pending{kind: pkOther, ts: ts})
		return true
	case lineBad:
		c.anomaly("bare_cr_lf_in_command")
		c.tr.Add(ts, "C", "", "[command with bare CR or LF]")
		c.expect(pending{kind: pkOther, ts: ts})
		return true
	}
	cmd, err := smtpwire.ParseCommand(line)
	if err != nil || !knownVerbs[cmd.Verb] {
		// Never the line itself: after a gap it may be an AUTH response.
		if err != nil && !errors.Is(err, smtpwire.ErrSyntax) {
			c.anomaly("control_character_in_command")
		}
		c.tr.Add(ts, "C", "", fmt.Sprintf("[unrecognised command, %d bytes]", len(line)))
		c.expect(pending{kind: pkOther, ts: ts})
		return true
	}
	if cmd.Verb == "AUTH" {
		c.tr.Add(ts, "C", "", smtpwire.RedactAuth(cmd.Arg))
	} else {
		c.tr.Add(ts, "C", "", record.Escape(string(line)))
	}
	p := pending{ts: ts, arg: cmd.Arg}
	switch cmd.Verb {
	case "EHLO", "HELO", "LHLO":
		c.endTx(ts, "new EHLO")
		p.kind = pkHello
	case "STARTTLS":
		p.kind = pkStartTLS
	case "AUTH":
		mech, initial, _ := strings.Cut(cmd.Arg, " ")
		c.authMech = strings.ToUpper(mech)
		c.authRound = 0
		c.authResult = ""
		if u := smtpwire.AuthUser(c.authMech, initial, 0); u != "" {
			c.authUser = u
		}
		p.kind = pkAuth
	case "MAIL":
		p.kind = pkMail
		p.path, err = smtpwire.ParseMailArg(cmd.Arg)
		p.ok = err == nil
		if c.tx == nil {
			c.tr.StartTap()
		}
	case "RCPT":
		p.kind = pkRcpt
		p.path, err = smtpwire.ParseRcptArg(cmd.Arg)
		p.ok = err == nil
	case "DATA":
		p.kind = pkData
	case "BDAT":
		size, last, err := smtpwire.ParseBDAT(cmd.Arg)
		if err != nil {
			// The chunk's length is unknown: the stream cannot be followed.
			c.errs = append(c.errs, "bad BDAT syntax")
			c.outOfStep()
			return false
		}
		p.kind, p.last, p.size = pkBDAT, last, size
		if c.tx != nil && c.tx.bdat == nil {
			c.tx.bdat = &bytes.Buffer{}
		}
		c.pend = p
		c.bdatLeft = size
		c.ph = phBDAT
		return true
	case "RSET":
		c.endTx(ts, "reset")
		p.kind = pkRset
	case "QUIT":
		c.quit = true
		p.kind = pkQuit
	default:
		p.kind = pkOther
	}
	c.expect(p)
	return true
}

func (c *Conversation) expect(p pending) {
	c.pend = p
	c.ph = phReply
}

func (c *Conversation) authResponse() bool {
	h := &c.halves[FromClient]
	line, ts, res := c.readLine(h, maxCommandLine)
	if res == lineMore {
		return false
	}
	c.tr.Add(ts, "C", "", "[redacted]")
	c.authRound++
	if res == lineOK {
		resp := string(line)
		if u := smtpwire.AuthUser(c.authMech, resp, c.authRound); u != "" && c.authUser == "" {
			c.authUser = u
		}
		if resp == "*" {
			c.authResult = "aborted"
		}
	}
	c.expect(pending{kind: pkAuth, ts: ts})
	return true
}

// data reads DATA content up to the end-of-data line (RFC 5321 §4.1.1.4),
// then hands the exact span to smtpwire's DATA reader.
func (c *Conversation) data() bool {
	h := &c.halves[FromClient]
	tx := c.tx
	u := h.unread()
	end := -1
	if !tx.skipping && h.scanned == 0 && bytes.HasPrefix(u, []byte(".\r\n")) {
		end = 3
	} else {
		from := max(h.scanned-4, 0)
		if i := bytes.Index(u[from:], []byte("\r\n.\r\n")); i >= 0 {
			end = from + i + 5
		}
	}
	if end < 0 {
		h.scanned = len(u)
		if len(u) > c.o.MaxMessage {
			// Too large to keep: keep the head for the headers, count the rest.
			if !tx.skipping {
				tx.skipping = true
				tx.hdr = slices.Clone(u[:min(len(u), mailhdr.MaxHeaderBytes)])
			}
			n := len(u) - 4
			tx.skipped += int64(n)
			h.consume(n)
			h.scanned = 4
		}
		return false
	}
	ts := h.tsAt(end - 1)
	var size int64
	var body []byte
	var anoms []string
	if tx.skipping {
		size = tx.skipped + int64(end) - 3
		body = tx.hdr
	} else {
		res, err := smtpwire.ReadDataInto(c.reader(u[:end]), smtpwire.DataLimits{MaxLine: 998}, &c.body)
		if err != nil { // cannot happen: the span ends with the end-of-data line
			c.errs = append(c.errs, "DATA: "+err.Error())
		}
		size, body = res.Size, res.Body
		anoms = smtpwire.ContentAnomalies(res.BareLF, res.BareCR, res.NUL)
		if res.LongLines > 0 {
			anoms = append(anoms, "long_lines")
		}
	}
	h.consume(end)
	size += tx.lost
	c.tr.Add(ts, "C", "", fmt.Sprintf("[%d bytes of DATA]", size))
	c.content = content{size: size, body: body, anomalies: anoms, hashed: !tx.skipping && !tx.incomplete}
	c.expect(pending{kind: pkDataEnd, ts: ts})
	return true
}

// content is a message's content awaiting the server's final reply.
type content struct {
	size      int64
	body      []byte // aliases c.body or tx.bdat until the record is made
	anomalies []string
	hashed    bool
}

func (c *Conversation) bdatChunk() bool {
	h := &c.halves[FromClient]
	if c.bdatLeft > 0 {
		n := int(min(int64(h.len()), c.bdatLeft))
		if n == 0 {
			return false
		}
		chunk := h.unread()[:n]
		if tx := c.tx; tx != nil && tx.bdat != nil {
			tx.bdatScan.Scan(chunk)
			if tx.bdatTooBig || tx.bdat.Len()+n > c.o.MaxMessage {
				if !tx.bdatTooBig {
					tx.hdr = slices.Clone(tx.bdat.Bytes()[:min(tx.bdat.Len(), mailhdr.MaxHeaderBytes)])
					tx.bdat.Reset()
				}
				tx.bdatTooBig = true
			} else {
				tx.bdat.Write(chunk)
			}
			tx.bdatSize += int64(n)
		}
		c.bdatLeft -= int64(n)
		if c.bdatLeft > 0 {
			h.consume(n)
			return false
		}
		ts := h.tsAt(n - 1)
		h.consume(n)
		c.pend.ts = ts
	}
	c.tr.Add(c.pend.ts, "C", "", fmt.Sprintf("[%d bytes of BDAT]", c.pend.size))
	c.expect(c.pend)
	return true
}

// ---- server side

type replyResult int

const (
	replyOK replyResult = iota
	replyMore
	replyBad
)

// readReply takes the next complete (possibly multi-line) reply through
// smtpwire's reply reader.
func (c *Conversation) readReply() (smtpwire.Reply, []string, time.Time, replyResult) {
	h := &c.halves[FromServer]
	if !h.skipLine() {
		return smtpwire.Reply{}, nil, time.Time{}, replyMore
	}
	u := h.unread()
	pos, lines := 0, 0
	for {
		i := bytes.IndexByte(u[pos:], '\n')
		if i < 0 {
			if len(u)-pos > maxReplyLine {
				ts := h.tsAt(len(u) - 1)
				h.dropped += int64(len(u))
				h.consume(len(u))
				h.skipToLF = true
				return smtpwire.Reply{}, []string{"[reply line too long]"}, ts, replyBad
			}
			return smtpwire.Reply{}, nil, time.Time{}, replyMore
		}
		end := pos + i + 1
		_, more, _, err := smtpwire.ParseReplyLine(string(bytes.TrimRight(u[pos:end], "\r\n")))
		pos, lines = end, lines+1
		if err != nil || !more || lines >= smtpwire.MaxReplyLines {
			break
		}
	}
	ts := h.tsAt(pos - 1)
	rep, raw, err := smtpwire.ReadReply(c.reader(u[:pos]), maxReplyLine)
	for i := range raw {
		raw[i] = record.Escape(raw[i])
	}
	if err != nil && len(raw) == 0 {
		raw = []string{"[malformed reply]"}
	}
	h.consume(pos)
	if err != nil {
		return rep, raw, ts, replyBad
	}
	return rep, raw, ts, replyOK
}

func (c *Conversation) replyStep() bool {
	rep, raw, ts, res := c.readReply()
	if res == replyMore {
		return false
	}
	for _, l := range raw {
		c.tr.Add(ts, "S", "", l)
	}
	if res == replyBad {
		c.anomaly(AnomalyBadReply)
		return true
	}
	if c.gapped && ts.Before(c.pend.ts) {
		// Sent before the command it would answer: the reply to a command
		// the capture lost.
		return true
	}
	c.onReply(rep, ts)
	return true
}

func (c *Conversation) onReply(rep smtpwire.Reply, ts time.Time) {
	if rep.Code == 421 {
		c.last421 = rep.String()
	}
	c.ph = phCommand
	p := c.pend
	switch p.kind {
	case pkHello:
		if rep.Class() == 2 {
			c.helo = record.Escape(strings.TrimSpace(p.arg))
		}
	case pkStartTLS:
		if rep.Code == 220 {
			c.endTx(ts, "STARTTLS")
			if u := c.halves[FromClient].unread(); len(u) > 0 && !isTLSRecord(u) {
				// CVE-2011-0411: plaintext sent after STARTTLS.
				c.anomaly("pipelined_after_starttls")
			}
			c.tlsUsed = true
			c.flag(FlagContentEncrypted)
			c.ph = phTLS
		}
	case pkAuth:
		switch {
		case rep.Code == 334:
			c.ph = phAuth
		case rep.Code == 235:
			c.authed = true
			c.authResult = "success"
		default:
			if c.authResult != "aborted" {
				c.authResult = "failure"
			}
		}
	case pkMail:
		if rep.Class() == 2 && c.tx == nil {
			c.tx = &transaction{start: p.ts}
			if p.ok {
				c.tx.from = record.Ptr(record.Escape(p.path.Addr))
			}
		} else if c.tx == nil {
			c.tr.StopTap()
		}
	case pkRcpt:
		if c.tx != nil && p.ok {
			if rep.Class() == 2 {
				c.tx.rcpts = append(c.tx.rcpts, record.Escape(p.path.Addr))
			} else {
				c.tx.rejected = append(c.tx.rejected, record.Rejection{Address: record.Escape(p.path.Addr), SMTPResponse: record.Escape(rep.Full())})
			}
		}
	case pkData:
		if rep.Code == 354 {
			if c.tx == nil {
				c.tr.StartTap()
				c.tx = &transaction{start: p.ts}
			}
			c.ph = phData
			return
		}
		if c.tx != nil {
			c.finishMessage(rep, ts, nil)
		}
	case pkDataEnd:
		if c.tx != nil {
			ct := c.content
			c.finishMessage(rep, ts, &ct)
		}
		c.content = content{}
	case pkBDAT:
		tx := c.tx
		if tx == nil || tx.bdat == nil {
			break
		}
		if rep.Class() == 2 && !p.last {
			break
		}
		var ct *content
		if rep.Class() == 2 || p.last {
			tx.bdatScan.Finish()
			ct = &content{size: tx.bdatSize, body: tx.bdat.Bytes(), hashed: !tx.bdatTooBig && !tx.incomplete,
				anomalies: smtpwire.ContentAnomalies(tx.bdatScan.BareLF, tx.bdatScan.BareCR, tx.bdatScan.NUL)}
			if tx.bdatTooBig {
				ct.body = tx.hdr
			}
		}
		c.finishMessage(rep, ts, ct)
	}
}

// ---- records

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

// finishMessage emits the message record of the open transaction, ended by
// the server's reply rep at ts; ct is its content when it was sent.
func (c *Conversation) finishMessage(rep smtpwire.Reply, ts time.Time, ct *content) {
	tx := c.tx
	c.tx = nil
	rec := c.messageRecord(tx)
	if ct != nil {
		rec.Size = ct.size
		mailhdr.Fill(rec, ct.body)
		if ct.hashed {
			sum := sha256.Sum256(ct.body)
			rec.BodySHA256 = hex.EncodeToString(sum[:])
		} else {
			rec.Flags = append(rec.Flags, FlagBodyNotHashed)
		}
		rec.Anomalies = append(rec.Anomalies, ct.anomalies...)
		for _, a := range ct.anomalies {
			c.anomaly(a)
		}
	}
	rec.Status = statusOf(rep)
	if len(tx.rcpts) == 0 && rep.Class() != 2 {
		rec.Status = record.StatusRejected
	}
	rec.SMTPResponse = record.Escape(rep.Full())
	rec.ReplyCode = rep.Code
	rec.EnhancedCode = rep.Enhanced
	rec.QueueID = record.Escape(smtpwire.QueueIDFromReply(rep))
	rec.LatencyMS = record.MS(ts.Sub(tx.start))
	rec.Transcript = sortedLines(c.tr.Tap())
	c.tr.StopTap()
	c.emit(rec)
	c.messages++
}

// endTx records a transaction that ended without a final reply (RSET,
// EHLO, STARTTLS, the connection's end): aborted, or rejected when every
// recipient was refused; none when it had no recipient at all.
func (c *Conversation) endTx(ts time.Time, why string) {
	tx := c.tx
	if tx == nil {
		return
	}
	c.tx = nil
	if len(tx.rcpts) == 0 && len(tx.rejected) == 0 {
		c.tr.StopTap()
		return
	}
	rec := c.messageRecord(tx)
	rec.Abort(why)
	rec.LatencyMS = record.MS(ts.Sub(tx.start))
	switch {
	case c.ph == phReply && c.pend.kind == pkDataEnd:
		ct := c.content
		rec.Size = ct.size
		mailhdr.Fill(rec, ct.body)
	case tx.bdat != nil:
		rec.Size = tx.bdatSize
	case c.ph == phData:
		rec.Size = int64(c.halves[FromClient].len()) + tx.skipped + tx.lost
		mailhdr.Fill(rec, c.halves[FromClient].unread())
	}
	rec.Transcript = sortedLines(c.tr.Tap())
	c.tr.StopTap()
	c.emit(rec)
	c.messages++
}

func (c *Conversation) messageRecord(tx *transaction) *record.Record {
	rec := c.baseRecord(record.TypeMessage)
	rec.Timestamp = tx.start
	rec.MailFrom = tx.from
	rec.RcptTo = tx.rcpts
	rec.RejectedRcpt = tx.rejected
	if tx.incomplete {
		rec.Flags = append(rec.Flags, FlagIncomplete)
		rec.Anomalies = append(rec.Anomalies, AnomalyGap)
	}
	return rec
}

func (c *Conversation) baseRecord(t record.Type) *record.Record {
	r := &record.Record{
		Type:       t,
		Timestamp:  c.start,
		Source:     record.SourcePcap,
		Host:       c.o.Host,
		SessionID:  c.id,
		ClientIP:   c.ep.Client.Addr().Unmap().String(),
		ClientPort: int(c.ep.Client.Port()),
		ServerIP:   c.ep.Server.Addr().Unmap().String(),
		ServerPort: int(c.ep.Server.Port()),
		Helo:       c.helo,
		TLS:        &record.TLS{Used: c.tlsUsed},
	}
	if c.tlsUsed {
		c.hello.fill(r.TLS)
	}
	if c.authed {
		r.Username = c.authUser
	}
	return r
}

// sortedLines orders transcript lines by capture time: pipelined commands
// appear before the replies that answer them, as they were on the wire.
// Lines of one direction keep their order.
func sortedLines(l []record.TranscriptLine) []record.TranscriptLine {
	slices.SortStableFunc(l, func(a, b record.TranscriptLine) int {
		switch {
		case a.TMS < b.TMS:
			return -1
		case a.TMS > b.TMS:
			return 1
		}
		return 0
	})
	return l
}

func (c *Conversation) emit(r *record.Record) {
	if err := c.h.Handle(context.Background(), r); err != nil && c.err == nil {
		c.err = err
	}
}

// Finish ends the conversation and emits its session record (for SMTP).
func (c *Conversation) Finish() { c.finish(endClosed) }

func (c *Conversation) finish(how endKind) {
	if c.finished {
		return
	}
	c.advance(true)
	c.finished = true
	if c.verdict <= 0 {
		return
	}
	switch {
	case c.Done():
	case how == endIdle:
		c.anomaly(AnomalyIdle)
		c.flag(FlagIncomplete)
	case how == endCaptureEnded:
		c.anomaly(AnomalyCaptureEnded)
		c.flag(FlagIncomplete)
	}
	end := c.last
	// Replies nobody asked for, such as a 421 before the server hangs up.
	if c.ph == phCommand {
		for i := 0; i < smtpwire.MaxReplyLines; i++ {
			rep, raw, ts, res := c.readReply()
			if res == replyMore {
				break
			}
			for _, l := range raw {
				c.tr.Add(ts, "S", "", l)
			}
			if res == replyOK && rep.Code == 421 {
				c.last421 = rep.String()
			}
		}
	}
	switch c.ph {
	case phData:
		c.tr.Add(end, "C", "", fmt.Sprintf("[%d bytes of DATA, incomplete]", c.halves[FromClient].len()))
		c.endTx(end, "connection closed during DATA")
	case phBDAT:
		c.endTx(end, "connection closed during BDAT")
	case phReply:
		if c.pend.kind == pkDataEnd || c.pend.kind == pkBDAT {
			c.endTx(end, "no reply to the end of the message")
		}
	}
	c.endTx(end, "connection closed during the transaction")
	c.emitSession(end)
}

func (c *Conversation) closeReason() (reason, why string) {
	cl, sv := &c.halves[FromClient], &c.halves[FromServer]
	switch {
	case c.quit:
		return record.CloseQuit, ""
	case c.last421 != "":
		if strings.Contains(strings.ToLower(c.last421), "timeout") || strings.Contains(strings.ToLower(c.last421), "timed out") {
			return record.CloseTimeout, c.last421
		}
		return record.CloseError, c.last421
	case c.ph == phTLS:
		return "", "" // QUIT, if any, was encrypted
	case cl.ended && (!sv.ended || !sv.endTS.Before(cl.endTS)):
		if cl.rst {
			return record.CloseClientLost, "the client reset the connection"
		}
		return record.CloseClientLost, ""
	case sv.ended:
		if sv.rst {
			return record.CloseError, "the server reset the connection"
		}
		return record.CloseError, "the server closed the connection"
	}
	return "", ""
}

func (c *Conversation) emitSession(end time.Time) {
	r := c.baseRecord(record.TypeSession)
	r.End = end
	r.DurationMS = record.MS(end.Sub(c.start))
	if c.authMech != "" {
		r.Auth = &record.Auth{Mechanism: record.Escape(c.authMech), Username: c.authUser, Result: c.authResult}
	}
	r.Messages = c.messages
	r.CloseReason, r.Reason = c.closeReason()
	r.Errors = c.errs
	r.Anomalies = c.anomalies
	r.Flags = c.flags
	r.Transcript = sortedLines(c.tr.Lines)
	if c.tr.Omitted > 0 {
		r.Flags = append(r.Flags, fmt.Sprintf("transcript_truncated:%d", c.tr.Omitted))
	}
	c.emit(r)
}
