package mimeview

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strings"

	"golang.org/x/net/html"
)

// Severities of a Finding.
const (
	SeverityError   = "error"   // broken for recipients (a link that cannot work, a missing part)
	SeverityWarning = "warning" // likely a problem (no alt text, Gmail clipping, stripped elements)
	SeverityInfo    = "info"    // worth knowing (no <title>, no lang)
)

// Rules of CheckHTML.
const (
	RuleLinkEmpty         = "link-empty"          // href empty or "#"
	RuleLinkMalformed     = "link-malformed"      // href that does not parse as a URL, or http(s) without a host
	RuleLinkLocal         = "link-local"          // link to localhost, a loopback/private/link-local address or a local-only domain
	RuleLinkRelative      = "link-relative"       // relative link: there is no base URL in mail
	RuleLinkUnsafe        = "link-unsafe-scheme"  // javascript:, vbscript:, data:, file: links
	RuleAnchorMissing     = "link-anchor-missing" // #fragment with no element of that id or name
	RuleCIDMissing        = "cid-missing"         // cid: reference with no part of that Content-ID
	RuleImgAlt            = "img-alt-missing"     // <img> without alt
	RuleImgSize           = "img-size-missing"    // <img> without width and height
	RuleHTMLSize          = "html-size"           // HTML over GmailClipBytes
	RuleElement           = "element-unsupported" // elements mail clients strip or refuse
	RuleTextAlternative   = "text-alternative-missing"
	RuleTitleMissing      = "title-missing"
	RuleLangMissing       = "lang-missing"
	maxFindingsPerRule    = 100
	maxElementQuoteLength = 160
)

// GmailClipBytes is the HTML size above which Gmail clips a message
// ("[Message clipped]").
const GmailClipBytes = 102 * 1024

// Finding is one result of CheckHTML. Line is 1-based in the HTML body
// (0 for findings about the whole message).
type Finding struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Line     int    `json:"line,omitempty"`
	Element  string `json:"element,omitempty"`
	Message  string `json:"message"`
}

// CheckHTML checks the message's HTML the way a developer wants before
// sending for real, offline: links, cid: references, images, size,
// unsupported elements, a plain-text alternative, <title> and lang.
func (m *Message) CheckHTML() []Finding {
	if m.HTML == "" {
		return nil
	}
	f := CheckHTML(m.HTML, func(cid string) bool { return m.PartByContentID(cid) != nil })
	if m.TextFromHTML || strings.TrimSpace(m.Text) == "" {
		f = append(f, Finding{Rule: RuleTextAlternative, Severity: SeverityWarning,
			Message: "no text/plain alternative: text-only clients and spam filters see nothing or a conversion"})
	}
	return f
}

// elementRules are elements that mail clients strip or refuse.
var elementRules = map[string]struct{ sev, why string }{
	"script":   {SeverityError, "scripts never run in mail clients"},
	"iframe":   {SeverityError, "frames are removed by mail clients"},
	"frame":    {SeverityError, "frames are removed by mail clients"},
	"frameset": {SeverityError, "frames are removed by mail clients"},
	"object":   {SeverityError, "plugins are removed by mail clients"},
	"embed":    {SeverityError, "plugins are removed by mail clients"},
	"applet":   {SeverityError, "plugins are removed by mail clients"},
	"form":     {SeverityWarning, "forms are disabled or removed by many mail clients (Gmail, Outlook)"},
	"input":    {SeverityWarning, "form controls are disabled or removed by many mail clients"},
	"button":   {SeverityWarning, "form controls are disabled or removed by many mail clients"},
	"select":   {SeverityWarning, "form controls are disabled or removed by many mail clients"},
	"textarea": {SeverityWarning, "form controls are disabled or removed by many mail clients"},
	"video":    {SeverityWarning, "video is unsupported in most mail clients; use a linked image"},
	"audio":    {SeverityWarning, "audio is unsupported in most mail clients"},
	"canvas":   {SeverityWarning, "canvas needs scripts, which never run"},
	"svg":      {SeverityWarning, "inline SVG is unsupported in Gmail and Outlook"},
	"base":     {SeverityWarning, "<base> is ignored or removed by mail clients; relative links stay broken"},
	"link":     {SeverityWarning, "external style sheets are not loaded by most mail clients; inline the CSS"},
}

type checker struct {
	out    []Finding
	counts map[string]int
}

func (c *checker) add(rule, sev string, line int, elem, msg string) {
	c.counts[rule]++
	if c.counts[rule] > maxFindingsPerRule {
		return
	}
	if len(elem) > maxElementQuoteLength {
		elem = elem[:maxElementQuoteLength] + "…"
	}
	c.out = append(c.out, Finding{Rule: rule, Severity: sev, Line: line, Element: elem, Message: msg})
}

