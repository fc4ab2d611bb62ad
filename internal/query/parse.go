package query

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtplog/smtplog/internal/record"
)

// Limits that keep a hostile query cheap to parse and to run.
const (
	MaxQueryLen = 4096 // bytes
	MaxTerms    = 64
	maxDepth    = 32
)

// Error is a parse error. Pos is the 1-based character column of the
// offending token; Msg says what is wrong and how to fix it.
type Error struct {
	Pos    int    // 1-based character column
	Offset int    // 0-based byte offset
	Token  string // the offending token, "" at the end of the query
	Msg    string
	Hint   string // what to do instead; may be empty
}

func (e *Error) Error() string {
	s := e.Msg + " at " + strconv.Itoa(e.Pos)
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// Parse parses a query. Relative times are resolved against now, and dates
// are midnight in now's location.
func Parse(s string, now time.Time) (*Query, error) {
	p := &parser{src: s, now: now}
	if len(s) > MaxQueryLen {
		return nil, p.errAt(MaxQueryLen, "", fmt.Sprintf("query longer than %d bytes", MaxQueryLen), "shorten it")
	}
	if !utf8.ValidString(s) {
		i := 0
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, p.errAt(i, "", "invalid UTF-8", "remove the byte")
	}
	p.skipSpace()
	if p.i == len(s) {
		return &Query{}, nil
	}
	x, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(s) { // only a stray ")" can stop parseOr early
		return nil, p.errAt(p.i, ")", `unexpected ")"`, `remove it or add a matching "("`)
	}
	return &Query{Expr: x}, nil
}

// MustParse is Parse for tests and constant queries; it panics on error.
func MustParse(s string, now time.Time) *Query {
	q, err := Parse(s, now)
	if err != nil {
		panic(err)
	}
	return q
}

type parser struct {
	src   string
	i     int
	now   time.Time
	terms int
}

func (p *parser) errAt(off int, tok, msg, hint string) *Error {
	if off > len(p.src) {
		off = len(p.src)
	}
	return &Error{Pos: utf8.RuneCountInString(p.src[:off]) + 1, Offset: off, Token: tok, Msg: msg, Hint: hint}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func (p *parser) skipSpace() {
	for p.i < len(p.src) && isSpace(p.src[p.i]) {
		p.i++
	}
}

// atOR reports whether the next token is the OR operator.
func (p *parser) atOR() bool {
	return strings.HasPrefix(p.src[p.i:], "OR") && (p.i+2 == len(p.src) || isSpace(p.src[p.i+2]) || p.src[p.i+2] == '(')
}

func (p *parser) parseOr(depth int) (Expr, error) {
	var xs []Expr
	for {
		x, err := p.parseAnd(depth)
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
		if p.i < len(p.src) && p.atOR() {
			p.i += 2
			p.skipSpace()
			if p.i == len(p.src) || p.src[p.i] == ')' {
				return nil, p.errAt(p.i, "", "OR needs a term after it", "add a term or remove OR")
			}
			continue
		}
		break
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return &Or{X: xs}, nil
}

func (p *parser) parseAnd(depth int) (Expr, error) {
	var xs []Expr
	for p.i < len(p.src) && p.src[p.i] != ')' && !p.atOR() {
		x, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
		p.skipSpace()
	}
	if len(xs) == 0 {
		tok := ""
		if p.i < len(p.src) {
			tok = p.src[p.i : p.i+min(2, len(p.src)-p.i)]
		}
		return nil, p.errAt(p.i, tok, "expected a term", "write a field:value or a word here")
	}
	if len(xs) == 1 {
		return xs[0], nil
	}
	return &And{X: xs}, nil
}

func (p *parser) parseUnary(depth int) (Expr, error) {
	if depth >= maxDepth {
		return nil, p.errAt(p.i, "", "query nested too deeply", "use fewer parentheses or negations")
	}
	start := p.i
	switch p.src[p.i] {
	case '-':
		p.i++
		if p.i == len(p.src) || isSpace(p.src[p.i]) || p.src[p.i] == ')' {
			return nil, p.errAt(start, "-", `"-" must be followed by the term it negates`, `write -status:sent, or quote a lone "-"`)
		}
		x, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	case '(':
		p.i++
		p.skipSpace()
		if p.i == len(p.src) {
			return nil, p.errAt(start, "(", `unclosed "("`, `add a matching ")"`)
		}
		x, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.i == len(p.src) || p.src[p.i] != ')' {
			return nil, p.errAt(start, "(", `unclosed "("`, `add a matching ")"`)
		}
		p.i++
		return x, nil
	}
	return p.parseTerm()
}

// readValue reads a quoted or bare value at p.i and reports whether it was
// quoted.
func (p *parser) readValue() (string, bool, error) {
	if p.i < len(p.src) && p.src[p.i] == '"' {
		start := p.i
		p.i++
		var b strings.Builder
		for p.i < len(p.src) {
			c := p.src[p.i]
			switch c {
			case '\\':
				if p.i+1 == len(p.src) {
					return "", true, p.errAt(p.i, `\`, "backslash at the end of the query", `write \\ for a backslash`)
				}
				b.WriteByte(p.src[p.i+1])
				p.i += 2
				continue
			case '"':
				p.i++
				return b.String(), true, nil
			}
			b.WriteByte(c)
			p.i++
		}
		return "", true, p.errAt(start, `"`, "unterminated quote", `add a closing "`)
	}
	start := p.i
	for p.i < len(p.src) && !isSpace(p.src[p.i]) && p.src[p.i] != ')' {
		if p.src[p.i] == '"' {
			return "", false, p.errAt(p.i, `"`, "quote inside a word", `quote the whole value ("a b") or escape it`)
		}
		p.i++
	}
	return p.src[start:p.i], false, nil
}

func (p *parser) parseTerm() (Expr, error) {
	start := p.i
	p.terms++
	if p.terms > MaxTerms {
		return nil, p.errAt(start, "", fmt.Sprintf("more than %d terms", MaxTerms), "narrow the query")
	}
	// field:value?
	j := p.i
	for j < len(p.src) && isFieldPrefix(p.src[j:j+1]) {
		j++
	}
	if j > p.i && j < len(p.src) && p.src[j] == ':' {
		name := strings.ToLower(p.src[p.i:j])
		f, ok := fieldNames[name]
		if !ok {
			hint := "quote the word to search for it as text"
			if s := suggest(name); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s+":")
			}
			return nil, p.errAt(start, p.src[start:j+1], fmt.Sprintf("unknown field %q", p.src[start:j+1]), hint)
		}
		p.i = j + 1
		vstart := p.i
		v, quoted, err := p.readValue()
		if err != nil {
			return nil, err
		}
		t := &Term{Field: f, Value: v, Pos: p.errAt(start, "", "", "").Pos}
		if err := p.fill(t, quoted, start, vstart); err != nil {
			return nil, err
		}
		return t, nil
	}
	v, _, err := p.readValue()
	if err != nil {
		return nil, err
	}
	t := &Term{Field: FieldText, Value: v, Pos: p.errAt(start, "", "", "").Pos}
	words := Tokens(v)
	if len(words) == 0 {
		return nil, p.errAt(start, p.src[start:p.i], fmt.Sprintf("nothing to search for in %q", v), "free text needs a letter or a digit")
	}
	t.Words = words
	t.Prefixed = strings.HasSuffix(v, "*")
	return t, nil
}

// fill checks and parses a term's value.
func (p *parser) fill(t *Term, quoted bool, start, vstart int) error {
	v := t.Value
	bad := func(msg, hint string) error {
		return p.errAt(vstart, v, msg, hint)
	}
	name := string(t.Field) + ":"
	if v == "" && !(quoted && t.Field == FieldFrom) {
		return p.errAt(start, name, name+" needs a value", "write "+example(t.Field))
	}
	switch t.Field {
	case FieldFrom, FieldTo:
		if t.Field == FieldFrom && (v == "" || v == "<>") {
			t.Pattern = Pattern{Kind: Null}
			return nil
		}
		a := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">"))
		switch {
		case a == "":
			return bad(name+" needs an address", "write "+example(t.Field))
		case strings.Contains(a, "*"):
			t.Pattern = Pattern{Kind: Glob, S: a}
		case strings.HasPrefix(a, "@"):
			if len(a) == 1 {
				return bad(name+" needs a domain after @", "write "+example(t.Field))
			}
			t.Pattern = Pattern{Kind: DomainOf, S: a[1:]}
		case strings.Contains(a, "@"):
			t.Pattern = Pattern{Kind: Exact, S: a}
		default:
			t.Pattern = Pattern{Kind: Substring, S: a}
		}
	case FieldDomain:
		d := strings.ToLower(strings.TrimPrefix(v, "@"))
		if d == "" {
			return bad("domain: needs a domain", "write domain:example.com")
		}
		t.Pattern = Pattern{Kind: Exact, S: d}
		if strings.Contains(d, "*") {
			t.Pattern.Kind = Glob
		}
	case FieldUser, FieldHelo:
		s := strings.ToLower(v)
		t.Pattern = Pattern{Kind: Exact, S: s}
		if strings.Contains(s, "*") {
			t.Pattern.Kind = Glob
		}
	case FieldMsgID:
		id := NormMessageID(v)
		if id == "" {
			return bad("msgid: needs a Message-ID", "write msgid:<id@example.com>")
		}
		t.Pattern = Pattern{Kind: Exact, S: id}
	case FieldQueue, FieldSession:
		t.Pattern = Pattern{Kind: Exact, S: v}
	case FieldStatus:
		s := strings.ToLower(v)
		if !contains(statuses, s) {
			return bad(fmt.Sprintf("unknown status %q", v), "use one of "+strings.Join(statuses, ", "))
		}
		t.Pattern = Pattern{Kind: Exact, S: s}
	case FieldSource:
		s := strings.ToLower(v)
		if !contains(sources, s) {
			return bad(fmt.Sprintf("unknown source %q", v), "use one of "+strings.Join(sources, ", "))
		}
		t.Pattern = Pattern{Kind: Exact, S: s}
	case FieldType:
		s := strings.ToLower(v)
		if s != string(record.TypeMessage) && s != string(record.TypeSession) {
			return bad(fmt.Sprintf("unknown type %q", v), "use message or session")
		}
		t.Pattern = Pattern{Kind: Exact, S: s}
	case FieldSubject:
		t.Pattern = Pattern{Kind: Substring, S: v}
	case FieldTLS:
		switch strings.ToLower(v) {
		case "yes", "true", "1":
			t.Bool = true
		case "no", "false", "0":
		default:
			return bad(fmt.Sprintf("tls: takes yes or no, not %q", v), "write tls:yes or tls:no")
		}
	case FieldCode:
		c, ok := parseCode(v)
		if !ok {
			return bad(fmt.Sprintf("bad reply code %q", v), "write a class (4xx, 5xx), a code (550) or an enhanced code (5.7.1, 5.7.x)")
		}
		t.Code = c
	case FieldIP:
		if strings.Contains(v, "/") {
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				return bad(fmt.Sprintf("bad CIDR prefix %q", v), "write ip:192.0.2.0/24 or ip:2001:db8::/32")
			}
			t.Prefix = pfx.Masked()
			if t.Prefix.Addr().Is4In6() {
				t.Prefix = netip.PrefixFrom(t.Prefix.Addr().Unmap(), max(t.Prefix.Bits()-96, 0)).Masked()
			}
		} else {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return bad(fmt.Sprintf("bad IP address %q", v), "write ip:192.0.2.1, ip:2001:db8::1 or a CIDR prefix")
			}
			a = a.Unmap()
			t.Prefix = netip.PrefixFrom(a, a.BitLen())
		}
	case FieldAfter, FieldBefore:
		tm, err := parseTime(v, p.now)
		if err != nil {
			return bad(err.Error(), "write a date (2026-11-01), an RFC 3339 time (2026-11-01T08:00:00Z) or a relative time (-2h, -7d)")
		}
		t.Time = tm
	}
	return nil
}

