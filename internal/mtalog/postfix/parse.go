// Package postfix parses Postfix's log lines (postfix/smtpd, cleanup, qmgr,
// the delivery agents, bounce, postscreen, …) into typed Events and
// correlates them by queue ID into smtplog message records, and by smtpd
// process into session records. Replies quoted in the log follow RFC 5321
// section 4.2 (reply codes) and RFC 3463 (enhanced status codes).
package postfix

import (
	"math/bits"
	"strconv"
	"strings"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// Kind says what a Postfix log line reports.
type Kind uint8

const (
	KindUnknown       Kind = iota
	KindConnect            // smtpd: connect from host[ip]
	KindDisconnect         // smtpd: disconnect from host[ip] ehlo=1 … commands=N
	KindLost               // smtpd: lost connection / timeout / too many errors after CMD from host[ip]
	KindClient             // smtpd: QID: client=host[ip][, sasl_method=M, sasl_username=U]
	KindReject             // smtpd/postscreen/cleanup: [QID|NOQUEUE]: reject: STAGE from host[ip]: reply; from=<> to=<> proto= helo=<>
	KindRejectWarning      // … reject_warning: …
	KindTLSIn              // smtpd: T TLS connection established from host[ip]: version with cipher C …
	KindTLSOut             // smtp/lmtp: T TLS connection established to host[ip]:port: version with cipher C …
	KindSASLFailed         // smtpd: warning: host[ip]: SASL M authentication failed: reason[, sasl_username=U]
	KindMessageID          // cleanup: QID: message-id=<id>
	KindCheck              // cleanup: QID: hold|discard|warning|redirect|filter|…: header|body …: text
	KindQueued             // qmgr: QID: from=<s>, size=N, nrcpt=N (queue active)
	KindExpired            // qmgr: QID: from=<s>, status=expired, returned to sender
	KindRemoved            // qmgr/postsuper: QID: removed
	KindDelivery           // smtp/lmtp/local/virtual/pipe/error/discard/qmgr: QID: to=<r>, …, status=S (text)
	KindNotification       // bounce: QID: sender non-delivery notification: NEWQID
	KindPickup             // pickup: QID: uid=N from=<s>
	KindDiagnostic         // warning:, error:, fatal:, panic: lines
	KindInfo               // understood, nothing to record (postscreen verdicts, master, statistics, …)
)

// Event is one parsed Postfix log line. Strings share the line's memory.
//
// The fields are laid out by use, not by topic: the reading goroutine
// writes an Event and the correlating one reads it (Dialect's
// NewPrepared), so what every line is looked at for and what a delivery
// and a diagnostic line, the most frequent, carry come first and share
// as few cache lines as they can.
type Event struct {
	Kind    Kind
	Level   string // diagnostics: warning, error, fatal, panic
	Daemon  string // the last element of the program name: smtpd, qmgr, smtp, …
	QueueID string // "" for NOQUEUE and lines without one
	Text    string // deliveries: the parenthesised text after the status; otherwise a reason

	// Deliveries (and Code and Enhanced of rejections).
	Status   string // sent, deferred, bounced, expired, …
	To       string
	Relay    string
	DSN      string
	Delays   string
	Delay    float64
	Code     int
	Enhanced string
	OrigTo   string
	QueuedAs string // "queued as X" in a delivery reply (content filters)

	// The queue manager's from= line (and From of rejections).
	From    string
	HasFrom bool
	Size    int64
	Nrcpt   int

	ClientHost, ClientIP string
	ClientPort           int
	Counters             string // disconnect's command counters: "ehlo=1 mail=1 … commands=5"

	// Rejections and header/body checks.
	Action       string // reject, reject_warning, hold, discard, warning, milter-reject, …
	Stage        string // RCPT, DATA, END-OF-MESSAGE, CONNECT, header, body, …
	Reply        string // the reply as logged: "554 5.7.1 <a@b>: Recipient address rejected: …"
	Proto, Helo  string
	CheckSubject string // the header or body line a check matched

	MessageID string

	SASLMethod, SASLUser string

	TLSTrust, TLSVersion, TLSCipher string
	Peer                            string // TLS: the peer as logged, "host[ip]:port"

	NewQID string // bounce: the notification's queue ID
}

// Daemon returns the Postfix service of a syslog program name:
// "postfix/smtpd" → "smtpd", "postfix/submission/smtpd" → "smtpd",
// "postfix-lab/qmgr" → "qmgr".
func Daemon(program string) string {
	if i := strings.LastIndexByte(program, '/'); i >= 0 {
		return program[i+1:]
	}
	return program
}

// daemons are Postfix's service programs (postfix/master.cf and postlog).
func knownDaemon(d string) bool {
	switch d {
	case "smtpd", "smtp", "lmtp", "qmgr", "nqmgr", "oqmgr", "cleanup", "local", "virtual", "pipe",
		"error", "retry", "discard", "bounce", "defer", "trace", "pickup", "postscreen", "dnsblog",
		"tlsproxy", "anvil", "scache", "master", "postfix-script", "postsuper", "postqueue",
		"postdrop", "sendmail", "tlsmgr", "verify", "flush", "proxymap", "trivial-rewrite",
		"showq", "qmqpd", "postlogd", "postlog", "postmulti", "postmap", "postalias", "spawn", "relay":
		return true
	}
	return false
}

// Claims reports whether a syslog program name is Postfix's:
// "postfix/…", "postfix-INSTANCE/…", or any "NAME/DAEMON" with a Postfix
// daemon name (a custom syslog_name).
func Claims(program string) bool {
	i := strings.IndexByte(program, '/')
	if i < 0 {
		return false
	}
	if strings.HasPrefix(program, "postfix") {
		return true
	}
	return knownDaemon(Daemon(program))
}

// The lengths of a queue ID that IsQueueID accepts.
const minQueueID, maxQueueID = 6, 32

// IsQueueID reports whether s looks like a Postfix queue ID: short
// (hexadecimal, 6+ characters) or long (enable_long_queue_ids: 10+
// characters of [0-9A-Za-z]).
func IsQueueID(s string) bool {
	if len(s) < minQueueID || len(s) > maxQueueID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return alnum[c] }

// alnum is the set [0-9A-Za-z] as a table: one load per byte instead of
// three range tests.
var alnum = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
	}
	return t
}()

