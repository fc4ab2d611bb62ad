package smtpwire

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Reply is an SMTP reply (RFC 5321 §4.2) with its enhanced status code
// (RFC 3463) split off the first line when present.
type Reply struct {
	Code     int
	Enhanced string   // "2.0.0"; "" when absent
	Lines    []string // text of each line without code and enhanced code
}

// NewReply builds a one-line reply.
func NewReply(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Class is the first digit of the code: 2, 3, 4 or 5.
func (r Reply) Class() int { return r.Code / 100 }

// Text is the reply's text lines joined by a space.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// String is the first line as one would log it: "250 2.0.0 Ok".
func (r Reply) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if len(r.Lines) > 0 && r.Lines[0] != "" {
		b.WriteByte(' ')
		b.WriteString(r.Lines[0])
	}
	return b.String()
}

// Full is every line joined, for records of multi-line replies.
func (r Reply) Full() string {
	if len(r.Lines) <= 1 {
		return r.String()
	}
	var b strings.Builder
	b.WriteString(r.String())
	for _, l := range r.Lines[1:] {
		b.WriteString(" / ")
		b.WriteString(l)
	}
	return b.String()
}

// Wire renders the reply with CRLFs; the enhanced code is repeated on every
// line as RFC 2034 §4 asks. Control characters in text become spaces, so a
// relayed upstream text can never inject a line.
func (r Reply) Wire() []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	// Sized up front: a reply is rendered for every command, and one
	// allocation of the right size is all it needs.
	code := strconv.Itoa(r.Code)
	n := 0
	for _, l := range lines {
		n += len(code) + 1 + len(r.Enhanced) + 1 + len(l) + 2
	}
	b := make([]byte, 0, n)
	for i, l := range lines {
		b = append(b, code...)
		if i < len(lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if r.Enhanced != "" {
			b = append(b, r.Enhanced...)
			if l != "" {
				b = append(b, ' ')
			}
		}
		b = appendSanitized(b, l)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendSanitized appends s with every control character (bytes below
// 0x20 and DEL) replaced by a space, as sanitizeText does.
func appendSanitized(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return append(b, sanitizeText(s)...)
		}
	}
	return append(b, s...)
}

func sanitizeText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, s)
		}
	}
	return s
}

// ParseEnhanced splits a leading enhanced status code ("4.2.0 ") off text,
// if it is well formed and its class matches the reply code's class.
func ParseEnhanced(code int, text string) (enh, rest string) {
	f, after, _ := strings.Cut(text, " ")
	if !isEnhanced(f) || int(f[0]-'0') != code/100 {
		return "", text
	}
	return f, after
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	if len(parts[0]) != 1 || (parts[0][0] != '2' && parts[0][0] != '4' && parts[0][0] != '5') {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// ParseReplyLine parses one reply line (without CRLF): code, whether more
// lines follow, and the text.
func ParseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: short reply line", ErrSyntax)
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", fmt.Errorf("%w: reply code not numeric", ErrSyntax)
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("%w: reply code %d out of range", ErrSyntax, code)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", fmt.Errorf("%w: bad reply separator", ErrSyntax)
	}
	return code, more, line[4:], nil
}

// MaxReplyLines bounds a multi-line reply.
const MaxReplyLines = 100

// ReadReply reads one (possibly multi-line) reply from r. Lines must end in
// CRLF; a bare LF is tolerated from servers only when lenientLF is set (some
// old MTAs send it), never a bare CR. maxLine bounds each line.
func ReadReply(r *bufio.Reader, maxLine int) (Reply, []string, error) {
	var rep Reply
	var raw []string
	for n := 0; ; n++ {
		if n >= MaxReplyLines {
			return Reply{}, raw, fmt.Errorf("%w: reply has more than %d lines", ErrSyntax, MaxReplyLines)
		}
		b, err := ReadLine(r, maxLine)
		if err != nil {
			return Reply{}, raw, err
		}
		line := string(b)
		raw = append(raw, line)
		code, more, text, err := ParseReplyLine(line)
		if err != nil {
			return Reply{}, raw, err
		}
		if n == 0 {
			rep.Code = code
			rep.Enhanced, _ = ParseEnhanced(code, text)
		} else if code != rep.Code {
			return Reply{}, raw, fmt.Errorf("%w: reply code changed within a multi-line reply", ErrSyntax)
		}
		if rep.Enhanced != "" {
			if e, rest := ParseEnhanced(code, text); e == rep.Enhanced {
				text = rest
			}
		}
		rep.Lines = append(rep.Lines, text)
		if !more {
			return rep, raw, nil
		}
	}
}

