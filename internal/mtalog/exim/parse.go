// Package exim parses Exim's mainlog and rejectlog (Exim 4, both the
// 4.96 and the 4.97+ message ID formats) and correlates their lines by
// message ID into smtplog records.
//
// Exim writes its own log files ("2026-11-29 10:12:34 1rAbCd-000123-Ab <=
// ...", with log_selector +subsecond and +pid "2026-11-29 10:12:34.123
// [4242] ..."), or hands the same text to syslog ("exim[4242]: ..."). Parse
// takes the message of either kind; LineFromRaw turns a line of Exim's own
// file into an mtalog.Line for the dispatcher.
//
// The log format is described in the Exim specification, chapter "Log
// files" (sections "Format of log lines", "Reducing or increasing what is
// logged" and "Logging message reception/delivery").
package exim

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// Kind says what an Event describes.
type Kind int

const (
	KindUnknown      Kind = iota
	KindArrival           // "<=": a message was received
	KindDelivery          // "=>", "->", ">>", "*>": delivered (first, additional, cutthrough, faked)
	KindDefer             // "==": delivery deferred
	KindFail              // "**": delivery failed
	KindCompleted         // "Completed": the message left the queue
	KindQueueNote         // other lines about a queued message: Frozen, Unfrozen, removed, ...
	KindReject            // an ACL or protocol rejection ("rejected RCPT", "rejected after DATA", ...)
	KindAuthFail          // "<name> authenticator failed for ..."
	KindTLSError          // "TLS error on connection from|to ..."
	KindConnect           // "SMTP connection from ... (TCP/IP connection count = N)"
	KindClose             // "SMTP connection from ... closed by QUIT|EOF", "... lost", timeouts
	KindNoMail            // "no MAIL in SMTP connection from ... D=... C=..."
	KindSyncError         // "SMTP protocol synchronization error ..."
	KindSessionNote       // other lines about one SMTP connection ("incomplete transaction", ...)
	KindDaemon            // lines about Exim itself: daemon start, queue runs, cwd=, ...
	KindContinuation      // a rejectlog header line or another continuation without a timestamp
)

