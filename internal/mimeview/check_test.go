package mimeview

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

func TestCheckHTML(t *testing.T) {
	src := `<html>
<head></head>
<body>
<a href="">empty</a>
<a href="#">hash</a>
<a href="http://localhost:8080/confirm">local</a>
<a href="https://127.0.0.1/x">loopback</a>
<a href="http://app.internal/x">internal</a>
<a href="/account">relative</a>
<a href="#missing">anchor</a>
<a href="#present">ok anchor</a><h1 id="present">x</h1>
<a href="javascript:void(0)">js</a>
<a href="https://exa mple.com">space</a>
<a href="http:///nohost">nohost</a>
<a href="https://app.example/ok">fine</a>
<a href="https://app.example/{{token}}">template</a>
<img src="cid:logo@app.example" alt="l" width="1" height="1">
<img src="cid:gone@app.example" alt="g" width="1" height="1">
<img src="https://cdn.example/x.png">
<img src="images/rel.png" alt="" width="1" height="1">
<form action="https://app.example/f"><input name="q"></form>
<script>x()</script>
<video src="https://cdn.example/v.mp4"></video>
<iframe src="https://app.example/"></iframe>
<meta http-equiv="refresh" content="0">
</body></html>`
	got := CheckHTML(src, func(cid string) bool { return cid == "logo@app.example" })
	var lines []string
	for _, f := range got {
		if f.Rule == "" || f.Severity == "" || f.Message == "" {
			t.Errorf("incomplete finding %+v", f)
		}
		lines = append(lines, fmt.Sprintf("%d %s", f.Line, f.Rule))
	}
	sort.Strings(lines)
	want := []string{
		"0 lang-missing", "0 title-missing",
		"9 link-relative", "10 link-anchor-missing", "12 link-unsafe-scheme", "13 link-malformed", "14 link-malformed",
		"16 link-malformed", "18 cid-missing", "19 img-alt-missing", "19 img-size-missing", "20 link-relative",
		"21 element-unsupported", "21 element-unsupported", "22 element-unsupported", "23 element-unsupported",
		"24 element-unsupported", "25 element-unsupported",
		"4 link-empty", "5 link-empty", "6 link-local", "7 link-local", "8 link-local",
	}
	sort.Strings(want)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckMessage(t *testing.T) {
	m := Parse(fixture(t, "alternative-inline-attachment.eml"), Limits{})
	if f := m.CheckHTML(); len(f) != 0 {
		t.Errorf("clean message has findings %+v", f)
	}
	big := "<html lang=en><title>t</title><p>" + strings.Repeat("x", GmailClipBytes) + "</p>"
	m = Parse([]byte("Content-Type: text/html\r\n\r\n"+big), Limits{})
	rules := map[string]bool{}
	for _, f := range m.CheckHTML() {
		rules[f.Rule] = true
	}
	if !rules[RuleHTMLSize] || !rules[RuleTextAlternative] || len(rules) != 2 {
		t.Errorf("rules %v", rules)
	}
}

func TestCheckCapsFindings(t *testing.T) {
	src := strings.Repeat(`<img src="https://cdn.example/x.png" alt="x" width="1" height="1"><a href="">e</a>`, 500)
	got := CheckHTML(src, nil)
	n := 0
	for _, f := range got {
		if f.Rule == RuleLinkEmpty {
			n++
		}
	}
	if n != maxFindingsPerRule+1 { // the listed ones and the "more" note
		t.Errorf("%d link-empty findings", n)
	}
}
