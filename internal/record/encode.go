package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
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
	return AppendJSONLine(nil, r)
}

// AppendJSONLine appends the JSON line of r (MarshalJSONLine's bytes) to
// dst. It writes the bytes encoding/json would, without reflection; the
// rare records it does not handle itself (a time outside years 0–9999, a
// NaN or infinite number) go through encoding/json, which reports them.
func AppendJSONLine(dst []byte, r *Record) ([]byte, error) {
	if b, ok := appendRecord(dst, r); ok {
		return append(b, '\n'), nil
	}
	return appendJSONLineReflect(dst, r)
}

// appendJSONLineReflect is the reference encoding: encoding/json with HTML
// escaping off, of the record with its times in UTC.
func appendJSONLineReflect(dst []byte, r *Record) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
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
		kv("sni", r.TLS.SNI) // the name the client asked for: which virtual host it meant
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
	buf    []byte // the line being written, reused
}

// NewWriter returns a Writer for format f.
func NewWriter(w io.Writer, f Format) *Writer { return &Writer{w: w, format: f} }

// Write encodes and writes one record.
func (w *Writer) Write(r *Record) error {
	if w.format == FormatText {
		_, err := w.w.Write(MarshalText(r))
		return err
	}
	line, err := AppendJSONLine(w.buf[:0], r)
	if err != nil {
		return err
	}
	if cap(line) <= 1<<20 { // keep a usual line's buffer, not a huge one
		w.buf = line
	}
	_, err = w.w.Write(line)
	return err
}

// MS converts a duration to fractional milliseconds, rounded to 0.001 ms.
func MS(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond).Microseconds()) / 1000
}

// The hand-written JSON encoding of a Record. Each append function writes
// what encoding/json writes for its type with HTML escaping off: fields in
// declaration order, omitempty and omitzero as tagged, times as RFC 3339
// with nanoseconds in UTC, floats as encoding/json formats them, strings
// with encoding/json's escapes (control characters, U+2028, U+2029 and
// invalid UTF-8 as U+FFFD). TestAppendJSONLineMatchesEncodingJSON holds it
// to that. ok is false for what only encoding/json may report: a time
// outside years 0–9999, a NaN or an infinity.