var kindNames = [...]string{"unknown", "arrival", "delivery", "defer", "fail", "completed",
	"queue_note", "reject", "auth_fail", "tls_error", "connect", "close", "no_mail",
	"sync_error", "session_note", "daemon", "continuation"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText makes Kind readable in golden JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Host is an Exim host specification: "name (helo) [ip]:port".
type Host struct {
	Name string `json:"name,omitempty"`
	Helo string `json:"helo,omitempty"`
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
}

// Event is one parsed Exim log line. Fields absent from the line are zero.
type Event struct {
	Kind Kind `json:"kind"`
	// Stamp is the timestamp Exim wrote, as wall-clock fields in UTC (Exim
	// writes local time; LineFromRaw and the correlator apply a location).
	// Zero when the line had none (syslog_timestamp = false).
	Stamp   time.Time `json:"stamp,omitzero"`
	Zone    bool      `json:"zone,omitempty"` // Stamp carried a numeric zone (log_timezone)
	PID     int       `json:"pid,omitempty"`
	QueueID string    `json:"queue_id,omitempty"`
	Flag    string    `json:"flag,omitempty"` // "<=", "=>", "->", ">>", "*>", "==", "**"

	Address     string   `json:"address,omitempty"`      // the sender on "<=", the recipient on deliveries
	OrigAddress string   `json:"orig_address,omitempty"` // "<original>" after a delivery address
	Host        *Host    `json:"host,omitempty"`         // H=
	Interface   *Host    `json:"interface,omitempty"`    // I=
	Sender      string   `json:"sender,omitempty"`       // F=<...> (null sender: NullSender)
	NullSender  bool     `json:"null_sender,omitempty"`  // "<= <>" or F=<>
	Protocol    string   `json:"protocol,omitempty"`     // P= on "<="
	User        string   `json:"user,omitempty"`         // U=
	AuthName    string   `json:"auth_name,omitempty"`    // A=name:id, or the failed authenticator
	AuthID      string   `json:"auth_id,omitempty"`
	Size        int64    `json:"size,omitempty"`       // S=
	MessageID   string   `json:"message_id,omitempty"` // id= or id*=
	Subject     string   `json:"subject,omitempty"`    // T= on "<="
	Transport   string   `json:"transport,omitempty"`  // T= on deliveries
	Router      string   `json:"router,omitempty"`     // R= on deliveries
	Parent      string   `json:"parent,omitempty"`     // R= on "<=": the message a bounce is about
	TLSCipher   string   `json:"tls_cipher,omitempty"` // X=
	CertVerify  string   `json:"cert_verify,omitempty"`
	PeerDN      string   `json:"peer_dn,omitempty"`      // DN=
	Confirm     string   `json:"confirm,omitempty"`      // C= on deliveries
	Commands    string   `json:"commands,omitempty"`     // C= on "no MAIL" lines
	QueueTime   float64  `json:"queue_time,omitempty"`   // QT= seconds
	DeliverTime float64  `json:"deliver_time,omitempty"` // DT= seconds
	Duration    float64  `json:"duration,omitempty"`     // D= seconds
	Chunking    bool     `json:"chunking,omitempty"`     // K
	Recipients  []string `json:"recipients,omitempty"`   // "for a b c" on "<=" (+received_recipients)
	DeferCode   string   `json:"defer_code,omitempty"`   // "defer (-44)": the errno part
	Command     string   `json:"command,omitempty"`      // rejected command: RCPT, MAIL, "after DATA", ...
	Text        string   `json:"text,omitempty"`         // the error or reason text, or the rest of the line
	Count       int      `json:"count,omitempty"`        // TCP/IP connection count
}

// ErrNotExim is returned for text that is not an Exim log line.
var ErrNotExim = errors.New("exim: not an exim log line")

// Parse parses the message of one Exim log line: a line of Exim's own
// mainlog or rejectlog, or the message part of a syslog line from Exim,
// with or without Exim's timestamp and [pid]. It never panics; text it does
// not recognise gives KindUnknown and ErrNotExim.
func Parse(msg string) (Event, error) {
	var ev Event
	s := msg
	if t, zone, rest, ok := cutStamp(s); ok {
		ev.Stamp, ev.Zone, s = t, zone, rest
	} else if s != "" && (s[0] == ' ' || s[0] == '\t') {
		return continuation(msg), nil
	}
	if pid, rest, ok := cutPID(s); ok {
		ev.PID, s = pid, rest
	}
	if id, rest, ok := cutQueueID(s); ok {
		ev.QueueID, s = id, rest
	}
	if ev.Stamp.IsZero() && ev.QueueID == "" && isContinuation(s) {
		return continuation(msg), nil
	}
	parseBody(&ev, s)
	if ev.Kind == KindUnknown {
		ev.Text = s
		return ev, ErrNotExim
	}
	return ev, nil
}

// isContinuation reports whether s looks like a line of a rejectlog header
// dump ("Envelope-from: <a>", "P Received: ...", "  Subject: ...") or the
// second line of a multi-line log entry.
func isContinuation(s string) bool {
	if s == "" {
		return false
	}
	if strings.HasPrefix(s, "Envelope-from:") || strings.HasPrefix(s, "Envelope-to:") ||
		strings.HasPrefix(s, "Recipients-list:") {
		return true
	}
	// Header lines: a flag character (or space) and a space, then "Name:".
	if len(s) > 3 && s[1] == ' ' && (s[0] == ' ' || s[0] >= 'A' && s[0] <= 'Z' || s[0] == '*') {
		name, _, ok := strings.Cut(s[2:], ":")
		return ok && name != "" && !strings.ContainsAny(name, " \t")
	}
	return false
}

func continuation(msg string) Event { return Event{Kind: KindContinuation, Text: msg} }

// cutStamp removes "YYYY-MM-DD HH:MM:SS[.fff][ +ZZZZ] " from the start of s.
func cutStamp(s string) (time.Time, bool, string, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false, s, false
	}
	y, ok1 := digits(s[0:4])
	mo, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	h, ok4 := digits(s[11:13])
	mi, ok5 := digits(s[14:16])
	se, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 {
		return time.Time{}, false, s, false
	}
	i := 19
	ns := 0
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && j < i+10 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 {
			return time.Time{}, false, s, false
		}
		frac, _ := digits(s[i+1 : j])
		for k := j - i - 1; k < 9; k++ {
			frac *= 10
		}
		ns = frac
		i = j
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, ns, time.UTC)
	zone := false
	if i+6 <= len(s) && s[i] == ' ' && (s[i+1] == '+' || s[i+1] == '-') {
		if off, ok := digits(s[i+2 : i+6]); ok && (i+6 == len(s) || s[i+6] == ' ') {
			secs := (off/100*60 + off%100) * 60
			if s[i+1] == '-' {
				secs = -secs
			}
			t = t.Add(-time.Duration(secs) * time.Second)
			zone = true
			i += 6
		}
	}
	if i < len(s) && s[i] != ' ' {
		return time.Time{}, false, s, false
	}
	if i < len(s) {
		i++
	}
	return t, zone, s[i:], true
}

