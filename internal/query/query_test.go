package query

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestParseCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{"from:@shop.example status:deferred after:2026-11-01", "from:@shop.example status:deferred after:2026-11-01T00:00:00Z"},
		{"FROM:Alice@Example.COM", "from:Alice@Example.COM"},
		{"rcpt:bob@x.example", "to:bob@x.example"},
		{"-status:sent", "-status:sent"},
		{"-(status:sent OR status:accepted)", "-(status:sent OR status:accepted)"},
		{"a b OR c", "(a b) OR c"},
		{"a (b OR c)", "a (b OR c)"},
		{`subject:"hello \"world\""`, `subject:"hello \"world\""`},
		{`"mailbox full"`, `"mailbox full"`},
		{"after:-2h before:-30m", "after:2026-11-29T10:00:00Z before:2026-11-29T11:30:00Z"},
		{"after:-7d", "after:2026-11-22T12:00:00Z"},
		{"after:2026-11-01T08:00:00+01:00", "after:2026-11-01T08:00:00+01:00"},
		{"code:4xx code:550 code:5.7.1 code:5.7.X", "code:4xx code:550 code:5.7.1 code:5.7.x"},
		{"ip:192.0.2.7/24", "ip:192.0.2.7/24"},
		{"tls:TRUE", "tls:yes"},
		{"from:<>", "from:<>"},
		{`from:""`, `from:""`},
		{"ORANGE OR pear", "ORANGE OR pear"},
		{"inv*", "inv*"},
		{`"http://x"`, `"http://x"`},
		{"10:30", "10:30"},
	}
	for _, tt := range tests {
		q, err := Parse(tt.in, now)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := q.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseTerms(t *testing.T) {
	term := func(s string) *Term {
		t.Helper()
		q, err := Parse(s, now)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		tm, ok := q.Expr.(*Term)
		if !ok {
			t.Fatalf("Parse(%q) = %T, want *Term", s, q.Expr)
		}
		return tm
	}
	if p := term("from:Alice@Example.com").Pattern; p != (Pattern{Exact, "alice@example.com"}) {
		t.Errorf("exact address: %+v", p)
	}
	if p := term("from:@Example.com").Pattern; p != (Pattern{DomainOf, "example.com"}) {
		t.Errorf("domain: %+v", p)
	}
	if p := term("to:*@*.example.com").Pattern; p != (Pattern{Glob, "*@*.example.com"}) {
		t.Errorf("glob: %+v", p)
	}
	if p := term("to:alice").Pattern; p != (Pattern{Substring, "alice"}) {
		t.Errorf("substring: %+v", p)
	}
	if p := term("msgid:<a@b>").Pattern; p != (Pattern{Exact, "a@b"}) {
		t.Errorf("msgid: %+v", p)
	}
	if c := term("code:5.x.x").Code; c != (Code{Enhanced: "5.*.*"}) {
		t.Errorf("code: %+v", c)
	}
	if pf := term("ip:::ffff:10.1.2.3/104").Prefix.String(); pf != "10.0.0.0/8" {
		t.Errorf("mapped prefix: %s", pf)
	}
	if pf := term("ip:2001:db8::1").Prefix.String(); pf != "2001:db8::1/128" {
		t.Errorf("v6 addr: %s", pf)
	}
	if tm := term("after:2026-11-01").Time; !tm.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date: %v", tm)
	}
	loc := time.FixedZone("X", 3600)
	q, _ := Parse("before:2026-11-01", now.In(loc))
	if tm := q.Expr.(*Term).Time; !tm.Equal(time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("date in caller's zone: %v", tm)
	}
	tt := term(`"Mailbox FULL*"`)
	if strings.Join(tt.Words, ",") != "mailbox,full" || !tt.Prefixed {
		t.Errorf("free text: %+v", tt)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
		pos  int
	}{
		{"form:alice@example.com", `unknown field "form:" at 1: did you mean "from:"?`, 1},
		{"status:sent stauts:deferred", `unknown field "stauts:" at 13: did you mean "status:"?`, 13},
		{"status:delivered", `unknown status "delivered" at 8: use one of accepted, rejected, deferred, bounced, sent, expired, aborted`, 8},
		{`subject:"open`, `unterminated quote at 9: add a closing "`, 9},
		{"from:", "from: needs a value at 1", 1},
		{"(a b", `unclosed "(" at 1: add a matching ")"`, 1},
		{"a b)", `unexpected ")" at 4: remove it or add a matching "("`, 4},
		{"a OR", "OR needs a term after it at 5", 5},
		{"OR a", "expected a term at 1", 1},
		{"- a", `"-" must be followed by the term it negates at 1`, 1},
		{"code:6xx", `bad reply code "6xx" at 6`, 6},
		{"ip:10.0.0.0/33", `bad CIDR prefix "10.0.0.0/33" at 4`, 4},
		{"after:yesterday", `bad time "yesterday" at 7`, 7},
		{"after:-2y", `bad unit in relative time "-2y" (use s, m, h, d or w) at 7`, 7},
		{"tls:maybe", `tls: takes yes or no, not "maybe" at 5`, 5},
		{"é form:x", `unknown field "form:" at 3`, 3},
		{"###", `nothing to search for in "###" at 1`, 1},
		{"zzzzz:1", `unknown field "zzzzz:" at 1: quote the word to search for it as text`, 1},
		{"a\xffb", "invalid UTF-8 at 2", 2},
		{strings.Repeat("(", 40) + "a" + strings.Repeat(")", 40), "query nested too deeply", 33},
		{strings.Repeat("a ", 65), "more than 64 terms", 129},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in, now)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) err = %v, want *Error", tt.in, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) err = %q, want prefix %q", tt.in, err, tt.want)
		}
		if pe.Pos != tt.pos {
			t.Errorf("Parse(%q) pos = %d, want %d", tt.in, pe.Pos, tt.pos)
		}
	}
}