// Parse parses the message of a Postfix log line from the given program.
// It never panics; a line it does not know is KindUnknown.
func Parse(program, msg string) Event {
	var e Event
	parseInto(&e, program, msg)
	return e
}

// parseInto is Parse into *e, which it overwrites.
func parseInto(e *Event, program, msg string) {
	*e = Event{Daemon: Daemon(program)}
	// Diagnostics first: "warning: …" etc. A few warnings carry events.
	if lv := diagLevel(msg); lv != "" {
		e.Level = lv
		body := msg[len(lv)+2:]
		if lv == "warning" && parseSASLFailed(e, body) {
			return
		}
		e.Kind = KindDiagnostic
		e.Text = body
		return
	}
	// A queue ID (or NOQUEUE, which has its shape) is the run of letters
	// and digits before the message's first ": ". Looking at that run
	// alone finds it without searching the whole message for ": ".
	n := 0
	for n < len(msg) && n <= maxQueueID && isAlnum(msg[n]) {
		n++
	}
	if n >= minQueueID && n <= maxQueueID && n+1 < len(msg) && msg[n] == ':' && msg[n+1] == ' ' {
		if id := msg[:n]; id != "NOQUEUE" {
			e.QueueID = id
		}
		parseQueued(e, msg[n+2:])
		if e.Kind != KindUnknown {
			return
		}
		e.QueueID = ""
	}
	parseUnqueued(e, msg)
}

// diagLevel returns the level of a diagnostic message ("warning: …",
// "error: …", "fatal: …", "panic: …"), or "".
func diagLevel(msg string) string {
	if msg == "" {
		return ""
	}
	var lv string // the one level its first letter allows
	switch msg[0] {
	case 'w':
		lv = "warning"
	case 'e':
		lv = "error"
	case 'f':
		lv = "fatal"
	case 'p':
		lv = "panic"
	default:
		return ""
	}
	if n := len(lv); len(msg) > n+1 && msg[:n] == lv && msg[n] == ':' && msg[n+1] == ' ' {
		return lv
	}
	return ""
}

// events holds the parses of a batch of lines (mtalog.Prepared).
type events []Event

var _ mtalog.Prepared = events(nil)

// Prepare parses l into e[i].
func (e events) Prepare(i int, l *mtalog.Line) { parseInto(&e[i], l.Program, l.Message) }

