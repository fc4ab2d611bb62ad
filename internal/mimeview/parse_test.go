package mimeview

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mimeview", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tree renders the MIME tree as "id type [filename] [cid] size" lines.
func tree(p *Part, depth int, b *strings.Builder) {
	if p == nil {
		return
	}
	fmt.Fprintf(b, "%s%s %s", strings.Repeat("  ", depth), p.PartID, p.ContentType)
	if p.FileName != "" {
		fmt.Fprintf(b, " file=%s", p.FileName)
	}
	if p.ContentID != "" {
		fmt.Fprintf(b, " cid=%s", p.ContentID)
	}
	if p.Disposition != "" {
		fmt.Fprintf(b, " disp=%s", p.Disposition)
	}
	if p.Charset != "" {
		fmt.Fprintf(b, " charset=%s", p.Charset)
	}
	if p.Encoding != "" {
		fmt.Fprintf(b, " cte=%s", p.Encoding)
	}
	fmt.Fprintf(b, " size=%d\n", p.Size)
	for _, c := range p.Children {
		tree(c, depth+1, b)
	}
}

var sizes = regexp.MustCompile(` size=\d+`)

func ids(ps []*Part) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.PartID)
	}
	return strings.Join(s, ",")
}

func TestParseFixtures(t *testing.T) {
	for _, tc := range []struct {
		file                string
		tree                string
		text, html          string // substrings
		inline, attachments string
		subject, from       string
		warnings            []string // substrings of Name+": "+Detail
	}{
		{
			file: "alternative-inline-attachment.eml",
			tree: `0 multipart/mixed size=0
  1.0 multipart/related size=0
    1.1.0 multipart/alternative size=0
      1.1.1 text/plain charset=utf-8 cte=quoted-printable size=46
      1.1.2 text/html charset=utf-8 cte=7bit size=218
    1.2 image/png file=logo.png cid=logo@app.example disp=inline cte=base64 size=70
  2 application/pdf file=invoice.pdf disp=attachment cte=base64 size=58
`,
			text: "your invoice is attached. Café.", html: `<img src="cid:logo@app.example"`,
			inline: "1.2", attachments: "2", subject: "Your invoice", from: "App Sender <sender@app.example>",
		},
		{
			file: "nested-mixed.eml",
			tree: `0 multipart/mixed size=0
  1 text/plain size=15
  2.0 multipart/mixed size=0
    2.1 text/plain file=notes.txt disp=attachment size=10
    2.2 message/rfc822 size=58
  3 image/jpeg file=photo.jpg disp=attachment cte=base64 size=134
`,
			text: "first body part", attachments: "3,2.1", subject: "nested", from: "<nested@example.com>",
		},
		{
			file: "broken-boundary.eml",
			tree: `0 multipart/alternative size=0
  1 text/plain size=19
  2 text/html cte=base64 size=18
  3 application/octet-stream file=x.bin disp=attachment size=26
`,
			text: "plain text survives", attachments: "3", subject: "broken boundary", from: "<broken@example.com>",
			warnings: []string{`Missing Boundary: Boundary "declared" was not closed correctly`, "Malformed Base64", "Malformed Date"},
		},
		{
			file: "charsets.eml",
			tree: `0 multipart/mixed size=0
  1 text/plain charset=ISO-8859-1 cte=8bit size=21
  2 text/plain charset=windows-1252 cte=quoted-printable size=21
  3 text/plain charset=koi8-r cte=8bit size=12
  4 text/plain charset=utf-8 cte=8bit size=9
`,
			text: "Café crème brûlée\n--\n“quoted” € sign\n--\nПривет\n--\n日本語", subject: "Élèane et ça", from: "André <andre@example.fr>",
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := fixture(t, tc.file)
			// The same message with CRLF line ends (as SMTP carries it)
			// must give the same view.
			crlf := bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
			for _, in := range [][]byte{raw, crlf} {
				m := Parse(in, Limits{})
				var b strings.Builder
				tree(m.Root, 0, &b)
				want := tc.tree
				if &in[0] == &crlf[0] {
					// Undecoded parts grow by their CRs: compare without sizes.
					want = sizes.ReplaceAllString(want, "")
					got := sizes.ReplaceAllString(b.String(), "")
					b.Reset()
					b.WriteString(got)
				}
				if b.String() != want {
					t.Errorf("tree:\n%s\nwant:\n%s", b.String(), want)
				}
				text := strings.ReplaceAll(m.Text, "\r\n", "\n")
				if !strings.Contains(text, tc.text) {
					t.Errorf("text %q, want %q", m.Text, tc.text)
				}
				if !strings.Contains(m.HTML, tc.html) {
					t.Errorf("html %q, want %q", m.HTML, tc.html)
				}
				if got := ids(m.Inline); got != tc.inline {
					t.Errorf("inline %s, want %s", got, tc.inline)
				}
				if got := ids(m.Attachments); got != tc.attachments {
					t.Errorf("attachments %s, want %s", got, tc.attachments)
				}
				if m.Subject != tc.subject {
					t.Errorf("subject %q", m.Subject)
				}
				if got := m.From.Name + " <" + m.From.Address + ">"; strings.TrimSpace(got) != tc.from {
					t.Errorf("from %q", got)
				}
				if m.Size != len(in) {
					t.Errorf("size %d", m.Size)
				}
				all := ""
				for _, w := range m.Warnings {
					all += w.Name + ": " + w.Detail + "\n"
				}
				for _, w := range tc.warnings {
					if !strings.Contains(all, w) {
						t.Errorf("warnings %q lack %q", all, w)
					}
				}
				if len(tc.warnings) == 0 && len(m.Warnings) > 0 {
					t.Errorf("unexpected warnings %q", all)
				}
			}
		})
	}
}

