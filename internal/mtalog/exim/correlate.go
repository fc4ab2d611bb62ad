package exim

import (
	"cmp"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Options configure a Correlator.
type Options struct {
	// Host names the observing host for lines that carry none (Exim's own
	// log files have no host field).
	Host string
	// Location is the zone of Exim's timestamps when a Line has no Time of
	// its own; nil means time.Local.
	Location *time.Location
	// MaxOpen bounds the messages and sessions kept open; when it is
	// exceeded the least recently seen tenth is flushed, flagged
	// "incomplete". Zero means 100000.
	MaxOpen int
}

// Correlator joins Exim log lines by message ID into message records, and
// connection lines by client address into session records. It is not safe
// for concurrent use.
type Correlator struct {
	opts     Options
	msgs     map[string]*message
	sessions map[string]*session
	// idleMsgs and idleSess hold the open messages and sessions by their
	// keys, least recently seen first, so that Flush looks at the idle ones
	// only.
	idleMsgs, idleSess mtalog.IdleQueue[string]

	// held are rejection records kept for holdRejects, so that the same
	// rejection read from rejectlog (which follows it with the message's
	// headers) joins them; target is the record continuation lines belong
	// to.
	held   []heldReject
	target *record.Record
	// lastOK says whether the previous non-continuation line was
	// understood; continuation lines belong to it.
	lastOK bool
	// seen remembers recent rejections, so that the same rejection read
	// from both mainlog and rejectlog becomes one record.
	seen     map[string]struct{}
	seenRing []string
	seenNext int
}

var _ mtalog.Correlator = (*Correlator)(nil)

type message struct {
	rec     *record.Record
	idle    mtalog.IdleEntry[string] // in Correlator.idleMsgs; Last is the last line's time
	arrival bool
}

func (m *message) lastSeen() time.Time { return m.idle.Last() }

type heldReject struct {
	key string
	t   time.Time
	rec *record.Record
}

// holdRejects is how long a rejection waits for its copy from the other
// log file; maxHeld bounds how many wait.
const (
	holdRejects = 2 * time.Second
	maxHeld     = 1000
)

type session struct {
	rec    *record.Record
	idle   mtalog.IdleEntry[string] // in Correlator.idleSess; Last is the last line's time
	closed bool
}

func (s *session) lastSeen() time.Time { return s.idle.Last() }

const seenSize = 1024

// NewCorrelator returns a Correlator for Exim lines.
func NewCorrelator(opts Options) *Correlator {
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = 100000
	}
	return &Correlator{
		opts:     opts,
		msgs:     make(map[string]*message),
		sessions: make(map[string]*session),
		seen:     make(map[string]struct{}),
		seenRing: make([]string, seenSize),
	}
}

// Feed consumes one line. Lines from Exim's own files should come through
// LineFromRaw; syslog lines from the mtalog prefix parser.
func (c *Correlator) Feed(l mtalog.Line, emit func(*record.Record)) bool {
	ev, err := Parse(l.Message)
	if ev.Kind == KindContinuation {
		if !c.lastOK {
			return false
		}
		c.absorb(ev.Text)
		return true
	}
	c.target = nil
	if err != nil {
		c.lastOK = false
		return false
	}
	c.lastOK = true
	t := l.Time
	if t.IsZero() {
		t = applyLoc(ev.Stamp, ev.Zone, c.opts.Location)
	}
	t = t.UTC()
	c.release(t.Add(-holdRejects), emit)
	host := cmp.Or(l.Host, c.opts.Host)
	switch ev.Kind {
	case KindArrival:
		c.arrival(&ev, t, host, emit)
	case KindDelivery, KindDefer, KindFail:
		c.delivery(&ev, t, host)
	case KindCompleted:
		m := c.msg(ev.QueueID, t, host)
		if !m.arrival {
			m.rec.Flags = appendOnce(m.rec.Flags, "incomplete")
		}
		c.finish(ev.QueueID, m, emit)
	case KindQueueNote:
		m := c.msg(ev.QueueID, t, host)
		if strings.HasPrefix(ev.Text, "Frozen") || strings.HasPrefix(ev.Text, "Message is frozen") {
			m.rec.Flags = appendOnce(m.rec.Flags, "frozen")
		}
	case KindReject:
		c.reject(&ev, l.Message, t, host, emit)
	case KindAuthFail, KindTLSError, KindConnect, KindClose, KindNoMail, KindSyncError, KindSessionNote:
		c.sessionEvent(&ev, t, host, emit)
	case KindDaemon:
	}
	c.bound(emit)
	return true
}

