package report

import (
	"cmp"
	"context"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Options configure an Aggregator.
type Options struct {
	// Since leaves out events before it; zero keeps everything.
	Since time.Time
	// Top is the number of rows of each top-N table; 0 means DefaultTop,
	// a negative value all rows.
	Top int
	// MaxKeys bounds the distinct keys kept per table (senders,
	// recipients, domains, reasons, …); later keys are counted in totals
	// but not in the table, and the table is named in Report.Truncated.
	// 0 means DefaultMaxKeys.
	MaxKeys int
}

// Defaults of Options.
const (
	DefaultTop     = 20
	DefaultMaxKeys = 200000
	maxTopPerGroup = 1000 // distinct keys under one reason
	maxHourBuckets = 24 * 400
)

// Flags of records that the report reads (set by the Postfix correlator).
const (
	flagDSN        = "dsn"
	flagLocal      = "local"
	flagHold       = "hold"
	flagDiscarded  = "discarded"
	flagIncomplete = "incomplete"
)

// Note is a line-level fact no record carries: an MTA's warning, error,
// fatal or panic line, or a master daemon message (Level "master").
type Note struct {
	Time    time.Time
	Level   string
	Program string // e.g. "smtpd", "qmgr"
	Text    string
}

// table is a map bounded to limit keys; get returns nil for a new key
// once it is full, and the table remembers that it overflowed.
type table[V any] struct {
	m     map[string]*V
	limit int
	full  bool
}

func newTable[V any](limit int) table[V] { return table[V]{m: map[string]*V{}, limit: limit} }

func (t *table[V]) get(k string) (v *V, isNew bool) {
	if v, ok := t.m[k]; ok {
		return v, false
	}
	return t.insert(strings.Clone(k))
}

// getBytes is get with the key in a buffer the caller reuses.
func (t *table[V]) getBytes(k []byte) (v *V, isNew bool) {
	if v, ok := t.m[string(k)]; ok {
		return v, false
	}
	return t.insert(string(k))
}

// insert adds k, a string of the table's own.
func (t *table[V]) insert(k string) (v *V, isNew bool) {
	if len(t.m) >= t.limit {
		t.full = true
		return nil, false
	}
	v = new(V)
	t.m[k] = v
	return v, true
}

type volume struct {
	messages, bytes int64
}

type domainStat struct {
	delivered, bytes, deferrals, bounced int64
	delaySum, delayMax                   float64
}

type reasonStat struct {
	group, reason string
	code          int
	enh           string
	count         int64
	top           table[int64]
}

type mxStat struct{ attempts, sent, deferred, bounced int64 }

type tlsStat struct {
	messages, encrypted      int64
	versions, ciphers, trust table[int64]
}

type codeStat struct {
	count   int64
	example string
}

// Aggregator accumulates records into a Report. It is a record.Handler and
// is not safe for concurrent use. Of a record it handles it keeps nothing
// but strings, so a Pipeline may recycle records for it
// (mtalog.PipelineOptions.Recycle).
type Aggregator struct {
	opt    Options
	key    []byte // scratch for composite table keys
	rawKey []byte // scratch for the keys of the memos
	// What the deferral replies (with their DSN) and the notes met last
	// counted.
	deferMemo *memo[counted]
	noteMemo  *memo[*Diagnostic]
	// The per-day and per-hour counters of the wall-clock hour last
	// counted, which most events fall into.
	hourAt  hourKey
	hourDay *Counts
	hourAll *Counts
	totals  Totals
	from    time.Time
	to      time.Time

	perDay  table[Counts]
	perHour [24]Counts
	hourly  table[Counts] // key: unix hour

	senders, recipients  table[volume]
	sendDomains          table[volume]
	recipDomains         table[domainStat]
	deferrals, bounces   table[reasonStat]
	rejects, warnings    table[reasonStat]
	holds, discards      table[reasonStat]
	saslUsers            table[volume]
	saslFailures         table[SASLFailure]
	tlsIn, tlsOut        tlsStat
	diags                table[Diagnostic]
	codes                table[codeStat]
	mx                   table[mxStat]
	total, a, b, c, d    hist
	sources              map[string]*int64
	lastSource           record.Source // the source of the last record, and its
	lastSourceN          *int64        // count in sources
	incomplete           int64
	recipientsWithSent   int64
	recipDomainsWithSent int64
}

var _ record.Handler = (*Aggregator)(nil)

// New returns an empty Aggregator.
func New(o Options) *Aggregator {
	if o.Top == 0 {
		o.Top = DefaultTop
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	k := o.MaxKeys
	return &Aggregator{
		opt:          o,
		perDay:       newTable[Counts](min(k, 20000)),
		hourly:       newTable[Counts](maxHourBuckets),
		senders:      newTable[volume](k),
		recipients:   newTable[volume](k),
		sendDomains:  newTable[volume](k),
		recipDomains: newTable[domainStat](k),
		deferrals:    newTable[reasonStat](k),
		bounces:      newTable[reasonStat](k),
		rejects:      newTable[reasonStat](k),
		warnings:     newTable[reasonStat](k),
		holds:        newTable[reasonStat](k),
		discards:     newTable[reasonStat](k),
		saslUsers:    newTable[volume](k),
		saslFailures: newTable[SASLFailure](k),
		tlsIn:        newTLSStat(),
		tlsOut:       newTLSStat(),
		diags:        newTable[Diagnostic](k),
		codes:        newTable[codeStat](k),
		mx:           newTable[mxStat](k),
		sources:      map[string]*int64{},
		deferMemo:    newMemo[counted](),
		noteMemo:     newMemo[*Diagnostic](),
	}
}

func newTLSStat() tlsStat {
	return tlsStat{versions: newTable[int64](256), ciphers: newTable[int64](1024), trust: newTable[int64](64)}
}

func (a *Aggregator) in(t time.Time) bool {
	if !a.opt.Since.IsZero() && t.Before(a.opt.Since) {
		return false
	}
	if !t.IsZero() {
		if a.from.IsZero() || t.Before(a.from) {
			a.from = t
		}
		if t.After(a.to) {
			a.to = t
		}
	}
	return true
}

// count adds one event of kind f at t to the per-day, per-hour and traffic
// tables.
func (a *Aggregator) count(t time.Time, f func(*Counts)) {
	if t.IsZero() {
		return
	}
	y, mo, d := t.Date()
	k := hourKey{y, mo, d, t.Hour(), t.Location()}
	if k != a.hourAt || a.hourAt.loc == nil {
		a.hourAt = k
		a.hourDay, _ = a.perDay.get(t.Format(time.DateOnly))
		start := time.Date(y, mo, d, k.hour, 0, 0, 0, k.loc)
		a.hourAll, _ = a.hourly.get(strconv.FormatInt(start.Unix(), 10))
	}
	if a.hourDay != nil {
		f(a.hourDay)
	}
	f(&a.perHour[k.hour])
	if a.hourAll != nil {
		f(a.hourAll)
	}
}

// hourKey names a wall-clock hour.
type hourKey struct {
	year  int
	month time.Month
	day   int
	hour  int
	loc   *time.Location
}

// Handle adds one record; it never fails.
func (a *Aggregator) Handle(_ context.Context, r *record.Record) error {
	switch r.Type {
	case record.TypeMessage:
		a.message(r)
	case record.TypeSession:
		a.session(r)
	}
	return nil
}

// Note adds a line-level fact; it copies what it keeps, so n may share a
// log line's memory.
func (a *Aggregator) Note(n Note) {
	if !a.in(n.Time) {
		return
	}
	a.rawKey = append(append(append(append(append(a.rawKey[:0], n.Level...), 0), n.Program...), 0), n.Text...)
	if m, hit := a.noteMemo.find(a.rawKey); hit {
		if *m != nil {
			(*m).Count++
		}
		return
	} else {
		a.key, *m = addNote(&a.diags, a.key, n)
	}
}

// addNote counts n in diags, building its key in buf, which it returns,
// with the Diagnostic counted (nil when diags is full).
func addNote(diags *table[Diagnostic], buf []byte, n Note) ([]byte, *Diagnostic) {
	buf = append(append(append(append(buf[:0], n.Level...), 0), n.Program...), 0)
	start := len(buf)
	buf = appendTrimmed(appendMaskPaths(buf, n.Text), start, 160)
	d, isNew := diags.getBytes(buf)
	if d != nil {
		if isNew {
			*d = Diagnostic{Level: strings.Clone(n.Level), Program: strings.Clone(n.Program), Text: string(buf[start:])}
		}
		d.Count++
	}
	return buf, d
}

// memo remembers what the texts met last counted, so that a text a log
// repeats (a remote server's reply, a warning) is not taken apart and
// looked up again each time: a few slots, each found by a hash of the
// text, which holds a copy of it.
type memo[V any] struct {
	seed  maphash.Seed
	slots [64]struct {
		key []byte
		val V
	}
}

func newMemo[V any]() *memo[V] { return &memo[V]{seed: maphash.MakeSeed()} }

// find returns the value of key's slot and whether the slot holds key;
// when it does not, it takes key, and the caller sets the value.
func (m *memo[V]) find(key []byte) (*V, bool) {
	s := &m.slots[maphash.Bytes(m.seed, key)%uint64(len(m.slots))]
	if s.key != nil && string(s.key) == string(key) {
		return &s.val, true
	}
	s.key = append(s.key[:0], key...)
	return &s.val, false
}

func hasFlag(r *record.Record, f string) bool { return slices.Contains(r.Flags, f) }

// received reports whether the MTA accepted r into its queue from a client
// or a local submission (Postfix: a "client=" or pickup line; its own
// notifications are not received mail).
func received(r *record.Record) bool {
	if r.QueueID == "" || hasFlag(r, flagDSN) {
		return false
	}
	if r.Source == record.SourcePostfix {
		return r.ClientIP != "" || hasFlag(r, flagLocal)
	}
	return r.Status != record.StatusRejected
}

// queued reports whether r's sender and size are known from the queue
// (Postfix: the queue manager's "from=<…>, size=" line).
func queued(r *record.Record) bool {
	if r.MailFrom == nil || r.Status == record.StatusRejected {
		return false
	}
	if r.Source == record.SourcePostfix {
		return r.Size > 0 || r.Nrcpt > 0
	}
	return true
}

// normAddr lower-cases an address's domain, as pflogsumm does.
func normAddr(s string) string {
	if i := strings.IndexByte(s, '@'); i >= 0 && hasUpper(s[i:]) {
		return s[:i] + strings.ToLower(s[i:])
	}
	return s
}

// hasUpper reports whether strings.ToLower could change s.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			return true
		}
	}
	return false
}

