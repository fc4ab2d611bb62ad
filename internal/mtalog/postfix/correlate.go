package postfix

import (
	"hash/maphash"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Dialect describes Postfix to the ingest pipeline.
func Dialect() mtalog.Dialect {
	return mtalog.Dialect{
		Name:   string(record.SourcePostfix),
		Claims: Claims,
		New:    func(o mtalog.CorrelatorOptions) mtalog.Correlator { return NewCorrelator(o) },
		NewPrepared: func(n int) mtalog.Prepared {
			return make(events, n)
		},
		CopiesLines: true,
	}
}

// LinkWindow is how long (in log time) a message that arrived from a
// loopback client and is already complete waits for a content filter's
// "queued as" reply that links it to the message it is a re-injected copy
// of, before it is emitted as a message of its own.
const LinkWindow = 2 * time.Minute

// Flags set on Postfix records.
const (
	FlagIncomplete = "incomplete"
	FlagHold       = "hold"
	FlagDiscarded  = "discarded"
	FlagDSN        = "dsn" // the message is a notification Postfix generated
	// FlagLocal marks a message submitted on this host through pickup
	// (sendmail(1), postdrop) rather than received over SMTP.
	FlagLocal = "local"
)

// Observer sees the diagnostic lines the correlator understood (warning,
// error, fatal and panic lines: Event.Level is set) and the master
// daemon's, with their parsed Event, before they are correlated. Both are
// the correlator's, valid during the call only, and the Event's strings
// share the line's memory: clone what is kept. Reports use it for the
// facts records do not carry.
type Observer func(l *mtalog.Line, e *Event)

type key struct {
	host string
	qid  string
}

type sessKey struct {
	host string
	pid  int
}

// message is one story: a queued message, and the copies re-injected from
// it by a content filter.
type message struct {
	rec      record.Record
	open     int          // member queue IDs not yet removed
	last     time.Time    // last line seen
	doneAt   time.Time    // when open reached 0 (lingering)
	members  []string     // queue IDs of this story
	loopback bool         // arrived from a loopback client: may be a re-injected copy
	emitted  bool         // emitted or merged; stale in lingering queue
	inLinger bool         // in Correlator.lingering, so not to be recycled
	hops     map[int]bool // deliveries that handed the message to a content filter
	// rcptIdx maps a recipient to its index in rec.RcptTo once there are
	// too many to search; nil before.
	rcptIdx map[string]int
	// idle is its place in Correlator.idleMsgs while msgs holds it.
	idle mtalog.IdleEntry[*message]
}

type session struct {
	rec      record.Record
	last     time.Time
	warnings []string                  // reject_warning replies not yet attached to a message
	idle     mtalog.IdleEntry[sessKey] // its place in Correlator.idleSess
}

type smtpTLS struct {
	// tls is replaced, never written through: the deliveries' records
	// share it.
	tls  *record.TLS
	peer string                    // "host[ip]:port", as the delivery's relay= shows it
	idle mtalog.IdleEntry[sessKey] // its place in Correlator.idleTLS; Last is when it was seen
}

// Correlator joins Postfix log lines into message and session records.
// It is not safe for concurrent use.
type Correlator struct {
	maxOpen   int
	host      string                    // for lines that name none (CorrelatorOptions.Host)
	msgs      hostMap[string, *message] // by queue ID
	sessions  hostMap[int, *session]    // by smtpd pid
	outTLS    hostMap[int, *smtpTLS]    // smtp client pid -> TLS of its current connection
	lingering []*message                // complete, waiting LinkWindow for a content filter link
	now       time.Time                 // latest line time
	seq       uint64                    // session counter, for unique session IDs
	observe   Observer                  // optional
	ids       idStamps                  // for session IDs
	strs      interner                  // the values that repeat: hosts, addresses, relays, statuses, …
	// The open messages (under any of their keys), sessions and outbound
	// TLS entries, least recently seen first, so that Flush looks at the
	// idle ones only.
	idleMsgs mtalog.IdleQueue[*message]
	idleSess mtalog.IdleQueue[sessKey]
	idleTLS  mtalog.IdleQueue[sessKey]
	// feedLine and feedEvent hold a line Feed is given and its parse.
	feedLine  mtalog.Line
	feedEvent Event
	// tlsSeen holds the TLS values tls made last.
	tlsSeen [16]*record.TLS
	// latest is emitMessage's room for latestDeliveries.
	latest []int
	// With CorrelatorOptions.Recycle, the messages and sessions emitted
	// and not yet known to be handled (see Handled), and those whose
	// memory is free for new ones.
	recycle  bool
	handed   []*message
	handedS  []*session
	freeMsgs []*message
	freeSess []*session
}

// Bounds of recycling: free structs kept, and the capacity of a slice
// kept for reuse.
const (
	maxFree     = 1024
	maxReuseCap = 64
)

var _ mtalog.Recycler = (*Correlator)(nil)

// Handled reports that the records emitted so far were handled; with
// CorrelatorOptions.Recycle their memory is reused (mtalog.Recycler).
func (c *Correlator) Handled() {
	for i, m := range c.handed {
		if len(c.freeMsgs) < maxFree {
			c.freeMsgs = append(c.freeMsgs, m)
		}
		c.handed[i] = nil
	}
	c.handed = c.handed[:0]
	for i, s := range c.handedS {
		if len(c.freeSess) < maxFree {
			c.freeSess = append(c.freeSess, s)
		}
		c.handedS[i] = nil
	}
	c.handedS = c.handedS[:0]
}

// reuse returns s emptied for reuse when its capacity is small enough,
// else nil.
func reuse[T any](s []T) []T {
	if cap(s) > maxReuseCap {
		return nil
	}
	return s[:0]
}

// newMessage returns an empty message, recycled when one is free.
func (c *Correlator) newMessage() *message {
	n := len(c.freeMsgs)
	if n == 0 {
		return &message{}
	}
	m := c.freeMsgs[n-1]
	c.freeMsgs[n-1] = nil
	c.freeMsgs = c.freeMsgs[:n-1]
	*m = message{
		rec: record.Record{
			Deliveries: reuse(m.rec.Deliveries), RcptTo: reuse(m.rec.RcptTo), Flags: reuse(m.rec.Flags),
			Anomalies: reuse(m.rec.Anomalies), RejectedRcpt: reuse(m.rec.RejectedRcpt),
		},
		members: reuse(m.members),
	}
	return m
}

// newSession returns an empty session, recycled when one is free.
func (c *Correlator) newSession() *session {
	n := len(c.freeSess)
	if n == 0 {
		return &session{}
	}
	s := c.freeSess[n-1]
	c.freeSess[n-1] = nil
	c.freeSess = c.freeSess[:n-1]
	*s = session{
		rec:      record.Record{Flags: reuse(s.rec.Flags), Errors: reuse(s.rec.Errors), Anomalies: reuse(s.rec.Anomalies)},
		warnings: reuse(s.warnings),
	}
	return s
}

// maxInterned bounds an interner; when it is full it starts afresh.
const maxInterned = 1 << 14

// interner keeps one copy of each string value it is given, so that the
// values a log repeats on many lines are copied out of the line once.
type interner struct {
	m map[string]string
	// front holds values found lately, at a place of a cheap hash of
	// their length and a few bytes: most lines repeat a value of the
	// few the log has (a status, a relay, a DSN, …), which front then
	// finds with a comparison instead of the map's hash and probe.
	front [256]string
	// recent holds the copies clone made last, at a place of a hash of
	// the whole value: the replies it copies are long, and the few a log
	// repeats often differ in a few bytes only.
	recent [256]string
	// ptrs holds the pointers ptr made last, at the place front gives
	// their value: a message's sender is a pointer (record.Record's
	// MailFrom), and the queue manager logs it again on every retry.
	ptrs  [64]*string
	empty *string // ptr("")
}

// recentSeed seeds the hash of interner.recent.
var recentSeed = maphash.MakeSeed()

// get returns a copy of s that shares no memory with the line s came from.
func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	h := in.slot(s)
	if f := in.front[h]; f == s {
		return f
	}
	if v, ok := in.m[s]; ok {
		in.front[h] = v
		return v
	}
	if in.m == nil {
		in.m = make(map[string]string, 256)
	} else if len(in.m) >= maxInterned {
		clear(in.m)
	}
	v := strings.Clone(s)
	in.m[v] = v
	in.front[h] = v
	return v
}