// Flush emits what is still open: everything when before is zero,
// otherwise what has seen no line since before.
func (c *Correlator) Flush(before time.Time, emit func(*record.Record)) {
	c.release(before, emit)
	items := mtalog.PopStale(nil, &c.idleMsgs, before, false)
	items = mtalog.PopStale(items, &c.idleSess, before, true)
	mtalog.SortStale(items)
	for _, it := range items {
		if it.Session {
			c.flushSession(it.Key, emit)
		} else {
			m := c.msgs[it.Key]
			m.rec.Flags = appendOnce(m.rec.Flags, "incomplete")
			c.finish(it.Key, m, emit)
		}
	}
}

// bound flushes the least recently seen tenth of the open state when it
// exceeds MaxOpen.
func (c *Correlator) bound(emit func(*record.Record)) {
	if len(c.msgs)+len(c.sessions) <= c.opts.MaxOpen {
		return
	}
	lasts := mtalog.AppendLasts(nil, c.msgs, (*message).lastSeen)
	lasts = mtalog.AppendLasts(lasts, c.sessions, (*session).lastSeen)
	c.Flush(mtalog.BoundCut(lasts), emit)
}

func (c *Correlator) msg(id string, t time.Time, host string) *message {
	m := c.msgs[id]
	if m == nil {
		m = &message{rec: &record.Record{
			Type:      record.TypeMessage,
			Timestamp: t,
			Source:    record.SourceExim,
			Host:      host,
			QueueID:   id,
		}}
		m.idle.Value = id
		c.msgs[id] = m
	}
	c.idleMsgs.Touch(&m.idle, t)
	return m
}

func (c *Correlator) finish(id string, m *message, emit func(*record.Record)) {
	delete(c.msgs, id)
	c.idleMsgs.Remove(&m.idle)
	setStatus(m.rec)
	emit(m.rec)
}

func (c *Correlator) arrival(ev *Event, t time.Time, host string, emit func(*record.Record)) {
	m := c.msg(ev.QueueID, t, host)
	m.arrival = true
	r := m.rec
	// The arrival starts the story, even after a cutthrough delivery
	// (">>"), which Exim logs first.
	r.Timestamp = t
	if ev.NullSender {
		r.MailFrom = record.Ptr("")
	} else {
		r.MailFrom = record.Ptr(ev.Address)
	}
	setPeers(r, ev)
	if r.Size == 0 {
		r.Size = ev.Size
	}
	r.MessageID = ev.MessageID
	if ev.Subject != "" {
		r.Subject = decodeHeader(ev.Subject)
	}
	if ev.TLSCipher != "" {
		r.TLS = tlsInfo(ev)
	}
	for _, a := range ev.Recipients {
		r.RcptTo = appendOnce(r.RcptTo, a)
	}
	r.Nrcpt = len(r.RcptTo)
	if ev.Parent != "" {
		r.Flags = appendOnce(r.Flags, "dsn")
		r.Reason = "delivery status notification for " + ev.Parent
	}
	if ev.Host != nil && ev.Host.IP != "" {
		if s := c.sessions[hostKey(ev.Host)]; s != nil {
			s.rec.Messages++
			c.idleSess.Touch(&s.idle, t)
			if ev.AuthID != "" && s.rec.Auth == nil {
				s.rec.Auth = &record.Auth{Mechanism: strings.ToUpper(ev.AuthName), Username: ev.AuthID, Result: "success"}
				s.rec.Username = ev.AuthID
			}
			if s.rec.Helo == "" {
				s.rec.Helo = r.Helo
			}
			if r.TLS != nil && s.rec.TLS == nil {
				tls := *r.TLS
				s.rec.TLS = &tls
			}
		}
	}
}

