// Package opensmtpd parses OpenSMTPD's (6.x/7.x) log lines and correlates
// them into smtplog records: SMTP sessions by their 16-hex-digit session ID,
// messages by their 8-hex-digit message ID (the first half of each
// envelope ID).
//
// Lines look like "fd26c2745628b04a smtp connected address=192.0.2.1
// host=mail.example.org" (also the "smtp event=connected ..." spelling),
// "... smtp message msgid=98d0a33c size=387 nrcpt=1 proto=ESMTP", "... mta
// delivery evpid=98d0a33c43b3dbf6 from=<a> to=<b> rcpt=<-> source=... relay=...
// delay=1s result=Ok stat=...". The program name is "smtpd".
package opensmtpd

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Event is one parsed OpenSMTPD log line.
type Event struct {
	Session string            `json:"session,omitempty"` // the 16-hex-digit session ID
	Side    string            `json:"side,omitempty"`    // "smtp" (inbound), "mta" (outbound), "mda" (local)
	Event   string            `json:"event,omitempty"`   // connected, message, envelope, failed-command, tls, authentication, delivery, disconnected, ...
	Fields  map[string]string `json:"fields,omitempty"`  // key=value pairs, quotes and <> removed
	Level   string            `json:"level,omitempty"`   // "info", "warn", ... for lines about smtpd itself
	Text    string            `json:"text,omitempty"`
}

// ErrNotOpenSMTPD is returned for text that is not an OpenSMTPD log line.
var ErrNotOpenSMTPD = errors.New("opensmtpd: not an opensmtpd log line")

// Parse parses the message of one smtpd log line. It never panics.
func Parse(msg string) (Event, error) {
	var ev Event
	sid, rest, ok := strings.Cut(msg, " ")
	if !ok || !isSessionID(sid) {
		for _, lvl := range []string{"info", "warn", "debug", "fatal", "crit"} {
			if strings.HasPrefix(msg, lvl+": ") {
				return Event{Level: lvl, Text: msg[len(lvl)+2:]}, nil
			}
		}
		return Event{Text: msg}, ErrNotOpenSMTPD
	}
	ev.Session = sid
	side, rest, _ := strings.Cut(rest, " ")
	switch side {
	case "smtp", "mta", "mda", "smtp-in", "mta-out":
	default:
		return Event{Text: msg}, ErrNotOpenSMTPD
	}
	ev.Side = side
	// "smtp connected address=..." or "smtp event=connected address=...".
	if strings.HasPrefix(rest, "event=") {
		name, r, _ := strings.Cut(rest[len("event="):], " ")
		ev.Event, rest = name, r
	} else {
		name, r, _ := strings.Cut(rest, " ")
		ev.Event, rest = name, r
	}
	if ev.Event == "" {
		return Event{Text: msg}, ErrNotOpenSMTPD
	}
	ev.Fields = kv(rest)
	return ev, nil
}

func isSessionID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// kv parses `key=value key="quoted value" key=<address>` pairs. A quoted
// value ends at a '"' followed by a space or the end of the line, since
// smtpd does not escape quotes inside values.
func kv(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexByte(s, ' ')
		if eq < 0 || sp >= 0 && sp < eq {
			// A bare word: keep it under its own name.
			if sp < 0 {
				if s != "" {
					m[s] = ""
				}
				return m
			}
			m[s[:sp]] = ""
			s = s[sp:]
			continue
		}
		key := s[:eq]
		s = s[eq+1:]
		var v string
		switch {
		case strings.HasPrefix(s, `"`):
			end := -1
			for i := 1; i < len(s); i++ {
				if s[i] == '"' && (i+1 == len(s) || s[i+1] == ' ') {
					end = i
					break
				}
			}
			if end < 0 {
				v, s = s[1:], ""
			} else {
				v, s = s[1:end], s[end+1:]
			}
		case strings.HasPrefix(s, "<"):
			end := strings.IndexByte(s, '>')
			if end < 0 {
				v, s = s[1:], ""
			} else {
				v, s = s[1:end], s[end+1:]
			}
		default:
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				v, s = s, ""
			} else {
				v, s = s[:end], s[end:]
			}
		}
		m[key] = v
	}
	return m
}

// Detect scores how likely l is an OpenSMTPD line: 0, 1 (program smtpd) or
// 2 (a session ID and an smtp/mta event).
func Detect(l mtalog.Line) int {
	ev, err := Parse(l.Message)
	if err == nil && ev.Session != "" {
		return 2
	}
	if l.Program == "smtpd" && err == nil {
		return 1
	}
	return 0
}