// slot is the place of s, not "", in front.
func (in *interner) slot(s string) uint {
	return (uint(len(s))*0x9e + uint(s[0])*0x3b + uint(s[len(s)/2])*0x0d + uint(s[len(s)-1])) & uint(len(in.front)-1)
}

// ptr returns a pointer to get(s). The pointers it returns are shared:
// what is pointed to must not be written.
func (in *interner) ptr(s string) *string {
	if s == "" {
		if in.empty == nil {
			in.empty = new(string)
		}
		return in.empty
	}
	h := in.slot(s) & uint(len(in.ptrs)-1)
	if p := in.ptrs[h]; p != nil && *p == s {
		return p
	}
	p := new(string)
	*p = in.get(s)
	in.ptrs[h] = p
	return p
}

// clone is get for values that repeat less (the replies of deliveries
// and rejections, which may name a queue ID or an address): it returns
// the copy recent holds when it holds s, else a new copy, which recent
// then holds, and keeps none in the map.
func (in *interner) clone(s string) string {
	if s == "" {
		return ""
	}
	h := maphash.String(recentSeed, s) % uint64(len(in.recent))
	if f := in.recent[h]; f == s {
		return f
	}
	v := strings.Clone(s)
	in.recent[h] = v
	return v
}

// tls returns the TLS of a TLS line. Its value is shared with the other
// records whose TLS was the same (most connections agree on one or two),
// and must not be written.
func (c *Correlator) tls(e *Event) *record.TLS {
	h := uint(len(e.TLSCipher)+len(e.TLSVersion)+len(e.TLSTrust)) % uint(len(c.tlsSeen))
	if t := c.tlsSeen[h]; t != nil && t.Version == e.TLSVersion && t.Cipher == e.TLSCipher && t.Trust == e.TLSTrust {
		return t
	}
	t := &record.TLS{Used: true, Version: c.strs.get(e.TLSVersion), Cipher: c.strs.get(e.TLSCipher), Trust: c.strs.get(e.TLSTrust)}
	c.tlsSeen[h] = t
	return t
}

