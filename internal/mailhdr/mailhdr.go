// Package mailhdr extracts the header fields smtplog records (RFC 5322
// Message-ID, Subject, From, To, Cc, Date, User-Agent/X-Mailer, Received)
// from a message's bytes, decoding RFC 2047 encoded words. It is tolerant of
// broken mail: a line without a colon is skipped, not fatal, because the
// parser only observes and never changes what is relayed. Header size is
// bounded.
package mailhdr

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/smtplog/smtplog/internal/record"
)

// MaxHeaderBytes bounds the header block read (Postfix's header_size_limit
// is 102400).
const MaxHeaderBytes = 256 * 1024

// maxFields bounds the number of header fields considered.
const maxFields = 2000

// Fields are the decoded header values of one message.
type Fields struct {
	MessageID string
	Subject   string
	From      string
	To        []string
	Cc        []string
	Date      string
	UserAgent string
	Received  []string // newest first, as they appear
	Truncated bool     // the header block exceeded MaxHeaderBytes or maxFields
}

// Field is one raw header field, unfolded.
type Field struct {
	Name  string
	Value string
}

// Split returns the unfolded header fields of msg (up to the first empty
// line), accepting CRLF or LF line ends.
func Split(msg []byte) (fields []Field, truncated bool) {
	if len(msg) > MaxHeaderBytes {
		msg = msg[:MaxHeaderBytes]
		truncated = true
	}
	for len(msg) > 0 {
		var line []byte
		line, msg = nextLine(msg)
		if len(line) == 0 {
			return fields, truncated
		}
		if line[0] == ' ' || line[0] == '\t' {
			if n := len(fields); n > 0 {
				fields[n-1].Value += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			continue // not a header line; tolerated
		}
		if len(fields) >= maxFields {
			return fields, true
		}
		fields = append(fields, Field{Name: string(name), Value: strings.TrimSpace(string(value))})
	}
	return fields, truncated
}

var decoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(input), nil
}

// Decode decodes RFC 2047 encoded words; on error the raw text is kept.
// Control characters that decoding produced (CR, LF, NUL...) become spaces.
func Decode(s string) string {
	if strings.Contains(s, "=?") {
		if d, err := decoder.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Parse extracts Fields from a message. It reads the header block as Split
// does (the same unfolding, the same limits) but keeps only the fields it
// records: a message's other fields (DKIM signatures, ARC sets, list
// headers) cost no copies. TestParseMatchesSplit holds the two together.
func Parse(msg []byte) Fields {
	var f Fields
	if len(msg) > MaxHeaderBytes {
		msg = msg[:MaxHeaderBytes]
		f.Truncated = true
	}
	var (
		n   int       // header fields seen, for maxFields
		cur fieldKind // the last field seen; kindOther when not recorded
		val string    // its unfolded value, when recorded
	)
	for len(msg) > 0 {
		var line []byte
		line, msg = nextLine(msg)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != kindOther {
				val += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			continue // not a header line; tolerated
		}
		if n >= maxFields {
			f.Truncated = true
			break
		}
		f.add(cur, val)
		n++
		cur, val = kindOf(name), ""
		if cur != kindOther {
			val = strings.TrimSpace(string(value))
		}
	}
	f.add(cur, val)
	return f
}

// fieldKind names the header fields Parse records.
type fieldKind int

const (
	kindOther fieldKind = iota
	kindMessageID
	kindSubject
	kindFrom
	kindTo
	kindCc
	kindDate
	kindUserAgent
	kindReceived
)

var kinds = map[string]fieldKind{
	"message-id": kindMessageID,
	"subject":    kindSubject,
	"from":       kindFrom,
	"to":         kindTo,
	"cc":         kindCc,
	"date":       kindDate,
	"user-agent": kindUserAgent,
	"x-mailer":   kindUserAgent,
	"received":   kindReceived,
}

// kindOf matches a field name case-insensitively, as strings.ToLower
// would: an ASCII name (nearly all) is folded without a copy; any other
// goes through strings.ToLower, which also folds letters such as U+0130
// to ASCII.
func kindOf(name []byte) fieldKind {
	var buf [len("message-id")]byte
	if len(name) > len(buf) {
		for _, c := range name {
			if c >= 0x80 {
				return kinds[strings.ToLower(string(name))]
			}
		}
		return kindOther
	}
	for i, c := range name {
		if c >= 0x80 {
			return kinds[strings.ToLower(string(name))]
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return kinds[string(buf[:len(name)])]
}

// add records one complete field (value unfolded). A single-valued field
// keeps its first occurrence.
func (f *Fields) add(k fieldKind, v string) {
	switch k {
	case kindMessageID:
		first(&f.MessageID, v, Decode)
	case kindSubject:
		first(&f.Subject, v, Decode)
	case kindFrom:
		first(&f.From, v, decodeAddress)
	case kindTo:
		f.To = append(f.To, decodeAddressList(v)...)
	case kindCc:
		f.Cc = append(f.Cc, decodeAddressList(v)...)
	case kindDate:
		first(&f.Date, v, Decode)
	case kindUserAgent:
		first(&f.UserAgent, v, Decode)
	case kindReceived:
		if len(f.Received) < 100 {
			f.Received = append(f.Received, Decode(v))
		}
	}
}

// first sets *dst to decode(v) unless it is set already; v is decoded
// only then.
func first(dst *string, v string, decode func(string) string) {
	if *dst == "" {
		*dst = decode(v)
	}
}

func decodeAddress(v string) string {
	if a, err := (&mail.AddressParser{WordDecoder: decoder}).Parse(v); err == nil {
		return formatAddress(a)
	}
	return Decode(v)
}

func decodeAddressList(v string) []string {
	if l, err := (&mail.AddressParser{WordDecoder: decoder}).ParseList(v); err == nil {
		out := make([]string, 0, len(l))
		for _, a := range l {
			out = append(out, formatAddress(a))
		}
		return out
	}
	return []string{Decode(v)}
}

// formatAddress renders "Name <addr>" without RFC 2047 re-encoding, so the
// record shows what a person reads.
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return Decode(a.Name) + " <" + a.Address + ">"
}

// Fill sets the header fields of a message record from the message body
// (as Parse reads it), flagging a header section that was cut short.
func Fill(rec *record.Record, body []byte) {
	h := Parse(body)
	rec.MessageID = h.MessageID
	rec.Subject = h.Subject
	rec.From = h.From
	rec.To = h.To
	rec.Cc = h.Cc
	rec.Date = h.Date
	rec.UserAgent = h.UserAgent
	rec.Received = h.Received // newest first, as in the message
	if h.Truncated {
		rec.Flags = append(rec.Flags, "header_truncated")
	}
}

// nextLine splits msg at its first LF into the line, without its line
// ending (LF or CR LF), and the rest.
func nextLine(msg []byte) (line, rest []byte) {
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		line, rest = msg[:i], msg[i+1:]
	} else {
		line = msg
	}
	return bytes.TrimSuffix(line, []byte("\r")), rest
}