func digits(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// cutPID removes "[1234] " (log_selector +pid) from the start of s.
func cutPID(s string) (int, string, bool) {
	if len(s) < 3 || s[0] != '[' {
		return 0, s, false
	}
	end := strings.IndexByte(s, ']')
	if end < 2 {
		return 0, s, false
	}
	pid, ok := digits(s[1:end])
	if !ok {
		return 0, s, false
	}
	rest := s[end+1:]
	if rest != "" && rest[0] != ' ' {
		return 0, s, false
	}
	return pid, strings.TrimPrefix(rest, " "), true
}

// IsQueueID reports whether s is an Exim message ID: the pre-4.97 form
// "1rAbCd-000123-Ab" (6-6-2 base-62 characters) or the 4.97+ form
// "1rAbCd-00000000123-AbCd" (6-11-4); intermediate lengths are accepted.
func IsQueueID(s string) bool {
	a, rest, ok := strings.Cut(s, "-")
	if !ok || len(a) != 6 || !base62(a) {
		return false
	}
	b, c, ok := strings.Cut(rest, "-")
	return ok && len(b) >= 6 && len(b) <= 11 && base62(b) && len(c) >= 2 && len(c) <= 4 && base62(c)
}

func base62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func cutQueueID(s string) (string, string, bool) {
	end := strings.IndexByte(s, ' ')
	tok := s
	rest := ""
	if end >= 0 {
		tok, rest = s[:end], s[end+1:]
	}
	if !IsQueueID(tok) {
		return "", s, false
	}
	return tok, rest, true
}

// parseBody fills ev from the text after the timestamp, pid and message ID.
func parseBody(ev *Event, s string) {
	if ev.QueueID != "" {
		if len(s) >= 3 && s[2] == ' ' {
			switch f := s[:2]; f {
			case "<=":
				ev.Kind, ev.Flag = KindArrival, f
				parseArrival(ev, s[3:])
				return
			case "=>", "->", ">>", "*>":
				ev.Kind, ev.Flag = KindDelivery, f
				parseDelivery(ev, s[3:])
				return
			case "==":
				ev.Kind, ev.Flag = KindDefer, f
				parseDelivery(ev, s[3:])
				return
			case "**":
				ev.Kind, ev.Flag = KindFail, f
				parseDelivery(ev, s[3:])
				return
			}
		}
		if s == "Completed" || strings.HasPrefix(s, "Completed ") {
			ev.Kind = KindCompleted
			fields(ev, strings.TrimPrefix(s, "Completed"))
			return
		}
		if strings.HasPrefix(s, "H=") || strings.HasPrefix(s, "U=") || strings.HasPrefix(s, "F=") {
			parseHostLine(ev, s)
			if ev.Kind != KindUnknown {
				return
			}
		}
		for _, p := range queueNotes {
			if strings.HasPrefix(s, p) {
				ev.Kind, ev.Text = KindQueueNote, s
				return
			}
		}
		return
	}
	switch {
	case strings.HasPrefix(s, "H=") || strings.HasPrefix(s, "U=") || strings.HasPrefix(s, "F="):
		parseHostLine(ev, s)
	case strings.HasPrefix(s, "SMTP connection from "):
		parseConnection(ev, s[len("SMTP connection from "):])
	case strings.HasPrefix(s, "no MAIL in SMTP connection from "):
		ev.Kind = KindNoMail
		rest := parseHostSpec(ev, s[len("no MAIL in SMTP connection from "):])
		fields(ev, rest)
	case strings.HasPrefix(s, "SMTP protocol synchronization error"):
		ev.Kind, ev.Text = KindSyncError, s
		if i := strings.Index(s, "H="); i >= 0 {
			parseHostSpec(ev, s[i+2:])
		} else if i := strings.Index(s, "connection from "); i >= 0 {
			parseHostSpec(ev, s[i+len("connection from "):])
		}
	case strings.HasPrefix(s, "TLS error on connection "):
		parseTLSError(ev, s)
	case strings.Contains(s, " authenticator failed for "):
		parseAuthFail(ev, s)
	case strings.HasPrefix(s, "unexpected disconnection while reading SMTP command from "):
		ev.Kind, ev.Text = KindClose, "unexpected disconnection"
		rest := parseHostSpec(ev, s[len("unexpected disconnection while reading SMTP command from "):])
		fields(ev, rest)
	case strings.HasPrefix(s, "SMTP command timeout on "), strings.HasPrefix(s, "SMTP data timeout "),
		strings.HasPrefix(s, "SMTP incoming data timeout"):
		ev.Kind, ev.Text = KindClose, s
		if i := strings.Index(s, "connection from "); i >= 0 {
			parseHostSpec(ev, s[i+len("connection from "):])
		}
	case strings.HasPrefix(s, "SMTP call from "):
		ev.Kind, ev.Text = KindSessionNote, s
		parseHostSpec(ev, s[len("SMTP call from "):])
	default:
		for _, p := range daemonNotes {
			if strings.HasPrefix(s, p) {
				ev.Kind, ev.Text = KindDaemon, s
				return
			}
		}
	}
}

// queueNotes are the starts of lines about a queued message that change no
// delivery outcome but are understood.
var queueNotes = []string{
	"Frozen", "Unfrozen", "Message is frozen", "Spool file is locked", "removed by ", "cancelled by ",
	"Message removed", "retry time not reached", "no immediate delivery", "SMTP error from remote mail server",
	"error ignored", "Error while reading message", "SMTP connection lost after final dot",
	"received: ", "* ", "speed limit",
}

// daemonNotes are the starts of lines about Exim's own processes.
var daemonNotes = []string{
	"exim ", "Start queue run", "End queue run", "cwd=", "daemon: ", "pid written to",
	"exim user lost privilege", "Connection request from", "Start ", "End ", "queue run: ",
	"TLS session ticket", "SIGHUP received", "pid=",
}

// fields parses KEY=value tokens (and the bare K flag) from s into ev. It
// returns the text after a ": " separator, if any.
func fields(ev *Event, s string) string {
	sc := scanner{s: s}
	for {
		sc.space()
		if sc.done() {
			return ""
		}
		if sc.s[sc.i] == ':' && (sc.i+1 == len(sc.s) || sc.s[sc.i+1] == ' ') {
			return strings.TrimSpace(sc.s[sc.i+1:])
		}
		key, ok := sc.key()
		if !ok {
			tok := sc.word()
			if strings.HasSuffix(tok, ":") && (sc.done() || sc.s[sc.i] == ' ') {
				tok = tok[:len(tok)-1]
				bare(ev, tok)
				return strings.TrimSpace(sc.s[sc.i:])
			}
			bare(ev, tok)
			continue
		}
		switch key {
		case "H":
			h := &Host{}
			sc.i += hostSpec(h, sc.s[sc.i:])
			ev.Host = h
			continue
		case "I":
			h := &Host{}
			sc.i += hostSpec(h, sc.s[sc.i:])
			ev.Interface = h
			continue
		}
		v := sc.value()
		set(ev, key, v)
	}
}

// bare handles a token that is not KEY=value: the K (CHUNKING) flag,
// "defer", "(errno)", L flags and anything else Exim adds.
func bare(ev *Event, tok string) {
	switch {
	case tok == "K":
		ev.Chunking = true
	case strings.HasPrefix(tok, "(") && strings.HasSuffix(tok, ")") && ev.DeferCode == "" && len(tok) > 2:
		ev.DeferCode = tok[1 : len(tok)-1]
	}
}

func set(ev *Event, key, v string) {
	switch key {
	case "F":
		a := strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		ev.Sender = a
		if a == "" {
			ev.NullSender = true
		}
	case "P":
		if strings.HasPrefix(v, "<") {
			return // +deliver_time's P=<return path> on deliveries
		}
		ev.Protocol = v
	case "U":
		ev.User = v
	case "A":
		name, id, _ := strings.Cut(v, ":")
		ev.AuthName, ev.AuthID = name, id
	case "S":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if ev.Size == 0 {
				ev.Size = n
			}
		}
	case "id", "id*":
		ev.MessageID = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
	case "T":
		if ev.Kind == KindArrival {
			ev.Subject = v
		} else {
			ev.Transport = v
		}
	case "R":
		if ev.Kind == KindArrival {
			ev.Parent = v
		} else {
			ev.Router = v
		}
	case "X":
		ev.TLSCipher = v
	case "CV":
		ev.CertVerify = v
	case "DN":
		ev.PeerDN = v
	case "C":
		if ev.Kind == KindNoMail {
			ev.Commands = v
		} else {
			ev.Confirm = v
		}
	case "QT":
		ev.QueueTime = mtalog.ParseDelay(v)
	case "DT":
		ev.DeliverTime = mtalog.ParseDelay(v)
	case "D":
		ev.Duration = mtalog.ParseDelay(v)
	}
}

