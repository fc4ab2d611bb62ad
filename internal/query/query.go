// Package query implements smtplog's search language, shared by the CLI, the
// HTTP API and the web UI. Parse turns a query string into an AST; Match
// evaluates an AST against one record in memory (live streams, and the
// reference semantics that the store's SQL translation is tested against).
//
// The package is pure: no I/O, no SQL, the standard library and the record
// type only.
//
// # Language
//
// A query is a list of terms, all of which must match (AND). A term is
// field:value or free text. Any term or group can be negated with a leading
// "-"; "OR" (upper case) between terms means either; parentheses group.
// AND binds tighter than OR: "a b OR c" is "(a b) OR c". Values with spaces
// are quoted, "..." with \" and \\ as escapes.
//
//	from:V          envelope sender (mail_from)
//	to:V, rcpt:V    any envelope recipient: accepted, rejected or delivered to
//	domain:D        the sender's domain or any recipient's domain
//	status:S        accepted, rejected, deferred, bounced, sent, expired, aborted
//	code:C          any reply seen: 4xx or 5xx (class), 550 (reply code),
//	                5.7.1 or 5.7.x (enhanced status code, RFC 3463)
//	msgid:ID        Message-ID, with or without angle brackets
//	queue:ID        the MTA queue ID (also of re-injected copies)
//	session:ID      the session ID
//	ip:A            the client IP address, or a CIDR prefix (10.0.0.0/8)
//	user:U          the authenticated user name
//	helo:H          the EHLO/HELO name
//	tls:yes|no      whether the client connection used TLS
//	source:S        proxy, capture, postfix, exim, sendmail, opensmtpd, pcap, app
//	type:T          message or session
//	subject:TEXT    the subject contains TEXT (ASCII letters case-insensitive)
//	after:T         at or after T; T is a date (2026-11-01, midnight in the
//	                caller's time zone), an RFC 3339 time, or relative (-2h,
//	                -30m, -7d, -2w) to the time the query is parsed
//	before:T        before T
//	word, "a b"     free text: the words (a phrase when quoted) occur in the
//	                subject or in a reply text; a trailing * matches a prefix
//
// Addresses (from, to) are compared in lower case: user@example.com matches
// that address exactly, @example.com any address at that domain, a value
// without "@" any address that contains it, and "*" is a wildcard anywhere
// (*@*.example.com). from:<> (or from:"") is the null sender. Domains are
// exact unless they contain "*". user and helo are exact, case-insensitive,
// with "*" wildcards. msgid, queue and session are exact.
package query

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Field names a term's field. The empty Field is free text.
type Field string

const (
	FieldText    Field = ""
	FieldFrom    Field = "from"
	FieldTo      Field = "to" // rcpt: is an alias
	FieldDomain  Field = "domain"
	FieldStatus  Field = "status"
	FieldCode    Field = "code"
	FieldMsgID   Field = "msgid"
	FieldQueue   Field = "queue"
	FieldSession Field = "session"
	FieldIP      Field = "ip"
	FieldUser    Field = "user"
	FieldHelo    Field = "helo"
	FieldTLS     Field = "tls"
	FieldSource  Field = "source"
	FieldType    Field = "type"
	FieldSubject Field = "subject"
	FieldAfter   Field = "after"
	FieldBefore  Field = "before"
)

// fieldNames are the names accepted before a colon, aliases included.
var fieldNames = map[string]Field{
	"from": FieldFrom, "to": FieldTo, "rcpt": FieldTo, "domain": FieldDomain,
	"status": FieldStatus, "code": FieldCode, "msgid": FieldMsgID,
	"queue": FieldQueue, "session": FieldSession, "ip": FieldIP,
	"user": FieldUser, "helo": FieldHelo, "tls": FieldTLS,
	"source": FieldSource, "type": FieldType, "subject": FieldSubject,
	"after": FieldAfter, "before": FieldBefore,
}

// Query is a parsed query. A nil Expr matches every record.
type Query struct {
	Expr Expr
}