// domainOf is the part after the first "@", or the whole address.
func domainOf(addr string) string {
	if i := strings.IndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

func (a *Aggregator) message(r *record.Record) {
	if r.Source != a.lastSource || a.lastSourceN == nil {
		n, ok := a.sources[string(r.Source)]
		if !ok {
			n = new(int64)
			a.sources[string(r.Source)] = n
		}
		a.lastSource, a.lastSourceN = r.Source, n
	}
	*a.lastSourceN++
	if hasFlag(r, flagIncomplete) {
		a.incomplete++
	}
	if received(r) && a.in(r.Timestamp) {
		a.totals.Received++
		a.count(r.Timestamp, func(c *Counts) { c.Received++ })
		a.receivedMessage(r)
	}
	a.rejections(r)
	if a.in(r.Timestamp) {
		a.checks(r.Anomalies)
		if hasFlag(r, flagHold) {
			a.totals.Held++
			a.reason(&a.holds, "", 0, "", checkReason(r.Reason), sender(r))
		}
		if hasFlag(r, flagDiscarded) {
			a.totals.Discarded++
			a.reason(&a.discards, "", 0, "", checkReason(r.Reason), sender(r))
		}
	}
	deferred, sent := false, false
	for i := range r.Deliveries {
		d := &r.Deliveries[i]
		if !a.in(d.Timestamp) {
			continue
		}
		switch d.Status {
		case record.StatusSent:
			if strings.Contains(d.SMTPResponse, "forwarded as ") {
				a.totals.Forwarded++
				continue
			}
			sent = true
			a.delivered(r, d)
		case record.StatusDeferred:
			deferred = true
			a.deferred(r, d)
		case record.StatusBounced:
			a.bounced(r, d)
		}
	}
	if deferred {
		a.totals.Deferred++
	}
	if sent {
		a.tlsOut.add(r.UpstreamTLS)
	}
}

func sender(r *record.Record) string {
	if r.MailFrom == nil {
		return ""
	}
	if *r.MailFrom == "" {
		return "<>"
	}
	return normAddr(*r.MailFrom)
}

func (a *Aggregator) receivedMessage(r *record.Record) {
	a.tlsIn.add(r.TLS)
	if r.Username != "" {
		if v, _ := a.saslUsers.get(r.Username); v != nil {
			v.messages++
			v.bytes += r.Size
		}
	}
	if !queued(r) {
		return
	}
	addr, dom := "from=<>", ""
	if *r.MailFrom != "" {
		addr = normAddr(*r.MailFrom)
	}
	switch {
	case strings.Contains(addr, "@"):
		dom = domainOf(addr)
	case hasFlag(r, flagLocal):
		dom = addr
	default:
		dom = r.ClientIP
	}
	a.totals.BytesReceived += r.Size
	if v, isNew := a.senders.get(addr); v != nil {
		if isNew {
			a.totals.Senders++
		}
		v.messages++
		v.bytes += r.Size
	}
	if v, isNew := a.sendDomains.get(dom); v != nil {
		if isNew {
			a.totals.SendingHosts++
		}
		v.messages++
		v.bytes += r.Size
	}
}

func (t *tlsStat) add(s *record.TLS) {
	t.messages++
	if s == nil || !s.Used {
		return
	}
	t.encrypted++
	for _, kv := range [...]struct {
		t *table[int64]
		k string
	}{{&t.versions, s.Version}, {&t.ciphers, s.Cipher}, {&t.trust, s.Trust}} {
		if kv.k == "" {
			continue
		}
		if v, _ := kv.t.get(kv.k); v != nil {
			*v++
		}
	}
}

func (a *Aggregator) delivered(r *record.Record, d *record.Delivery) {
	a.totals.Delivered++
	a.totals.BytesDelivered += r.Size
	a.count(d.Timestamp, func(c *Counts) { c.Delivered++ })
	rcpt := normAddr(d.Rcpt)
	if v, isNew := a.recipients.get(rcpt); v != nil {
		if isNew {
			a.totals.Recipients++
		}
		v.messages++
		v.bytes += r.Size
	}
	if s, _ := a.recipDomains.get(domainOf(rcpt)); s != nil {
		if s.delivered == 0 {
			a.totals.RecipientHosts++
		}
		s.delivered++
		s.bytes += r.Size
		s.delaySum += d.DelayS
		s.delayMax = max(s.delayMax, d.DelayS)
	}
	a.total.add(d.DelayS)
	if d.Delays != "" {
		v, ok := splitDelays(d.Delays)
		for i, h := range [...]*hist{&a.a, &a.b, &a.c, &a.d} {
			if ok[i] {
				h.add(v[i])
			}
		}
	}
	a.relay(d, func(m *mxStat) { m.sent++ })
}

// splitDelays parses the first four parts of Postfix's "a/b/c/d" delays,
// each that is a number.
func splitDelays(s string) (v [4]float64, ok [4]bool) {
	for i := range v {
		part, rest, more := strings.Cut(s, "/")
		var err error
		v[i], err = strconv.ParseFloat(part, 64)
		ok[i] = err == nil
		if !more {
			break
		}
		s = rest
	}
	return v, ok
}

func (a *Aggregator) deferred(r *record.Record, d *record.Delivery) {
	a.totals.Deferrals++
	a.count(d.Timestamp, func(c *Counts) { c.Deferred++ })
	dom := domainOf(normAddr(d.Rcpt))
	if s, _ := a.recipDomains.get(dom); s != nil {
		s.deferrals++
		s.delayMax = max(s.delayMax, d.DelayS)
	}
	a.rawKey = append(append(append(a.rawKey[:0], d.SMTPResponse...), 0), d.DSN...)
	if m, hit := a.deferMemo.find(a.rawKey); hit {
		// What the reply and DSN counted before: a reason and a code.
		m.reason.add(dom)
		if m.code != nil {
			m.code.count++
		}
	} else {
		code, enh := deliveryCodes(d)
		m.reason = a.failure(&a.deferrals, "", code, enh, d.SMTPResponse, dom)
		m.code = a.code(4, enh, d.SMTPResponse)
	}
	a.relay(d, func(m *mxStat) { m.deferred++ })
}

// counted is what one text counted in the reasons and status codes.
type counted struct {
	reason *reasonStat
	code   *codeStat
}

func (a *Aggregator) bounced(r *record.Record, d *record.Delivery) {
	a.totals.Bounced++
	a.count(d.Timestamp, func(c *Counts) { c.Bounced++ })
	if s, _ := a.recipDomains.get(domainOf(normAddr(d.Rcpt))); s != nil {
		s.bounced++
	}
	code, enh := deliveryCodes(d)
	a.failure(&a.bounces, relayHost(d.Relay), code, enh, d.SMTPResponse, normAddr(d.Rcpt))
	a.code(5, enh, d.SMTPResponse)
	a.relay(d, func(m *mxStat) { m.bounced++ })
}

// deliveryCodes returns the reply code and enhanced status code of d's
// reply, the latter falling back to its DSN.
func deliveryCodes(d *record.Delivery) (int, string) {
	code, enh := mtalog.ReplyCodes(d.SMTPResponse)
	if enh == "" {
		enh = d.DSN
	}
	return code, enh
}

// relay counts an attempt towards a network next hop ("host[ip]:port").
func (a *Aggregator) relay(d *record.Delivery, f func(*mxStat)) {
	if !strings.Contains(d.Relay, "[") {
		return
	}
	if m, _ := a.mx.get(d.Relay); m != nil {
		m.attempts++
		f(m)
	}
}

// relayHost drops the port of "host[ip]:port".
func relayHost(relay string) string {
	if i := strings.LastIndexByte(relay, ']'); i >= 0 {
		return relay[:i+1]
	}
	return relay
}

func (a *Aggregator) code(class int, enh, example string) *codeStat {
	if enh == "" {
		enh = "-"
	} else if enh[0] != byte('0'+class) {
		// A 4xx reply with a 5.x.x code (or the reverse) is classed by
		// its reply; keep the code as logged.
		class = int(enh[0] - '0')
	}
	a.key = append(strconv.AppendInt(a.key[:0], int64(class), 10), "xx\x00"...)
	a.key = append(a.key, enh...)
	c, isNew := a.codes.getBytes(a.key)
	if c != nil {
		if isNew {
			c.example = trim(example, 160)
		}
		c.count++
	}
	return c
}

// rejections counts what r says was refused: the message itself and each
// refused recipient.
func (a *Aggregator) rejections(r *record.Record) {
	if !a.in(r.Timestamp) {
		return
	}
	stage := stageOf(r.Reason)
	one := func(resp, key string, st string) {
		a.totals.Rejected++
		a.count(r.Timestamp, func(c *Counts) { c.Rejected++ })
		code, enh := mtalog.ReplyCodes(resp)
		a.failure(&a.rejects, st, code, enh, resp, key)
		if code >= 400 {
			a.code(code/100, enh, resp)
		}
	}
	if r.Status == record.StatusRejected {
		switch {
		case r.QueueID == "" && len(r.RejectedRcpt) > 0:
			for _, x := range r.RejectedRcpt {
				one(x.SMTPResponse, normAddr(x.Address), stage)
			}
			return
		default:
			key := r.ClientIP
			if r.QueueID != "" || stage == "MAIL" || stage == "DATA" {
				if s := sender(r); s != "" {
					key = s
				}
			}
			one(r.SMTPResponse, key, stage)
		}
	}
	if r.QueueID != "" || r.Status != record.StatusRejected {
		for _, x := range r.RejectedRcpt {
			one(x.SMTPResponse, normAddr(x.Address), "RCPT")
		}
	}
}

// stageOf takes "RCPT" from a rejection's reason "reject: RCPT".
func stageOf(reason string) string {
	_, s, ok := strings.Cut(reason, ": ")
	if !ok {
		return ""
	}
	s, _, _ = strings.Cut(s, " ")
	return s
}

// checks counts reject warnings among a record's anomalies: smtpd's
// reject_warning and cleanup's header/body WARN actions.
func (a *Aggregator) checks(anomalies []string) {
	for _, an := range anomalies {
		switch {
		case strings.HasPrefix(an, "reject_warning: "):
			a.totals.RejectWarnings++
			rest := an[len("reject_warning: "):]
			stage, reply, _ := strings.Cut(rest, ": ")
			code, enh := mtalog.ReplyCodes(reply)
			a.failure(&a.warnings, stage, code, enh, reply, "")
		case strings.HasPrefix(an, "warning: header "), strings.HasPrefix(an, "warning: body "):
			a.totals.RejectWarnings++
			rest := an[len("warning: "):]
			stage, _, _ := strings.Cut(rest, " ")
			a.reason(&a.warnings, stage, 0, "", checkReason(an), "")
		}
	}
}

func (a *Aggregator) session(r *record.Record) {
	if !a.in(r.Timestamp) {
		return
	}
	a.checks(r.Anomalies)
	if r.Auth != nil && r.Auth.Result == "failure" {
		key := r.ClientIP + "\x00" + r.Auth.Username + "\x00" + r.Auth.Mechanism
		if f, isNew := a.saslFailures.get(key); f != nil {
			if isNew {
				*f = SASLFailure{ClientIP: r.ClientIP, Username: r.Auth.Username, Mechanism: r.Auth.Mechanism}
			}
			f.Count++
		}
	}
}

func (a *Aggregator) reason(t *table[reasonStat], group string, code int, enh, reason, key string) {
	start := a.reasonKey(group, code, enh)
	a.key = append(a.key, reason...)
	a.addReason(t, group, code, enh, start, key)
}

// failure is reason with failureReason(reply), built in the key buffer.
// It returns the reason counted, nil when its table is full.
func (a *Aggregator) failure(t *table[reasonStat], group string, code int, enh, reply, key string) *reasonStat {
	start := a.reasonKey(group, code, enh)
	a.key = appendFailureReason(a.key, reply)
	return a.addReason(t, group, code, enh, start, key)
}

// reasonKey starts a reason's table key in a.key and returns where the
// reason is to be appended.
func (a *Aggregator) reasonKey(group string, code int, enh string) int {
	a.key = append(append(a.key[:0], group...), 0)
	a.key = append(strconv.AppendInt(a.key, int64(code), 10), 0)
	a.key = append(append(a.key, enh...), 0)
	return len(a.key)
}

// addReason counts the reason whose key is in a.key, the reason itself
// from start on.
func (a *Aggregator) addReason(t *table[reasonStat], group string, code int, enh string, start int, key string) *reasonStat {
	s, isNew := t.getBytes(a.key)
	if s == nil {
		return nil
	}
	if isNew {
		*s = reasonStat{group: strings.Clone(group), code: code, enh: strings.Clone(enh), reason: string(a.key[start:]), top: newTable[int64](maxTopPerGroup)}
	}
	s.add(key)
	return s
}

// add counts one more of s, under key unless it is "" (s may be nil: a
// reason a full table left out).
func (s *reasonStat) add(key string) {
	if s == nil {
		return
	}
	s.count++
	if key != "" {
		if v, _ := s.top.get(key); v != nil {
			*v++
		}
	}
}

// failureReason turns a reply as logged into a reason to group by: the
// remote server's words without "host … said:", the reply code, the
// enhanced code, and an address in angle brackets that leads the text.
func failureReason(s string) string {
	return string(appendFailureReason(nil, s))
}

// appendFailureReason appends failureReason(s) to dst.
func appendFailureReason(dst []byte, s string) []byte {
	s = mtalog.AfterSaid(s)
	if len(s) >= 4 && s[3] == ' ' && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) {
		s = s[4:]
	}
	if w, rest, ok := strings.Cut(s, " "); ok && mtalog.IsEnhancedCode(w) {
		s = rest
	}
	if strings.HasPrefix(s, "<") {
		if i := strings.Index(s, ">: "); i >= 0 {
			s = s[i+3:]
		}
	}
	if !strings.Contains(s, "/") && len(s) <= 160 {
		return append(dst, s...)
	}
	start := len(dst)
	return appendTrimmed(appendMaskPaths(dst, s), start, 160)
}