// CheckHTML checks an HTML body offline. hasCID reports whether a part
// with that Content-ID exists (nil: none does).
func CheckHTML(src string, hasCID func(cid string) bool) []Finding {
	c := &checker{counts: map[string]int{}}
	if len(src) > GmailClipBytes {
		c.add(RuleHTMLSize, SeverityWarning, 0, "", fmt.Sprintf("HTML is %d bytes; Gmail clips messages over %d bytes (102 KB)", len(src), GmailClipBytes))
	}
	type anchorRef struct {
		name, elem string
		line       int
	}
	var anchors []anchorRef
	ids := map[string]bool{}
	hasTitle, hasLang := false, false
	z := html.NewTokenizer(strings.NewReader(src))
	line := 1
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		raw := z.Raw()
		tokLine := line
		line += bytes.Count(raw, []byte("\n"))
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		elem := string(raw)
		tok := z.Token()
		name := strings.ToLower(tok.Data)
		attr := map[string]string{}
		var has = map[string]bool{}
		for _, a := range tok.Attr {
			k := strings.ToLower(a.Key)
			if !has[k] {
				attr[k], has[k] = a.Val, true
			}
		}
		if v := attr["id"]; v != "" {
			ids[v] = true
		}
		if v := attr["name"]; v != "" && name == "a" {
			ids[v] = true
		}
		switch name {
		case "title":
			hasTitle = true
		case "html":
			hasLang = strings.TrimSpace(attr["lang"]) != "" || strings.TrimSpace(attr["xml:lang"]) != ""
		case "meta":
			if strings.EqualFold(strings.TrimSpace(attr["http-equiv"]), "refresh") {
				c.add(RuleElement, SeverityError, tokLine, elem, "<meta http-equiv=refresh> is removed by mail clients")
			}
		case "a", "area":
			if !has["href"] {
				break
			}
			if a, ok := c.link(attr["href"], tokLine, elem, hasCID); ok {
				anchors = append(anchors, anchorRef{a, elem, tokLine})
			}
		case "img":
			src := strings.TrimSpace(attr["src"])
			if strings.HasPrefix(strings.ToLower(src), "cid:") {
				c.cid(src, tokLine, elem, hasCID)
			} else if src == "" {
				c.add(RuleLinkEmpty, SeverityError, tokLine, elem, "image without src")
			} else if k := classify(src); k == urlOther {
				c.resource(src, tokLine, elem)
			} else if k == urlRemote {
				c.remoteHost(src, tokLine, elem)
			}
			if !has["alt"] {
				c.add(RuleImgAlt, SeverityWarning, tokLine, elem, "image without alt text: screen readers and clients that block images show nothing")
			}
			if !has["width"] || !has["height"] {
				c.add(RuleImgSize, SeverityWarning, tokLine, elem, "image without width and height attributes: the layout jumps as images load, and Outlook may show it at full size")
			}
		}
		if r, ok := elementRules[name]; ok {
			if name != "link" || strings.Contains(strings.ToLower(attr["rel"]), "stylesheet") {
				c.add(RuleElement, r.sev, tokLine, elem, "<"+name+">: "+r.why)
			}
		}
		for _, k := range []string{"background", "poster"} {
			if v := strings.TrimSpace(attr[k]); strings.HasPrefix(strings.ToLower(v), "cid:") {
				c.cid(v, tokLine, elem, hasCID)
			}
		}
	}
	for _, a := range anchors {
		if !ids[a.name] {
			c.add(RuleAnchorMissing, SeverityWarning, a.line, a.elem, fmt.Sprintf("no element with id or name %q for this link", a.name))
		}
	}
	if !hasTitle {
		c.add(RuleTitleMissing, SeverityInfo, 0, "", "no <title>: some clients and screen readers show it")
	}
	if !hasLang {
		c.add(RuleLangMissing, SeverityInfo, 0, "", "no lang attribute on <html>: screen readers guess the language")
	}
	rules := make([]string, 0, len(c.counts))
	for rule := range c.counts {
		rules = append(rules, rule)
	}
	sort.Strings(rules)
	for _, rule := range rules {
		if n := c.counts[rule]; n > maxFindingsPerRule {
			c.out = append(c.out, Finding{Rule: rule, Severity: SeverityInfo, Message: fmt.Sprintf("%d more findings of this rule not listed", n-maxFindingsPerRule)})
		}
	}
	return c.out
}