// scanner walks a space-separated Exim field list.
type scanner struct {
	s string
	i int
}

func (sc *scanner) done() bool { return sc.i >= len(sc.s) }

func (sc *scanner) space() {
	for sc.i < len(sc.s) && sc.s[sc.i] == ' ' {
		sc.i++
	}
}

// key reads "KEY=" where KEY is letters, digits or '*' (as in "id*="), and
// leaves the scanner after the '='.
func (sc *scanner) key() (string, bool) {
	j := sc.i
	for j < len(sc.s) && j-sc.i < 8 {
		c := sc.s[j]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '*' {
			j++
			continue
		}
		break
	}
	if j == sc.i || j >= len(sc.s) || sc.s[j] != '=' {
		return "", false
	}
	k := sc.s[sc.i:j]
	sc.i = j + 1
	return k, true
}

// value reads a quoted ("..." with Exim's escapes), bracketed (<...>) or
// plain value.
func (sc *scanner) value() string {
	if sc.done() {
		return ""
	}
	switch sc.s[sc.i] {
	case '"':
		v, n := unquote(sc.s[sc.i:])
		sc.i += n
		return v
	case '<':
		end := strings.IndexByte(sc.s[sc.i:], '>')
		if end < 0 {
			v := sc.s[sc.i:]
			sc.i = len(sc.s)
			return v
		}
		v := sc.s[sc.i : sc.i+end+1]
		sc.i += end + 1
		return v
	}
	return sc.word()
}

