package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format is an output encoding of records.
type Format string

const (
	FormatJSON Format = "json"
	FormatText Format = "text"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatJSON, FormatText:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown record format %q: use json or text", s)
}

// normalize returns a copy of r with every time in UTC, as the schema says.
func normalize(r *Record) Record {
	c := *r
	c.Timestamp = c.Timestamp.UTC()
	if !c.End.IsZero() {
		c.End = c.End.UTC()
	}
	if len(c.Deliveries) > 0 {
		d := make([]Delivery, len(c.Deliveries))
		copy(d, c.Deliveries)
		for i := range d {
			d[i].Timestamp = d[i].Timestamp.UTC()
		}
		c.Deliveries = d
	}
	return c
}

// MarshalJSONLine encodes r as one JSON object followed by a newline. Control
// characters, U+2028 and U+2029 are escaped by encoding/json, so a value can
// never split the line; '<' and '>' stay readable (Message-IDs).
func MarshalJSONLine(r *Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	n := normalize(r)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalText encodes r as one human-readable line ending in a newline.
// Every value is escaped with Escape, so no field can forge a line or
// send terminal escape sequences.
func MarshalText(r *Record) []byte {
	var b strings.Builder
	b.WriteString(r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteByte(' ')
	b.WriteString(string(r.Type))
	kv := func(k, v string) {
		if v == "" {
			return
		}
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(v))
	}
	kv("source", string(r.Source))
	kv("session", r.SessionID)
	if r.ClientIP != "" {
		kv("client", joinHostPort(r.ClientIP, r.ClientPort))
	}
	kv("helo", r.Helo)
	kv("user", r.Username)
	if r.Auth != nil {
		kv("auth", r.Auth.Mechanism+"/"+r.Auth.Result)
	}
	if r.MailFrom != nil {
		b.WriteString(" from=<")
		b.WriteString(Escape(*r.MailFrom))
		b.WriteString(">")
	}
	if len(r.RcptTo) > 0 {
		parts := make([]string, len(r.RcptTo))
		for i, a := range r.RcptTo {
			parts[i] = "<" + Escape(a) + ">"
		}
		b.WriteString(" to=")
		b.WriteString(strings.Join(parts, ","))
	}
	for _, rj := range r.RejectedRcpt {
		kv("rejected", "<"+rj.Address+"> "+rj.SMTPResponse)
	}
	kv("msgid", r.MessageID)
	kv("subject", r.Subject)
	kv("status", r.Status)
	kv("response", r.SMTPResponse)
	kv("queue", r.QueueID)
	if r.Size > 0 {
		kv("size", strconv.FormatInt(r.Size, 10))
	}
	if r.TLS != nil {
		kv("tls", tlsText(r.TLS))
	}
	if r.UpstreamTLS != nil {
		kv("upstream_tls", tlsText(r.UpstreamTLS))
	}
	for _, d := range r.Deliveries {
		kv("delivery", "<"+d.Rcpt+"> "+d.Status+" "+d.Relay+" "+d.DSN+" "+d.SMTPResponse)
	}
	if r.Messages > 0 {
		kv("messages", strconv.Itoa(r.Messages))
	}
	kv("close", r.CloseReason)
	kv("reason", r.Reason)
	if r.LatencyMS > 0 {
		kv("latency_ms", strconv.FormatFloat(r.LatencyMS, 'f', 1, 64))
	}
	if r.DurationMS > 0 {
		kv("duration_ms", strconv.FormatFloat(r.DurationMS, 'f', 1, 64))
	}
	for _, a := range r.Anomalies {
		kv("anomaly", a)
	}
	for _, f := range r.Flags {
		kv("flag", f)
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

func tlsText(t *TLS) string {
	if !t.Used {
		if t.Error != "" {
			return "no(" + t.Error + ")"
		}
		return "no"
	}
	s := t.Version
	if t.Cipher != "" {
		s += "/" + t.Cipher
	}
	if s == "" {
		s = "yes"
	}
	return s
}

func joinHostPort(ip string, port int) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}

// Escape makes s safe to print on one line of a terminal or log file: every
// control character (C0, DEL, C1), U+2028, U+2029, backslash and invalid
// UTF-8 byte is written as a Go-style escape.
func Escape(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, r == 0x2028, r == 0x2029, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func quoteIfNeeded(v string) string {
	e := Escape(v)
	if strings.ContainsAny(e, " \"=") || e == "" {
		return `"` + strings.ReplaceAll(e, `"`, `\"`) + `"`
	}
	return e
}

// Writer writes records to an io.Writer in one format. It is not safe for
// concurrent use; wrap it (see sink packages) when several goroutines write.
type Writer struct {
	w      io.Writer
	format Format
}

// NewWriter returns a Writer for format f.
func NewWriter(w io.Writer, f Format) *Writer { return &Writer{w: w, format: f} }

// Write encodes and writes one record.
func (w *Writer) Write(r *Record) error {
	var line []byte
	if w.format == FormatText {
		line = MarshalText(r)
	} else {
		var err error
		line, err = MarshalJSONLine(r)
		if err != nil {
			return err
		}
	}
	_, err := w.w.Write(line)
	return err
}

// MS converts a duration to fractional milliseconds, rounded to 0.001 ms.
func MS(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond).Microseconds()) / 1000
}