// parseQueued handles the text after "QID: " or "NOQUEUE: ".
func parseQueued(e *Event, s string) {
	switch {
	case strings.HasPrefix(s, "to="):
		parseDelivery(e, s)
	case strings.HasPrefix(s, "from="):
		parseFrom(e, s)
	case s == "removed":
		e.Kind = KindRemoved
	case strings.HasPrefix(s, "client="):
		e.Kind = KindClient
		v := s[len("client="):]
		hostPart, tail, _ := strings.Cut(v, ", ")
		e.ClientHost, e.ClientIP, e.ClientPort = splitClient(hostPart)
		for tail != "" {
			var kv string
			kv, tail, _ = strings.Cut(tail, ", ")
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "sasl_method":
				e.SASLMethod = val
			case "sasl_username":
				e.SASLUser = val
			}
		}
	case strings.HasPrefix(s, "message-id="):
		e.Kind = KindMessageID
		e.MessageID = s[len("message-id="):]
	case strings.HasPrefix(s, "reject: "), strings.HasPrefix(s, "reject_warning: "), strings.HasPrefix(s, "milter-reject: "),
		strings.HasPrefix(s, "hold: "), strings.HasPrefix(s, "discard: "), strings.HasPrefix(s, "warning: "),
		strings.HasPrefix(s, "milter-hold: "), strings.HasPrefix(s, "milter-discard: "), strings.HasPrefix(s, "redirect: "),
		strings.HasPrefix(s, "filter: "), strings.HasPrefix(s, "replace: "), strings.HasPrefix(s, "prepend: "):
		parseAction(e, s)
	case strings.HasSuffix(s, " notification: "+lastWord(s)) && strings.Contains(s, "notification: "):
		e.Kind = KindNotification
		e.NewQID = lastWord(s)
		e.Text = s[:strings.Index(s, " notification: ")] // "sender non-delivery"
	case strings.HasPrefix(s, "uid="):
		e.Kind = KindPickup
		if i := strings.Index(s, "from=<"); i >= 0 {
			if j := strings.IndexByte(s[i+6:], '>'); j >= 0 {
				e.From, e.HasFrom = s[i+6:i+6+j], true
			}
		}
	case strings.HasPrefix(s, "resent-message-id="), s == "placed on hold", s == "released from hold",
		s == "requeued", strings.HasPrefix(s, "enabling PIX workarounds"), strings.HasPrefix(s, "lost connection with"),
		strings.HasPrefix(s, "conversation with"), strings.HasPrefix(s, "host "), strings.HasPrefix(s, "orig_queue_id="),
		strings.HasPrefix(s, "sender delivery status notification"):
		e.Kind = KindInfo
		e.Text = s
	}
}

func lastWord(s string) string {
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		return s[i+1:]
	}
	return s
}