var (
	statuses = []string{record.StatusAccepted, record.StatusRejected, record.StatusDeferred, record.StatusBounced, record.StatusSent, record.StatusExpired, record.StatusAborted}
	sources  = []string{string(record.SourceProxy), string(record.SourceCapture), string(record.SourcePostfix), string(record.SourceExim), string(record.SourceSendmail), string(record.SourceOpenSMTPD), string(record.SourcePcap), string(record.SourceApp)}
)

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func example(f Field) string {
	switch f {
	case FieldFrom:
		return "from:alice@example.com or from:@example.com"
	case FieldTo:
		return "to:bob@example.com or to:@example.com"
	case FieldDomain:
		return "domain:example.com"
	case FieldStatus:
		return "status:deferred"
	case FieldCode:
		return "code:5xx, code:550 or code:5.7.1"
	case FieldMsgID:
		return "msgid:<id@example.com>"
	case FieldIP:
		return "ip:192.0.2.1 or ip:192.0.2.0/24"
	case FieldTLS:
		return "tls:yes or tls:no"
	case FieldAfter, FieldBefore:
		return string(f) + ":2026-11-01 or " + string(f) + ":-2h"
	case FieldSubject:
		return `subject:"some words"`
	}
	return string(f) + ":VALUE"
}

// parseCode parses a code: value.
func parseCode(v string) (Code, bool) {
	v = strings.ToLower(v)
	if len(v) == 3 && (v[0] == '2' || v[0] == '3' || v[0] == '4' || v[0] == '5') {
		if v[1:] == "xx" {
			return Code{Class: int(v[0] - '0')}, true
		}
		if isDigits(v[1:]) {
			n, _ := strconv.Atoi(v)
			return Code{Reply: n}, true
		}
		return Code{}, false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return Code{}, false
	}
	for i, s := range parts[1:] {
		if s == "x" || s == "*" {
			parts[i+1] = "*"
			continue
		}
		if s == "" || len(s) > 3 || !isDigits(s) {
			return Code{}, false
		}
	}
	return Code{Enhanced: strings.Join(parts, ".")}, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseTime parses an after:/before: value.
func parseTime(v string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(v, "-") && len(v) >= 3 {
		n, err := strconv.ParseInt(v[1:len(v)-1], 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("bad relative time %q", v)
		}
		var unit time.Duration
		switch v[len(v)-1] {
		case 's':
			unit = time.Second
		case 'm':
			unit = time.Minute
		case 'h':
			unit = time.Hour
		case 'd':
			unit = 24 * time.Hour
		case 'w':
			unit = 7 * 24 * time.Hour
		default:
			return time.Time{}, fmt.Errorf("bad unit in relative time %q (use s, m, h, d or w)", v)
		}
		if n > int64(math.MaxInt64/unit) || n*int64(unit) > 200*365*24*int64(time.Hour) {
			return time.Time{}, fmt.Errorf("relative time %q too far back", v)
		}
		return checkRange(now.Add(-time.Duration(n)*unit), v)
	}
	if len(v) == 10 {
		t, err := time.ParseInLocation("2006-01-02", v, now.Location())
		if err != nil {
			return time.Time{}, fmt.Errorf("bad date %q", v)
		}
		return checkRange(t, v)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", v)
	}
	return checkRange(t, v)
}

// checkRange keeps times within what the store can represent (Unix
// nanoseconds in an int64: 1678 to 2262).
func checkRange(t time.Time, v string) (time.Time, error) {
	if t.Year() < 1700 || t.Year() > 2200 {
		return time.Time{}, fmt.Errorf("time %q out of range", v)
	}
	return t, nil
}

// suggest returns the known field closest to name, or "".
func suggest(name string) string {
	best, bestD := "", 3
	for _, f := range []string{"from", "to", "rcpt", "domain", "status", "code", "msgid", "queue", "session", "ip", "user", "helo", "tls", "source", "type", "subject", "after", "before"} {
		if d := editDistance(name, f); d < bestD {
			best, bestD = f, d
		}
	}
	if len(name) <= 2 && bestD > 1 {
		return ""
	}
	return best
}

// editDistance is the Damerau–Levenshtein (optimal string alignment)
// distance; names are short.
func editDistance(a, b string) int {
	if len(a) > 32 {
		return 99
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
