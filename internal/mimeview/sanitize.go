package mimeview

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"github.com/microcosm-cc/bluemonday/css"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// TransparentGIF is the default placeholder for a blocked remote image.
const TransparentGIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

// SanitizeOptions say how message HTML is made safe for display.
type SanitizeOptions struct {
	// PartURL is where inline parts are served, with "{PartID}" standing
	// for the part's ID, e.g. "/api/v1/message/01J…/part/{PartID}". It
	// must be an absolute path or an http(s) URL. Empty: cid: references
	// are treated like missing ones.
	PartURL string
	// InlineImages puts cid: images of type PNG, GIF, JPEG or WebP (up to
	// MaxInlineImage bytes) into the document as data: URLs instead of
	// PartURL links, so a sandboxed frame without same-origin rights shows
	// them. Only Message.SanitizeHTML can do this: it has the parts.
	InlineImages bool
	// AllowRemote keeps remote images, backgrounds and CSS url()s. By
	// default they are replaced (images by Placeholder, the rest removed)
	// and listed in Sanitized.Remote.
	AllowRemote bool
	// Placeholder replaces a blocked remote image; default TransparentGIF.
	Placeholder string
}

// Sanitized is message HTML made safe to show in a sandboxed frame.
type Sanitized struct {
	HTML string `json:"html"`
	// Remote lists the remote resources the HTML loads (blocked unless
	// AllowRemote), once each, in document order.
	Remote []string `json:"remote,omitempty"`
	// MissingCID lists cid: references with no matching part.
	MissingCID []string `json:"missing_cid,omitempty"`
	// DroppedCSS counts style sheets and style attributes removed whole
	// because they held something executable or unparseable.
	DroppedCSS int `json:"dropped_css,omitempty"`
}

// SanitizeHTML sanitises the message's HTML body, resolving cid:
// references against its parts.
func (m *Message) SanitizeHTML(opts SanitizeOptions) Sanitized {
	partID := func(cid string) (string, bool) {
		if p := m.PartByContentID(cid); p != nil {
			return p.PartID, true
		}
		return "", false
	}
	var data func(string) (string, bool)
	if opts.InlineImages {
		data = func(id string) (string, bool) {
			p := m.Part(id)
			if p == nil || len(p.Content) == 0 || len(p.Content) > MaxInlineImage {
				return "", false
			}
			ct := strings.ToLower(p.ContentType)
			switch ct {
			case "image/png", "image/gif", "image/jpeg", "image/webp":
				return "data:" + ct + ";base64," + base64.StdEncoding.EncodeToString(p.Content), true
			}
			return "", false
		}
	}
	return sanitizeHTML(m.HTML, partID, data, opts)
}

// SanitizeHTML makes src safe to display: no scripts, event handlers,
// javascript:/vbscript:/data: URLs (data:image/png, gif, jpeg and webp in
// base64 excepted), frames, objects, forms, meta refreshes or base
// elements; CSS without expression(), bindings, @import or non-image URLs;
// links open in a new window without opener or referrer. partID maps a
// Content-ID to a part ID for cid: references (nil: none resolve).
//
// The work is done twice over: a rewriting pass over the parsed document
// (cid:, remote content, CSS), then bluemonday's allow-list policy on the
// result, so the allow list has the last word.
func SanitizeHTML(src string, partID func(cid string) (string, bool), opts SanitizeOptions) Sanitized {
	return sanitizeHTML(src, partID, nil, opts)
}

func sanitizeHTML(src string, partID func(cid string) (string, bool), partData func(string) (string, bool), opts SanitizeOptions) Sanitized {
	if opts.Placeholder == "" {
		opts.Placeholder = TransparentGIF
	}
	r := &rewriter{opts: opts, partID: partID, partData: partData, seen: map[string]bool{}}
	doc, err := html.Parse(strings.NewReader(src))
	if err != nil { // html.Parse only fails on reader errors
		return Sanitized{}
	}
	r.walk(doc)
	var buf bytes.Buffer
	if err := html.Render(&buf, doc); err != nil {
		return Sanitized{Remote: r.remote, MissingCID: r.missing}
	}
	out := newPolicy().SanitizeBytes(buf.Bytes())
	return Sanitized{HTML: string(out), Remote: r.remote, MissingCID: r.missing, DroppedCSS: r.dropped}
}

// MaxInlineImage bounds an image put inline by SanitizeOptions.InlineImages.
const MaxInlineImage = 5 << 20