// parseDelivery: to=<r>, [orig_to=<o>, ]relay=R, [conn_use=N, ]delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=S (text)
//
// The fields are those before the first "status=", split at each ", ",
// and a field's key is what precedes its first "=". Deliveries are the
// most frequent lines with fields, so one pass over the bytes finds the
// fields, their keys and the status instead of a search for each.
func parseDelivery(e *Event, s string) {
	st := -1
	p, eq := 0, -1 // the current field's start and first '='
	for i := 0; i < len(s); i++ {
		// Skip eight bytes at a time while none is a ',' or a '='.
		for i+8 <= len(s) {
			m := commaOrEq(le64(s[i : i+8]))
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i == len(s) {
			break
		}
		if c := s[i]; c == '=' {
			// The first '=' preceded by "status" ends the first
			// "status=", and with it the fields.
			if i >= 6 && s[i-6:i] == "status" {
				st = i - 6
				break
			}
			if eq < 0 {
				eq = i
			}
		} else if c == ',' && i+1 < len(s) && s[i+1] == ' ' {
			deliveryField(e, s[p:i], eq-p)
			p, eq = i+2, -1
			i++
		}
	}
	if st < 0 {
		// Not a delivery: undo what its fields set.
		e.To, e.OrigTo, e.Relay, e.Delay, e.Delays, e.DSN = "", "", "", 0, "", ""
		return
	}
	if p < st {
		deliveryField(e, s[p:st], eq-p)
	}
	status, text := s[st+len("status="):], ""
	if sp := strings.IndexByte(status, ' '); sp >= 0 {
		status, text = status[:sp], status[sp+1:]
	}
	e.Status = status
	if len(text) >= 2 && text[0] == '(' && text[len(text)-1] == ')' {
		text = text[1 : len(text)-1]
	}
	e.Text = text
	if e.To == "" && !strings.HasPrefix(s, "to=<>") {
		return
	}
	e.Kind = KindDelivery
	if i := strings.Index(text, "queued as "); i >= 0 {
		q := text[i+len("queued as "):]
		if j := strings.IndexAny(q, " ,;)"); j >= 0 {
			q = q[:j]
		}
		if IsQueueID(q) {
			e.QueuedAs = q
		}
	}
	e.Code, e.Enhanced = mtalog.ReplyCodes(text)
}

// commaOrEq marks the bytes of w (eight bytes, little-endian) that are a
// ',' or a '=' with their high bit; the lowest mark is exact (a mark above
// a marked byte may be false), so it finds the first such byte.
func commaOrEq(w uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x, y := w^(','*lo), w^('='*lo)
	return ((x-lo)&^x | (y-lo)&^y) & hi
}

// le64 reads 8 bytes little-endian; the compiler makes it one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// deliveryField sets what one field of a delivery line says; eq is the
// index of its first '=', negative for none (the whole field is the key).
func deliveryField(e *Event, f string, eq int) {
	k, v := f, ""
	if eq >= 0 {
		k, v = f[:eq], f[eq+1:]
	}
	switch k {
	case "to":
		e.To = trimAngle(v)
	case "orig_to":
		e.OrigTo = trimAngle(v)
	case "relay":
		e.Relay = v
	case "delay":
		e.Delay = parseFloat(v)
	case "delays":
		e.Delays = v
	case "dsn":
		e.DSN = v
	}
}

// parseFrom: from=<s>, size=N, nrcpt=N (queue active) | from=<s>, status=expired, returned to sender
func parseFrom(e *Event, s string) {
	if !strings.HasPrefix(s, "from=<") {
		return
	}
	j := strings.Index(s, ">, ")
	if j < 0 {
		return
	}
	e.From, e.HasFrom = s[len("from=<"):j], true
	rest := s[j+3:]
	if strings.HasPrefix(rest, "status=expired") {
		e.Kind = KindExpired
		e.Status = "expired"
		return
	}
	for rest != "" {
		var kv string
		kv, rest = cutField(rest)
		if v, ok := value(kv, "size"); ok {
			n, ok := parseInt(v)
			if !ok {
				return
			}
			e.Size = n
		} else if v, ok := value(kv, "nrcpt"); ok {
			if sp := strings.IndexByte(v, ' '); sp >= 0 {
				v = v[:sp]
			}
			n, ok := parseInt(v)
			if !ok || int64(int(n)) != n {
				return
			}
			e.Nrcpt = int(n)
			e.Kind = KindQueued
		}
	}
}

// value returns the value of a field "key=value", or "" for a field that
// is key alone: the key is what precedes the field's first "=".
func value(field, key string) (string, bool) {
	if !strings.HasPrefix(field, key) {
		return "", false
	}
	switch v := field[len(key):]; {
	case v == "":
		return "", true
	case v[0] == '=':
		return v[1:], true
	}
	return "", false
}

// cutField is strings.Cut(s, ", ") without the found flag: the next of the
// comma-separated fields of a line, and what follows it.
func cutField(s string) (field, rest string) {
	for i := 0; ; i++ {
		j := strings.IndexByte(s[i:], ',')
		if j < 0 {
			return s, ""
		}
		i += j
		if i+1 < len(s) && s[i+1] == ' ' {
			return s[:i], s[i+2:]
		}
	}
}

// parseInt is strconv.ParseInt(s, 10, 64), reporting only success. A run
// of at most 18 digits, which cannot overflow, is read directly.
func parseInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) {
			n, err := strconv.ParseInt(s, 10, 64)
			return n, err == nil
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseFloat is strconv.ParseFloat(s, 64) with the error dropped. A
// decimal of at most 15 digits with at most one point, as Postfix writes
// delays, is the quotient of two exactly representable numbers, which
// IEEE division rounds as ParseFloat does (the fast path of Clinger's
// algorithm); anything else goes to strconv.
func parseFloat(s string) float64 {
	if len(s) == 0 || len(s) > 16 {
		return slowFloat(s)
	}
	var mant int64
	digits, frac := 0, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			mant = mant*10 + int64(c-'0')
			digits++
		case c == '.' && frac < 0:
			frac = i
		default:
			return slowFloat(s)
		}
	}
	if digits == 0 || digits > 15 {
		return slowFloat(s)
	}
	f := float64(mant)
	if frac >= 0 {
		f /= pow10[len(s)-1-frac]
	}
	return f
}