func (sc *scanner) word() string {
	j := sc.i
	for j < len(sc.s) && sc.s[j] != ' ' {
		j++
	}
	w := sc.s[sc.i:j]
	sc.i = j
	return w
}

// unquote decodes a double-quoted string as Exim's string_printing writes
// it (\" \\ \n \t and \ooo octal) and returns the value and the number of
// bytes consumed. An unterminated string runs to the end of s.
func unquote(s string) (string, int) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1
		case c == '\\' && i+1 < len(s):
			n := s[i+1]
			switch {
			case n == 'n':
				b.WriteByte('\n')
				i += 2
			case n == 't':
				b.WriteByte('\t')
				i += 2
			case n == 'r':
				b.WriteByte('\r')
				i += 2
			case n >= '0' && n <= '7':
				v, j := 0, i+1
				for j < len(s) && j < i+4 && s[j] >= '0' && s[j] <= '7' {
					v = v*8 + int(s[j]-'0')
					j++
				}
				b.WriteByte(byte(v))
				i = j
			default:
				b.WriteByte(n)
				i += 2
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), len(s)
}

// hostSpec parses "name (helo) [ip]:port", "(helo) [ip]", "[ip]:port" or
// "name [ip]" at the start of s into h and returns the bytes consumed
// (stopping before the following space or ": ").
func hostSpec(h *Host, s string) int {
	i := 0
	if i < len(s) && s[i] != '(' && s[i] != '[' {
		j := i
		for j < len(s) && s[j] != ' ' {
			j++
		}
		h.Name = s[i:j]
		if strings.HasSuffix(h.Name, ":") && (j == len(s) || s[j] == ' ') {
			h.Name = h.Name[:len(h.Name)-1]
			return j - 1
		}
		i = j
		if i+1 < len(s) && s[i] == ' ' && (s[i+1] == '(' || s[i+1] == '[') {
			i++
		} else {
			return i
		}
	}
	if i < len(s) && s[i] == '(' {
		depth, j := 0, i
		for j < len(s) {
			if s[j] == '(' {
				depth++
			} else if s[j] == ')' {
				depth--
				if depth == 0 {
					break
				}
			}
			j++
		}
		if j >= len(s) {
			h.Helo = s[i+1:]
			return len(s)
		}
		h.Helo = s[i+1 : j]
		i = j + 1
		if i+1 < len(s) && s[i] == ' ' && s[i+1] == '[' {
			i++
		} else {
			return i
		}
	}
	if i < len(s) && s[i] == '[' {
		end := strings.IndexByte(s[i:], ']')
		if end < 0 {
			h.IP = s[i+1:]
			return len(s)
		}
		h.IP = s[i+1 : i+end]
		i += end + 1
		if i+1 < len(s) && s[i] == ':' && s[i+1] >= '0' && s[i+1] <= '9' {
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			h.Port, _ = digits(s[i+1 : j])
			i = j
		}
	}
	return i
}