func tlsInfo(ev *Event) *record.TLS {
	tls := &record.TLS{Used: true, PeerCert: ev.PeerDN}
	version, cipher, ok := strings.Cut(ev.TLSCipher, ":")
	if ok && strings.HasPrefix(version, "TLS") || strings.HasPrefix(version, "SSL") {
		tls.Version = strings.Replace(version, "TLS1", "TLSv1", 1)
		// Drop the trailing ":bits".
		if i := strings.LastIndexByte(cipher, ':'); i >= 0 {
			if _, err := strconv.Atoi(cipher[i+1:]); err == nil {
				cipher = cipher[:i]
			}
		}
		tls.Cipher = cipher
	} else {
		tls.Cipher = ev.TLSCipher
	}
	switch ev.CertVerify {
	case "yes", "dane":
		tls.Trust = "Verified"
	case "no":
		if ev.PeerDN != "" {
			tls.Trust = "Untrusted"
		} else {
			tls.Trust = "Anonymous"
		}
	}
	return tls
}

func (c *Correlator) delivery(ev *Event, t time.Time, host string) {
	m := c.msg(ev.QueueID, t, host)
	r := m.rec
	d := record.Delivery{Timestamp: t, Rcpt: ev.Address, OrigRcpt: ev.OrigAddress}
	switch ev.Kind {
	case KindDelivery:
		d.Status = record.StatusSent
		d.SMTPResponse = ev.Confirm
	case KindDefer:
		d.Status = record.StatusDeferred
		d.SMTPResponse = reply(ev.Text)
	case KindFail:
		d.Status = record.StatusBounced
		if strings.Contains(ev.Text, "retry timeout exceeded") || strings.Contains(ev.Text, "retry time not reached for any host after a long failure period") {
			d.Status = record.StatusExpired
		}
		d.SMTPResponse = reply(ev.Text)
	}
	d.DSN = mtalog.EnhancedCode(d.SMTPResponse)
	if d.DSN == "" {
		d.DSN = defaultDSN(d.Status)
	}
	switch {
	case ev.Host != nil:
		d.Relay = relayName(ev.Host)
	case ev.Transport != "":
		d.Relay = ev.Transport
	}
	switch {
	case ev.QueueTime > 0:
		d.DelayS = ev.QueueTime
	case m.arrival:
		d.DelayS = t.Sub(r.Timestamp).Seconds()
	}
	rcpt := d.Rcpt
	if d.OrigRcpt != "" {
		rcpt = d.OrigRcpt
	}
	r.RcptTo = appendOnce(r.RcptTo, rcpt)
	r.Nrcpt = len(r.RcptTo)
	r.Deliveries = append(r.Deliveries, d)
	if ev.TLSCipher != "" && r.UpstreamTLS == nil {
		r.UpstreamTLS = tlsInfo(ev)
	}
}

func relayName(h *Host) string {
	name := h.Name
	if name == "" {
		name = h.IP
	}
	s := name
	if h.IP != "" {
		s += "[" + h.IP + "]"
	}
	if h.Port > 0 {
		s += ":" + strconv.Itoa(h.Port)
	}
	return s
}

func (c *Correlator) reject(ev *Event, text string, t time.Time, host string, emit func(*record.Record)) {
	key := t.Format(time.RFC3339Nano) + "|" + text
	if _, dup := c.seen[key]; dup {
		for _, h := range c.held {
			if h.key == key {
				c.target = h.rec
			}
		}
		return
	}
	if old := c.seenRing[c.seenNext]; old != "" {
		delete(c.seen, old)
	}
	c.seenRing[c.seenNext] = key
	c.seenNext = (c.seenNext + 1) % seenSize
	c.seen[key] = struct{}{}

	r := &record.Record{
		Type:      record.TypeMessage,
		Timestamp: t,
		Source:    record.SourceExim,
		Host:      host,
		QueueID:   ev.QueueID,
		Status:    record.StatusRejected,
	}
	setPeers(r, ev)
	if ev.Sender != "" || ev.NullSender {
		r.MailFrom = record.Ptr(ev.Sender)
	}
	r.SMTPResponse = ev.Text
	r.ReplyCode, r.EnhancedCode = mtalog.SplitReply(ev.Text)
	switch ev.Command {
	case "RCPT":
		r.RejectedRcpt = []record.Rejection{{Address: ev.Address, SMTPResponse: ev.Text}}
	case "MAIL":
		r.MailFrom = record.Ptr(ev.Address)
	}
	r.Reason = "rejected " + ev.Command
	if ev.DeferCode == "temporary" {
		r.Reason = "temporarily rejected " + ev.Command
	}
	// A message already open under this ID (rare) ends here.
	if ev.QueueID != "" {
		if m := c.msgs[ev.QueueID]; m != nil {
			delete(c.msgs, ev.QueueID)
			c.idleMsgs.Remove(&m.idle)
			r.Timestamp = m.rec.Timestamp
		}
	}
	c.held = append(c.held, heldReject{key, t, r})
	c.target = r
	if len(c.held) > maxHeld {
		emit(c.held[0].rec)
		c.held = c.held[1:]
	}
}