// touch notes that m saw a line at t.
func (c *Correlator) touch(m *message, t time.Time) {
	m.last = t
	c.idleMsgs.Touch(&m.idle, t)
}

// touchSession notes that s saw a line at t.
func (c *Correlator) touchSession(s *session, t time.Time) {
	s.last = t
	c.idleSess.Touch(&s.idle, t)
}

var _ mtalog.Correlator = (*Correlator)(nil)

// NewCorrelator returns an empty Correlator.
func NewCorrelator(o mtalog.CorrelatorOptions) *Correlator {
	if o.MaxOpen <= 0 {
		o.MaxOpen = mtalog.DefaultMaxOpen
	}
	return &Correlator{
		maxOpen: o.MaxOpen,
		recycle: o.Recycle,
		host:    o.Host,
	}
}

// SetObserver makes fn see the lines an Observer sees; nil removes it.
func (c *Correlator) SetObserver(fn Observer) { c.observe = fn }

var _ mtalog.PreparedFeeder = (*Correlator)(nil)

// Feed consumes one line; see mtalog.Correlator.
func (c *Correlator) Feed(l mtalog.Line, emit func(*record.Record)) bool {
	// The line and its parse live in the correlator, not on the heap of
	// their own (the observer is shown pointers to them), and are let go.
	c.feedLine = l
	parseInto(&c.feedEvent, l.Program, l.Message)
	ok := c.feed(&c.feedLine, &c.feedEvent, emit)
	c.feedLine, c.feedEvent = mtalog.Line{}, Event{}
	return ok
}

// FeedPrepared consumes a line parsed ahead (Dialect's NewPrepared); see
// mtalog.PreparedFeeder.
func (c *Correlator) FeedPrepared(l *mtalog.Line, p mtalog.Prepared, i int, emit func(*record.Record)) bool {
	return c.feed(l, &p.(events)[i], emit)
}

// feed consumes l, parsed as e. Neither may escape but to the observer,
// which must not keep them. A line that names no host is given the
// correlator's.
func (c *Correlator) feed(lp *mtalog.Line, e *Event, emit func(*record.Record)) bool {
	if lp.Host == "" {
		lp.Host = c.host
	}
	l := lp
	if l.Time.After(c.now) {
		c.now = l.Time
		c.expireLingering(emit)
	}
	if e.Kind == KindUnknown {
		return false
	}
	if c.observe != nil && (e.Level != "" || e.Daemon == "master") {
		c.observe(lp, e)
	}
	switch e.Kind {
	case KindConnect:
		c.connect(l, e, emit)
	case KindDisconnect:
		c.disconnect(l, e, emit)
	case KindLost:
		s := c.session(l, e)
		s.rec.Reason = strings.Clone(e.Text) // the line's buffer may be reused
		switch {
		case strings.HasPrefix(e.Text, "timeout"):
			s.rec.CloseReason = record.CloseTimeout
		case strings.HasPrefix(e.Text, "too many errors"):
			s.rec.CloseReason = record.CloseError
		default:
			s.rec.CloseReason = record.CloseClientLost
		}
	case KindTLSIn:
		s := c.session(l, e)
		s.rec.TLS = c.tls(e)
	case KindTLSOut:
		if c.outTLS.len() > 65536 {
			c.outTLS.clear()
			c.idleTLS = mtalog.IdleQueue[sessKey]{}
		}
		t, ok := c.outTLS.get(l.Host, l.PID)
		if !ok {
			k := sessKey{c.strs.get(l.Host), l.PID}
			t = &smtpTLS{}
			t.idle.Value = k
			c.outTLS.set(k.host, k.pid, t)
		}
		t.tls = c.tls(e)
		t.peer = c.strs.get(e.Peer)
		c.idleTLS.Touch(&t.idle, l.Time)
	case KindSASLFailed:
		s := c.session(l, e)
		s.rec.Auth = &record.Auth{Mechanism: c.strs.get(e.SASLMethod), Username: c.strs.get(e.SASLUser), Result: "failure"}
		s.rec.Errors = appendBounded(s.rec.Errors, "SASL "+e.SASLMethod+" authentication failed: "+e.Text)
	case KindClient:
		c.client(l, e)
	case KindReject, KindRejectWarning:
		c.reject(l, e, emit)
	case KindCheck:
		c.check(l, e, emit)
	case KindMessageID:
		m := c.message(l, e.QueueID, emit)
		m.rec.MessageID = strings.Clone(e.MessageID)
	case KindQueued:
		m := c.message(l, e.QueueID, emit)
		m.rec.MailFrom = c.strs.ptr(e.From)
		m.rec.Size = e.Size
		m.rec.Nrcpt = e.Nrcpt
	case KindPickup:
		m := c.message(l, e.QueueID, emit)
		if m.rec.MailFrom == nil {
			m.rec.MailFrom = c.strs.ptr(e.From)
		}
		m.rec.Flags = appendFlag(m.rec.Flags, FlagLocal)
	case KindExpired:
		m := c.message(l, e.QueueID, emit)
		m.rec.Status = record.StatusExpired
		if m.rec.MailFrom == nil {
			m.rec.MailFrom = c.strs.ptr(e.From)
		}
	case KindRemoved:
		if m, ok := c.msgs.get(l.Host, e.QueueID); ok {
			c.touch(m, l.Time)
			c.msgs.delete(l.Host, e.QueueID)
			m.open--
			if m.open <= 0 {
				c.idleMsgs.Remove(&m.idle)
				c.complete(m, l.Time, emit)
			}
		}
	case KindDelivery:
		c.delivery(l, e, emit)
	case KindNotification:
		// The notification is queued before this line: link it to its origin.
		n := c.message(l, e.NewQID, emit)
		n.rec.ParentQueueID = strings.Clone(e.QueueID)
		n.rec.Flags = appendFlag(n.rec.Flags, FlagDSN)
		if m, ok := c.msgs.get(l.Host, e.QueueID); ok {
			c.touch(m, l.Time)
		}
	case KindDiagnostic, KindInfo:
		if e.Daemon == "smtpd" && e.Level != "" && l.PID != 0 {
			if s, ok := c.sessions.get(l.Host, l.PID); ok {
				s.rec.Errors = appendBounded(s.rec.Errors, e.Level+": "+e.Text)
			}
		}
	}
	if c.msgs.len() > c.maxOpen || c.sessions.len() > c.maxOpen {
		c.evictOldest(emit)
	}
	return true
}

