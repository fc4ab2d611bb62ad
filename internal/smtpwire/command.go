// Package smtpwire is smtplog's SMTP wire layer: commands, replies with
// enhanced status codes, ESMTP parameters, the DATA reader that keeps exact
// bytes, dot-stuffing, BDAT, line limits and transcripts. It is pure: no
// sockets, no goroutines; the session engine and the pcap reader share it.
//
// It implements the syntax of RFC 5321 (SMTP), RFC 1869/5321 §4.1.2 (ESMTP
// parameters), RFC 2034/3463 (enhanced status codes), RFC 3030 (BDAT), RFC
// 6531 (SMTPUTF8 addresses) and is stricter than the RFCs ask where
// leniency is an attack vector: RFC 5321 §2.3.8 says "Conforming
// implementations MUST NOT recognize or generate any other character or
// character sequence as a line terminator", so a bare CR or LF is an error
// everywhere, never a line end.
package smtpwire

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors of the line and command layer. The session engine turns each into
// an SMTP reply; their text never contains client bytes.
var (
	ErrLineTooLong = errors.New("line too long")
	ErrBareLF      = errors.New("bare LF")
	ErrBareCR      = errors.New("bare CR")
	ErrNUL         = errors.New("NUL byte")
	ErrBadUTF8     = errors.New("invalid UTF-8")
	ErrControl     = errors.New("control character")
	ErrSyntax      = errors.New("syntax error")
)

// Command is one parsed SMTP command line.
type Command struct {
	Verb string // upper case, e.g. "MAIL"
	Arg  string // the rest of the line after one space, as sent
}

// CheckLine validates a command line without its CRLF: no CR, LF, NUL,
// other control characters (TAB is allowed) or invalid UTF-8.
func CheckLine(line []byte) error {
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\r':
			return ErrBareCR
		case c == '\n':
			return ErrBareLF
		case c == 0:
			return ErrNUL
		case c < 0x20 && c != '\t', c == 0x7f:
			return ErrControl
		case c >= 0x80:
			if !utf8.Valid(line[i:]) {
				return ErrBadUTF8
			}
			return checkRest(line[i:])
		}
	}
	return nil
}

func checkRest(b []byte) error {
	for _, c := range b {
		if c == '\r' {
			return ErrBareCR
		}
		if c == '\n' {
			return ErrBareLF
		}
		if c == 0 {
			return ErrNUL
		}
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return ErrControl
		}
	}
	return nil
}

// ParseCommand splits a validated command line (without CRLF) into verb and
// argument. The verb is letters only (RFC 5321 §4.1.1), at most 12 of them.
func ParseCommand(line []byte) (Command, error) {
	if err := CheckLine(line); err != nil {
		return Command{}, err
	}
	s := string(line)
	verb, arg, _ := strings.Cut(s, " ")
	if verb == "" || len(verb) > 12 {
		return Command{}, ErrSyntax
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return Command{}, ErrSyntax
		}
	}
	return Command{Verb: strings.ToUpper(verb), Arg: arg}, nil
}

// Param is one ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2
// esmtp-param = esmtp-keyword ["=" esmtp-value]).
type Param struct {
	Key   string // upper case
	Value string
	Set   bool // "=" was present
}

// String renders the parameter as sent on the wire.
func (p Param) String() string {
	if p.Set {
		return p.Key + "=" + p.Value
	}
	return p.Key
}

// Path is a parsed MAIL FROM or RCPT TO argument.
type Path struct {
	Addr   string  // the address without angle brackets; "" for <>
	Params []Param // ESMTP parameters in order
}

// Param returns the value of parameter key and whether it was present.
func (p Path) Param(key string) (string, bool) {
	for _, x := range p.Params {
		if x.Key == key {
			return x.Value, true
		}
	}
	return "", false
}

// ParseMailArg parses the argument of MAIL: "FROM:<addr> [params]".
// The null reverse-path <> is allowed.
func ParseMailArg(arg string) (Path, error) {
	return parsePathArg(arg, "FROM:", true)
}

// ParseRcptArg parses the argument of RCPT: "TO:<addr> [params]".
// "<Postmaster>" without a domain is allowed (RFC 5321 §4.1.1.3).
func ParseRcptArg(arg string) (Path, error) {
	return parsePathArg(arg, "TO:", false)
}