// Options configure a Correlator.
type Options struct {
	// Host names the observing host for lines that carry none.
	Host string
	// MaxOpen bounds the messages and sessions kept open; when exceeded the
	// least recently seen tenth is flushed, flagged "incomplete". Zero
	// means 100000.
	MaxOpen int
}

// Correlator joins smtpd lines into message and session records. It is not
// safe for concurrent use.
type Correlator struct {
	opts     Options
	sessions map[string]*session
	msgs     map[string]*message
	// idleSess and idleMsgs hold the open sessions and messages by their
	// IDs, least recently seen first, so that Flush looks at the idle ones
	// only.
	idleSess, idleMsgs mtalog.IdleQueue[string]
}

var _ mtalog.Correlator = (*Correlator)(nil)

type session struct {
	rec  *record.Record
	idle mtalog.IdleEntry[string] // in Correlator.idleSess; Last is the last line's time
}

func (s *session) lastSeen() time.Time { return s.idle.Last() }

type message struct {
	rec   *record.Record
	idle  mtalog.IdleEntry[string] // in Correlator.idleMsgs; Last is the last line's time
	final map[string]string        // evpid → final status (sent, bounced)
	envs  map[string]bool          // evpids seen
	seen  bool                     // the "smtp message" line was seen
}

func (m *message) lastSeen() time.Time { return m.idle.Last() }

// NewCorrelator returns a Correlator for OpenSMTPD lines.
func NewCorrelator(opts Options) *Correlator {
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = 100000
	}
	return &Correlator{opts: opts, sessions: map[string]*session{}, msgs: map[string]*message{}}
}

// Feed consumes one line; it reports false for a line it does not
// understand.
func (c *Correlator) Feed(l mtalog.Line, emit func(*record.Record)) bool {
	ev, err := Parse(l.Message)
	if err != nil {
		return false
	}
	t := l.Time.UTC()
	host := cmp.Or(l.Host, c.opts.Host)
	if ev.Session == "" {
		return ev.Level == "info" || ev.Level == "debug"
	}
	f := ev.Fields
	ok := true
	switch ev.Side + " " + ev.Event {
	case "smtp connected":
		s := c.session(ev.Session, t, host)
		s.rec.ClientIP = f["address"]
	case "smtp tls":
		s := c.session(ev.Session, t, host)
		s.rec.TLS = tlsInfo(f["ciphers"])
	case "smtp authentication":
		s := c.session(ev.Session, t, host)
		a := &record.Auth{Username: f["user"]}
		switch f["result"] {
		case "ok":
			a.Result = "success"
			s.rec.Username = f["user"]
		case "permfail", "tempfail":
			a.Result = "failure"
			s.rec.Errors = append(s.rec.Errors, "authentication "+f["result"]+" for "+f["user"])
		default:
			a.Result = f["result"]
		}
		s.rec.Auth = a
	case "smtp failed-command":
		s := c.session(ev.Session, t, host)
		c.failed(s, f, t, host, emit)
	case "smtp message":
		s := c.session(ev.Session, t, host)
		s.rec.Messages++
		m := c.msg(f["msgid"], t, host)
		m.seen = true
		r := m.rec
		r.Timestamp = t
		r.SessionID = ev.Session
		r.Size, _ = strconv.ParseInt(f["size"], 10, 64)
		r.Nrcpt, _ = strconv.Atoi(f["nrcpt"])
		r.ClientIP = s.rec.ClientIP
		r.Username = s.rec.Username
		if s.rec.TLS != nil {
			tls := *s.rec.TLS
			r.TLS = &tls
		}
	case "smtp envelope":
		evp := f["evpid"]
		m := c.msg(msgID(evp), t, host)
		m.envs[evp] = true
		from := f["from"]
		m.rec.MailFrom = &from
		if to := f["to"]; to != "" && !slices.Contains(m.rec.RcptTo, to) {
			m.rec.RcptTo = append(m.rec.RcptTo, to)
		}
	case "smtp disconnected", "smtp closed":
		s := c.session(ev.Session, t, host)
		s.rec.End = t
		reason := f["reason"]
		switch {
		case reason == "quit":
			s.rec.CloseReason = record.CloseQuit
		case strings.Contains(reason, "timeout"):
			s.rec.CloseReason = record.CloseTimeout
		case strings.HasPrefix(reason, "io-error") && strings.Contains(reason, "SSL"):
			s.rec.CloseReason = record.CloseError
			if s.rec.TLS == nil {
				s.rec.TLS = &record.TLS{}
			}
			s.rec.TLS.Error = strings.TrimPrefix(reason, "io-error: ")
		case strings.HasPrefix(reason, "io-error"), reason == "disconnect":
			s.rec.CloseReason = record.CloseClientLost
		default:
			s.rec.CloseReason = record.CloseError
		}
		if reason != "quit" {
			s.rec.Reason = reason
		}
		delete(c.sessions, ev.Session)
		c.idleSess.Remove(&s.idle)
		c.emitSession(s, false, emit)
	case "mta delivery", "mda delivery", "lka delivery":
		c.delivery(ev, t, host, emit)
	case "mta connecting", "mta connected", "mta disconnected", "mta tls", "mta server-cert-check",
		"mta error", "mta ssl_check_name", "mta cert-check", "smtp client-cert-check", "smtp cert-check",
		"smtp bounce", "smtp protocol-client", "smtp protocol-server", "smtp filter-response", "smtp spf":
		// Understood; the delivery lines carry what a record needs.
	default:
		ok = false
	}
	c.bound(emit)
	return ok
}

