package sendmail

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Options configure a Correlator.
type Options struct {
	// Host names the observing host for lines that carry none.
	Host string
	// MaxOpen bounds the messages and per-process connection states kept
	// open; when exceeded the least recently seen tenth is flushed, flagged
	// "incomplete". Zero means 100000.
	MaxOpen int
}

// Correlator joins Sendmail lines by queue ID into message records. TLS
// and AUTH lines carry no queue ID; they are joined to the messages of the
// same process (pid). It is not safe for concurrent use.
type Correlator struct {
	opts  Options
	msgs  map[string]*message
	conns map[int]*conn // by pid
	// idleMsgs and idleConns hold the open messages and connections by
	// their keys, least recently seen first, so that Flush looks at the
	// idle ones only.
	idleMsgs  mtalog.IdleQueue[string]
	idleConns mtalog.IdleQueue[int]
}

var _ mtalog.Correlator = (*Correlator)(nil)

type message struct {
	rec  *record.Record
	idle mtalog.IdleEntry[string] // in Correlator.idleMsgs; Last is the last line's time
	// final counts recipients with a final outcome; nrcpts from the from=
	// line says how many there are.
	final  map[string]bool
	nrcpts int
	from   bool
}

func (m *message) lastSeen() time.Time { return m.idle.Last() }

type conn struct {
	idle     mtalog.IdleEntry[int] // in Correlator.idleConns; Last is the last line's time
	tls      *record.TLS           // STARTTLS=server
	upTLS    *record.TLS           // STARTTLS=client
	username string
	mech     string
}

func (c *conn) lastSeen() time.Time { return c.idle.Last() }

// NewCorrelator returns a Correlator for Sendmail lines.
func NewCorrelator(opts Options) *Correlator {
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = 100000
	}
	return &Correlator{opts: opts, msgs: map[string]*message{}, conns: map[int]*conn{}}
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
	switch ev.Kind {
	case "from":
		c.from(&ev, l.PID, t, host, emit)
	case "to":
		c.to(&ev, l.PID, t, host, emit)
	case "reject":
		c.reject(&ev, t, host, emit)
	case "rcpt_error":
		if ev.QueueID == "" {
			return false
		}
		m := c.msg(ev.QueueID, t, host)
		m.rec.RejectedRcpt = append(m.rec.RejectedRcpt, record.Rejection{Address: ev.Get("addr"), SMTPResponse: ev.Text})
	case "dsn":
		c.dsn(&ev, t, host)
	case "starttls":
		tls := &record.TLS{Used: true, Version: ev.Get("version"), Cipher: ev.Get("cipher"), Trust: trust(ev.Get("verify"))}
		k := c.conn(l.PID, t)
		name, ip := relayHost(ev.Get("relay"))
		if ev.Get("STARTTLS") == "client" {
			k.upTLS = tls
			break
		}
		k.tls = tls
		// The handshake is a session record of its own: Sendmail logs no
		// connection open or close lines by default.
		emit(&record.Record{Type: record.TypeSession, Timestamp: t, Source: record.SourceSendmail, Host: host,
			ClientIP: ip, Helo: "", TLS: tls, Reason: "STARTTLS from " + name})
	case "tls_error":
		tls := &record.TLS{Error: ev.Text}
		emit(&record.Record{Type: record.TypeSession, Timestamp: t, Source: record.SourceSendmail, Host: host,
			ClientIP: lostIP(ev.Text), TLS: tls, CloseReason: record.CloseError, Errors: []string{ev.Text}})
	case "auth":
		if ev.Get("AUTH") == "server" {
			k := c.conn(l.PID, t)
			k.username, k.mech = ev.Get("authid"), ev.Get("mech")
		}
	case "authfail":
		_, ip := relayHost(ev.Get("relay"))
		emit(&record.Record{Type: record.TypeSession, Timestamp: t, Source: record.SourceSendmail, Host: host,
			ClientIP: ip, Auth: &record.Auth{Mechanism: ev.Get("mech"), Username: ev.Get("user"), Result: "failure"},
			Errors: []string{ev.Text}})
	case "lost":
		if ev.QueueID != "" {
			m := c.msg(ev.QueueID, t, host)
			m.rec.Reason = ev.Text
			if !m.from {
				m.rec.Status = record.StatusAborted
			}
			break
		}
		emit(&record.Record{Type: record.TypeSession, Timestamp: t, Source: record.SourceSendmail, Host: host,
			ClientIP: lostIP(ev.Text), CloseReason: record.CloseClientLost, Reason: ev.Text})
	case "note":
		m := c.msg(ev.QueueID, t, host)
		if strings.HasPrefix(ev.Text, "Milter") || strings.HasPrefix(ev.Text, "discarded") {
			m.rec.Errors = append(m.rec.Errors, ev.Text)
		}
	case "conn_note":
		if strings.Contains(ev.Text, " did not issue ") || strings.HasPrefix(ev.Text, "timeout") {
			emit(&record.Record{Type: record.TypeSession, Timestamp: t, Source: record.SourceSendmail, Host: host,
				ClientIP: lostIP(ev.Text), Reason: ev.Text})
		}
	case "daemon":
	}
	c.bound(emit)
	return true
}

