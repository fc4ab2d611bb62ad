// Package chaos makes the capture server answer chosen SMTP commands
// (RFC 5321 §4.1) with chosen errors, so developers can test how their
// application handles refusals, deferrals and dropped connections.
//
// A rule names a trigger, optionally an address pattern, a reply and
// optionally a probability, written as
//
//	TRIGGER[:PATTERN]=CODE[ ENHANCED][ TEXT][@PERCENT%]
//
// for example
//
//	RCPT=451 4.7.1 Try again later
//	RCPT:*@fail.example=550 5.1.1 No such user
//	DATA=552 5.3.4 Message too big@10%
//	MAIL=421
//	CONNECT=554 5.7.1 Go away
//
// Triggers: CONNECT (refuse at the greeting; PATTERN is the client IP or a
// CIDR), EHLO (also HELO; PATTERN is the name given), MAIL (PATTERN is the
// sender; "<>" is the null sender), RCPT (the recipient), DATA (the DATA
// or first BDAT command) and EOD (the end of the message data; for DATA
// and EOD the PATTERN matches any accepted recipient). Patterns are
// case-insensitive globs with * and ?. A 421 reply closes the connection
// (RFC 5321 §3.8). Rules are tried in order; the first that matches and
// whose probability draw succeeds answers.
package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/smtplog/smtplog/internal/smtpwire"
)

// Trigger is the point of the SMTP dialogue a rule answers.
type Trigger string

const (
	Connect   Trigger = "CONNECT"
	Helo      Trigger = "EHLO"
	Mail      Trigger = "MAIL"
	Rcpt      Trigger = "RCPT"
	Data      Trigger = "DATA"
	EndOfData Trigger = "EOD"
)

// triggers maps accepted spellings to triggers.
var triggers = map[string]Trigger{
	"CONNECT": Connect, "GREETING": Connect, "EHLO": Helo, "HELO": Helo, "MAIL": Mail, "RCPT": Rcpt,
	"DATA": Data, "EOD": EndOfData, "DATA-END": EndOfData, "END-OF-DATA": EndOfData, "DOT": EndOfData,
}

// Rule is one chaos rule. Percent 0 means always (100).
type Rule struct {
	Trigger  Trigger `json:"trigger"`
	Pattern  string  `json:"pattern,omitempty"`
	Code     int     `json:"code"`
	Enhanced string  `json:"enhanced,omitempty"`
	Text     string  `json:"text,omitempty"`
	Percent  float64 `json:"percent,omitempty"`
}

// Rules are tried in order.
type Rules []Rule

// DefaultText is the reply text of a rule that gives only a code.
const DefaultText = "Simulated failure (chaos)"

// Reply is the reply the rule sends.
func (r Rule) Reply() smtpwire.Reply {
	text := r.Text
	if text == "" {
		text = DefaultText
	}
	return smtpwire.NewReply(r.Code, r.Enhanced, text)
}

// String renders the rule in the form ParseRule reads.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(string(r.Trigger))
	if r.Pattern != "" {
		b.WriteString(":" + r.Pattern)
	}
	b.WriteString("=" + strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteString(" " + r.Enhanced)
	}
	if r.Text != "" {
		b.WriteString(" " + r.Text)
	}
	if r.Percent > 0 && r.Percent < 100 {
		b.WriteString("@" + strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%")
	}
	return b.String()
}

var (
	percentSuffix = regexp.MustCompile(`@\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$`)
	enhancedCode  = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
)

const example = "e.g. RCPT=451 4.7.1 Try again later, RCPT:*@fail.example=550 5.1.1 No such user, DATA=552 5.3.4 Too big@10%"

