package store

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smtplog/smtplog/internal/query"
)

// where translates a query into a boolean SQL expression over "records r".
// Values are always bound parameters, never part of the SQL text.
//
// A term's SQL may be NULL where Match says false (a NULL column); WHERE,
// AND and OR treat NULL as false monotonically, and NOT is the only place
// where that would differ, so a negation is wrapped in coalesce(…, 0).
//
// Exact keys that have terms (see terms.go) are looked up through them and
// then compared with the column; buckets is the range of buckets those
// lookups probe, narrowed by the query's top-level time bounds.
type sqlBuilder struct {
	args    []any
	buckets bucketRange
	// probeText holds the FTS5 phrases that are common enough to be
	// checked record by record (see textPlans); the others are matched
	// once and the record IDs looked up.
	probeText map[string]bool
	// scanTerms holds the hashes of the terms common enough in the
	// buckets probed that the records are checked one by one instead
	// (termPlans); seen, when not nil, collects the hashes termSQL is
	// asked for.
	scanTerms map[int64]bool
	seen      map[int64]bool
}

func newSQLBuilder(q *query.Query) *sqlBuilder {
	b := &sqlBuilder{buckets: allBuckets()}
	if q == nil || q.Expr == nil {
		return b
	}
	// Only terms every match must satisfy may narrow the probes: the
	// expression itself or the operands of a top-level AND.
	top := []query.Expr{q.Expr}
	if a, ok := q.Expr.(*query.And); ok {
		top = a.X
	}
	for _, x := range top {
		t, ok := x.(*query.Term)
		if !ok {
			continue
		}
		switch t.Field {
		case query.FieldAfter:
			b.buckets.after(unixNano(t.Time))
		case query.FieldBefore:
			b.buckets.before(unixNano(t.Time))
		}
	}
	return b
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "?"
}

func (b *sqlBuilder) expr(x query.Expr) (string, error) {
	switch x := x.(type) {
	case *query.And:
		return b.list(x.X, " AND ")
	case *query.Or:
		return b.list(x.X, " OR ")
	case *query.Not:
		s, err := b.expr(x.X)
		if err != nil {
			return "", err
		}
		return "NOT coalesce((" + s + "), 0)", nil
	case *query.Term:
		return b.term(x)
	}
	return "", fmt.Errorf("store: unknown query node %T", x)
}

func (b *sqlBuilder) list(xs []query.Expr, sep string) (string, error) {
	parts := make([]string, len(xs))
	for i, x := range xs {
		s, err := b.expr(x)
		if err != nil {
			return "", err
		}
		parts[i] = "(" + s + ")"
	}
	return strings.Join(parts, sep), nil
}

// globSQL turns a "*"-only pattern into a SQLite GLOB pattern that matches
// the same strings: "?" and "[" are made literal.
func globSQL(p string) string {
	r := strings.NewReplacer("?", "[?]", "[", "[[]")
	return r.Replace(p)
}