func TestParseDetails(t *testing.T) {
	m := Parse(fixture(t, "alternative-inline-attachment.eml"), Limits{})
	if m.MessageID != "alt-1@app.example" || m.ReturnPath != "bounce@app.example" {
		t.Errorf("ids %q %q", m.MessageID, m.ReturnPath)
	}
	if want := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC); !m.Date.Equal(want) {
		t.Errorf("date %v", m.Date)
	}
	addr := func(as []Address) string {
		var s []string
		for _, a := range as {
			s = append(s, a.Name+"|"+a.Address)
		}
		return strings.Join(s, ",")
	}
	if got := addr(m.To); got != "Alice|alice@example.com,|bob@example.com" {
		t.Errorf("to %s", got)
	}
	if got := addr(m.Cc); got != "Renée|renee@example.com" {
		t.Errorf("cc %s", got)
	}
	if addr(m.Bcc) != "|hidden@example.com" || addr(m.ReplyTo) != "|support@app.example" {
		t.Errorf("bcc %s reply-to %s", addr(m.Bcc), addr(m.ReplyTo))
	}
	// Headers keep their order and every value.
	var names []string
	for _, h := range m.Headers {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "Return-Path,Received,Message-ID,Date,From,To,Cc,Bcc,Reply-To,Subject,X-Custom,X-Custom,MIME-Version,Content-Type" {
		t.Errorf("header order %s", got)
	}
	if got := m.HeaderMap()["X-Custom"]; len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("X-Custom %q", got)
	}
	if got := m.Values("cc"); len(got) != 1 || got[0] != "Renée <renee@example.com>" {
		t.Errorf("decoded Cc %q", got)
	}
	// Attachment bytes and Mailpit's summary.
	pdf := m.Part("2")
	if pdf == nil || !bytes.HasPrefix(pdf.Content, []byte("%PDF-1.4")) {
		t.Fatalf("part 2 %+v", pdf)
	}
	s := pdf.Summary()
	if s.PartID != "2" || s.FileName != "invoice.pdf" || s.Size != 58 || len(s.Checksums.SHA256) != 64 {
		t.Errorf("summary %+v", s)
	}
	logo := m.PartByContentID("<logo@app.example>")
	if logo == nil || logo.PartID != "1.2" || !bytes.HasPrefix(logo.Content, []byte("\x89PNG")) {
		t.Errorf("logo %+v", logo)
	}
	if m.Part("9") != nil {
		t.Error("part 9 exists")
	}
}

func TestParseHTMLOnlyAndUnparseable(t *testing.T) {
	m := Parse([]byte("Subject: h\r\nContent-Type: text/html\r\n\r\n<p>only <b>html</b></p>\r\n"), Limits{})
	if !m.TextFromHTML || !strings.Contains(m.Text, "only") || m.HTML == "" {
		t.Errorf("html only: %+v", m)
	}
	m = Parse([]byte("Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all\r\n"), Limits{})
	if m.Subject != "x" || m.Root == nil || len(m.Warnings) == 0 {
		t.Errorf("unparseable: %+v", m)
	}
	if m := Parse(nil, Limits{}); m.Root == nil {
		t.Error("empty input gives no root")
	}
}

// bomb builds a multipart message with n sibling parts.
func bomb(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: bomb\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

func TestSiblingBombCutOff(t *testing.T) {
	raw := bomb(1_400_000)
	start := time.Now()
	m := Parse(raw, Limits{MaxBytes: 64 << 20})
	took := time.Since(start)
	if n := len(m.Root.Children); n != DefaultLimits().MaxParts {
		t.Errorf("%d parts kept, want %d", n, DefaultLimits().MaxParts)
	}
	if !m.Truncated || !strings.Contains(fmt.Sprint(m.Warnings), "more than 1000 MIME parts") {
		t.Errorf("no truncation warning: %v", m.Warnings)
	}
	if took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	t.Logf("%d bytes, %d parts: %v", len(raw), 1_400_000, took)
}

func TestDepthBombCutOff(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
	const depth = 5000
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	start := time.Now()
	m := Parse(b.Bytes(), Limits{})
	d := 0
	for p := m.Root; p != nil && len(p.Children) > 0; p = p.Children[0] {
		d++
	}
	if d > DefaultLimits().MaxDepth || !m.Truncated {
		t.Errorf("depth %d, truncated %v", d, m.Truncated)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestSizeLimits(t *testing.T) {
	raw := fixture(t, "alternative-inline-attachment.eml")
	m := Parse(raw, Limits{MaxDecoded: 100})
	if !m.Truncated || m.Part("2").Content != nil || !m.Part("2").Truncated {
		t.Errorf("decoded limit not applied: truncated=%v", m.Truncated)
	}
	m = Parse(raw, Limits{MaxBytes: 300})
	if !m.Truncated || m.Size != len(raw) {
		t.Errorf("byte limit not applied")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"alternative-inline-attachment.eml", "nested-mixed.eml", "broken-boundary.eml", "charsets.eml"} {
		f.Add(fixture(f, name))
	}
	f.Add(bomb(50))
	f.Add([]byte("Content-Type: text/html\r\n\r\n<img src=cid:x><a href=#y>"))
	lim := Limits{MaxBytes: 1 << 20, MaxParts: 50, MaxDepth: 8, MaxDecoded: 4 << 20}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw, lim)
		if m.Root == nil {
			t.Fatal("no root")
		}
		n := 0
		m.walk(func(*Part) bool { n++; return true })
		// Part IDs follow every delimiter, so count stays near MaxParts.
		if n > 2*lim.MaxParts+2 {
			t.Fatalf("%d parts", n)
		}
		m.SanitizeHTML(SanitizeOptions{PartURL: "/p/{PartID}"})
		m.CheckHTML()
	})
}