// parseHostSpec parses a host specification (and an I= after it) into
// ev.Host and returns the rest of s.
func parseHostSpec(ev *Event, s string) string {
	h := &Host{}
	n := hostSpec(h, s)
	ev.Host = h
	rest := s[n:]
	if strings.HasPrefix(rest, " I=") {
		in := &Host{}
		m := hostSpec(in, rest[3:])
		ev.Interface = in
		rest = rest[3+m:]
	}
	return rest
}

func parseArrival(ev *Event, s string) {
	// The sender, "<>" for the null sender.
	addr, rest, _ := strings.Cut(s, " ")
	if addr == "<>" {
		ev.NullSender = true
	} else {
		ev.Address = addr
	}
	// "from <sender> for a b c" (+received_sender, +received_recipients)
	// ends the line.
	if i := strings.LastIndex(rest, " for "); i >= 0 && !strings.Contains(rest[i:], "=") {
		ev.Recipients = strings.Fields(rest[i+5:])
		rest = rest[:i]
	} else if strings.HasPrefix(rest, "for ") {
		ev.Recipients = strings.Fields(rest[4:])
		rest = ""
	}
	if i := strings.LastIndex(rest, " from <"); i >= 0 && strings.HasSuffix(rest, ">") {
		rest = rest[:i]
	}
	fields(ev, rest)
}

func parseDelivery(ev *Event, s string) {
	sc := scanner{s: s}
	addr := sc.word()
	colon := false
	if strings.HasSuffix(addr, ":") {
		addr, colon = addr[:len(addr)-1], true
	}
	ev.Address = addr
	rest := s[sc.i:]
	if colon {
		ev.Text = strings.TrimSpace(rest)
		return
	}
	rest = strings.TrimPrefix(rest, " ")
	if strings.HasPrefix(rest, "<") {
		end := strings.IndexByte(rest, '>')
		if end > 0 {
			ev.OrigAddress = rest[1:end]
			rest = rest[end+1:]
			if strings.HasPrefix(rest, ":") {
				ev.Text = strings.TrimSpace(rest[1:])
				return
			}
		}
	}
	text := fields(ev, rest)
	// +deliver_time puts DT= after the error text of "**" lines.
	if i := strings.LastIndex(text, " DT="); i >= 0 && !strings.Contains(text[i+4:], " ") {
		ev.DeliverTime = mtalog.ParseDelay(text[i+4:])
		text = text[:i]
	}
	ev.Text = text
}