// Records is a small fixed corpus with known answers; the store's
// conformance suite reuses the same idea with more records.
func testRecords() []*record.Record {
	ts := func(h int) time.Time { return time.Date(2026, 11, 28, h, 0, 0, 0, time.UTC) }
	return []*record.Record{
		{Type: record.TypeMessage, Timestamp: ts(1), Source: record.SourceProxy, SessionID: "S1",
			ClientIP: "192.0.2.10", Helo: "Mail.Shop.Example", Username: "Alice",
			MessageID: "<m1@shop.example>", Subject: "Your Invoice 42", MailFrom: record.Ptr("Alice@Shop.Example"),
			RcptTo: []string{"bob@dest.example"}, Status: record.StatusAccepted, SMTPResponse: "250 2.0.0 Ok: queued as ABC123",
			ReplyCode: 250, EnhancedCode: "2.0.0", QueueID: "ABC123", TLS: &record.TLS{Used: true}},
		{Type: record.TypeMessage, Timestamp: ts(2), Source: record.SourcePostfix, QueueID: "ABC123",
			MessageID: "m1@shop.example", MailFrom: record.Ptr("alice@shop.example"), RcptTo: []string{"bob@dest.example", "carol@other.example"},
			Status: record.StatusDeferred, Deliveries: []record.Delivery{
				{Rcpt: "bob@dest.example", Status: "sent", DSN: "2.0.0", SMTPResponse: "250 ok"},
				{Rcpt: "carol@other.example", Status: "deferred", DSN: "4.2.2", SMTPResponse: "452 4.2.2 Mailbox full", QueueID: "DEF456"},
			}},
		{Type: record.TypeMessage, Timestamp: ts(3), Source: record.SourceProxy, ClientIP: "2001:db8::5",
			MailFrom: record.Ptr(""), RejectedRcpt: []record.Rejection{{Address: "x@Spam.Example", SMTPResponse: "550 5.7.1 Relaying denied"}},
			Status: record.StatusRejected, SMTPResponse: "554 5.5.1 No valid recipients"},
		{Type: record.TypeSession, Timestamp: ts(4), SessionID: "S1", ClientIP: "::ffff:192.0.2.10",
			Auth: &record.Auth{Mechanism: "PLAIN", Username: "alice", Result: "success"}, TLS: &record.TLS{Used: false}},
	}
}