func appendBounded(list []string, s string) []string {
	if len(list) >= 32 {
		return list
	}
	return append(list, strings.Clone(s))
}

func appendFlag(flags []string, f string) []string {
	for _, x := range flags {
		if x == f {
			return flags
		}
	}
	return append(flags, f)
}

func (c *Correlator) session(l *mtalog.Line, e *Event) *session {
	s, ok := c.sessions.get(l.Host, l.PID)
	if !ok {
		k := sessKey{c.strs.get(l.Host), l.PID}
		s = c.newSession()
		s.rec.Type, s.rec.Source, s.rec.Host = record.TypeSession, record.SourcePostfix, k.host
		s.rec.Timestamp, s.rec.Flags = l.Time, append(s.rec.Flags, FlagIncomplete)
		s.idle.Value = k
		c.sessions.set(k.host, k.pid, s)
	}
	if s.rec.ClientIP == "" && e.ClientIP != "" {
		s.rec.ClientIP = c.strs.get(e.ClientIP)
	}
	c.touchSession(s, l.Time)
	return s
}

func (c *Correlator) connect(l *mtalog.Line, e *Event, emit func(*record.Record)) {
	if old, ok := c.sessions.get(l.Host, l.PID); ok { // a disconnect we never saw
		c.sessions.delete(l.Host, l.PID)
		c.idleSess.Remove(&old.idle)
		c.emitSession(old, emit)
	}
	s := c.session(l, e)
	s.rec.Flags = s.rec.Flags[:0]
	c.seq++
	s.rec.SessionID = c.ids.sessionID(l, c.seq)
}

// idStamps remembers the stamp of the second the last session ID was made
// in: connections come many a second, and the date and clock of a time
// are dear to compute.
type idStamps struct {
	sec   int64
	stamp []byte // "20060102T150405", or nil
}

// sessionID makes a sortable ID for an smtpd connection from its host, start
// time, process and a counter.
func (st *idStamps) sessionID(l *mtalog.Line, seq uint64) string {
	b := make([]byte, 0, 48)
	b = append(b, "pf-"...)
	t := l.Time.UTC()
	if sec := t.Unix(); st.stamp != nil && sec == st.sec {
		b = append(b, st.stamp...)
		b = append(b, '.')
		b = appendDigits(b, t.Nanosecond()/1000, 6)
	} else {
		b = appendStamp(b, t)
		if y := t.Year(); y >= 0 && y <= 9999 {
			st.sec, st.stamp = sec, append(st.stamp[:0], b[3:3+15]...)
		}
	}
	b = append(b, '-')
	b = append(b, l.Host...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(l.PID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 10)
	return string(b)
}

// appendStamp appends t as "20060102T150405.000000" without the cost of
// a layout.
func appendStamp(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, "20060102T150405.000000")
	}
	h, mi, sec := t.Clock()
	b = appendDigits(b, y, 4)
	b = appendDigits(b, int(mo), 2)
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = appendDigits(b, mi, 2)
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	return appendDigits(b, t.Nanosecond()/1000, 6)
}