// parseHostLine parses lines that start with H=, U= or F=: rejections,
// "incomplete transaction", "sender verify fail", ...
func parseHostLine(ev *Event, s string) {
	// The fields end where the reason text starts: at the first word
	// that is not KEY=value.
	sc := scanner{s: s}
	start := 0
	for {
		sc.space()
		start = sc.i
		if sc.done() {
			break
		}
		key, ok := sc.key()
		if !ok {
			break
		}
		switch key {
		case "H":
			h := &Host{}
			sc.i += hostSpec(h, sc.s[sc.i:])
			ev.Host = h
		case "I":
			h := &Host{}
			sc.i += hostSpec(h, sc.s[sc.i:])
			ev.Interface = h
		default:
			set(ev, key, sc.value())
		}
	}
	text := s[start:]
	ev.Text = text
	switch {
	case strings.HasPrefix(text, "rejected "), strings.HasPrefix(text, "temporarily rejected "):
		ev.Kind = KindReject
		parseRejected(ev, text)
	case strings.HasPrefix(text, "dropped: "), strings.HasPrefix(text, "sender verify "),
		strings.HasPrefix(text, "recipient verify "), strings.HasPrefix(text, "Warning: "):
		ev.Kind = KindReject
		ev.Command = "other"
		if _, reason, ok := strings.Cut(text, ": "); ok {
			ev.Text = reason
		}
		if strings.HasPrefix(text, "Warning: ") {
			ev.Kind = KindSessionNote
			ev.Text = text
		}
	case strings.HasPrefix(text, "incomplete transaction"), strings.HasPrefix(text, "SMTP "),
		strings.HasPrefix(text, "lost "), strings.HasPrefix(text, "ignoring "):
		ev.Kind = KindSessionNote
	}
}

// parseRejected splits "rejected RCPT <a>: reason", "rejected MAIL <a>:
// reason", "rejected after DATA: reason", "rejected EHLO or HELO x:
// reason", "rejected connection in "connect" ACL: reason", ...
func parseRejected(ev *Event, text string) {
	t := strings.TrimPrefix(text, "temporarily ")
	t = strings.TrimPrefix(t, "rejected ")
	head, reason, ok := strings.Cut(t, ": ")
	if !ok {
		head, reason = strings.TrimSuffix(t, ":"), ""
	}
	ev.Text = reason
	switch {
	case strings.HasPrefix(head, "RCPT "):
		ev.Command = "RCPT"
		ev.Address = strings.Trim(strings.TrimPrefix(head, "RCPT "), "<>")
	case strings.HasPrefix(head, "MAIL "):
		ev.Command = "MAIL"
		ev.Address = strings.Trim(strings.TrimPrefix(head, "MAIL "), "<>")
	case head == "MAIL" || head == "RCPT":
		ev.Command = head
	case strings.HasPrefix(head, "after "):
		ev.Command = head
	case strings.HasPrefix(head, "EHLO or HELO "):
		ev.Command = "HELO"
		ev.Address = strings.TrimPrefix(head, "EHLO or HELO ")
	default:
		ev.Command = head
	}
	if strings.HasPrefix(text, "temporarily ") {
		ev.DeferCode = "temporary"
	}
}

