// Package mimeview turns a captured message's raw bytes into what a capture
// UI and a Mailpit-compatible API show: the MIME tree (RFC 2045, RFC 2046)
// with Mailpit's part IDs, text and HTML bodies, ordered headers (RFC 5322,
// RFC 2047 decoded), addresses, attachments and inline parts with their
// bytes, parse warnings, sanitised HTML for display and offline HTML checks.
//
// Parsing is tolerant (github.com/jhillyerd/enmime/v2 records problems as
// warnings and carries on) and bounded: Limits caps the bytes parsed, the
// number of parts, the nesting depth and the decoded bytes kept, so a
// hostile message costs bounded time and memory. Parse never fails and never
// panics: what could not be parsed is reported in Message.Warnings.
package mimeview

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"

	"github.com/smtplog/smtplog/internal/mailhdr"
)

// Limits bound the work Parse does on one message.
type Limits struct {
	MaxBytes   int   // raw bytes parsed; the rest is ignored with a warning
	MaxParts   int   // MIME parts (delimiters) followed; the rest is cut off
	MaxDepth   int   // nesting of multiparts; deeper content is cut off
	MaxDecoded int64 // decoded bytes kept over all parts; beyond it Content is dropped
}

// DefaultLimits are generous for real mail and stop MIME bombs.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 20, MaxParts: 1000, MaxDepth: 20, MaxDecoded: 128 << 20}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxDecoded <= 0 {
		l.MaxDecoded = d.MaxDecoded
	}
	return l
}

// Address is a mailbox with its display name (RFC 2047 decoded). The JSON
// names are Mailpit's.
type Address struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// Header is one header field in message order; Value is unfolded and
// RFC 2047 decoded, Raw is unfolded only.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Raw   string `json:"raw,omitempty"`
}

// Warning is a problem found while parsing. Severe means content was lost.
type Warning struct {
	PartID string `json:"part_id,omitempty"`
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
	Severe bool   `json:"severe,omitempty"`
}

// Part is one node of the MIME tree. PartID follows Mailpit (which takes
// enmime's numbering): the root is "0"; the children of the top-level
// multipart are "1", "2", ...; a child of part "2" is "2.1"; and a nested
// multipart gets ".0" appended to its own number ("2.0" for the multipart
// that is the second child), its children keeping "2.1", "2.2".
type Part struct {
	PartID      string  `json:"part_id"`
	ContentType string  `json:"content_type"`
	Charset     string  `json:"charset,omitempty"`
	Encoding    string  `json:"encoding,omitempty"` // Content-Transfer-Encoding, lower case
	Size        int     `json:"size"`               // decoded bytes
	FileName    string  `json:"filename,omitempty"`
	Disposition string  `json:"disposition,omitempty"`
	ContentID   string  `json:"content_id,omitempty"`
	Truncated   bool    `json:"truncated,omitempty"` // Content dropped by Limits.MaxDecoded
	Children    []*Part `json:"children,omitempty"`
	// Content is the decoded body (text parts converted to UTF-8).
	Content []byte `json:"-"`
}

// Checksums are Mailpit's attachment checksums.
type Checksums struct {
	MD5    string `json:"MD5"`
	SHA1   string `json:"SHA1"`
	SHA256 string `json:"SHA256"`
}

// AttachmentSummary is Mailpit's Attachment object (field names as its API).
type AttachmentSummary struct {
	PartID      string    `json:"PartID"`
	FileName    string    `json:"FileName"`
	ContentType string    `json:"ContentType"`
	ContentID   string    `json:"ContentID"`
	Size        uint64    `json:"Size"`
	Checksums   Checksums `json:"Checksums"`
}

// Summary returns Mailpit's summary of an attachment or inline part: the
// file name falls back to the Content-ID, as Mailpit does.
func (p *Part) Summary() AttachmentSummary {
	s := AttachmentSummary{PartID: p.PartID, FileName: p.FileName, ContentType: p.ContentType, ContentID: p.ContentID, Size: uint64(len(p.Content))}
	if s.FileName == "" {
		s.FileName = p.ContentID
	}
	m, s1, s256 := md5.Sum(p.Content), sha1.Sum(p.Content), sha256.Sum256(p.Content)
	s.Checksums = Checksums{MD5: hex.EncodeToString(m[:]), SHA1: hex.EncodeToString(s1[:]), SHA256: hex.EncodeToString(s256[:])}
	return s
}