// ParseRule reads one rule.
func ParseRule(spec string) (Rule, error) {
	s := strings.TrimSpace(spec)
	lhs, rhs, ok := strings.Cut(s, "=")
	if !ok {
		return Rule{}, fmt.Errorf("chaos rule %q: missing \"=\" between the trigger and the reply (%s)", spec, example)
	}
	var r Rule
	name, pattern, _ := strings.Cut(strings.TrimSpace(lhs), ":")
	t, ok := triggers[strings.ToUpper(strings.TrimSpace(name))]
	if !ok {
		return Rule{}, fmt.Errorf("chaos rule %q: unknown trigger %q; use CONNECT, EHLO, MAIL, RCPT, DATA or EOD", spec, name)
	}
	r.Trigger, r.Pattern = t, strings.TrimSpace(pattern)
	rhs = strings.TrimSpace(rhs)
	if m := percentSuffix.FindStringSubmatchIndex(rhs); m != nil {
		p, err := strconv.ParseFloat(rhs[m[2]:m[3]], 64)
		if err != nil {
			return Rule{}, fmt.Errorf("chaos rule %q: bad probability: %w", spec, err)
		}
		r.Percent = p
		rhs = strings.TrimSpace(rhs[:m[0]])
	}
	codeStr, rest, _ := strings.Cut(rhs, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || len(codeStr) != 3 {
		return Rule{}, fmt.Errorf("chaos rule %q: the reply must start with a three-digit code 400-599 (%s)", spec, example)
	}
	r.Code = code
	rest = strings.TrimSpace(rest)
	if first, more, _ := strings.Cut(rest, " "); enhancedCode.MatchString(first) {
		r.Enhanced, rest = first, strings.TrimSpace(more)
	}
	r.Text = rest
	if err := r.Validate(); err != nil {
		return Rule{}, fmt.Errorf("chaos rule %q: %w", spec, err)
	}
	return r, nil
}

// ParseRules reads rules, one per argument; an argument may also hold
// several rules on separate lines (blank lines and lines starting with #
// are skipped).
func ParseRules(specs ...string) (Rules, error) {
	var out Rules
	var errs []error
	for _, spec := range specs {
		for _, line := range strings.Split(spec, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			r, err := ParseRule(line)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, r)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Validate checks a rule, saying what to fix.
func (r Rule) Validate() error {
	switch r.Trigger {
	case Connect, Helo, Mail, Rcpt, Data, EndOfData:
	default:
		return fmt.Errorf("unknown trigger %q; use CONNECT, EHLO, MAIL, RCPT, DATA or EOD", r.Trigger)
	}
	if r.Code < 400 || r.Code > 599 {
		return fmt.Errorf("reply code %d is not an error; use 4xx (temporary) or 5xx (permanent)", r.Code)
	}
	if r.Enhanced != "" {
		if !enhancedCode.MatchString(r.Enhanced) {
			return fmt.Errorf("enhanced code %q is malformed; use class.subject.detail, e.g. 4.7.1", r.Enhanced)
		}
		if int(r.Enhanced[0]-'0') != r.Code/100 {
			return fmt.Errorf("enhanced code %s does not match the class of reply code %d (RFC 3463): use %d.x.y", r.Enhanced, r.Code, r.Code/100)
		}
	}
	if strings.ContainsAny(r.Text, "\r\n\x00") {
		return errors.New("reply text must be one line")
	}
	if len(r.Text) > 400 {
		return errors.New("reply text is longer than 400 characters")
	}
	if r.Percent < 0 || r.Percent > 100 {
		return fmt.Errorf("probability %g%% is outside 0-100%%", r.Percent)
	}
	if r.Trigger == Connect && r.Pattern != "" && strings.Contains(r.Pattern, "/") {
		if _, err := netip.ParsePrefix(r.Pattern); err != nil {
			return fmt.Errorf("CONNECT pattern %q is not a valid CIDR: %w", r.Pattern, err)
		}
	}
	if len(r.Pattern) > 256 {
		return errors.New("pattern is longer than 256 characters")
	}
	return nil
}

// UnmarshalJSON accepts a rule object or its string form.
func (r *Rule) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("chaos rule: %w", err)
		}
		x, err := ParseRule(s)
		if err != nil {
			return err
		}
		*r = x
		return nil
	}
	type plain Rule
	var x plain
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("chaos rule: %w", err)
	}
	if t, ok := triggers[strings.ToUpper(string(x.Trigger))]; ok {
		x.Trigger = t
	}
	if err := Rule(x).Validate(); err != nil {
		return fmt.Errorf("chaos rule %s: %w", Rule(x), err)
	}
	*r = Rule(x)
	return nil
}

// Chaos holds the rules in force; it is safe for concurrent use, and its
// rules can be replaced at run time.
type Chaos struct {
	mu    sync.Mutex
	rules Rules
	rnd   *rand.Rand
}

// New returns a Chaos with rules and a random source for probabilities
// (nil: a randomly seeded one). Tests pass a seeded source.
func New(rules Rules, src rand.Source) (*Chaos, error) {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("chaos rule %d (%s): %w", i+1, r, err)
		}
	}
	if src == nil {
		src = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	return &Chaos{rules: append(Rules(nil), rules...), rnd: rand.New(src)}, nil
}

// Set replaces the rules after checking them all.
func (c *Chaos) Set(rules Rules) error {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("chaos rule %d (%s): %w", i+1, r, err)
		}
	}
	c.mu.Lock()
	c.rules = append(Rules(nil), rules...)
	c.mu.Unlock()
	return nil
}

// Rules returns a copy of the rules in force.
func (c *Chaos) Rules() Rules {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(Rules{}, c.rules...)
}

// Decide returns the reply for trigger t when a rule fires. subjects are
// what a pattern is matched against (an address, a HELO name, a client
// IP, or every recipient); a rule without a pattern matches always.
func (c *Chaos) Decide(t Trigger, subjects ...string) (smtpwire.Reply, bool) {
	if c == nil {
		return smtpwire.Reply{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.rules {
		if r.Trigger != t || !r.matches(subjects) {
			continue
		}
		if r.Percent > 0 && r.Percent < 100 && c.rnd.Float64()*100 >= r.Percent {
			continue
		}
		return r.Reply(), true
	}
	return smtpwire.Reply{}, false
}

func (r Rule) matches(subjects []string) bool {
	if r.Pattern == "" {
		return true
	}
	for _, s := range subjects {
		if r.Trigger == Connect && strings.Contains(r.Pattern, "/") {
			p, err1 := netip.ParsePrefix(r.Pattern)
			a, err2 := netip.ParseAddr(s)
			if err1 == nil && err2 == nil && p.Contains(a.Unmap()) {
				return true
			}
			continue
		}
		if s == "" && r.Pattern == "<>" || Glob(r.Pattern, s) {
			return true
		}
	}
	return false
}

// Glob reports whether s matches pattern, case-insensitively, where *
// matches any run of characters and ? any one. It runs in
// O(len(pattern)·len(s)) at worst.
func Glob(pattern, s string) bool {
	p, t := []rune(strings.ToLower(pattern)), []rune(strings.ToLower(s))
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