func lostIP(text string) string {
	i := strings.LastIndex(text, "[")
	j := strings.LastIndex(text, "]")
	if i >= 0 && j > i {
		return strings.TrimPrefix(text[i+1:j], "IPv6:")
	}
	return ""
}

func trust(verify string) string {
	switch verify {
	case "OK", "TRUSTED":
		return "Verified"
	case "NO", "NOT":
		return "Anonymous"
	case "FAIL":
		return "Untrusted"
	}
	return ""
}

func (c *Correlator) conn(pid int, t time.Time) *conn {
	k := c.conns[pid]
	if k == nil {
		k = &conn{}
		k.idle.Value = pid
		c.conns[pid] = k
	}
	c.idleConns.Touch(&k.idle, t)
	return k
}

func (c *Correlator) msg(id string, t time.Time, host string) *message {
	m := c.msgs[id]
	if m == nil {
		m = &message{rec: &record.Record{Type: record.TypeMessage, Timestamp: t, Source: record.SourceSendmail,
			Host: host, QueueID: id}, final: map[string]bool{}}
		m.idle.Value = id
		c.msgs[id] = m
	}
	c.idleMsgs.Touch(&m.idle, t)
	return m
}

func (c *Correlator) from(ev *Event, pid int, t time.Time, host string, emit func(*record.Record)) {
	m := c.msg(ev.QueueID, t, host)
	m.from = true
	r := m.rec
	if len(r.Deliveries) == 0 {
		r.Timestamp = t
	}
	from := strings.TrimSuffix(strings.TrimPrefix(ev.Get("from"), "<"), ">")
	r.MailFrom = &from
	r.Size, _ = strconv.ParseInt(ev.Get("size"), 10, 64)
	m.nrcpts, _ = strconv.Atoi(ev.Get("nrcpts"))
	r.Nrcpt = m.nrcpts
	r.MessageID = strings.TrimSuffix(strings.TrimPrefix(ev.Get("msgid"), "<"), ">")
	if rel := ev.Get("relay"); rel != "" {
		_, r.ClientIP = relayHost(rel)
	}
	if k := c.conns[pid]; k != nil && pid != 0 {
		if k.tls != nil {
			tls := *k.tls
			r.TLS = &tls
		}
		r.Username = k.username
	}
	if m.nrcpts == 0 {
		// Nothing was accepted: the transaction was refused or abandoned.
		if len(r.RejectedRcpt) > 0 || r.Status == "" {
			r.Status = record.StatusRejected
			if len(r.RejectedRcpt) > 0 {
				r.SMTPResponse = r.RejectedRcpt[0].SMTPResponse
				r.ReplyCode, r.EnhancedCode = mtalog.SplitReply(r.SMTPResponse)
			}
		}
		delete(c.msgs, ev.QueueID)
		c.idleMsgs.Remove(&m.idle)
		emit(r)
		return
	}
	c.maybeDone(ev.QueueID, m, emit)
}