// maskPaths replaces the digits in words that hold a "/" (file names with
// times and pids, "UID/GID=102/105") with "#", so that one problem makes
// one group, not one per message.
func maskPaths(s string) string {
	if !strings.Contains(s, "/") {
		return s
	}
	return string(appendMaskPaths(nil, s))
}

// appendMaskPaths appends maskPaths(s) to dst. It looks at the words
// that hold a "/" only, and copies the text between them whole.
func appendMaskPaths(dst []byte, s string) []byte {
	for {
		slash := strings.IndexByte(s, '/')
		if slash < 0 {
			return append(dst, s...)
		}
		start := strings.LastIndexByte(s[:slash], ' ') + 1
		end := len(s)
		if i := strings.IndexByte(s[slash:], ' '); i >= 0 {
			end = slash + i
		}
		dst = append(dst, s[:start]...)
		w := s[start:end]
		for j := 0; j < len(w); {
			k := j
			if isDigit(w[j]) {
				for k < len(w) && isDigit(w[k]) {
					k++
				}
				dst = append(dst, '#')
			} else {
				for k < len(w) && !isDigit(w[k]) {
					k++
				}
				dst = append(dst, w[j:k]...)
			}
			j = k
		}
		s = s[end:]
	}
}

// appendTrimmed shortens b[start:] as trim does.
func appendTrimmed(b []byte, start, n int) []byte {
	s := b[start:]
	if len(s) <= n {
		return b
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return append(b[:start+cut], "..."...)
}

// checkReason shortens a header/body check's reason: "hold: header
// Subject: x from host[ip]; from=<…> …: text" keeps the action, the
// matched line and the text.
func checkReason(s string) string {
	return trim(s, 160)
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Report returns the summary of everything added so far.
func (a *Aggregator) Report() *Report {
	rep := &Report{From: a.from, To: a.to, Since: a.opt.Since, Totals: a.totals, Incomplete: a.incomplete}
	top := a.opt.Top

	for k, c := range a.perDay.m {
		rep.PerDay = append(rep.PerDay, DayCount{Date: k, Counts: *c})
	}
	slices.SortFunc(rep.PerDay, func(x, y DayCount) int { return cmp.Compare(x.Date, y.Date) })
	rep.Days = len(rep.PerDay)
	for h := range a.perHour {
		rep.PerHour = append(rep.PerHour, HourCount{Hour: h, Counts: a.perHour[h]})
	}
	rep.Traffic, rep.TrafficStep = a.traffic()

	rep.RecipientDomains = sortTop(a.recipDomains.m, top, func(k string, s *domainStat) DomainDelivery {
		avg := 0.0
		if s.delivered > 0 {
			avg = round3(s.delaySum / float64(s.delivered))
		}
		return DomainDelivery{Name: k, Delivered: s.delivered, Bytes: s.bytes, Deferrals: s.deferrals, Bounced: s.bounced, AvgDelayS: avg, MaxDelayS: round3(s.delayMax)}
	}, func(x, y DomainDelivery) int {
		return cmp.Or(cmp.Compare(y.Delivered, x.Delivered), cmp.Compare(y.Bytes, x.Bytes), cmp.Compare(y.Deferrals, x.Deferrals), cmp.Compare(x.Name, y.Name))
	})
	byCount := func(x, y Volume) int {
		return cmp.Or(cmp.Compare(y.Messages, x.Messages), cmp.Compare(y.Bytes, x.Bytes), cmp.Compare(x.Name, y.Name))
	}
	bySize := func(x, y Volume) int {
		return cmp.Or(cmp.Compare(y.Bytes, x.Bytes), cmp.Compare(y.Messages, x.Messages), cmp.Compare(x.Name, y.Name))
	}
	vol := func(k string, v *volume) Volume { return Volume{Name: k, Messages: v.messages, Bytes: v.bytes} }
	rep.SendingDomains = sortTop(a.sendDomains.m, top, vol, byCount)
	rep.SendersByCount = sortTop(a.senders.m, top, vol, byCount)
	rep.SendersBySize = sortTop(a.senders.m, top, vol, bySize)
	rep.RecipientsByCount = sortTop(a.recipients.m, top, vol, byCount)
	rep.RecipientsBySize = sortTop(a.recipients.m, top, vol, bySize)

	rep.Deferrals = reasons(a.deferrals.m, top)
	rep.Bounces = reasons(a.bounces.m, top)
	rep.Rejects = reasons(a.rejects.m, top)
	rep.RejectWarnings = reasons(a.warnings.m, top)
	rep.Holds = reasons(a.holds.m, top)
	rep.Discards = reasons(a.discards.m, top)

	rep.SASL.Users = sortTop(a.saslUsers.m, top, vol, byCount)
	rep.SASL.Failures = sortTop(a.saslFailures.m, top, func(_ string, f *SASLFailure) SASLFailure { return *f },
		func(x, y SASLFailure) int {
			return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.ClientIP, y.ClientIP), cmp.Compare(x.Username, y.Username), cmp.Compare(x.Mechanism, y.Mechanism))
		})
	rep.TLS.Inbound = a.tlsIn.side(top)
	rep.TLS.Outbound = a.tlsOut.side(top)
	rep.Diagnostics = sortTop(a.diags.m, top, func(_ string, d *Diagnostic) Diagnostic { return *d },
		func(x, y Diagnostic) int {
			return cmp.Or(cmp.Compare(levelRank(x.Level), levelRank(y.Level)), cmp.Compare(y.Count, x.Count), cmp.Compare(x.Program, y.Program), cmp.Compare(x.Text, y.Text))
		})

	rep.Latency = Latency{Total: a.total.percentiles(), BeforeQmgr: a.a.percentiles(), InQmgr: a.b.percentiles(), ConnSetup: a.c.percentiles(), Transmission: a.d.percentiles()}
	rep.StatusCodes = sortTop(a.codes.m, -1, func(k string, c *codeStat) CodeCount {
		class, enh, _ := strings.Cut(k, "\x00")
		return CodeCount{Class: class, EnhancedCode: enh, Count: c.count, Example: c.example}
	}, func(x, y CodeCount) int {
		return cmp.Or(cmp.Compare(x.Class, y.Class), cmp.Compare(y.Count, x.Count), cmp.Compare(x.EnhancedCode, y.EnhancedCode))
	})
	if top > 0 && len(rep.StatusCodes) > 2*top {
		rep.StatusCodes = rep.StatusCodes[:2*top]
	}
	rep.RemoteMX = sortTop(a.mx.m, top, func(k string, m *mxStat) RemoteMX {
		rate := 0.0
		if m.attempts > 0 {
			rate = round3(float64(m.deferred+m.bounced) / float64(m.attempts))
		}
		return RemoteMX{Relay: k, Attempts: m.attempts, Sent: m.sent, Deferred: m.deferred, Bounced: m.bounced, FailureRate: rate}
	}, func(x, y RemoteMX) int {
		return cmp.Or(cmp.Compare(y.FailureRate, x.FailureRate), cmp.Compare(y.Deferred+y.Bounced, x.Deferred+x.Bounced), cmp.Compare(y.Attempts, x.Attempts), cmp.Compare(x.Relay, y.Relay))
	})
	rep.Sources = map[string]int64{}
	for k, v := range a.sources {
		rep.Sources[k] = *v
	}
	for _, t := range [...]struct {
		name string
		full bool
	}{
		{"per_day", a.perDay.full}, {"traffic", a.hourly.full}, {"senders", a.senders.full}, {"recipients", a.recipients.full},
		{"sending_domains", a.sendDomains.full}, {"recipient_domains", a.recipDomains.full}, {"deferrals", a.deferrals.full},
		{"bounces", a.bounces.full}, {"rejects", a.rejects.full}, {"reject_warnings", a.warnings.full}, {"holds", a.holds.full},
		{"discards", a.discards.full}, {"sasl_users", a.saslUsers.full}, {"sasl_failures", a.saslFailures.full},
		{"diagnostics", a.diags.full}, {"status_codes", a.codes.full}, {"remote_mx", a.mx.full},
	} {
		if t.full {
			rep.Truncated = append(rep.Truncated, t.name)
		}
	}
	return rep
}