// ReadLine reads one CRLF-terminated line (returned without CRLF) of at most
// max bytes. A bare LF or CR inside the line is an error; after
// ErrLineTooLong the rest of the line has been consumed and discarded so the
// stream stays in sync. The returned slice is only valid until the next read.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var long []byte
	for {
		frag, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(frag) > max {
				if derr := discardLine(r); derr != nil {
					return nil, derr
				}
				return nil, ErrLineTooLong
			}
			long = append(long, frag...)
			continue
		}
		if err != nil {
			if len(frag) > 0 || len(long) > 0 {
				return nil, fmt.Errorf("unterminated line: %w", err)
			}
			return nil, err
		}
		line := frag
		if long != nil {
			line = append(long, frag...)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, ErrBareLF
		}
		line = line[:len(line)-2]
		if len(line) > max {
			return nil, ErrLineTooLong
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, ErrBareCR
		}
		return line, nil
	}
}

func discardLine(r *bufio.Reader) error {
	for {
		_, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		return err
	}
}

// QueueIDFromReply finds the queue or message ID a server put in its reply
// to the end of DATA, for the formats of common MTAs:
//
//	Postfix:   250 2.0.0 Ok: queued as 4Qx7Yv1Xr7z9vLn
//	Exim:      250 OK id=1rAbCd-000123-Ab
//	Sendmail:  250 2.0.0 4ATAbcde012345 Message accepted for delivery
//	OpenSMTPD: 250 2.0.0 a1b2c3d4 Message accepted for delivery
//	Exchange:  250 2.6.0 <msgid> [InternalId=123, Hostname=X] Queued mail for delivery
//	Gmail:     250 2.0.0 OK  1700000000 x12-20020a.123 - gsmtp
//	qmail:     250 ok 1700000000 qp 12345
//	KumoMTA:   250 OK ids=8f3e...
//	Haraka:    250 Message Queued (4A1B...)
//	MailHog, Mailpit and smtplog capture: 250 2.0.0 Ok: queued as <id>
func QueueIDFromReply(r Reply) string {
	if r.Class() != 2 {
		return ""
	}
	t := r.Text()
	if i := strings.Index(t, "queued as "); i >= 0 {
		return firstToken(t[i+len("queued as "):])
	}
	if i := strings.Index(t, "id="); i >= 0 && (i == 0 || t[i-1] == ' ') {
		return firstToken(t[i+3:])
	}
	if i := strings.Index(t, "ids="); i >= 0 && (i == 0 || t[i-1] == ' ') {
		return firstToken(t[i+4:])
	}
	if i := strings.Index(t, "InternalId="); i >= 0 {
		return strings.TrimRight(firstToken(t[i+len("InternalId="):]), ",]")
	}
	if strings.HasSuffix(t, "Message accepted for delivery") {
		return firstToken(t)
	}
	if strings.HasSuffix(t, "- gsmtp") {
		f := strings.Fields(t)
		if len(f) >= 4 {
			return f[len(f)-3]
		}
	}
	if strings.HasPrefix(t, "ok ") && strings.Contains(t, " qp ") {
		f := strings.Fields(t)
		return f[len(f)-1]
	}
	if i := strings.Index(t, "Message Queued ("); i >= 0 {
		return strings.TrimRight(firstToken(t[i+len("Message Queued ("):]), ")")
	}
	return ""
}

func firstToken(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, ".,;)")
}
