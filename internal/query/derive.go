package query

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/smtplog/smtplog/internal/record"
)

// The functions in this file derive from a record the values that terms
// compare against. The store indexes exactly these values, so that its SQL
// and Match agree by construction.

// NormMessageID trims spaces and one pair of angle brackets.
func NormMessageID(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	return s
}

// Sender returns the lower-case envelope sender; ok is false when no MAIL
// command was seen. The null sender is "".
func Sender(r *record.Record) (addr string, ok bool) {
	if r.MailFrom == nil {
		return "", false
	}
	return NormAddr(*r.MailFrom), true
}

// NormAddr lower-cases an address and trims spaces and one pair of angle brackets.
func NormAddr(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">"))
}

// Recipients returns every distinct lower-case recipient address of r:
// accepted (rcpt_to), refused (rejected_rcpt) and delivered to (deliveries).
func Recipients(r *record.Record) []string {
	var out []string
	add := func(s string) {
		a := NormAddr(s)
		if a == "" {
			return
		}
		for _, x := range out {
			if x == a {
				return
			}
		}
		out = append(out, a)
	}
	for _, a := range r.RcptTo {
		add(a)
	}
	for _, rj := range r.RejectedRcpt {
		add(rj.Address)
	}
	for _, d := range r.Deliveries {
		add(d.Rcpt)
	}
	return out
}

// Domain returns the lower-case domain of an address (after the last "@"),
// or "" when there is none.
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// QueueIDs returns r's queue ID and those of its deliveries, distinct.
func QueueIDs(r *record.Record) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, x := range out {
			if x == s {
				return
			}
		}
		out = append(out, s)
	}
	add(r.QueueID)
	for _, d := range r.Deliveries {
		add(d.QueueID)
	}
	return out
}

// User returns the lower-case authenticated user name, or "".
func User(r *record.Record) string {
	if r.Username != "" {
		return strings.ToLower(r.Username)
	}
	if r.Auth != nil {
		return strings.ToLower(r.Auth.Username)
	}
	return ""
}

// Helo returns the lower-case HELO name.
func Helo(r *record.Record) string { return strings.ToLower(r.Helo) }

// TLSUsed reports whether the client leg used TLS.
func TLSUsed(r *record.Record) bool { return r.TLS != nil && r.TLS.Used }

// ClientAddr returns the client IP address without zone and with IPv4
// unmapped.
func ClientAddr(r *record.Record) (netip.Addr, bool) {
	a, err := netip.ParseAddr(r.ClientIP)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// ReplyCode is one reply seen in a record.
type ReplyCode struct {
	Reply    int    // 0 when unknown
	Enhanced string // "" when unknown
}

// Codes returns every distinct reply code in r: the final reply, the
// replies to refused recipients and the delivery attempts' (DSN code, and
// the reply when the response starts with one).
func Codes(r *record.Record) []ReplyCode {
	var out []ReplyCode
	add := func(c ReplyCode) {
		if c.Reply == 0 && c.Enhanced == "" {
			return
		}
		for _, x := range out {
			if x == c {
				return
			}
		}
		out = append(out, c)
	}
	final := ParseReply(r.SMTPResponse)
	if r.ReplyCode >= 200 && r.ReplyCode <= 599 {
		final.Reply = r.ReplyCode
	}
	if validEnhanced(r.EnhancedCode) {
		final.Enhanced = r.EnhancedCode
	}
	add(final)
	for _, rj := range r.RejectedRcpt {
		add(ParseReply(rj.SMTPResponse))
	}
	for _, d := range r.Deliveries {
		c := ParseReply(d.SMTPResponse)
		if validEnhanced(d.DSN) {
			c.Enhanced = d.DSN
		}
		add(c)
	}
	return out
}

// ParseReply reads the reply code and enhanced status code at the start of
// an SMTP response such as "550 5.7.1 Relaying denied".
func ParseReply(s string) ReplyCode {
	var c ReplyCode
	if len(s) < 3 || !isDigits(s[:3]) || s[0] < '2' || s[0] > '5' || len(s) > 3 && s[3] != ' ' && s[3] != '-' {
		return c
	}
	c.Reply, _ = strconv.Atoi(s[:3])
	rest := strings.TrimLeft(s[3:], " -")
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	if validEnhanced(rest) && rest[0] == s[0] {
		c.Enhanced = rest
	}
	return c
}

// validEnhanced checks class.subject.detail (RFC 3463).
func validEnhanced(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || len(p[0]) != 1 || !strings.ContainsAny(p[0], "245") {
		return false
	}
	for _, x := range p[1:] {
		if len(x) > 3 || !isDigits(x) {
			return false
		}
	}
	return true
}

// Text returns the document that free-text terms search: the subject and
// every reply text, one per line.
func Text(r *record.Record) string {
	parts := []string{r.Subject, r.SMTPResponse}
	for _, rj := range r.RejectedRcpt {
		parts = append(parts, rj.SMTPResponse)
	}
	for _, d := range r.Deliveries {
		parts = append(parts, d.SMTPResponse)
	}
	return strings.Join(parts, "\n")
}

// Tokens splits s into lower-case words the way SQLite's FTS5 unicode61
// tokenizer (remove_diacritics 0) does: runs of letters, numbers and
// private-use characters.
func Tokens(s string) []string {
	var out []string
	start := -1
	for i, c := range s {
		word := unicode.IsLetter(c) || unicode.IsNumber(c) || unicode.Is(unicode.Co, c)
		switch {
		case word && start < 0:
			start = i
		case !word && start >= 0:
			out = append(out, strings.ToLower(s[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, strings.ToLower(s[start:]))
	}
	return out
}

// GlobMatch reports whether s matches pattern, where "*" matches any run of
// bytes and every other byte matches itself.
func GlobMatch(pattern, s string) bool {
	// Iterative matching with backtracking to the last star.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ASCIIContainsFold reports whether s contains sub, ignoring the case of
// ASCII letters only (SQLite's LIKE without ICU).
func ASCIIContainsFold(s, sub string) bool {
	return strings.Contains(asciiLower(s), asciiLower(sub))
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