// appendDigits appends the last n decimal digits of v >= 0, zero-padded.
func appendDigits(b []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

func (c *Correlator) disconnect(l *mtalog.Line, e *Event, emit func(*record.Record)) {
	s := c.session(l, e)
	c.sessions.delete(l.Host, l.PID)
	c.idleSess.Remove(&s.idle)
	s.rec.End = l.Time
	if s.rec.CloseReason == "" {
		if strings.HasPrefix(e.Counters, "quit=") || strings.Contains(e.Counters, " quit=") {
			s.rec.CloseReason = record.CloseQuit
		} else {
			s.rec.CloseReason = record.CloseClientLost
		}
	}
	if e.Counters != "" {
		s.rec.Reason = c.joinReason(s.rec.Reason, e.Counters)
	}
	if auth := s.rec.Auth; auth == nil && strings.Contains(e.Counters, "auth=") {
		// "auth=1" or "auth=0/1": the counters tell the outcome.
		v := counter(e.Counters, "auth")
		res := "success"
		if strings.HasPrefix(v, "0/") {
			res = "failure"
		}
		s.rec.Auth = &record.Auth{Result: res}
	}
	c.emitSession(s, emit)
}

// joinReason appends b, a disconnect's counters, to a session's reason
// a. Counters alone are interned: most sessions end with the same few.
func (c *Correlator) joinReason(a, b string) string {
	if a == "" {
		return c.strs.get(b)
	}
	return a + "; " + b
}

// counter returns the value of name in "ehlo=1 mail=1 rcpt=0/1 … commands=3/4".
func counter(counters, name string) string {
	for f := range strings.FieldsSeq(counters) {
		if k, v, ok := strings.Cut(f, "="); ok && k == name {
			return v
		}
	}
	return ""
}

func (c *Correlator) emitSession(s *session, emit func(*record.Record)) {
	for _, w := range s.warnings {
		s.rec.Anomalies = appendBounded(s.rec.Anomalies, w)
	}
	if !s.rec.End.IsZero() {
		s.rec.DurationMS = record.MS(s.rec.End.Sub(s.rec.Timestamp))
	}
	emit(&s.rec) // s is done with
	if c.recycle {
		c.handedS = append(c.handedS, s)
	}
}

func (c *Correlator) client(l *mtalog.Line, e *Event) {
	m, _ := c.lookupOrNew(l, e.QueueID)
	m.rec.ClientIP = c.strs.get(e.ClientIP)
	if ip, err := netip.ParseAddr(e.ClientIP); err == nil && ip.IsLoopback() {
		m.loopback = true
	}
	if e.SASLUser != "" {
		m.rec.Username = c.strs.get(e.SASLUser)
	}
	if s, ok := c.sessions.get(l.Host, l.PID); ok {
		c.touchSession(s, l.Time)
		s.rec.Messages++
		m.rec.SessionID = s.rec.SessionID
		m.rec.TLS = s.rec.TLS
		if m.rec.Helo == "" {
			m.rec.Helo = s.rec.Helo
		}
		for _, w := range s.warnings {
			m.rec.Anomalies = appendBounded(m.rec.Anomalies, w)
		}
		s.warnings = nil
		if e.SASLUser != "" {
			s.rec.Username = m.rec.Username
			s.rec.Auth = &record.Auth{Mechanism: c.strs.get(e.SASLMethod), Username: m.rec.Username, Result: "success"}
		}
	}
}

// lookupOrNew returns the open message of a queue ID, creating it.
func (c *Correlator) lookupOrNew(l *mtalog.Line, qid string) (*message, bool) {
	if m, ok := c.msgs.get(l.Host, qid); ok {
		c.touch(m, l.Time)
		return m, false
	}
	host, q := c.strs.get(l.Host), strings.Clone(qid)
	m := c.newMessage()
	m.rec.Type, m.rec.Source, m.rec.Host = record.TypeMessage, record.SourcePostfix, host
	m.rec.Timestamp, m.rec.QueueID = l.Time, q
	m.open, m.members = 1, append(m.members, q)
	m.idle.Value = m
	c.touch(m, l.Time)
	c.msgs.set(host, q, m)
	return m, true
}

func (c *Correlator) message(l *mtalog.Line, qid string, emit func(*record.Record)) *message {
	m, _ := c.lookupOrNew(l, qid)
	return m
}

func (c *Correlator) reject(l *mtalog.Line, e *Event, emit func(*record.Record)) {
	var s *session
	if e.Daemon == "smtpd" {
		s = c.session(l, e)
		if e.Helo != "" && s.rec.Helo == "" {
			s.rec.Helo = c.strs.get(e.Helo)
		}
	}
	if e.Kind == KindRejectWarning {
		w := "reject_warning: " + e.Stage + ": " + e.Reply
		if s != nil {
			if len(s.warnings) < 32 {
				s.warnings = append(s.warnings, strings.Clone(w))
			}
		}
		return
	}
	if e.QueueID != "" {
		m := c.message(l, e.QueueID, emit)
		if e.Stage == "RCPT" && e.Action == "reject" {
			if len(m.rec.RejectedRcpt) < 1000 {
				m.rec.RejectedRcpt = append(m.rec.RejectedRcpt, record.Rejection{Address: c.strs.get(e.To), SMTPResponse: c.strs.clone(e.Reply)})
			}
			if m.rec.Helo == "" {
				m.rec.Helo = c.strs.get(e.Helo)
			}
			return
		}
		// Rejected at or after DATA (a milter, END-OF-MESSAGE): the queue
		// file is discarded without a "removed" line.
		c.fillReject(&m.rec, e)
		c.finish(m, l.Time, emit)
		return
	}
	r := record.Record{
		Type: record.TypeMessage, Source: record.SourcePostfix, Host: c.strs.get(l.Host),
		Timestamp: l.Time, ClientIP: c.strs.get(e.ClientIP), ClientPort: e.ClientPort,
	}
	if s != nil {
		r.SessionID = s.rec.SessionID
		r.TLS = s.rec.TLS
		r.Username = s.rec.Username
	}
	c.fillReject(&r, e)
	if e.To != "" {
		r.RejectedRcpt = []record.Rejection{{Address: c.strs.get(e.To), SMTPResponse: r.SMTPResponse}}
	}
	emit(&r)
}

// fillReject sets the outcome fields of a rejection.
func (c *Correlator) fillReject(r *record.Record, e *Event) {
	r.Status = record.StatusRejected
	r.SMTPResponse = c.strs.clone(e.Reply)
	r.ReplyCode = e.Code
	r.EnhancedCode = c.strs.get(e.Enhanced)
	if e.HasFrom && r.MailFrom == nil {
		r.MailFrom = c.strs.ptr(e.From)
	}
	if e.Helo != "" && r.Helo == "" {
		r.Helo = c.strs.get(e.Helo)
	}
	if r.ClientIP == "" {
		r.ClientIP = c.strs.get(e.ClientIP)
	}
	r.Reason = strings.Clone(e.Action + ": " + e.Stage)
	if e.CheckSubject != "" {
		r.Reason += " " + strings.Clone(e.CheckSubject)
	}
}

func (c *Correlator) check(l *mtalog.Line, e *Event, emit func(*record.Record)) {
	m := c.message(l, e.QueueID, emit)
	if e.HasFrom && m.rec.MailFrom == nil {
		m.rec.MailFrom = c.strs.ptr(e.From)
	}
	if e.Helo != "" && m.rec.Helo == "" {
		m.rec.Helo = c.strs.get(e.Helo)
	}
	text := e.Action + ": " + e.Stage + " " + e.CheckSubject
	if e.Text != "" {
		text += ": " + e.Text
	}
	switch e.Action {
	case "hold", "milter-hold":
		m.rec.Flags = appendFlag(m.rec.Flags, FlagHold)
		m.rec.Reason = strings.Clone(text)
	case "discard", "milter-discard":
		m.rec.Flags = appendFlag(m.rec.Flags, FlagDiscarded)
		m.rec.Reason = strings.Clone(text)
		m.rec.Status = record.StatusAccepted
		c.finish(m, l.Time, emit)
	default:
		m.rec.Anomalies = appendBounded(m.rec.Anomalies, text)
	}
}

func (c *Correlator) delivery(l *mtalog.Line, e *Event, emit func(*record.Record)) {
	m := c.message(l, e.QueueID, emit)
	d := record.Delivery{
		Timestamp:    l.Time,
		Rcpt:         c.strs.get(e.To),
		OrigRcpt:     c.strs.get(e.OrigTo),
		Status:       c.strs.get(e.Status),
		Relay:        c.strs.get(e.Relay),
		DSN:          c.strs.get(e.DSN),
		SMTPResponse: c.strs.clone(e.Text),
		DelayS:       e.Delay,
		Delays:       c.strs.get(e.Delays),
	}
	if e.QueueID != m.rec.QueueID {
		d.QueueID = strings.Clone(e.QueueID)
	}
	if t, ok := c.outTLS.get(l.Host, l.PID); ok && t.peer == e.Relay {
		m.rec.UpstreamTLS = t.tls
	}
	c.addDelivery(m, d)
	if e.QueuedAs != "" && e.Status == "sent" && c.link(l, m, e.QueuedAs) {
		if m.hops == nil {
			m.hops = map[int]bool{}
		}
		m.hops[len(m.rec.Deliveries)-1] = true
	}
}

func (c *Correlator) addDelivery(m *message, d record.Delivery) {
	if len(m.rec.Deliveries) >= 10000 {
		return
	}
	m.rec.Deliveries = append(m.rec.Deliveries, d)
	if m.rcptIndex(d.Rcpt) < 0 {
		m.rec.RcptTo = append(m.rec.RcptTo, d.Rcpt)
		if m.rcptIdx != nil {
			m.rcptIdx[d.Rcpt] = len(m.rec.RcptTo) - 1
		}
	}
}

// maxMembers bounds the queue IDs a story lists.
const maxMembers = 64

// rcptSearch is how many recipients a message keeps before it indexes them.
const rcptSearch = 16

// rcptIndex returns the index of rcpt in m.rec.RcptTo, or -1.
func (m *message) rcptIndex(rcpt string) int {
	if m.rcptIdx == nil {
		if len(m.rec.RcptTo) < rcptSearch {
			for i, r := range m.rec.RcptTo {
				if r == rcpt {
					return i
				}
			}
			return -1
		}
		m.rcptIdx = make(map[string]int, 2*len(m.rec.RcptTo))
		for i, r := range m.rec.RcptTo {
			m.rcptIdx[r] = i
		}
	}
	if i, ok := m.rcptIdx[rcpt]; ok {
		return i
	}
	return -1
}

// link joins the message re-injected as qid (by a content filter that
// answered "queued as qid") into m's story.
func (c *Correlator) link(l *mtalog.Line, m *message, qid string) bool {
	n, ok := c.msgs.get(l.Host, qid)
	if !ok {
		// Already complete and lingering?
		for _, x := range c.lingering {
			if !x.emitted && x.rec.QueueID == qid && x.rec.Host == l.Host {
				n = x
				break
			}
		}
		if n == nil {
			return false
		}
	}
	if n == m {
		return true
	}
	// Move n's members and deliveries into m.
	for _, q := range n.members {
		if x, _ := c.msgs.get(l.Host, q); x == n {
			c.msgs.set(m.rec.Host, q, m) // keys of the correlator's own strings
			m.open++
		}
		if len(m.members) < maxMembers {
			m.members = append(m.members, q)
		}
	}
	for _, d := range n.rec.Deliveries {
		if d.QueueID == "" {
			d.QueueID = n.rec.QueueID
		}
		c.addDelivery(m, d)
	}
	if m.rec.MessageID == "" {
		m.rec.MessageID = n.rec.MessageID
	}
	if n.rec.Status == record.StatusExpired {
		m.rec.Status = record.StatusExpired
	}
	for _, f := range n.rec.Flags {
		m.rec.Flags = appendFlag(m.rec.Flags, f)
	}
	m.rec.Anomalies = append(m.rec.Anomalies, n.rec.Anomalies...)
	n.emitted = true
	if len(n.members) < maxMembers {
		// Every key of n was among its members, and is m's now.
		c.idleMsgs.Remove(&n.idle)
	}
	return true
}

// finish completes m at once, whatever members are still open.
func (c *Correlator) finish(m *message, t time.Time, emit func(*record.Record)) {
	for _, q := range m.members {
		if x, _ := c.msgs.get(m.rec.Host, q); x == m {
			c.msgs.delete(m.rec.Host, q)
		}
	}
	m.open = 0
	m.last = t
	c.idleMsgs.Remove(&m.idle)
	c.emitMessage(m, false, emit)
}

// complete is called when every member of m was removed from the queue.
func (c *Correlator) complete(m *message, t time.Time, emit func(*record.Record)) {
	if m.loopback && len(m.members) == 1 && len(c.lingering) < c.maxOpen {
		m.doneAt = t
		m.inLinger = true
		c.lingering = append(c.lingering, m)
		return
	}
	c.emitMessage(m, false, emit)
}

func (c *Correlator) expireLingering(emit func(*record.Record)) {
	i := 0
	for ; i < len(c.lingering); i++ {
		m := c.lingering[i]
		if !m.emitted && c.now.Sub(m.doneAt) < LinkWindow {
			break
		}
		if !m.emitted {
			m.inLinger = false // it leaves the queue: it may be recycled
			c.emitMessage(m, false, emit)
		}
		c.lingering[i] = nil
	}
	if i > 0 {
		c.lingering = c.lingering[i:]
	}
}

// emitMessage computes the message status and emits the record.
func (c *Correlator) emitMessage(m *message, incomplete bool, emit func(*record.Record)) {
	if m.emitted {
		return
	}
	m.emitted = true
	// m is done with: its record is emitted as it is.
	r := &m.rec
	if c.recycle && !m.inLinger {
		c.handed = append(c.handed, m)
	}
	if incomplete {
		r.Flags = appendFlag(r.Flags, FlagIncomplete)
	}
	if r.Status != record.StatusRejected {
		// The worst outcome over the recipients, each at its latest attempt
		// (recipients in first-seen order).
		worst, worstIdx := 0, -1
		c.latest = latestDeliveries(c.latest, r.RcptTo, r.Deliveries, m.hops)
		latest := c.latest
		for k := range r.RcptTo {
			i := latest[k]
			if rank := mtalog.StatusRank(r.Deliveries[i].Status); rank > worst || worstIdx < 0 {
				worst, worstIdx = rank, i
			}
		}
		if worstIdx >= 0 {
			d := r.Deliveries[worstIdx]
			if r.Status != record.StatusExpired {
				r.Status = d.Status
			}
			r.SMTPResponse = d.SMTPResponse
			r.ReplyCode, r.EnhancedCode = mtalog.ReplyCodes(d.SMTPResponse)
			if r.EnhancedCode == "" {
				r.EnhancedCode = d.DSN
			}
		}
	}
	if r.Status == "" {
		r.Status = record.StatusAccepted
	}
	emit(r)
}

// latestDeliveries returns, for each recipient of rcpts, the index in ds
// of its latest delivery: the last one added, or with content filter
// hand-overs (hops), latestAttempts's choice. It reuses out's memory.
func latestDeliveries(out []int, rcpts []string, ds []record.Delivery, hops map[int]bool) []int {
	out = slices.Grow(out[:0], len(rcpts))[:len(rcpts)]
	clear(out)
	if len(hops) > 0 {
		latest := latestAttempts(ds, hops)
		for k, rcpt := range rcpts {
			out[k] = latest[rcpt]
		}
		return out
	}
	if len(rcpts) == 1 {
		out[0] = len(ds) - 1 // every delivery is to it
		return out
	}
	if len(rcpts) >= rcptSearch {
		last := make(map[string]int, len(rcpts))
		for i, d := range ds {
			last[d.Rcpt] = i
		}
		for k, rcpt := range rcpts {
			out[k] = last[rcpt]
		}
		return out
	}
	for k, rcpt := range rcpts {
		for i := len(ds) - 1; i >= 0; i-- {
			if ds[i].Rcpt == rcpt {
				out[k] = i
				break
			}
		}
	}
	return out
}

// latestAttempts picks each recipient's latest delivery by time, where a
// hand-over to a content filter counts only when nothing followed it.
func latestAttempts(ds []record.Delivery, hops map[int]bool) map[string]int {
	out := make(map[string]int, len(ds))
	for i, d := range ds {
		j, ok := out[d.Rcpt]
		if !ok {
			out[d.Rcpt] = i
			continue
		}
		switch {
		case hops[j] && !hops[i]:
			out[d.Rcpt] = i
		case !hops[j] && hops[i]:
		case !d.Timestamp.Before(ds[j].Timestamp):
			out[d.Rcpt] = i
		}
	}
	return out
}

// Flush emits what has seen no line since before (everything when before is
// zero), flagged incomplete; messages waiting for a content filter link are
// emitted complete. Messages go least recent first by arrival (queue ID on
// ties), then sessions by their start.
func (c *Correlator) Flush(before time.Time, emit func(*record.Record)) {
	all := before.IsZero()
	for _, m := range c.lingering {
		if m != nil && !m.emitted && (all || m.doneAt.Before(before)) {
			m.inLinger = !all // all: the queue is let go below
			c.emitMessage(m, false, emit)
		}
	}
	if all {
		c.lingering = nil
	}
	var stale []*message
	for {
		m, ok := c.idleMsgs.Pop(before)
		if !ok {
			break
		}
		c.dropKeys(m)
		if !m.emitted {
			stale = append(stale, m)
		}
	}
	sortMessages(stale)
	for _, m := range stale {
		c.emitMessage(m, true, emit)
	}
	var sess []*session
	for {
		k, ok := c.idleSess.Pop(before)
		if !ok {
			break
		}
		s, _ := c.sessions.get(k.host, k.pid)
		sess = append(sess, s)
		c.sessions.delete(k.host, k.pid)
	}
	sort.SliceStable(sess, func(i, j int) bool { return sess[i].rec.Timestamp.Before(sess[j].rec.Timestamp) })
	for _, s := range sess {
		s.rec.Flags = appendFlag(s.rec.Flags, FlagIncomplete)
		c.emitSession(s, emit)
	}
	for {
		k, ok := c.idleTLS.Pop(before)
		if !ok {
			break
		}
		c.outTLS.delete(k.host, k.pid)
	}
}

// dropKeys deletes the keys under which msgs holds m.
func (c *Correlator) dropKeys(m *message) {
	if len(m.members) >= maxMembers {
		// Not every key may be among the members.
		c.msgs.all(func(host, qid string, x *message) bool {
			if x == m {
				c.msgs.delete(host, qid)
			}
			return true
		})
		return
	}
	for _, q := range m.members {
		if x, _ := c.msgs.get(m.rec.Host, q); x == m {
			c.msgs.delete(m.rec.Host, q)
		}
	}
}

func sortMessages(ms []*message) {
	sort.SliceStable(ms, func(i, j int) bool {
		if !ms[i].rec.Timestamp.Equal(ms[j].rec.Timestamp) {
			return ms[i].rec.Timestamp.Before(ms[j].rec.Timestamp)
		}
		return ms[i].rec.QueueID < ms[j].rec.QueueID
	})
}

// evictOldest flushes the least recently seen tenth of the open messages and
// sessions when the bound is exceeded.
func (c *Correlator) evictOldest(emit func(*record.Record)) {
	times := make([]time.Time, 0, c.msgs.len()+c.sessions.len())
	c.msgs.all(func(_, _ string, m *message) bool {
		times = append(times, m.last)
		return true
	})
	c.sessions.all(func(_ string, _ int, s *session) bool {
		times = append(times, s.last)
		return true
	})
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	cut := times[len(times)/10]
	c.Flush(cut.Add(time.Nanosecond), emit)
}