func levelRank(l string) int {
	switch l {
	case "panic":
		return 0
	case "fatal":
		return 1
	case "error":
		return 2
	case "warning":
		return 3
	}
	return 4
}

// traffic returns the hourly series, or a daily one when it spans more
// than a week.
func (a *Aggregator) traffic() ([]Bucket, string) {
	var hours []Bucket
	for k, c := range a.hourly.m {
		sec, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			continue
		}
		loc := time.UTC
		if !a.from.IsZero() {
			loc = a.from.Location()
		}
		hours = append(hours, Bucket{Start: time.Unix(sec, 0).In(loc), Counts: *c})
	}
	slices.SortFunc(hours, func(x, y Bucket) int { return x.Start.Compare(y.Start) })
	if len(hours) == 0 || hours[len(hours)-1].Start.Sub(hours[0].Start) <= 7*24*time.Hour {
		return fill(hours, time.Hour), "hour"
	}
	var days []Bucket
	for _, h := range hours {
		y, m, d := h.Start.Date()
		start := time.Date(y, m, d, 0, 0, 0, 0, h.Start.Location())
		if n := len(days); n > 0 && days[n-1].Start.Equal(start) {
			addCounts(&days[n-1].Counts, h.Counts)
			continue
		}
		days = append(days, Bucket{Start: start, Counts: h.Counts})
	}
	return fill(days, 24*time.Hour), "day"
}