// release emits the held rejections from before t (all when t is zero).
func (c *Correlator) release(t time.Time, emit func(*record.Record)) {
	n := 0
	for n < len(c.held) && (t.IsZero() || c.held[n].t.Before(t)) {
		if c.held[n].rec == c.target {
			c.target = nil
		}
		emit(c.held[n].rec)
		n++
	}
	if n > 0 {
		c.held = append(c.held[:0], c.held[n:]...)
	}
}

// absorb takes a rejectlog header-dump line into the pending rejection.
func (c *Correlator) absorb(line string) {
	r := c.target
	if r == nil {
		return
	}
	switch {
	case strings.HasPrefix(line, "Envelope-to:"):
		for _, a := range strings.Fields(line[len("Envelope-to:"):]) {
			r.RcptTo = appendOnce(r.RcptTo, strings.Trim(a, "<>,"))
		}
		r.Nrcpt = len(r.RcptTo)
		return
	case strings.HasPrefix(line, "Envelope-from:"):
		if r.MailFrom == nil {
			r.MailFrom = record.Ptr(strings.Trim(strings.TrimSpace(line[len("Envelope-from:"):]), "<>"))
		}
		return
	}
	if len(line) < 3 || line[1] != ' ' || line[0] == '\t' {
		return
	}
	name, value, ok := strings.Cut(line[2:], ":")
	if !ok {
		return
	}
	value = strings.TrimSpace(value)
	switch strings.ToLower(name) {
	case "message-id":
		r.MessageID = strings.Trim(value, "<>")
	case "subject":
		r.Subject = decodeHeader(value)
	case "from":
		r.From = decodeHeader(value)
	}
}

func hostKey(h *Host) string {
	if h == nil || h.IP == "" {
		return ""
	}
	if h.Port > 0 {
		return h.IP + "." + strconv.Itoa(h.Port)
	}
	return h.IP
}

func (c *Correlator) sessionEvent(ev *Event, t time.Time, host string, emit func(*record.Record)) {
	key := hostKey(ev.Host)
	if ev.Kind == KindConnect {
		if old := c.sessions[key]; old != nil {
			c.flushSession(key, emit)
		}
	}
	s := c.sessions[key]
	if s == nil {
		s = &session{rec: &record.Record{
			Type:      record.TypeSession,
			Timestamp: t,
			Source:    record.SourceExim,
			Host:      host,
		}}
		s.idle.Value = key
		c.sessions[key] = s
	}
	c.idleSess.Touch(&s.idle, t)
	r := s.rec
	if ev.Host != nil {
		r.ClientIP, r.ClientPort = ev.Host.IP, ev.Host.Port
		if ev.Host.Helo != "" {
			r.Helo = ev.Host.Helo
		}
	}
	if ev.Interface != nil {
		r.ServerIP, r.ServerPort = ev.Interface.IP, ev.Interface.Port
	}
	switch ev.Kind {
	case KindAuthFail:
		r.Auth = &record.Auth{Mechanism: strings.ToUpper(ev.AuthName), Username: ev.AuthID, Result: "failure"}
		r.Errors = appendOnce(r.Errors, ev.AuthName+" authenticator failed: "+ev.Text)
	case KindTLSError:
		if r.TLS == nil {
			r.TLS = &record.TLS{}
		}
		r.TLS.Error = ev.Text
		r.Errors = appendOnce(r.Errors, "TLS error: "+ev.Text)
	case KindSyncError:
		r.Anomalies = appendOnce(r.Anomalies, ev.Text)
		r.CloseReason = record.CloseError
		s.closed = true
	case KindSessionNote:
		r.Errors = appendOnce(r.Errors, ev.Text)
	case KindClose:
		s.closed = true
		if r.End.IsZero() {
			r.End = t
		}
		switch {
		case strings.HasPrefix(ev.Text, "closed by QUIT"):
			r.CloseReason = record.CloseQuit
		case strings.Contains(ev.Text, "timeout"), strings.HasPrefix(ev.Text, "timed out"):
			r.CloseReason = record.CloseTimeout
		case strings.HasPrefix(ev.Text, "closed by EOF"), strings.HasPrefix(ev.Text, "lost"),
			strings.HasPrefix(ev.Text, "unexpected disconnection"):
			r.CloseReason = record.CloseClientLost
		default:
			r.CloseReason = record.CloseError
		}
		if r.CloseReason != record.CloseQuit {
			r.Reason = ev.Text
		}
		if ev.Duration > 0 {
			r.DurationMS = ev.Duration * 1000
		}
	case KindNoMail:
		s.closed = true
		if ev.Duration > 0 {
			r.DurationMS = ev.Duration * 1000
		}
		if r.End.IsZero() {
			r.End = t
		}
		if r.Reason == "" {
			r.Reason = "no MAIL (commands " + ev.Commands + ")"
		}
		c.flushSession(key, emit)
	}
}