type rewriter struct {
	opts     SanitizeOptions
	partID   func(string) (string, bool)
	partData func(partID string) (dataURL string, ok bool)
	seen     map[string]bool
	remote   []string
	missing  []string
	dropped  int
}

func (r *rewriter) addRemote(u string) {
	if !r.seen["r:"+u] {
		r.seen["r:"+u] = true
		r.remote = append(r.remote, u)
	}
}

func (r *rewriter) addMissing(c string) {
	if !r.seen["c:"+c] {
		r.seen["c:"+c] = true
		r.missing = append(r.missing, c)
	}
}

// walk rewrites the tree iteratively (no recursion on hostile depth).
func (r *rewriter) walk(root *html.Node) {
	stack := []*html.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Type == html.ElementNode {
			r.element(n)
		}
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, c) // pushed last to first: popped in document order
		}
	}
}

func (r *rewriter) element(n *html.Node) {
	// Every <style>, also an SVG or MathML one: html.Render writes its
	// text raw, and the allow list's tokenizer sees an HTML <style>.
	if strings.EqualFold(n.Data, "style") {
		var text strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.TextNode {
				text.WriteString(c.Data)
			}
		}
		for c := n.FirstChild; c != nil; {
			next := c.NextSibling
			n.RemoveChild(c)
			c = next
		}
		if out, ok := r.css(text.String()); ok {
			n.AppendChild(&html.Node{Type: html.TextNode, Data: out})
		} else {
			r.dropped++
		}
		return
	}
	attrs := n.Attr[:0]
	isLink := n.DataAtom == atom.A || n.DataAtom == atom.Area
	hasHref := false
	for _, a := range n.Attr {
		if a.Namespace != "" {
			continue // xlink:href and friends: never kept
		}
		key := strings.ToLower(a.Key)
		switch key {
		case "src", "background", "poster", "lowsrc", "dynsrc":
			v, keep := r.resource(a.Val, key == "src" && n.DataAtom == atom.Img)
			if !keep {
				continue
			}
			a.Val = v
		case "srcset":
			v, keep := r.srcset(a.Val)
			if !keep {
				continue
			}
			a.Val = v
		case "href":
			v, keep := r.href(a.Val)
			if !keep {
				continue
			}
			a.Val = v
			hasHref = isLink && !strings.HasPrefix(v, "#")
		case "style":
			v, ok := r.cssDeclarations(a.Val)
			if !ok {
				r.dropped++
				continue
			}
			a.Val = v
		case "target", "rel":
			if isLink {
				continue // set below
			}
		}
		attrs = append(attrs, a)
	}
	n.Attr = attrs
	if hasHref {
		n.Attr = append(n.Attr, html.Attribute{Key: "target", Val: "_blank"}, html.Attribute{Key: "rel", Val: "noopener noreferrer"})
	}
}

// classify says what kind of URL v is.
type urlKind int

const (
	urlOther  urlKind = iota // relative, or a scheme we do not load
	urlRemote                // http, https or scheme-relative
	urlCID
	urlDataImage // data:image/{png,gif,jpeg,webp};base64
	urlAnchor    // #fragment
)

var dataImage = regexp.MustCompile(`^data:image/(png|gif|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]*$`)

func classify(v string) urlKind {
	s := strings.ToLower(strings.TrimSpace(v))
	switch {
	case strings.HasPrefix(s, "cid:"):
		return urlCID
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "//"):
		return urlRemote
	case dataImage.MatchString(s):
		return urlDataImage
	case strings.HasPrefix(s, "#"):
		return urlAnchor
	}
	return urlOther
}

// cidURL returns the part URL for a cid: reference, or "" if it does not
// resolve.
func (r *rewriter) cidURL(v string) string {
	cid := strings.TrimSpace(v)[len("cid:"):]
	if u, err := url.PathUnescape(cid); err == nil {
		cid = u
	}
	cid = strings.Trim(cid, "<>")
	id, ok := "", false
	if r.partID != nil {
		id, ok = r.partID(cid)
	}
	if ok && r.partData != nil {
		if d, ok := r.partData(id); ok {
			return d
		}
	}
	if !ok || r.opts.PartURL == "" {
		r.addMissing(cid)
		return ""
	}
	return strings.ReplaceAll(r.opts.PartURL, "{PartID}", url.PathEscape(id))
}

// resource rewrites a URL that the browser loads by itself.
func (r *rewriter) resource(v string, image bool) (string, bool) {
	switch classify(v) {
	case urlCID:
		if u := r.cidURL(v); u != "" {
			return u, true
		}
	case urlRemote:
		r.addRemote(strings.TrimSpace(v))
		if r.opts.AllowRemote {
			return strings.TrimSpace(v), true
		}
	case urlDataImage:
		return strings.TrimSpace(v), true
	}
	if image {
		return r.opts.Placeholder, true
	}
	return "", false
}