// fill inserts empty buckets into gaps, up to a bounded length.
func fill(bs []Bucket, step time.Duration) []Bucket {
	if len(bs) < 2 || bs[len(bs)-1].Start.Sub(bs[0].Start)/step > maxHourBuckets {
		return bs
	}
	out := make([]Bucket, 0, len(bs))
	for i, b := range bs {
		if i > 0 {
			for t := out[len(out)-1].Start.Add(step); t.Before(b.Start) && len(out) < maxHourBuckets; t = t.Add(step) {
				out = append(out, Bucket{Start: t})
			}
		}
		out = append(out, b)
	}
	return out
}

func addCounts(dst *Counts, c Counts) {
	dst.Received += c.Received
	dst.Delivered += c.Delivered
	dst.Deferred += c.Deferred
	dst.Bounced += c.Bounced
	dst.Rejected += c.Rejected
}

func (t *tlsStat) side(top int) TLSSide {
	kc := func(k string, v *int64) KeyCount { return KeyCount{Key: k, Count: *v} }
	return TLSSide{
		Messages: t.messages, Encrypted: t.encrypted,
		Versions: sortTop(t.versions.m, top, kc, byKeyCount),
		Ciphers:  sortTop(t.ciphers.m, top, kc, byKeyCount),
		Trust:    sortTop(t.trust.m, top, kc, byKeyCount),
	}
}