func msgID(evpid string) string {
	if len(evpid) >= 8 {
		return evpid[:8]
	}
	return evpid
}

func tlsInfo(ciphers string) *record.TLS {
	tls := &record.TLS{Used: true}
	// "TLSv1.3:TLS_AES_256_GCM_SHA384:256", or "version=TLSv1.3,
	// cipher=TLS_AES_256_GCM_SHA384, bits=256".
	if strings.Contains(ciphers, "version=") {
		for _, part := range strings.Split(ciphers, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "version":
				tls.Version = v
			case "cipher":
				tls.Cipher = v
			}
		}
		return tls
	}
	parts := strings.Split(ciphers, ":")
	if len(parts) >= 2 {
		tls.Version, tls.Cipher = parts[0], parts[1]
	} else {
		tls.Cipher = ciphers
	}
	return tls
}

func (c *Correlator) session(id string, t time.Time, host string) *session {
	s := c.sessions[id]
	if s == nil {
		s = &session{rec: &record.Record{
			Type: record.TypeSession, Timestamp: t, Source: record.SourceOpenSMTPD,
			Host: host, SessionID: id,
		}}
		s.idle.Value = id
		c.sessions[id] = s
	}
	c.idleSess.Touch(&s.idle, t)
	return s
}

func (c *Correlator) msg(id string, t time.Time, host string) *message {
	m := c.msgs[id]
	if m == nil {
		m = &message{
			rec: &record.Record{
				Type: record.TypeMessage, Timestamp: t, Source: record.SourceOpenSMTPD,
				Host: host, QueueID: id,
			},
			final: map[string]string{},
			envs:  map[string]bool{},
		}
		m.idle.Value = id
		c.msgs[id] = m
	}
	c.idleMsgs.Touch(&m.idle, t)
	return m
}

// failed turns a refused MAIL, RCPT or DATA into a rejected message record;
// other refused commands become session errors.
func (c *Correlator) failed(s *session, f map[string]string, t time.Time, host string, emit func(*record.Record)) {
	cmd, res := f["command"], f["result"]
	verb := strings.ToUpper(strings.TrimSpace(strings.SplitN(cmd, ":", 2)[0]))
	if i := strings.IndexByte(verb, ' '); i >= 0 {
		verb = verb[:i]
	}
	code, enh := mtalog.SplitReply(res)
	if code < 400 || !(verb == "MAIL" || verb == "RCPT" || verb == "DATA" || verb == ".") {
		s.rec.Errors = append(s.rec.Errors, cmd+": "+res)
		return
	}
	r := &record.Record{
		Type: record.TypeMessage, Timestamp: t, Source: record.SourceOpenSMTPD, Host: host,
		SessionID: s.rec.SessionID, ClientIP: s.rec.ClientIP, Username: s.rec.Username,
		Status: record.StatusRejected, SMTPResponse: res, ReplyCode: code, EnhancedCode: enh,
		Reason: "rejected " + verb,
	}
	addr := ""
	if _, a, ok := strings.Cut(cmd, ":"); ok {
		addr = strings.TrimSpace(a)
		if i := strings.IndexByte(addr, '>'); i >= 0 {
			addr = addr[:i]
		}
		addr = strings.TrimPrefix(addr, "<")
	}
	switch verb {
	case "RCPT":
		r.RejectedRcpt = []record.Rejection{{Address: addr, SMTPResponse: res}}
	case "MAIL":
		r.MailFrom = &addr
	}
	emit(r)
}