// likeSubstring returns a LIKE pattern (ESCAPE '\') for "contains s".
func likeSubstring(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// pattern compares column col with p.
func (b *sqlBuilder) pattern(col string, p query.Pattern) string {
	switch p.Kind {
	case query.Exact:
		return col + " = " + b.arg(p.S)
	case query.Glob:
		return col + " GLOB " + b.arg(globSQL(p.S))
	case query.Substring:
		return "instr(" + col + ", " + b.arg(p.S) + ") > 0"
	case query.Null:
		return col + " = ''"
	}
	return "0"
}

// queueID is true for the records with queue ID q, as their own or as a
// delivery's (a re-injected copy's).
func (b *sqlBuilder) queueID(q string) string {
	return "(" + b.termSQL(tagQueueID, q) + " AND (r.queue_id = " + b.arg(q) +
		" OR EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.id AND d.queue_id = " + b.arg(q) + ")))"
}

// sessionID is true for the records of session id.
func (b *sqlBuilder) sessionID(id string) string {
	return "(" + b.termSQL(tagSession, id) + " AND r.session_id = " + b.arg(id) + ")"
}

// rcptDomain is true for the records with a recipient at domain d: found
// through the terms of the time range's buckets, not through an index on
// rcpts.domain, whose entries, ordered by domain, every new batch would
// scatter over the whole index (migration 0006).
func (b *sqlBuilder) rcptDomain(d string) string {
	return "(" + b.termSQL(tagRcptDom, d) + " AND EXISTS (SELECT 1 FROM rcpts WHERE record_id = r.id AND domain = " + b.arg(d) + "))"
}

func (b *sqlBuilder) term(t *query.Term) (string, error) {
	switch t.Field {
	case query.FieldFrom:
		switch t.Pattern.Kind {
		case query.DomainOf:
			return "r.from_domain = " + b.arg(t.Pattern.S), nil
		case query.Exact:
			if t.Pattern.S != "" {
				return "(" + b.termSQL(tagSender, t.Pattern.S) + " AND r.mail_from = " + b.arg(t.Pattern.S) + ")", nil
			}
		}
		return b.pattern("r.mail_from", t.Pattern), nil
	case query.FieldTo:
		switch t.Pattern.Kind {
		case query.DomainOf:
			return b.rcptDomain(t.Pattern.S), nil
		case query.Exact:
			return "(" + b.termSQL(tagRcpt, t.Pattern.S) +
				" AND EXISTS (SELECT 1 FROM rcpts WHERE record_id = r.id AND addr = " + b.arg(t.Pattern.S) + "))", nil
		}
		return "r.id IN (SELECT record_id FROM rcpts WHERE " + b.pattern("addr", t.Pattern) + ")", nil
	case query.FieldDomain:
		if t.Pattern.Kind == query.Exact {
			return "(" + b.pattern("r.from_domain", t.Pattern) + " OR " + b.rcptDomain(t.Pattern.S) + ")", nil
		}
		return "(" + b.pattern("r.from_domain", t.Pattern) + " OR r.id IN (SELECT record_id FROM rcpts WHERE " +
			b.pattern("domain", t.Pattern) + "))", nil
	case query.FieldStatus:
		return "r.status = " + b.arg(t.Pattern.S), nil
	case query.FieldSource:
		return "r.source = " + b.arg(t.Pattern.S), nil
	case query.FieldType:
		return "r.type = " + b.arg(t.Pattern.S), nil
	case query.FieldMsgID:
		return "(" + b.termSQL(tagMessageID, t.Pattern.S) + " AND r.message_id = " + b.arg(t.Pattern.S) + ")", nil
	case query.FieldQueue:
		return b.queueID(t.Pattern.S), nil
	case query.FieldSession:
		return b.sessionID(t.Pattern.S), nil
	case query.FieldIP:
		lo, hi := prefixRange(t.Prefix)
		s := "("
		if string(lo) == string(hi) { // one address (bind in the order of the text)
			s += b.termSQL(tagClientIP, string(lo)) + " AND "
		}
		return s + "r.client_ip BETWEEN " + b.arg(lo) + " AND " + b.arg(hi) + " AND length(r.client_ip) = " +
			b.arg(len(lo)) + ")", nil
	case query.FieldUser:
		return b.pattern("r.username", t.Pattern), nil
	case query.FieldHelo:
		return b.pattern("r.helo", t.Pattern), nil
	case query.FieldTLS:
		if t.Bool {
			return "r.tls = 1", nil
		}
		return "r.tls = 0", nil
	case query.FieldSubject:
		return `r.subject LIKE ` + b.arg(likeSubstring(t.Pattern.S)) + ` ESCAPE '\'`, nil
	case query.FieldAfter:
		return "r.ts >= " + b.arg(unixNano(t.Time)), nil
	case query.FieldBefore:
		return "r.ts < " + b.arg(unixNano(t.Time)), nil
	case query.FieldCode:
		var p string
		switch c := t.Code; {
		case c.Class != 0:
			p = "(c.reply BETWEEN " + b.arg(c.Class*100) + " AND " + b.arg(c.Class*100+99) +
				" OR c.enhanced GLOB " + b.arg(fmt.Sprintf("%d.*", c.Class)) + ")"
		case c.Reply != 0:
			p = "c.reply = " + b.arg(c.Reply)
		default:
			p = "c.enhanced GLOB " + b.arg(globSQL(c.Enhanced))
		}
		return "EXISTS (SELECT 1 FROM codes c WHERE c.record_id = r.id AND " + p + ")", nil
	case query.FieldText:
		phrase := ftsPhrase(t.Words, t.Prefixed)
		if b.probeText[phrase] {
			return "EXISTS (SELECT 1 FROM fts WHERE fts MATCH " + b.arg(phrase) + " AND rowid = r.id)", nil
		}
		return "r.id IN (SELECT rowid FROM fts WHERE fts MATCH " + b.arg(phrase) + ")", nil
	}
	return "", fmt.Errorf("store: field %q not supported", t.Field)
}

// ftsPhrase builds an FTS5 phrase from words that contain only letters and
// digits (query.Tokens), so no FTS5 syntax can be injected.
func ftsPhrase(words []string, prefix bool) string {
	s := `"` + strings.Join(words, " ") + `"`
	if prefix {
		s += "*"
	}
	return s
}

// prefixRange returns the first and last address of p, encoded as the
// client_ip column is.
func prefixRange(p netip.Prefix) (lo, hi []byte) {
	lo = ipBytes(p.Masked().Addr())
	hi = append([]byte(nil), lo...)
	bits := p.Bits()
	for i := range hi {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				hi[i] |= 0x80 >> j
			}
		}
	}
	return lo, hi
}

// forceTextProbe makes every free-text phrase probed: for tests.
var forceTextProbe bool