// link checks one href; for a same-document "#name" it returns the name
// to check once all ids are known.
func (c *checker) link(href string, line int, elem string, hasCID func(string) bool) (anchor string, isAnchor bool) {
	h := strings.TrimSpace(href)
	low := strings.ToLower(h)
	switch {
	case h == "" || h == "#":
		c.add(RuleLinkEmpty, SeverityError, line, elem, "link goes nowhere (empty or \"#\" href)")
		return "", false
	case strings.HasPrefix(h, "#"):
		name := h[1:]
		if u, err := url.PathUnescape(name); err == nil {
			name = u
		}
		return name, true
	case strings.HasPrefix(low, "cid:"):
		c.cid(h, line, elem, hasCID)
		return "", false
	}
	for _, s := range []string{"javascript:", "vbscript:", "data:", "file:"} {
		if strings.HasPrefix(strings.Join(strings.Fields(low), ""), s) {
			c.add(RuleLinkUnsafe, SeverityError, line, elem, "link with a "+strings.TrimSuffix(s, ":")+": URL: removed or blocked by mail clients")
			return "", false
		}
	}
	if strings.ContainsAny(h, " \t\r\n<>\"") {
		c.add(RuleLinkMalformed, SeverityError, line, elem, "link contains spaces, quotes or angle brackets; encode them")
		return "", false
	}
	u, err := url.Parse(h)
	if err != nil {
		c.add(RuleLinkMalformed, SeverityError, line, elem, "link is not a valid URL: "+err.Error())
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "":
		if strings.HasPrefix(h, "//") {
			c.remoteHost(h, line, elem)
			return "", false
		}
		if strings.Contains(strings.SplitN(h, "/", 2)[0], "{") || strings.Contains(h, "{{") || strings.Contains(h, "%7B%7B") {
			c.add(RuleLinkMalformed, SeverityError, line, elem, "link holds an unfilled template placeholder")
			return "", false
		}
		c.add(RuleLinkRelative, SeverityError, line, elem, "relative link: mail has no base URL, so it cannot work; use an absolute https:// URL")
	case "http", "https":
		if u.Host == "" {
			c.add(RuleLinkMalformed, SeverityError, line, elem, "http(s) link without a host")
			return "", false
		}
		if strings.Contains(h, "{{") || strings.Contains(h, "%7B%7B") {
			c.add(RuleLinkMalformed, SeverityError, line, elem, "link holds an unfilled template placeholder")
			return "", false
		}
		c.remoteHost(h, line, elem)
	}
	return "", false
}

func (c *checker) resource(src string, line int, elem string) {
	low := strings.ToLower(src)
	if strings.HasPrefix(low, "data:") {
		return // inline data image: works in some clients, not a broken reference
	}
	c.add(RuleLinkRelative, SeverityError, line, elem, "relative or unsupported image URL: it cannot load in a recipient's client")
}

func (c *checker) cid(ref string, line int, elem string, hasCID func(string) bool) {
	cid := strings.TrimSpace(ref)[len("cid:"):]
	if u, err := url.PathUnescape(cid); err == nil {
		cid = u
	}
	cid = strings.Trim(cid, "<>")
	if hasCID == nil || !hasCID(cid) {
		c.add(RuleCIDMissing, SeverityError, line, elem, fmt.Sprintf("cid:%s has no matching part (Content-ID)", cid))
	}
}

// remoteHost reports links and images pointing at hosts only the sender's
// machine or network can reach.
func (c *checker) remoteHost(ref string, line int, elem string) {
	if strings.HasPrefix(ref, "//") {
		ref = "https:" + ref
	}
	u, err := url.Parse(ref)
	if err != nil {
		c.add(RuleLinkMalformed, SeverityError, line, elem, "not a valid URL: "+err.Error())
		return
	}
	if u.Host == "" {
		c.add(RuleLinkMalformed, SeverityError, line, elem, "URL without a host")
		return
	}
	if why := localHost(u.Hostname()); why != "" {
		c.add(RuleLinkLocal, SeverityError, line, elem, "points at "+why+": recipients cannot reach it")
	}
}

// localHost says why host is reachable only locally, or "".
func localHost(host string) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		ip = ip.Unmap()
		switch {
		case ip.IsLoopback():
			return "a loopback address"
		case ip.IsUnspecified():
			return "an unspecified address"
		case ip.IsPrivate():
			return "a private address"
		case ip.IsLinkLocalUnicast():
			return "a link-local address"
		}
		return ""
	}
	if net.ParseIP(h) != nil {
		return ""
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "localhost"
	}
	for _, suffix := range []string{".local", ".internal", ".lan", ".home.arpa", ".localdomain", ".test", ".invalid"} {
		if strings.HasSuffix(h, suffix) {
			return "a local-only domain (" + suffix + ")"
		}
	}
	if !strings.Contains(h, ".") {
		return "a single-label host name"
	}
	return ""
}