func appendRecord(b []byte, r *Record) (_ []byte, ok bool) {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, string(r.Type))
	b = append(b, `,"timestamp":`...)
	if b, ok = appendJSONTime(b, r.Timestamp); !ok {
		return b, false
	}
	if !r.End.IsZero() {
		b = append(b, `,"end":`...)
		if b, ok = appendJSONTime(b, r.End); !ok {
			return b, false
		}
	}
	b = appendStringField(b, `,"source":`, string(r.Source))
	b = appendStringField(b, `,"host":`, r.Host)
	b = appendStringField(b, `,"session_id":`, r.SessionID)
	b = appendStringField(b, `,"client_ip":`, r.ClientIP)
	b = appendIntField(b, `,"client_port":`, int64(r.ClientPort))
	b = appendStringField(b, `,"server_ip":`, r.ServerIP)
	b = appendIntField(b, `,"server_port":`, int64(r.ServerPort))
	b = appendStringField(b, `,"helo":`, r.Helo)
	b = appendStringField(b, `,"username":`, r.Username)
	b = appendStringField(b, `,"message_id":`, r.MessageID)
	b = appendStringField(b, `,"subject":`, r.Subject)
	b = appendStringField(b, `,"from":`, r.From)
	b = appendStringsField(b, `,"to":`, r.To)
	b = appendStringsField(b, `,"cc":`, r.Cc)
	b = appendStringField(b, `,"date":`, r.Date)
	b = appendStringField(b, `,"user_agent":`, r.UserAgent)
	b = appendStringsField(b, `,"received":`, r.Received)
	if r.MailFrom != nil {
		b = append(b, `,"mail_from":`...)
		b = appendJSONString(b, *r.MailFrom)
	}
	b = appendStringsField(b, `,"rcpt_to":`, r.RcptTo)
	if len(r.RejectedRcpt) > 0 {
		b = append(b, `,"rejected_rcpt":[`...)
		for i, x := range r.RejectedRcpt {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"address":`...)
			b = appendJSONString(b, x.Address)
			b = append(b, `,"smtp_response":`...)
			b = appendJSONString(b, x.SMTPResponse)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendIntField(b, `,"nrcpt":`, int64(r.Nrcpt))
	b = appendStringField(b, `,"status":`, r.Status)
	b = appendStringField(b, `,"smtp_response":`, r.SMTPResponse)
	b = appendIntField(b, `,"reply_code":`, int64(r.ReplyCode))
	b = appendStringField(b, `,"enhanced_code":`, r.EnhancedCode)
	b = appendStringField(b, `,"queue_id":`, r.QueueID)
	b = appendStringField(b, `,"parent_queue_id":`, r.ParentQueueID)
	b = appendIntField(b, `,"size":`, r.Size)
	b = appendStringField(b, `,"body_sha256":`, r.BodySHA256)
	if r.TLS != nil {
		b = appendTLS(append(b, `,"tls":`...), r.TLS)
	}
	if r.UpstreamTLS != nil {
		b = appendTLS(append(b, `,"upstream_tls":`...), r.UpstreamTLS)
	}
	if len(r.Deliveries) > 0 {
		b = append(b, `,"deliveries":[`...)
		for i := range r.Deliveries {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendDelivery(b, &r.Deliveries[i]); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	if b, ok = appendFloatField(b, `,"latency_ms":`, r.LatencyMS); !ok {
		return b, false
	}
	if len(r.PhasesMS) > 0 {
		keys := make([]string, 0, len(r.PhasesMS))
		for k := range r.PhasesMS {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"phases_ms":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, k), ':')
			if b, ok = appendJSONFloat(b, r.PhasesMS[k]); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if b, ok = appendFloatField(b, `,"duration_ms":`, r.DurationMS); !ok {
		return b, false
	}
	if a := r.Auth; a != nil {
		b = append(b, `,"auth":{`...)
		n := len(b)
		b = appendStringField(b, `,"mechanism":`, a.Mechanism)
		b = appendStringField(b, `,"username":`, a.Username)
		b = appendStringField(b, `,"result":`, a.Result)
		b = append(dropComma(b, n), '}')
	}
	b = appendIntField(b, `,"messages":`, int64(r.Messages))
	b = appendStringField(b, `,"close_reason":`, r.CloseReason)
	b = appendStringField(b, `,"reason":`, r.Reason)
	b = appendStringsField(b, `,"errors":`, r.Errors)
	b = appendStringsField(b, `,"anomalies":`, r.Anomalies)
	b = appendStringField(b, `,"upstream":`, r.Upstream)
	b = appendStringsField(b, `,"flags":`, r.Flags)
	if len(r.Transcript) > 0 {
		b = append(b, `,"transcript":[`...)
		for i, t := range r.Transcript {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"t_ms":`...)
			if b, ok = appendJSONFloat(b, t.TMS); !ok {
				return b, false
			}
			b = append(b, `,"dir":`...)
			b = appendJSONString(b, t.Dir)
			b = appendStringField(b, `,"leg":`, t.Leg)
			b = append(b, `,"line":`...)
			b = appendJSONString(b, t.Line)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), true
}

func appendDelivery(b []byte, d *Delivery) (_ []byte, ok bool) {
	b = append(b, `{"timestamp":`...)
	if b, ok = appendJSONTime(b, d.Timestamp); !ok {
		return b, false
	}
	b = append(b, `,"rcpt":`...)
	b = appendJSONString(b, d.Rcpt)
	b = appendStringField(b, `,"orig_rcpt":`, d.OrigRcpt)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, d.Status)
	b = appendStringField(b, `,"relay":`, d.Relay)
	b = appendStringField(b, `,"dsn":`, d.DSN)
	b = appendStringField(b, `,"smtp_response":`, d.SMTPResponse)
	if b, ok = appendFloatField(b, `,"delay_s":`, d.DelayS); !ok {
		return b, false
	}
	b = appendStringField(b, `,"delays":`, d.Delays)
	b = appendStringField(b, `,"queue_id":`, d.QueueID)
	return append(b, '}'), true
}

func appendTLS(b []byte, t *TLS) []byte {
	b = append(b, `{"used":`...)
	b = strconv.AppendBool(b, t.Used)
	b = appendStringField(b, `,"version":`, t.Version)
	b = appendStringField(b, `,"cipher":`, t.Cipher)
	b = appendStringField(b, `,"sni":`, t.SNI)
	b = appendStringsField(b, `,"offered_versions":`, t.OfferedVersions)
	b = appendStringField(b, `,"peer_cert":`, t.PeerCert)
	b = appendStringField(b, `,"trust":`, t.Trust)
	b = appendStringField(b, `,"error":`, t.Error)
	return append(b, '}')
}

// dropComma removes the comma a first field wrote right after an object's
// opening brace at b[n-1].
func dropComma(b []byte, n int) []byte {
	if len(b) > n && b[n] == ',' {
		copy(b[n:], b[n+1:])
		b = b[:len(b)-1]
	}
	return b
}

func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

func appendStringsField(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(append(b, key...), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

func appendIntField(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

func appendFloatField(b []byte, key string, v float64) ([]byte, bool) {
	if v == 0 {
		return b, true
	}
	return appendJSONFloat(append(b, key...), v)
}

// appendJSONTime writes t in UTC as time.Time's MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	b, err := t.UTC().AppendText(b)
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}

// appendJSONFloat writes f as encoding/json does: like ES6's number to
// string conversion, with exponents only for very small or large values.
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendJSONString writes s quoted as encoding/json does with HTML escaping
// off: '"' and '\\' escaped, \b \f \n \r \t by name, other control
// characters as \u00XX, invalid UTF-8 bytes as \ufffd, U+2028 and U+2029
// as \u2028 and \u2029; everything else, '<', '>' and '&' included, as is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