// textPhrases returns the FTS5 phrases of x's free-text terms.
func textPhrases(x query.Expr, out []string) []string {
	switch x := x.(type) {
	case *query.And:
		for _, y := range x.X {
			out = textPhrases(y, out)
		}
	case *query.Or:
		for _, y := range x.X {
			out = textPhrases(y, out)
		}
	case *query.Not:
		out = textPhrases(x.X, out)
	case *query.Term:
		if x.Field == query.FieldText {
			out = append(out, ftsPhrase(x.Words, x.Prefixed))
		}
	}
	return out
}

// textPlans chooses, for each free-text phrase of q, how a search checks
// it. Matching the phrase once and looking up the IDs costs about a few
// µs per matching record; checking it record by record, as records are
// walked newest first, costs tens of µs per record walked, and a page of
// results walks about page/density records. For a phrase that matches a
// large share of the store (density = matches/records), probing wins:
// with costs c1 per match and c2 per probe, when matches² > (page·c2/c1)·
// records. Counting stops at that threshold, so choosing costs at most
// threshold × c1. Both forms select the same records.
func (s *Store) textPlans(ctx context.Context, q *query.Query, page int) (map[string]bool, error) {
	if q == nil || q.Expr == nil {
		return nil, nil
	}
	phrases := textPhrases(q.Expr, nil)
	if len(phrases) == 0 {
		return nil, nil
	}
	var records int64
	if err := s.r.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM records`).Scan(&records); err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	const perProbeOverMatch = 8 // c2/c1, measured on a store of 10M records
	threshold := int64(math.Sqrt(float64(page) * perProbeOverMatch * float64(records)))
	plans := map[string]bool{}
	if forceTextProbe {
		for _, ph := range phrases {
			plans[ph] = true
		}
		return plans, nil
	}
	if threshold < 1000 {
		return nil, nil // a small store: matching once is cheap whatever the phrase
	}
	for _, ph := range phrases {
		if _, done := plans[ph]; done {
			continue
		}
		var n int64
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT rowid FROM fts WHERE fts MATCH ? LIMIT ?)`, ph, threshold).Scan(&n); err != nil {
			return nil, fmt.Errorf("store: search: %w", err)
		}
		plans[ph] = n >= threshold
	}
	return plans, nil
}

// forceTermScan makes every term of a search checked record by record: for
// tests.
var forceTermScan bool

// termPlans chooses, for each term (terms.go) a search of q looks up, how
// it is checked; the others are probed. Probing costs a few µs per record
// that has the term in the buckets of the range, all of which are then
// read and sorted: for a common value (a large provider's domain, a busy
// sender) that is tens of thousands of records for a page of 50. Checking
// each record as the records of the range are walked newest first costs
// about as much per record walked, and a page walks about
// page/density of them (density = matches/records in the range). As for
// free text (textPlans), with c1 per match and c2 per record walked, the
// walk wins when matches² > (page·c2/c1)·records. Counting stops at that
// threshold. Both forms select the same records.
func (s *Store) termPlans(ctx context.Context, q *query.Query, br bucketRange, page int) (map[int64]bool, error) {
	if q == nil || q.Expr == nil {
		return nil, nil
	}
	c := newSQLBuilder(q)
	c.seen = map[int64]bool{}
	if _, err := c.expr(q.Expr); err != nil || len(c.seen) == 0 {
		return nil, nil // the search itself reports the error
	}
	plans := map[int64]bool{}
	if forceTermScan {
		for h := range c.seen {
			plans[h] = true
		}
		return plans, nil
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "?"
	}
	rng := ""
	if w := br.where("b", arg); w != "" {
		rng = " WHERE " + w
	}
	// The records in the range, estimated as the store's share of its
	// buckets in the range (a day bucket counting as the 4-hour ones it
	// took over).
	weight := "coalesce(sum(CASE WHEN b >= " + strconv.FormatInt(dayBase, 10) + " THEN " + strconv.Itoa(bucketsPerDay) + " ELSE 1 END), 0)"
	var records, all, in int64
	if err := s.r.QueryRowContext(ctx, `SELECT coalesce(max(id), 0), (SELECT `+weight+` FROM buckets),
		(SELECT `+weight+` FROM buckets`+rng+`) FROM records`, args...).Scan(&records, &all, &in); err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	if all > 0 {
		records = records * in / all
	}
	const perWalkedOverMatch = 2
	threshold := int64(math.Sqrt(float64(page) * perWalkedOverMatch * float64(records)))
	if threshold < 1000 {
		return nil, nil // few records in the range: probing is cheap whatever the value
	}
	for h := range c.seen {
		args = []any{h}
		q := `SELECT count(*) FROM (SELECT 1 FROM buckets bk CROSS JOIN terms t ON t.bucket = bk.b AND t.h = ?`
		if w := br.where("bk.b", arg); w != "" {
			q += " WHERE " + w
		}
		var n int64
		err := s.r.QueryRowContext(ctx, q+` LIMIT `+arg(threshold)+`)`, args...).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("store: search: %w", err)
		}
		plans[h] = n >= threshold
	}
	return plans, nil
}