func (r *rewriter) srcset(v string) (string, bool) {
	var out []string
	for _, cand := range strings.Split(v, ",") {
		f := strings.Fields(cand)
		if len(f) == 0 {
			continue
		}
		switch classify(f[0]) {
		case urlRemote:
			r.addRemote(f[0])
			if !r.opts.AllowRemote {
				continue
			}
		case urlCID:
			u := r.cidURL(f[0])
			if u == "" {
				continue
			}
			f[0] = u
		case urlDataImage:
		default:
			continue
		}
		out = append(out, strings.Join(f, " "))
	}
	return strings.Join(out, ", "), len(out) > 0
}

// href rewrites a link target: cid: to the part URL, relative links
// (which cannot work in mail) dropped; the scheme allow-list is
// bluemonday's.
func (r *rewriter) href(v string) (string, bool) {
	switch classify(v) {
	case urlCID:
		u := r.cidURL(v)
		return u, u != ""
	case urlOther:
		s := strings.ToLower(strings.TrimSpace(v))
		if strings.HasPrefix(s, "mailto:") || strings.HasPrefix(s, "tel:") {
			return strings.TrimSpace(v), true
		}
		return "", false
	}
	return strings.TrimSpace(v), true
}

// cssForbidden are what, once escapes and comments are gone, makes CSS
// executable, binding, importing or otherwise unsafe in some browser.
var cssForbidden = []string{
	"expression(", "javascript:", "vbscript:", "livescript:", "mocha:",
	"behavior", "behaviour", "-moz-binding", "binding:", "@import",
	"image-set(", "<", "-->", "\\", "data:text", "data:application", "svg+xml",
}

// cssNormalize decodes CSS escapes (CSS Syntax §4.3.7) and removes
// comments, so obfuscated forms compare as written plainly.
func cssNormalize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return b.String()
			}
			i += 2 + end + 1
		case c == '\\' && i+1 < len(s):
			j := i + 1
			for j < len(s) && j < i+7 && isHex(s[j]) {
				j++
			}
			if j == i+1 {
				if s[j] != '\n' {
					b.WriteByte(s[j])
				}
				i = j
				continue
			}
			var r rune
			fmt.Sscanf(s[i+1:j], "%x", &r)
			if r == 0 || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF) {
				r = '\uFFFD'
			}
			b.WriteRune(r)
			if j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n') {
				j++
			}
			i = j - 1
		case c == 0:
			b.WriteRune('\uFFFD')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// css rewrites a style sheet or declaration list: url()s are resolved
// (cid:), blocked or kept (remote), or removed; ok is false when the CSS
// holds anything in cssForbidden and must be dropped whole.
func (r *rewriter) css(src string) (string, bool) {
	s := cssNormalize(src)
	var compact strings.Builder
	for _, c := range strings.ToLower(s) {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' {
			compact.WriteRune(c)
		}
	}
	low := compact.String()
	for _, f := range cssForbidden {
		if strings.Contains(low, f) {
			return "", false
		}
	}
	// Rewrite every url(...) token.
	var out strings.Builder
	lower := strings.ToLower(s)
	for {
		i := strings.Index(lower, "url(")
		if i < 0 {
			out.WriteString(s)
			break
		}
		out.WriteString(s[:i])
		rest := s[i+4:]
		arg, n, ok := cssURLArg(rest)
		if !ok {
			return "", false
		}
		out.WriteString(r.cssURL(arg))
		s, lower = rest[n:], lower[i+4+n:]
	}
	return out.String(), true
}

// cssDeclarations is css for a style attribute.
func (r *rewriter) cssDeclarations(v string) (string, bool) { return r.css(v) }

// cssURLArg reads the argument of url( up to and including its ")".
func cssURLArg(s string) (arg string, n int, ok bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	if i < len(s) && (s[i] == '"' || s[i] == '\'') {
		q := s[i]
		j := strings.IndexByte(s[i+1:], q)
		if j < 0 {
			return "", 0, false
		}
		arg = s[i+1 : i+1+j]
		i += j + 2
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		if i >= len(s) || s[i] != ')' {
			return "", 0, false
		}
		return arg, i + 1, true
	}
	j := strings.IndexByte(s[i:], ')')
	if j < 0 {
		return "", 0, false
	}
	return strings.TrimSpace(s[i : i+j]), i + j + 1, true
}