func (c *Correlator) flushSession(key string, emit func(*record.Record)) {
	s := c.sessions[key]
	if s == nil {
		return
	}
	delete(c.sessions, key)
	c.idleSess.Remove(&s.idle)
	if !s.closed {
		s.rec.Flags = appendOnce(s.rec.Flags, "incomplete")
	}
	if s.rec.DurationMS == 0 && !s.rec.End.IsZero() {
		s.rec.DurationMS = float64(s.rec.End.Sub(s.rec.Timestamp).Microseconds()) / 1000
	}
	emit(s.rec)
}

// setStatus sets a message's status to the worst of its recipients' latest
// outcomes (a recipient is its original address when Exim rewrote it), and
// its reply fields to that delivery's.
func setStatus(r *record.Record) {
	if r.Status == record.StatusRejected {
		return
	}
	if len(r.Deliveries) == 0 {
		if r.Status == "" {
			r.Status = record.StatusAccepted
		}
		return
	}
	best := mtalog.WorstLatest(r.Deliveries, func(d record.Delivery) string {
		if d.OrigRcpt != "" {
			return d.OrigRcpt
		}
		return d.Rcpt
	})
	mtalog.SetOutcome(r, r.Deliveries[best])
}

// reply finds an SMTP reply ("450 4.3.0 text") in an Exim error text such
// as "SMTP error from remote mail server after RCPT TO:<a>: 450 4.3.0
// Error"; it returns the whole text when there is none.
func reply(text string) string {
	for i := 0; i+4 < len(text); i++ {
		if (i == 0 || text[i-1] == ' ') && text[i] >= '2' && text[i] <= '5' &&
			isDigit(text[i+1]) && isDigit(text[i+2]) && (text[i+3] == ' ' || text[i+3] == '-') &&
			(i == 0 || i >= 2 && text[i-2] == ':') {
			return text[i:]
		}
	}
	return text
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func defaultDSN(status string) string {
	switch status {
	case record.StatusSent:
		return "2.0.0"
	case record.StatusDeferred:
		return "4.0.0"
	case record.StatusBounced:
		return "5.0.0"
	case record.StatusExpired:
		return "4.4.7"
	}
	return ""
}

func appendOnce(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func decodeHeader(s string) string {
	var d mime.WordDecoder
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

// setPeers copies an arrival's or a rejection's client (H=), server
// interface (I=) and authenticated user (A=) to r.
func setPeers(r *record.Record, ev *Event) {
	if ev.Host != nil {
		r.ClientIP, r.ClientPort = ev.Host.IP, ev.Host.Port
		r.Helo = ev.Host.Helo
		if r.Helo == "" {
			r.Helo = ev.Host.Name
		}
	}
	if ev.Interface != nil {
		r.ServerIP, r.ServerPort = ev.Interface.IP, ev.Interface.Port
	}
	r.Username = ev.AuthID
}