// String returns the query in canonical form; parsing it again gives the
// same query (relative times become absolute).
func (q *Query) String() string {
	if q == nil || q.Expr == nil {
		return ""
	}
	return q.Expr.String()
}

// Expr is a node of the AST: *And, *Or, *Not or *Term.
type Expr interface {
	String() string
	expr()
}

// And matches when every one of X matches.
type And struct{ X []Expr }

// Or matches when at least one of X matches.
type Or struct{ X []Expr }

// Not matches when X does not.
type Not struct{ X Expr }

func (*And) expr()  {}
func (*Or) expr()   {}
func (*Not) expr()  {}
func (*Term) expr() {}

func (a *And) String() string { return join(a.X, " ") }
func (o *Or) String() string  { return join(o.X, " OR ") }
func (n *Not) String() string { return "-" + group(n.X) }

func join(xs []Expr, sep string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = group(x)
	}
	return strings.Join(parts, sep)
}

func group(x Expr) string {
	switch x.(type) {
	case *And, *Or:
		return "(" + x.String() + ")"
	}
	return x.String()
}

// MatchKind says how a Pattern compares.
type MatchKind int

const (
	Exact     MatchKind = iota // equal
	Glob                       // "*" matches any run of characters
	Substring                  // contains
	DomainOf                   // the address's domain equals S
	Null                       // the null sender
)

// Pattern is a string comparison. S is already normalised (lower case for
// addresses, domains, users and HELO names).
type Pattern struct {
	Kind MatchKind
	S    string
}

// Code is a code: term: a reply class (Class 4 for 4xx), a reply code, or
// an enhanced status code pattern (x as a wildcard component).
type Code struct {
	Class    int    // 2, 4 or 5 for 2xx/4xx/5xx; 0 otherwise
	Reply    int    // e.g. 550; 0 otherwise
	Enhanced string // e.g. "5.7.1" or "5.7.*" (a Glob); "" otherwise
}

// Term is one field:value or free-text term.
type Term struct {
	Field Field
	Value string // as written, unquoted
	Pos   int    // 1-based character column of the term in the query

	Pattern  Pattern      // from, to, domain, msgid, queue, session, user, helo, status, source, type, subject
	Code     Code         // code
	Prefix   netip.Prefix // ip (a single address is a /32 or /128)
	Time     time.Time    // after, before
	Bool     bool         // tls
	Words    []string     // free text: lower-case tokens, in order
	Prefixed bool         // free text: the last word is a prefix (written with a trailing *)
}

// String returns the term in query syntax.
func (t *Term) String() string {
	var v string
	switch t.Field {
	case FieldAfter, FieldBefore:
		v = t.Time.Format(time.RFC3339Nano)
	case FieldTLS:
		v = "no"
		if t.Bool {
			v = "yes"
		}
	case FieldCode:
		v = t.Code.String()
	case FieldText:
		return quote(t.Value)
	default:
		v = quote(t.Value)
		if t.Value == "" {
			v = `""`
		}
	}
	return string(t.Field) + ":" + v
}

// quote returns s bare when the lexer would read it back unchanged, else
// quoted with escapes.
func quote(s string) string {
	bare := s != "" && s[0] != '-' && s[0] != '(' && s[0] != '"' &&
		!(strings.HasPrefix(s, "OR") && (len(s) == 2 || s[2] == '(' || isSpace(s[2])))
	for i := 0; bare && i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ')' || c == '"' || c == '\\':
			bare = false
		case c == ':' && s != "" && isFieldPrefix(s[:i]):
			bare = false
		}
	}
	if bare {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isFieldPrefix(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			return false
		}
	}
	return true
}

// codeString renders a Code for error messages and tests.
func (c Code) String() string {
	switch {
	case c.Class != 0:
		return strconv.Itoa(c.Class) + "xx"
	case c.Reply != 0:
		return strconv.Itoa(c.Reply)
	}
	return strings.ReplaceAll(c.Enhanced, "*", "x")
}