// pow10 are the powers of ten parseFloat divides by, all exact in a
// float64.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

func slowFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// parseAction: ACTION: STAGE from host[ip]: REPLY; from=<s> to=<r> proto=P helo=<h>[: text]
// and cleanup's ACTION: header|body TEXT from host[ip]; from=<s> to=<r> proto=P helo=<h>: text
func parseAction(e *Event, s string) {
	act, rest, _ := strings.Cut(s, ": ")
	e.Action = act
	switch act {
	case "reject", "milter-reject":
		e.Kind = KindReject
	case "reject_warning":
		e.Kind = KindRejectWarning
	default:
		e.Kind = KindCheck
	}
	// The envelope part begins at the last "; from=<".
	env := ""
	if i := lastEnvelope(rest); i >= 0 {
		env = rest[i+2:]
		rest = rest[:i]
	}
	stage, after, ok := strings.Cut(rest, " ")
	e.Stage = stage
	if stage == "header" || stage == "body" {
		// "header Subject: x from host[ip]" — the matched text, then the client.
		if i := strings.LastIndex(after, " from "); i >= 0 {
			e.CheckSubject = after[:i]
			e.ClientHost, e.ClientIP, e.ClientPort = splitClient(after[i+len(" from "):])
		} else {
			e.CheckSubject = after
		}
	} else if ok && strings.HasPrefix(after, "from ") {
		client, reply, _ := strings.Cut(after[len("from "):], ": ")
		e.ClientHost, e.ClientIP, e.ClientPort = splitClient(client)
		e.Reply = reply
	}
	// Envelope: from=<s> to=<r> proto=P helo=<h>[: text]. Values are in
	// angle brackets and may contain spaces, so scan them by brackets.
	for env != "" {
		env = strings.TrimLeft(env, " ,")
		k, v, ok := strings.Cut(env, "=")
		if !ok {
			break
		}
		if strings.HasPrefix(v, "<") {
			end := strings.Index(v, ">")
			if end < 0 {
				break
			}
			val := v[1:end]
			env = v[end+1:]
			switch k {
			case "from":
				e.From, e.HasFrom = val, true
			case "to":
				e.To = val
			case "helo":
				e.Helo = val
			}
		} else {
			val := v
			if j := strings.IndexAny(v, " ,:"); j >= 0 {
				val, env = v[:j], v[j:]
			} else {
				env = ""
			}
			if k == "proto" {
				e.Proto = val
			}
		}
		if strings.HasPrefix(env, ": ") {
			e.Text = env[2:]
			break
		}
	}
	if e.Reply == "" && e.Text != "" {
		e.Reply = e.Text
	}
	e.Code, e.Enhanced = mtalog.ReplyCodes(e.Reply)
}

// lastEnvelope is strings.LastIndex(s, "; from=<"), found by the few '<'
// of s from its end instead of a rolling hash over all of it.
func lastEnvelope(s string) int {
	for j := len(s); ; {
		k := strings.LastIndexByte(s[:j], '<')
		if k < 0 {
			return -1
		}
		if k >= 7 && s[k-7:k+1] == "; from=<" {
			return k - 7
		}
		j = k
	}
}

// parseSASLFailed: host[ip]: SASL M authentication failed: reason[, sasl_username=U]
func parseSASLFailed(e *Event, s string) bool {
	i := indexSASL(s)
	if i < 0 {
		return false
	}
	client, rest := s[:i], s[i+len(": SASL "):]
	mech, reason, ok := strings.Cut(rest, " authentication failed")
	if !ok {
		return false
	}
	e.Kind = KindSASLFailed
	e.ClientHost, e.ClientIP, e.ClientPort = splitClient(client)
	e.SASLMethod = mech
	reason = strings.TrimPrefix(reason, ": ")
	if i := strings.Index(reason, ", sasl_username="); i >= 0 {
		e.SASLUser = reason[i+len(", sasl_username="):]
		reason = reason[:i]
	}
	e.Text = reason
	return true
}

