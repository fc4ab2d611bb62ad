package report_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/report"
)

// TestHTMLHostile renders a report whose senders, recipients, HELO,
// subjects, replies and warnings are attacks, and checks that the file
// parses, holds no script and no event handler, shows the hostile values
// as text, and carries the charts' data.
func TestHTMLHostile(t *testing.T) {
	const (
		xssFrom   = `"><script>alert(1)</script>@evil.test`
		xssDomain = `x.test"><img src=x onerror=alert(2)>`
		xssReply  = `550 5.7.1 </td></tr></table><script>alert(3)</script>`
		xssWarn   = `<svg onload=alert(4)> ]]> --> </title>`
	)
	agg := report.New(report.Options{})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i := range 5 {
		agg.Handle(ctx, &record.Record{Type: record.TypeMessage, Source: record.SourcePostfix, Timestamp: t0.Add(time.Duration(i) * time.Hour),
			QueueID: "Q1", ClientIP: "192.0.2.1", MailFrom: record.Ptr(xssFrom), Size: 100, Nrcpt: 1, Helo: `<script>alert(5)</script>`,
			Subject: `<script>alert(6)</script>`, Username: `<b onmouseover=alert(7)>`,
			Anomalies: []string{"reject_warning: RCPT: " + xssReply},
			Deliveries: []record.Delivery{
				{Timestamp: t0.Add(time.Duration(i) * time.Hour), Rcpt: "u@" + xssDomain, Status: "sent", DelayS: 0.5, Delays: "0.1/0.1/0.1/0.2", Relay: `h[1.2.3.4]:25`},
				{Timestamp: t0.Add(time.Duration(i) * time.Hour), Rcpt: "v@" + xssDomain, Status: "deferred", SMTPResponse: xssReply, Relay: `<i>[1.2.3.5]:25`},
			}})
		agg.Handle(ctx, &record.Record{Type: record.TypeMessage, Source: record.SourcePostfix, Timestamp: t0, Status: record.StatusRejected,
			SMTPResponse: xssReply, Reason: "reject: RCPT", RejectedRcpt: []record.Rejection{{Address: xssFrom, SMTPResponse: xssReply}}})
	}
	agg.Note(report.Note{Time: t0, Level: "warning", Program: "smtpd", Text: xssWarn})
	var out bytes.Buffer
	if err := report.WriteHTML(&out, agg.Report()); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var series, points, bars int
	var walk func(n *html.Node, depth int)
	walk = func(n *html.Node, depth int) {
		if depth > 200 {
			t.Fatal("document nested too deeply")
		}
		switch n.Type {
		case html.ElementNode:
			switch n.Data {
			case "script", "iframe", "object", "embed", "img", "b", "i", "link":
				t.Errorf("element <%s> in the report", n.Data)
			case "polyline":
				series++
			case "circle":
				points++
			case "g":
				bars++
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					t.Errorf("event handler attribute %s=%q on <%s>", a.Key, a.Val, n.Data)
				}
				if (a.Key == "href" || a.Key == "src") && !strings.HasPrefix(a.Val, "#") {
					t.Errorf("reference to %s=%q", a.Key, a.Val)
				}
			}
		case html.TextNode:
			texts = append(texts, n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, depth+1)
		}
	}
	walk(doc, 0)
	all := strings.Join(texts, "\n")
	for _, v := range []string{xssFrom, "5.7.1 </td></tr></table><script>alert(3)</script>", xssWarn, "x.test\"><img src=x"} {
		if !strings.Contains(all, v) {
			t.Errorf("hostile value %q not shown as text", v)
		}
	}
	if series != 5 || points != 5*5 || bars < 9 {
		t.Errorf("charts: %d series, %d points, %d bars; want 5, 25, ≥9", series, points, bars)
	}
	for _, want := range []string{`data-series="received"`, `data-value="5"`, `data-label="delivered"`, "Content-Security-Policy"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("report lacks %s", want)
		}
	}
}