func (c *Correlator) to(ev *Event, pid int, t time.Time, host string, emit func(*record.Record)) {
	m := c.msg(ev.QueueID, t, host)
	r := m.rec
	stat := ev.Get("stat")
	dsn := ev.Get("dsn")
	status := record.StatusBounced
	switch {
	case strings.HasPrefix(dsn, "2."), dsn == "" && strings.HasPrefix(stat, "Sent"):
		status = record.StatusSent
	case strings.HasPrefix(dsn, "4."), dsn == "" && (strings.HasPrefix(stat, "Deferred") || strings.HasPrefix(stat, "queued")):
		status = record.StatusDeferred
	}
	resp := stat
	switch {
	case strings.HasPrefix(stat, "Sent ("):
		resp = strings.TrimSuffix(strings.TrimPrefix(stat, "Sent ("), ")")
	case strings.HasPrefix(stat, "Deferred: "):
		resp = strings.TrimPrefix(stat, "Deferred: ")
	}
	relay := ""
	if rel := ev.Get("relay"); rel != "" {
		name, ip := relayHost(rel)
		relay = name
		if ip != "" {
			if name == "" {
				relay = ip
			}
			relay += "[" + ip + "]"
		}
	} else if mailer := ev.Get("mailer"); mailer != "" {
		relay = mailer
	}
	if dsn == "" {
		dsn = map[string]string{record.StatusSent: "2.0.0", record.StatusDeferred: "4.0.0", record.StatusBounced: "5.0.0"}[status]
	}
	delay := duration(ev.Get("delay"))
	for _, a := range strings.Split(ev.Get("to"), ",") {
		a = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "<"), ">"))
		if a == "" {
			continue
		}
		r.Deliveries = append(r.Deliveries, record.Delivery{Timestamp: t, Rcpt: a, Status: status, Relay: relay,
			DSN: dsn, SMTPResponse: resp, DelayS: delay})
		if !slices.Contains(r.RcptTo, a) {
			r.RcptTo = append(r.RcptTo, a)
		}
		if status != record.StatusDeferred {
			m.final[a] = true
		} else {
			delete(m.final, a)
		}
	}
	if k := c.conns[pid]; k != nil && pid != 0 && k.upTLS != nil && r.UpstreamTLS == nil {
		tls := *k.upTLS
		r.UpstreamTLS = &tls
	}
	c.maybeDone(ev.QueueID, m, emit)
}

// maybeDone emits a message once every recipient has a final outcome.
func (c *Correlator) maybeDone(id string, m *message, emit func(*record.Record)) {
	if !m.from || m.nrcpts == 0 || len(m.final) < m.nrcpts {
		return
	}
	delete(c.msgs, id)
	c.idleMsgs.Remove(&m.idle)
	setStatus(m.rec)
	emit(m.rec)
}

// dsn handles "PARENT: CHILD: DSN: reason": the child is the bounce.
func (c *Correlator) dsn(ev *Event, t time.Time, host string) {
	child := c.msg(ev.Child, t, host)
	child.rec.Flags = appendOnce(child.rec.Flags, "dsn")
	child.rec.Reason = "delivery status notification for " + ev.QueueID
	if strings.Contains(ev.Text, "Cannot send message for") {
		if p := c.msgs[ev.QueueID]; p != nil {
			// The queue lifetime ran out: each still deferred recipient
			// expired.
			latest := map[string]string{}
			for _, d := range p.rec.Deliveries {
				latest[d.Rcpt] = d.Status
			}
			for _, rc := range p.rec.RcptTo {
				if latest[rc] == record.StatusDeferred {
					_, reason, _ := strings.Cut(ev.Text, ": ")
					p.rec.Deliveries = append(p.rec.Deliveries, record.Delivery{Timestamp: t, Rcpt: rc,
						Status: record.StatusExpired, DSN: "4.4.7", SMTPResponse: reason})
					p.final[rc] = true
				}
			}
			c.idleMsgs.Touch(&p.idle, t)
		}
	}
}