// indexSASL is strings.Index(s, ": SASL "), searching for the rarer
// "SASL " first: most warnings that are looked at for it have colons and
// no capital S.
func indexSASL(s string) int {
	for i := 0; ; i++ {
		j := strings.Index(s[i:], "SASL ")
		if j < 0 {
			return -1
		}
		i += j
		if i >= 2 && s[i-2:i] == ": " {
			return i - 2
		}
	}
}

// parseUnqueued handles lines without a queue ID.
func parseUnqueued(e *Event, s string) {
	switch {
	case strings.HasPrefix(s, "connect from "):
		e.Kind = KindConnect
		e.ClientHost, e.ClientIP, e.ClientPort = splitClient(s[len("connect from "):])
	case strings.HasPrefix(s, "disconnect from "):
		e.Kind = KindDisconnect
		client, counters, _ := strings.Cut(s[len("disconnect from "):], " ")
		e.ClientHost, e.ClientIP, e.ClientPort = splitClient(client)
		e.Counters = counters
	case strings.HasPrefix(s, "lost connection after "), strings.HasPrefix(s, "timeout after "),
		strings.HasPrefix(s, "too many errors after "):
		e.Kind = KindLost
		i := strings.Index(s, " from ")
		if i < 0 {
			e.Kind = KindUnknown
			return
		}
		e.Text = s[:i]
		e.ClientHost, e.ClientIP, e.ClientPort = splitClient(s[i+len(" from "):])
		e.Stage = lastWord(e.Text)
	case strings.Contains(s, " TLS connection established "):
		parseTLS(e, s)
	case strings.HasPrefix(s, "NOQUEUE: "):
		// postscreen's reject has no queue: handled by Parse via parseQueued.
	default:
		if isInfo(e.Daemon, s) {
			e.Kind = KindInfo
			e.Text = s
		}
	}
}

// isInfo recognises lines that carry nothing for a record.
func isInfo(daemon, s string) bool {
	switch daemon {
	case "postscreen", "dnsblog", "anvil", "master", "postfix-script", "scache", "tlsproxy", "postsuper", "postlogd", "tlsmgr", "verify":
		return true
	}
	for _, p := range [...]string{"connect to ", "improper command pipelining", "warning", "statistics:",
		"setting up TLS connection", "SSL_accept error", "SSL_connect error", "Trusted TLS", "Verified TLS",
		"Untrusted TLS", "Anonymous TLS", "NOQUEUE: lost connection", "discarding EHLO keywords",
		"reject: ", "daemon started", "terminating on signal", "reload", "refreshing", "mail system",
		"host ", "SMTPUTF8", "Cannot start TLS", "certificate verification", "server certificate",
		"server features", "message not accepted", "addr ", "hostname ", "Server certificate"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// parseTLS: TRUST TLS connection established (from host[ip]|to host[ip]:port): VERSION with cipher CIPHER (…)…
func parseTLS(e *Event, s string) {
	trust, rest, _ := strings.Cut(s, " TLS connection established ")
	e.TLSTrust = trust
	var peer string
	switch {
	case strings.HasPrefix(rest, "from "):
		e.Kind = KindTLSIn
		peer, rest, _ = strings.Cut(rest[len("from "):], ": ")
	case strings.HasPrefix(rest, "to "):
		e.Kind = KindTLSOut
		peer, rest, _ = strings.Cut(rest[len("to "):], ": ")
	default:
		return
	}
	e.Peer = peer
	e.ClientHost, e.ClientIP, e.ClientPort = splitClient(peer)
	e.TLSVersion, rest, _ = strings.Cut(rest, " with cipher ")
	e.TLSCipher, _, _ = strings.Cut(rest, " ")
}

// splitClient parses "host[ip]" or "host[ip]:port" (postscreen: "[ip]:port").
func splitClient(s string) (host, ip string, port int) {
	ob := strings.IndexByte(s, '[')
	cb := strings.LastIndexByte(s, ']')
	if ob < 0 || cb < ob {
		return s, "", 0
	}
	host, ip = s[:ob], s[ob+1:cb]
	if rest := s[cb+1:]; len(rest) > 1 && rest[0] == ':' {
		if p, err := strconv.Atoi(rest[1:]); err == nil && p > 0 && p < 65536 {
			port = p
		}
	}
	ip = strings.TrimPrefix(ip, "IPv6:")
	return host, ip, port
}

func trimAngle(s string) string {
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		return s[1 : len(s)-1]
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