func parseConnection(ev *Event, s string) {
	rest := parseHostSpec(ev, s)
	rest = strings.TrimSpace(rest)
	switch {
	case strings.HasPrefix(rest, "(TCP/IP connection count = "):
		ev.Kind = KindConnect
		n := strings.TrimSuffix(strings.TrimPrefix(rest, "(TCP/IP connection count = "), ")")
		ev.Count, _ = digits(n)
	case strings.HasPrefix(rest, "closed by "), strings.HasPrefix(rest, "lost"),
		strings.HasPrefix(rest, "timed out"), strings.HasPrefix(rest, "dropped"):
		ev.Kind = KindClose
		if i := strings.Index(rest, " D="); i >= 0 {
			fields(ev, rest[i:])
			rest = rest[:i]
		}
		ev.Text = rest
	case rest == "":
		ev.Kind = KindConnect // "SMTP connection from [ip]" without the count (old logs)
	}
}

func parseTLSError(ev *Event, s string) {
	ev.Kind = KindTLSError
	rest := strings.TrimPrefix(s, "TLS error on connection ")
	dir := "from"
	switch {
	case strings.HasPrefix(rest, "from "):
		rest = rest[5:]
	case strings.HasPrefix(rest, "to "):
		rest, dir = rest[3:], "to"
	}
	rest = parseHostSpec(ev, rest)
	ev.Command = dir
	ev.Text = strings.TrimSpace(rest)
}

func parseAuthFail(ev *Event, s string) {
	name, rest, _ := strings.Cut(s, " authenticator failed for ")
	ev.Kind = KindAuthFail
	ev.AuthName = name
	rest = parseHostSpec(ev, rest)
	rest = strings.TrimPrefix(strings.TrimSpace(rest), ":")
	rest = strings.TrimSpace(rest)
	if i := strings.LastIndex(rest, "(set_id="); i >= 0 && strings.HasSuffix(rest, ")") {
		ev.AuthID = rest[i+8 : len(rest)-1]
		rest = strings.TrimSpace(rest[:i])
	}
	ev.Text = rest
}

// LineFromRaw turns one line of Exim's own mainlog or rejectlog into an
// mtalog.Line. Exim writes local time without a zone (unless log_timezone is
// set); loc says which zone that is (nil means time.Local). Lines without a
// timestamp (rejectlog header dumps, the second line of a multi-line entry)
// give a Line with a zero Time that the correlator attaches to the entry
// before it. The error is ErrNotExim for a line that is neither.
func LineFromRaw(raw, origin string, loc *time.Location) (mtalog.Line, error) {
	l := mtalog.Line{Program: "exim", Message: raw, Raw: raw, Origin: origin}
	t, zone, rest, ok := cutStamp(raw)
	if !ok {
		if raw != "" && (raw[0] == ' ' || raw[0] == '\t' || isContinuation(raw)) {
			return l, nil
		}
		return l, ErrNotExim
	}
	l.Time = applyLoc(t, zone, loc)
	if pid, r, ok := cutPID(rest); ok {
		l.PID = pid
		rest = r
	}
	l.Message = rest
	return l, nil
}

func applyLoc(t time.Time, zone bool, loc *time.Location) time.Time {
	if zone || t.IsZero() {
		return t
	}
	if loc == nil {
		loc = time.Local
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
}

// IsRawLine reports whether raw starts like a line of Exim's own log file:
// an Exim timestamp, then a message ID, a [pid] or text.
func IsRawLine(raw string) bool {
	_, _, _, ok := cutStamp(raw)
	return ok
}

// Detect scores how likely l is an Exim line for --mta auto: 0 (not Exim),
// 1 (could be: the program is exim or the message has an Exim shape) or 2
// (certain: an Exim message ID and an Exim flag).
func Detect(l mtalog.Line) int {
	isProg := Claims(l.Program)
	msg := l.Message
	if _, _, rest, ok := cutStamp(msg); ok {
		msg = rest
	}
	if _, rest, ok := cutPID(msg); ok {
		msg = rest
	}
	if _, rest, ok := cutQueueID(msg); ok {
		if len(rest) >= 3 && rest[2] == ' ' {
			switch rest[:2] {
			case "<=", "=>", "->", ">>", "*>", "==", "**":
				return 2
			}
		}
		if strings.HasPrefix(rest, "Completed") {
			return 2
		}
	}
	if isProg {
		return 1
	}
	return 0
}