func TestMatch(t *testing.T) {
	recs := testRecords()
	tests := []struct {
		q    string
		want string // indexes of matching records
	}{
		{"", "0123"},
		{"from:alice@shop.example", "01"},
		{"from:@SHOP.example", "01"},
		{"from:ali", "01"},
		{"from:*@shop.*", "01"},
		{"from:<>", "2"},
		{"from:*", "012"},
		{"-from:<>", "013"},
		{"to:bob@dest.example", "01"},
		{"to:carol@other.example", "1"},
		{"rcpt:x@spam.example", "2"},
		{"domain:spam.example", "2"},
		{"domain:shop.example", "01"},
		{"domain:*.example -domain:shop.example", "2"},
		{"status:deferred OR status:rejected", "12"},
		{"code:4xx", "1"},
		{"code:5xx", "2"},
		{"code:550", "2"},
		{"code:5.7.1", "2"},
		{"code:5.x.x", "2"},
		{"code:2.0.0", "01"},
		{"code:250", "01"},
		{"msgid:m1@shop.example", "01"},
		{"msgid:<m1@shop.example>", "01"},
		{"queue:ABC123", "01"},
		{"queue:DEF456", "1"},
		{"session:S1", "03"},
		{"ip:192.0.2.0/24", "03"},
		{"ip:2001:db8::/32", "2"},
		{"ip:192.0.2.10", "03"},
		{"user:alice", "03"},
		{"user:ALI*", "03"},
		{"helo:mail.shop.example", "0"},
		{"tls:yes", "0"},
		{"tls:no", "123"},
		{"source:postfix", "1"},
		{"type:session", "3"},
		{`subject:"invoice 4"`, "0"},
		{"subject:INVOICE", "0"},
		{"-subject:invoice", "123"},
		{"after:2026-11-28T02:00:00Z before:2026-11-28T04:00:00Z", "12"},
		{"invoice", "0"},
		{`"mailbox full"`, "1"},
		{`"full mailbox"`, ""},
		{"mailb*", "1"},
		{"relaying denied", "2"},
		{"queued", "0"},
		{"-(type:session OR from:<>)", "01"},
	}
	for _, tt := range tests {
		q, err := Parse(tt.q, now)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.q, err)
			continue
		}
		var got strings.Builder
		for i, r := range recs {
			if Match(q, r) {
				got.WriteByte(byte('0' + i))
			}
		}
		if got.String() != tt.want {
			t.Errorf("Match(%q) = %q, want %q", tt.q, got.String(), tt.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*c", "abbbc", true}, {"a*c", "abbb", false}, {"*@*.x", "a@b.c.x", true},
		{"a**b", "ab", true}, {"?", "?", true}, {"?", "a", false}, {"*a*a*a", "aaaa", true}, {"abc", "abd", false},
	}
	for _, tt := range tests {
		if got := GlobMatch(tt.p, tt.s); got != tt.want {
			t.Errorf("GlobMatch(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in   string
		want ReplyCode
	}{
		{"550 5.7.1 Relaying denied", ReplyCode{550, "5.7.1"}},
		{"250-2.0.0 ok", ReplyCode{250, "2.0.0"}},
		{"452 Mailbox full", ReplyCode{452, ""}},
		{"450 5.1.1 mismatched class", ReplyCode{450, ""}},
		{"host said: 550", ReplyCode{}},
		{"5501 x", ReplyCode{}},
		{"", ReplyCode{}},
	}
	for _, tt := range tests {
		if got := ParseReply(tt.in); got != tt.want {
			t.Errorf("ParseReply(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"from:@shop.example status:deferred after:2026-11-01", `subject:"a \"b\"" -code:5xx`,
		"(a OR b) -(c d)", "ip:10.0.0.0/8 tls:yes", "after:-2h before:2026-11-01T00:00:00Z", "msgid:<x@y>",
		"form:x", `"unterminated`, "code:5.7.x user:a* helo:*", "-", "OR", "((((a))))",
	} {
		f.Add(s)
	}
	recs := testRecords()
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s, now)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Pos < 1 || pe.Offset > len(s) {
				t.Fatalf("Parse(%q): bad error %#v", s, err)
			}
			return
		}
		// The canonical form parses back to itself.
		c := q.String()
		q2, err := Parse(c, now)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q: %v", s, c, err)
		}
		if c2 := q2.String(); c2 != c {
			t.Fatalf("String not stable: %q -> %q -> %q", s, c, c2)
		}
		for _, r := range recs {
			if Match(q, r) != Match(q2, r) {
				t.Fatalf("Match differs between %q and %q", s, c)
			}
		}
	})
}