func parsePathArg(arg, prefix string, nullOK bool) (Path, error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return Path{}, fmt.Errorf("%w: expected %s<address>", ErrSyntax, prefix)
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ") // some clients send "FROM: <a@b>"
	if !strings.HasPrefix(rest, "<") {
		return Path{}, fmt.Errorf("%w: address must be in angle brackets", ErrSyntax)
	}
	addr, params, err := cutAddress(rest[1:])
	if err != nil {
		return Path{}, err
	}
	// Drop a source route (RFC 5321 §4.1.2 obsolete "@a,@b:user@c").
	if strings.HasPrefix(addr, "@") {
		if i := strings.IndexByte(addr, ':'); i >= 0 {
			addr = addr[i+1:]
		} else {
			return Path{}, fmt.Errorf("%w: bad source route", ErrSyntax)
		}
	}
	if addr == "" {
		if !nullOK {
			return Path{}, fmt.Errorf("%w: empty recipient", ErrSyntax)
		}
	} else if err := checkAddress(addr, nullOK); err != nil {
		return Path{}, err
	}
	p := Path{Addr: addr}
	for _, f := range strings.Fields(params) {
		k, v, set := strings.Cut(f, "=")
		if k == "" || !isKeyword(k) {
			return Path{}, fmt.Errorf("%w: bad parameter", ErrSyntax)
		}
		for i := 0; i < len(v); i++ {
			if v[i] == '=' || v[i] < 0x21 {
				return Path{}, fmt.Errorf("%w: bad parameter value", ErrSyntax)
			}
		}
		p.Params = append(p.Params, Param{Key: strings.ToUpper(k), Value: v, Set: set})
	}
	return p, nil
}

// cutAddress reads up to the closing '>' honouring quoted local parts and
// returns the address and what follows.
func cutAddress(s string) (addr, rest string, err error) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			rest = s[i+1:]
			if rest != "" && rest[0] != ' ' {
				return "", "", fmt.Errorf("%w: text after address", ErrSyntax)
			}
			return s[:i], rest, nil
		}
	}
	return "", "", fmt.Errorf("%w: unterminated address", ErrSyntax)
}

// checkAddress accepts local@domain (local part dot-atom or quoted string,
// UTF-8 allowed for SMTPUTF8), or a bare "postmaster" for RCPT.
func checkAddress(a string, isMail bool) error {
	if len(a) > 320 {
		return fmt.Errorf("%w: address too long", ErrSyntax)
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		if !isMail && strings.EqualFold(a, "postmaster") {
			return nil
		}
		return fmt.Errorf("%w: address needs a domain", ErrSyntax)
	}
	local, domain := a[:at], a[at+1:]
	if local == "" || domain == "" {
		return fmt.Errorf("%w: empty local part or domain", ErrSyntax)
	}
	if strings.HasPrefix(local, `"`) {
		if len(local) < 2 || !strings.HasSuffix(local, `"`) {
			return fmt.Errorf("%w: bad quoted local part", ErrSyntax)
		}
	} else {
		for _, r := range local {
			if r <= ' ' || strings.ContainsRune(`"(),:;<>@[\]`, r) {
				return fmt.Errorf("%w: bad character in local part", ErrSyntax)
			}
		}
	}
	if strings.HasPrefix(domain, "[") {
		if !strings.HasSuffix(domain, "]") {
			return fmt.Errorf("%w: bad address literal", ErrSyntax)
		}
		return nil
	}
	for _, r := range domain {
		if r <= ' ' || strings.ContainsRune(`"(),:;<>@[\]_!#$%&'*+/=?^{|}~`+"`", r) {
			return fmt.Errorf("%w: bad character in domain", ErrSyntax)
		}
	}
	return nil
}

func isKeyword(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (c == '-' && i > 0)) {
			return false
		}
	}
	return true
}

// FormatPath renders a path back to the wire as "<addr> params".
func FormatPath(p Path) string {
	var b strings.Builder
	b.WriteByte('<')
	b.WriteString(p.Addr)
	b.WriteByte('>')
	for _, x := range p.Params {
		b.WriteByte(' ')
		b.WriteString(x.String())
	}
	return b.String()
}

// ParseBDAT parses "chunk-size [LAST]" (RFC 3030 §2).
func ParseBDAT(arg string) (size int64, last bool, err error) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return 0, false, ErrSyntax
	}
	if len(f[0]) > 18 {
		return 0, false, ErrSyntax
	}
	for i := 0; i < len(f[0]); i++ {
		if f[0][i] < '0' || f[0][i] > '9' {
			return 0, false, ErrSyntax
		}
		size = size*10 + int64(f[0][i]-'0')
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, ErrSyntax
		}
		last = true
	}
	return size, last, nil
}