func (r *rewriter) cssURL(arg string) string {
	switch classify(arg) {
	case urlCID:
		if u := r.cidURL(arg); u != "" {
			return `url("` + cssEscape(u) + `")`
		}
	case urlRemote:
		r.addRemote(strings.TrimSpace(arg))
		if r.opts.AllowRemote {
			return `url("` + cssEscape(strings.TrimSpace(arg)) + `")`
		}
	case urlDataImage:
		return `url("` + cssEscape(strings.TrimSpace(arg)) + `")`
	}
	return "none"
}

// cssEscape escapes a URL for a double-quoted CSS string.
func cssEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.ContainsRune(":/?#[]@!$&*+,;=-._~%", c):
			b.WriteRune(c)
		default:
			fmt.Fprintf(&b, "\\%x ", c)
		}
	}
	return b.String()
}

// cssURLValue accepts a style value whose url()s are only what the
// rewriting pass leaves: http(s), data images and absolute paths (part
// URLs). bluemonday lower-cases the value before calling it.
var cssURLValue = regexp.MustCompile(`url\(\s*"(https?://|//|/|data:image/(png|gif|jpeg|jpg|webp);base64,)[^"\\<>]*"\s*\)`)

func urlAwareHandler(def func(string) bool) func(string) bool {
	return func(v string) bool {
		if !strings.Contains(v, "url(") {
			return def(v)
		}
		rest := cssURLValue.ReplaceAllString(v, "")
		if strings.Contains(rest, "url(") || strings.Contains(rest, "(") && strings.Contains(rest, "expression") {
			return false
		}
		for _, f := range cssForbidden {
			if strings.Contains(v, f) {
				return false
			}
		}
		return true
	}
}

// emailStyles are the CSS properties kept in style attributes; values are
// checked by bluemonday's per-property handlers.
var emailStyles = []string{
	"color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight", "font-variant",
	"line-height", "letter-spacing", "word-spacing", "white-space", "word-break", "word-wrap", "overflow-wrap",
	"text-align", "text-decoration", "text-indent", "text-transform", "text-overflow", "vertical-align", "direction",
	"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
	"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
	"border", "border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style", "border-width",
	"border-top-color", "border-right-color", "border-bottom-color", "border-left-color",
	"border-top-style", "border-right-style", "border-bottom-style", "border-left-style",
	"border-top-width", "border-right-width", "border-bottom-width", "border-left-width",
	"border-radius", "border-collapse", "border-spacing",
	"width", "height", "max-width", "min-width", "max-height", "min-height",
	"display", "float", "clear", "overflow", "visibility", "opacity", "table-layout", "list-style-type", "list-style-position",
	"background-position", "background-repeat", "background-size", "box-sizing", "caption-side", "empty-cells",
}

// newPolicy is the allow list for message HTML shown in a sandboxed frame.
func newPolicy() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowUnsafe(true) // only so that <style>, rewritten above, is kept; <script> stays disallowed
	p.AllowElements("style", "font", "center", "u", "s", "strike", "big", "small", "wbr", "span", "div", "section", "article", "header", "footer", "main", "nav", "picture")
	p.AllowAttrs("style", "class", "id", "dir", "lang", "title", "align", "valign", "width", "height", "bgcolor", "color", "border", "role").Globally()
	p.AllowAttrs("face", "size").OnElements("font")
	p.AllowAttrs("cellpadding", "cellspacing", "background").OnElements("table", "td", "th", "tr", "tbody", "thead", "tfoot")
	p.AllowAttrs("media", "type").OnElements("style")
	p.AllowAttrs("target").Matching(regexp.MustCompile(`^_blank$`)).OnElements("a", "area")
	p.AllowAttrs("rel").Matching(regexp.MustCompile(`^noopener noreferrer$`)).OnElements("a", "area")
	p.AllowAttrs("src", "srcset", "alt", "width", "height").OnElements("img", "source")
	p.AllowStyles(emailStyles...).Globally()
	p.AllowStyles("background", "background-image").MatchingHandler(urlAwareHandler(css.BackgroundHandler)).Globally()
	p.AllowURLSchemes("http", "https", "mailto", "tel")
	p.AllowURLSchemeWithCustomPolicy("data", func(u *url.URL) bool {
		return dataImage.MatchString("data:" + strings.ToLower(u.Opaque))
	})
	p.AllowRelativeURLs(true) // part URLs; the rewriting pass removed the message's own relative URLs
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(false)
	return p
}