// Message is the parsed view of one message.
type Message struct {
	Size       int       `json:"size"` // raw bytes
	MessageID  string    `json:"message_id,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	Date       time.Time `json:"date,omitzero"` // zero when absent or unparseable
	DateRaw    string    `json:"date_raw,omitempty"`
	From       *Address  `json:"from,omitempty"`
	To         []Address `json:"to,omitempty"`
	Cc         []Address `json:"cc,omitempty"`
	Bcc        []Address `json:"bcc,omitempty"`
	ReplyTo    []Address `json:"reply_to,omitempty"`
	ReturnPath string    `json:"return_path,omitempty"`
	Headers    []Header  `json:"headers"`

	Text string `json:"text,omitempty"`
	HTML string `json:"html,omitempty"`
	// TextFromHTML says the message has no text/plain part and Text was
	// made from the HTML (Mailpit shows the same).
	TextFromHTML bool `json:"text_from_html,omitempty"`

	Root *Part `json:"root"`
	// Inline and Attachments are classified as Mailpit does: inline (and
	// other non-body) parts and attachments that have a file name or a
	// Content-ID.
	Inline      []*Part `json:"-"`
	Attachments []*Part `json:"-"`

	Warnings  []Warning `json:"warnings,omitempty"`
	Truncated bool      `json:"truncated,omitempty"` // a limit cut the message short
}

// Part returns the part with the given ID, or nil.
func (m *Message) Part(id string) *Part {
	var found *Part
	m.walk(func(p *Part) bool {
		if p.PartID == id {
			found = p
			return false
		}
		return true
	})
	return found
}

// PartByContentID returns the part whose Content-ID is cid (without angle
// brackets, compared case-sensitively as RFC 2392 says), or nil.
func (m *Message) PartByContentID(cid string) *Part {
	cid = strings.Trim(cid, "<>")
	var found *Part
	m.walk(func(p *Part) bool {
		if p.ContentID != "" && p.ContentID == cid {
			found = p
			return false
		}
		return true
	})
	return found
}

// walk visits parts depth first until f returns false.
func (m *Message) walk(f func(*Part) bool) {
	if m.Root == nil {
		return
	}
	stack := []*Part{m.Root}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !f(p) {
			return
		}
		for i := len(p.Children) - 1; i >= 0; i-- {
			stack = append(stack, p.Children[i])
		}
	}
}

// HeaderMap returns the headers as Mailpit's /headers endpoint does: a map
// from the canonical field name to its values in order.
func (m *Message) HeaderMap() map[string][]string {
	out := make(map[string][]string, len(m.Headers))
	for _, h := range m.Headers {
		k := canonicalKey(h.Name)
		out[k] = append(out[k], h.Value)
	}
	return out
}

// Values returns the decoded values of the named header field, in order.
func (m *Message) Values(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

func canonicalKey(s string) string {
	b := []byte(strings.ToLower(s))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		upper = c == '-'
	}
	return string(b)
}

func (m *Message) warn(partID, name, detail string, severe bool) {
	m.Warnings = append(m.Warnings, Warning{PartID: partID, Name: name, Detail: detail, Severe: severe})
}

// Parse parses raw within lim (zero fields take DefaultLimits). It never
// fails: problems become Warnings, and a message the MIME parser cannot
// read at all still gets its headers and its body as text.
func Parse(raw []byte, lim Limits) *Message {
	lim = lim.withDefaults()
	m := &Message{Size: len(raw)}
	if len(raw) > lim.MaxBytes {
		raw = raw[:lim.MaxBytes]
		m.Truncated = true
		m.warn("", "Size limit", fmt.Sprintf("only the first %d bytes were parsed", lim.MaxBytes), true)
	}
	m.headers(raw)
	if cut, why := scanStructure(raw, lim); cut >= 0 {
		raw = raw[:cut]
		m.Truncated = true
		m.warn("", "Structure limit", why+"; the rest of the message was not parsed", true)
	}
	env, err := readEnvelope(raw)
	if err != nil {
		m.warn("0", "Unreadable MIME structure", err.Error(), true)
		m.fallback(raw)
		return m
	}
	m.fromEnvelope(env, lim)
	return m
}

// readEnvelope runs enmime, turning a panic on hostile input into an error.
func readEnvelope(raw []byte) (env *enmime.Envelope, err error) {
	defer func() {
		if r := recover(); r != nil {
			env, err = nil, fmt.Errorf("mime parser failed: %v", r)
		}
	}()
	// Character detection guesses and costs time; the declared charset is
	// used, as Mailpit does.
	p := enmime.NewParser(enmime.DisableCharacterDetection(true), enmime.MaxStoredPartErrors(100), enmime.SkipMalformedParts(true))
	env, err = p.ReadEnvelope(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read envelope: %w", err)
	}
	return env, nil
}

func (m *Message) headers(raw []byte) {
	fields, truncated := mailhdr.Split(raw)
	if truncated {
		m.warn("0", "Header limit", "the header block is too large; later fields were ignored", true)
	}
	m.Headers = make([]Header, 0, len(fields))
	for _, f := range fields {
		h := Header{Name: f.Name, Value: mailhdr.Decode(f.Value)}
		if h.Value != f.Value {
			h.Raw = f.Value
		}
		m.Headers = append(m.Headers, h)
	}
	first := func(name string) string {
		if v := m.Values(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	m.Subject = first("Subject")
	m.MessageID = strings.Trim(strings.TrimSpace(first("Message-Id")), "<>")
	m.ReturnPath = strings.Trim(strings.TrimSpace(first("Return-Path")), "<>")
	if d := first("Date"); d != "" {
		m.DateRaw = d
		if t, err := mail.ParseDate(d); err == nil {
			m.Date = t
		} else {
			m.warn("0", "Malformed Date", err.Error(), false)
		}
	}
	for _, a := range []struct {
		name string
		dst  *[]Address
	}{{"From", nil}, {"To", &m.To}, {"Cc", &m.Cc}, {"Bcc", &m.Bcc}, {"Reply-To", &m.ReplyTo}} {
		var rawVals []string
		for _, h := range fields {
			if strings.EqualFold(h.Name, a.name) {
				rawVals = append(rawVals, h.Value)
			}
		}
		if len(rawVals) == 0 {
			continue
		}
		list, err := enmime.ParseAddressList(strings.Join(rawVals, ", "))
		if err != nil {
			m.warn("0", "Malformed "+a.name, err.Error(), false)
		}
		var out []Address
		for _, x := range list {
			if x != nil {
				out = append(out, Address{Name: mailhdr.Decode(x.Name), Address: x.Address})
			}
		}
		if a.dst == nil {
			if len(out) > 0 {
				m.From = &out[0]
			}
			continue
		}
		*a.dst = out
	}
}

func (m *Message) fallback(raw []byte) {
	body := raw
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		body = raw[i+4:]
	} else if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		body = raw[i+2:]
	}
	m.Text = strings.ToValidUTF8(string(body), "\uFFFD")
	m.Root = &Part{PartID: "0", ContentType: "text/plain", Size: len(body), Content: body}
}

func (m *Message) fromEnvelope(env *enmime.Envelope, lim Limits) {
	m.Text = env.Text
	m.HTML = env.HTML
	var budget = lim.MaxDecoded
	seen := map[*enmime.Part]*Part{}
	m.Root = convert(env.Root, 0, lim.MaxDepth, &budget, seen)
	// Warnings come from each part (so they carry its ID), once each.
	type key struct{ id, name, detail string }
	dup := map[key]bool{}
	for ep, p := range seen {
		for _, e := range ep.Errors {
			if e == nil || dup[key{p.PartID, e.Name, e.Detail}] {
				continue
			}
			dup[key{p.PartID, e.Name, e.Detail}] = true
			if e.Name == enmime.ErrorPlainTextFromHTML {
				m.TextFromHTML = true
			}
			m.warn(p.PartID, e.Name, e.Detail, e.Severe)
		}
	}
	sort.SliceStable(m.Warnings, func(i, j int) bool { return m.Warnings[i].PartID < m.Warnings[j].PartID })
	if !utf8.ValidString(m.Text) {
		m.Text = strings.ToValidUTF8(m.Text, "\uFFFD")
	}
	if !utf8.ValidString(m.HTML) {
		m.HTML = strings.ToValidUTF8(m.HTML, "\uFFFD")
	}
	pick := func(src []*enmime.Part) []*Part {
		var out []*Part
		for _, ep := range src {
			if ep == nil || (ep.FileName == "" && ep.ContentID == "") {
				continue
			}
			if p := seen[ep]; p != nil {
				out = append(out, p)
			}
		}
		return out
	}
	m.Inline = append(pick(env.Inlines), pick(env.OtherParts)...)
	m.Attachments = pick(env.Attachments)
	if budget < 0 {
		m.Truncated = true
		m.warn("", "Decoded size limit", fmt.Sprintf("parts beyond %d decoded bytes were not kept", lim.MaxDecoded), true)
	}
}

func convert(ep *enmime.Part, depth, maxDepth int, budget *int64, seen map[*enmime.Part]*Part) *Part {
	if ep == nil {
		return nil
	}
	p := &Part{
		PartID:      ep.PartID,
		ContentType: ep.ContentType,
		Charset:     ep.Charset,
		Encoding:    strings.ToLower(strings.TrimSpace(ep.Header.Get("Content-Transfer-Encoding"))),
		Size:        len(ep.Content),
		FileName:    ep.FileName,
		Disposition: ep.Disposition,
		ContentID:   ep.ContentID,
		Content:     ep.Content,
	}
	if p.ContentType == "" {
		p.ContentType = "text/plain"
	}
	*budget -= int64(len(ep.Content))
	if *budget < 0 {
		p.Content, p.Truncated = nil, true
	}
	seen[ep] = p
	if depth >= maxDepth {
		return p
	}
	for c := ep.FirstChild; c != nil; c = c.NextSibling {
		if cp := convert(c, depth+1, maxDepth, budget, seen); cp != nil {
			p.Children = append(p.Children, cp)
		}
	}
	return p
}

// scanStructure walks the multipart structure of raw without decoding
// anything and returns the offset at which a limit is exceeded (-1 if none)
// and why. Cutting raw there leaves enmime an unterminated multipart,
// which it reports and tolerates. The walk is linear in len(raw) times
// the (bounded) depth.
func scanStructure(raw []byte, lim Limits) (cut int, why string) {
	var stack []string // open boundaries, innermost last
	pos, end := headerBlock(raw, 0)
	if b := multipartBoundary(raw[pos:end]); b != "" {
		stack = append(stack, b)
	}
	pos = end
	parts := 0
	for pos < len(raw) && len(stack) > 0 {
		lineStart := pos
		nl := bytes.IndexByte(raw[pos:], '\n')
		var line []byte
		if nl < 0 {
			line, pos = raw[pos:], len(raw)
		} else {
			line, pos = raw[pos:pos+nl], pos+nl+1
		}
		if len(line) < 3 || line[0] != '-' || line[1] != '-' {
			continue
		}
		t := string(bytes.TrimRight(line[2:], " \t\r"))
		for i := len(stack) - 1; i >= 0; i-- {
			b := stack[i]
			if !strings.HasPrefix(t, b) {
				continue
			}
			rest := t[len(b):]
			if rest == "--" {
				stack = stack[:i]
				break
			}
			if rest != "" {
				continue
			}
			stack = stack[:i+1]
			parts++
			if parts > lim.MaxParts {
				return lineStart, fmt.Sprintf("more than %d MIME parts", lim.MaxParts)
			}
			hs, he := headerBlock(raw, pos)
			if nb := multipartBoundary(raw[hs:he]); nb != "" {
				if len(stack) >= lim.MaxDepth {
					return lineStart, fmt.Sprintf("multiparts nested deeper than %d", lim.MaxDepth)
				}
				stack = append(stack, nb)
			}
			pos = he
			break
		}
	}
	return -1, ""
}

// headerBlock returns the header block starting at pos: [pos, end) where
// end is just after the empty line (or the end of raw).
func headerBlock(raw []byte, pos int) (start, end int) {
	start = pos
	for pos < len(raw) {
		nl := bytes.IndexByte(raw[pos:], '\n')
		if nl < 0 {
			return start, len(raw)
		}
		line := bytes.TrimSuffix(raw[pos:pos+nl], []byte("\r"))
		pos += nl + 1
		if len(line) == 0 {
			return start, pos
		}
	}
	return start, pos
}

// multipartBoundary returns the boundary of a multipart Content-Type in the
// header block h, parsed as enmime parses it, or "".
func multipartBoundary(h []byte) string {
	fields, _ := mailhdr.Split(h)
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "Content-Type") {
			continue
		}
		mt, params, _, err := mediatype.Parse(f.Value)
		if err != nil || !strings.HasPrefix(strings.ToLower(mt), "multipart/") {
			return ""
		}
		return params["boundary"]
	}
	return ""
}
