package query

import (
	"strings"

	"github.com/smtplog/smtplog/internal/record"
)

// Match reports whether r matches q. It is the reference semantics of the
// language: the store's SQL must return exactly the records Match accepts.
func Match(q *Query, r *record.Record) bool {
	if q == nil || q.Expr == nil {
		return true
	}
	return matchExpr(q.Expr, r)
}

func matchExpr(x Expr, r *record.Record) bool {
	switch x := x.(type) {
	case *And:
		for _, y := range x.X {
			if !matchExpr(y, r) {
				return false
			}
		}
		return true
	case *Or:
		for _, y := range x.X {
			if matchExpr(y, r) {
				return true
			}
		}
		return false
	case *Not:
		return !matchExpr(x.X, r)
	case *Term:
		return matchTerm(x, r)
	}
	return false
}

// MatchPattern applies p to a normalised value s.
func MatchPattern(p Pattern, s string) bool {
	switch p.Kind {
	case Exact:
		return s == p.S
	case Glob:
		return GlobMatch(p.S, s)
	case Substring:
		return strings.Contains(s, p.S)
	case DomainOf:
		return Domain(s) == p.S && strings.Contains(s, "@")
	case Null:
		return s == ""
	}
	return false
}

// MatchCode applies a code: term to one reply code.
func MatchCode(c Code, rc ReplyCode) bool {
	switch {
	case c.Class != 0:
		return rc.Reply/100 == c.Class || rc.Enhanced != "" && int(rc.Enhanced[0]-'0') == c.Class
	case c.Reply != 0:
		return rc.Reply == c.Reply
	case c.Enhanced != "":
		return rc.Enhanced != "" && GlobMatch(c.Enhanced, rc.Enhanced)
	}
	return false
}

func matchTerm(t *Term, r *record.Record) bool {
	switch t.Field {
	case FieldFrom:
		a, ok := Sender(r)
		if !ok || a == "" && t.Pattern.Kind != Null && t.Pattern.Kind != Glob {
			return false
		}
		return MatchPattern(t.Pattern, a)
	case FieldTo:
		for _, a := range Recipients(r) {
			if MatchPattern(t.Pattern, a) {
				return true
			}
		}
		return false
	case FieldDomain:
		if a, ok := Sender(r); ok {
			if d := Domain(a); d != "" && MatchPattern(t.Pattern, d) {
				return true
			}
		}
		for _, a := range Recipients(r) {
			if d := Domain(a); d != "" && MatchPattern(t.Pattern, d) {
				return true
			}
		}
		return false
	case FieldStatus:
		return r.Status == t.Pattern.S
	case FieldSource:
		return string(r.Source) == t.Pattern.S
	case FieldType:
		return string(r.Type) == t.Pattern.S
	case FieldMsgID:
		return r.MessageID != "" && NormMessageID(r.MessageID) == t.Pattern.S
	case FieldQueue:
		for _, q := range QueueIDs(r) {
			if q == t.Pattern.S {
				return true
			}
		}
		return false
	case FieldSession:
		return r.SessionID == t.Pattern.S
	case FieldIP:
		a, ok := ClientAddr(r)
		return ok && t.Prefix.Contains(a)
	case FieldUser:
		u := User(r)
		return u != "" && MatchPattern(t.Pattern, u)
	case FieldHelo:
		h := Helo(r)
		return h != "" && MatchPattern(t.Pattern, h)
	case FieldTLS:
		return TLSUsed(r) == t.Bool
	case FieldSubject:
		return r.Subject != "" && ASCIIContainsFold(r.Subject, t.Pattern.S)
	case FieldAfter:
		return !r.Timestamp.Before(t.Time)
	case FieldBefore:
		return r.Timestamp.Before(t.Time)
	case FieldCode:
		for _, c := range Codes(r) {
			if MatchCode(t.Code, c) {
				return true
			}
		}
		return false
	case FieldText:
		return containsPhrase(Tokens(Text(r)), t.Words, t.Prefixed)
	}
	return false
}

// containsPhrase reports whether words occur consecutively in doc; with
// prefix, the last word need only start a document word.
func containsPhrase(doc, words []string, prefix bool) bool {
	if len(words) == 0 {
		return false
	}
	for i := 0; i+len(words) <= len(doc); i++ {
		ok := true
		for j, w := range words {
			d := doc[i+j]
			if j == len(words)-1 && prefix {
				ok = strings.HasPrefix(d, w)
			} else {
				ok = d == w
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