func (c *Correlator) delivery(ev Event, t time.Time, host string, emit func(*record.Record)) {
	f := ev.Fields
	evp := f["evpid"]
	id := msgID(evp)
	m := c.msg(id, t, host)
	m.envs[evp] = true
	r := m.rec
	if r.MailFrom == nil {
		from := f["from"]
		r.MailFrom = &from
	}
	d := record.Delivery{Timestamp: t, Rcpt: f["to"], SMTPResponse: f["stat"]}
	if rc := f["rcpt"]; rc != "" && rc != "-" && rc != f["to"] {
		d.OrigRcpt = rc
	}
	switch strings.ToLower(f["result"]) {
	case "ok":
		d.Status = record.StatusSent
	case "tempfail":
		d.Status = record.StatusDeferred
	case "permfail", "loop":
		d.Status = record.StatusBounced
	default:
		d.Status = record.StatusDeferred
	}
	if strings.Contains(strings.ToLower(d.SMTPResponse), "expired") {
		d.Status = record.StatusExpired
	}
	if _, e := mtalog.SplitReply(d.SMTPResponse); e != "" {
		d.DSN = e
	} else {
		d.DSN = map[string]string{record.StatusSent: "2.0.0", record.StatusDeferred: "4.0.0",
			record.StatusBounced: "5.0.0", record.StatusExpired: "4.4.7"}[d.Status]
	}
	if relay := f["relay"]; relay != "" {
		ip, name, ok := strings.Cut(relay, " (")
		if ok {
			d.Relay = strings.TrimSuffix(name, ")") + "[" + ip + "]"
		} else {
			d.Relay = relay
		}
	} else if ev.Side == "mda" {
		d.Relay = "local"
	}
	d.DelayS = mtalog.ParseDelay(f["delay"])
	if !slices.Contains(r.RcptTo, d.Rcpt) && d.Rcpt != "" {
		r.RcptTo = append(r.RcptTo, d.Rcpt)
	}
	r.Deliveries = append(r.Deliveries, d)
	if d.Status != record.StatusDeferred {
		m.final[evp] = d.Status
	} else {
		delete(m.final, evp)
	}
	// Complete when every envelope has a final outcome.
	if m.seen && len(m.final) >= max(len(m.envs), r.Nrcpt) {
		delete(c.msgs, id)
		c.idleMsgs.Remove(&m.idle)
		setStatus(r)
		emit(r)
	}
}

// setStatus sets the message status to the worst of its recipients' latest
// outcomes.
func setStatus(r *record.Record) {
	if len(r.Deliveries) == 0 {
		r.Status = record.StatusAccepted
		return
	}
	mtalog.SetOutcome(r, r.Deliveries[mtalog.WorstLatest(r.Deliveries, nil)])
}

func (c *Correlator) emitSession(s *session, incomplete bool, emit func(*record.Record)) {
	r := s.rec
	if incomplete {
		r.Flags = append(r.Flags, "incomplete")
	}
	if !r.End.IsZero() {
		r.DurationMS = float64(r.End.Sub(r.Timestamp).Microseconds()) / 1000
	}
	emit(r)
}

// Flush emits what is still open: everything when before is zero,
// otherwise what has seen no line since before.
func (c *Correlator) Flush(before time.Time, emit func(*record.Record)) {
	items := mtalog.PopStale(nil, &c.idleMsgs, before, false)
	items = mtalog.PopStale(items, &c.idleSess, before, true)
	mtalog.SortStale(items)
	for _, it := range items {
		if it.Session {
			s := c.sessions[it.Key]
			delete(c.sessions, it.Key)
			c.emitSession(s, true, emit)
			continue
		}
		m := c.msgs[it.Key]
		delete(c.msgs, it.Key)
		m.rec.Flags = append(m.rec.Flags, "incomplete")
		setStatus(m.rec)
		emit(m.rec)
	}
}

func (c *Correlator) bound(emit func(*record.Record)) {
	if len(c.msgs)+len(c.sessions) <= c.opts.MaxOpen {
		return
	}
	lasts := mtalog.AppendLasts(nil, c.msgs, (*message).lastSeen)
	lasts = mtalog.AppendLasts(lasts, c.sessions, (*session).lastSeen)
	c.Flush(mtalog.BoundCut(lasts), emit)
}