func (c *Correlator) reject(ev *Event, t time.Time, host string, emit func(*record.Record)) {
	resp := ev.Get("reject")
	arg := strings.TrimSuffix(strings.TrimPrefix(ev.Get("arg1"), "<"), ">")
	ruleset := ev.Get("ruleset")
	if ev.QueueID != "" && ruleset == "check_rcpt" {
		m := c.msg(ev.QueueID, t, host)
		m.rec.RejectedRcpt = append(m.rec.RejectedRcpt, record.Rejection{Address: arg, SMTPResponse: resp})
		_, m.rec.ClientIP = relayHost(ev.Get("relay"))
		return
	}
	r := &record.Record{Type: record.TypeMessage, Timestamp: t, Source: record.SourceSendmail, Host: host,
		QueueID: ev.QueueID, Status: record.StatusRejected, SMTPResponse: resp, Reason: "rejected by " + ruleset}
	r.ReplyCode, r.EnhancedCode = mtalog.SplitReply(resp)
	_, r.ClientIP = relayHost(ev.Get("relay"))
	switch ruleset {
	case "check_mail":
		r.MailFrom = &arg
	case "check_rcpt":
		r.RejectedRcpt = []record.Rejection{{Address: arg, SMTPResponse: resp}}
	}
	if ev.QueueID != "" {
		if m := c.msgs[ev.QueueID]; m != nil && !m.from {
			delete(c.msgs, ev.QueueID)
			c.idleMsgs.Remove(&m.idle)
			r.RejectedRcpt = append(m.rec.RejectedRcpt, r.RejectedRcpt...)
		}
	}
	emit(r)
}

// duration parses Sendmail's delay ("00:00:01", "2+03:04:05").
func duration(v string) float64 {
	days := 0
	if d, rest, ok := strings.Cut(v, "+"); ok {
		days, _ = strconv.Atoi(d)
		v = rest
	}
	parts := strings.Split(v, ":")
	if len(parts) != 3 {
		return 0
	}
	total := float64(days) * 86400
	for i, mult := range []float64{3600, 60, 1} {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return 0
		}
		total += float64(n) * mult
	}
	return total
}

// setStatus sets a message's status to the worst of its recipients' latest
// outcomes, and its reply fields to that delivery's.
func setStatus(r *record.Record) {
	if r.Status == record.StatusRejected || r.Status == record.StatusAborted && len(r.Deliveries) == 0 {
		return
	}
	if len(r.Deliveries) == 0 {
		r.Status = record.StatusAccepted
		return
	}
	mtalog.SetOutcome(r, r.Deliveries[mtalog.WorstLatest(r.Deliveries, nil)])
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// Flush emits what is still open: everything when before is zero,
// otherwise what has seen no line since before.
func (c *Correlator) Flush(before time.Time, emit func(*record.Record)) {
	items := mtalog.PopStale(nil, &c.idleMsgs, before, false)
	mtalog.SortStale(items)
	for _, it := range items {
		m := c.msgs[it.Key]
		delete(c.msgs, it.Key)
		m.rec.Flags = appendOnce(m.rec.Flags, "incomplete")
		setStatus(m.rec)
		emit(m.rec)
	}
	for {
		pid, ok := c.idleConns.Pop(before)
		if !ok {
			break
		}
		delete(c.conns, pid)
	}
}

func (c *Correlator) bound(emit func(*record.Record)) {
	if len(c.msgs)+len(c.conns) <= c.opts.MaxOpen {
		return
	}
	lasts := mtalog.AppendLasts(nil, c.msgs, (*message).lastSeen)
	lasts = mtalog.AppendLasts(lasts, c.conns, (*conn).lastSeen)
	c.Flush(mtalog.BoundCut(lasts), emit)
}