func byKeyCount(x, y KeyCount) int {
	return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Key, y.Key))
}

func reasons(m map[string]*reasonStat, top int) []Reason {
	out := sortTop(m, top, func(_ string, s *reasonStat) Reason {
		n := top
		if n < 0 || n > 10 {
			n = 10
		}
		return Reason{Group: s.group, ReplyCode: s.code, EnhancedCode: s.enh, Reason: s.reason, Count: s.count,
			Top: sortTop(s.top.m, n, func(k string, v *int64) KeyCount { return KeyCount{Key: k, Count: *v} }, byKeyCount)}
	}, func(x, y Reason) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Group, y.Group), cmp.Compare(x.ReplyCode, y.ReplyCode), cmp.Compare(x.EnhancedCode, y.EnhancedCode), cmp.Compare(x.Reason, y.Reason))
	})
	// The most frequent are kept; they are shown grouped (by stage or relay).
	slices.SortStableFunc(out, func(x, y Reason) int { return cmp.Compare(x.Group, y.Group) })
	return out
}

// sortTop converts a table's entries, sorts them and keeps the first top
// (all when top < 0). The result is never nil, so JSON shows [].
func sortTop[V, T any](m map[string]*V, top int, conv func(string, *V) T, less func(x, y T) int) []T {
	out := make([]T, 0, len(m))
	for k, v := range m {
		out = append(out, conv(k, v))
	}
	slices.SortFunc(out, less)
	if top >= 0 && len(out) > top {
		out = out[:top]
	}
	return out
}
