package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

// xssPayloads each try to set window.__xss or open a dialog when they are
// put into the page as HTML, as a URL or inside a script or attribute.
var xssPayloads = []string{
	`<script>window.__xss=1</script>`,
	`<img src=x onerror="window.__xss=2">`,
	`javascript:window.__xss=3`,
	`"><svg onload="window.__xss=4">`,
	"${window.__xss=5}`;window.__xss=5;//",
	`' onmouseover='window.__xss=6' autofocus onfocus='window.__xss=6' x='`,
	`</title><script>alert(7)</script>`,
	`<iframe srcdoc="<script>parent.__xss=8</script>"></iframe>`,
	`<a href="javascript:window.__xss=9">click</a>`,
	`</textarea></style><img src=x onerror=alert(10)>`,
	`{{constructor.constructor('window.__xss=11')()}}`,
}

// xssRecords puts every payload into subjects, addresses, HELO names, reply
// texts, transcripts, deliveries and IDs.
func xssRecords(at time.Time) []*record.Record {
	var out []*record.Record
	for i, p := range xssPayloads {
		sid := fmt.Sprintf("01XSS%021d", i)
		addr := p + "@evil.example"
		out = append(out,
			&record.Record{
				Type: record.TypeMessage, Timestamp: at.Add(time.Duration(i) * time.Second), Source: record.SourcePostfix,
				SessionID: sid, ClientIP: "192.0.2.66", Helo: p, Username: p,
				MessageID: "<xss" + fmt.Sprint(i) + p + "@evil.example>", Subject: "xss " + p, From: p + " <" + addr + ">",
				To: []string{p}, MailFrom: record.Ptr(addr), RcptTo: []string{addr},
				RejectedRcpt: []record.Rejection{{Address: "r" + addr, SMTPResponse: "550 5.1.1 " + p}},
				Status:       record.StatusBounced, SMTPResponse: "550 5.7.1 " + p, ReplyCode: 550, EnhancedCode: "5.7.1",
				QueueID: "XSSQ" + fmt.Sprint(i), Flags: []string{p}, Anomalies: []string{p},
				TLS: &record.TLS{Used: true, Version: p, Cipher: p, SNI: p},
				Deliveries: []record.Delivery{{Timestamp: at.Add(time.Duration(i)*time.Second + time.Second), Rcpt: addr,
					Status: "bounced", Relay: p, DSN: "5.1.1", SMTPResponse: p}},
				Transcript: []record.TranscriptLine{{Dir: "C", Line: "EHLO " + p}, {TMS: 1, Dir: "S", Line: "550 " + p}},
			},
			&record.Record{
				Type: record.TypeSession, Timestamp: at.Add(time.Duration(i) * time.Second), Source: record.SourceProxy,
				SessionID: sid, Helo: p, ClientIP: "192.0.2.66", Auth: &record.Auth{Mechanism: p, Username: p, Result: "failure"},
				CloseReason: p, Reason: p, Errors: []string{p}, Transcript: []record.TranscriptLine{{Dir: "C", Line: p}},
			})
	}
	return out
}

type browser struct {
	t       *testing.T
	ctx     context.Context // the browser's first tab
	base    string
	dialogs atomic.Int64
}

// tripwire runs before the page's own scripts: it records CSP and Trusted
// Types violations, which a payload parsed as HTML would cause.
const tripwire = `window.__csp = [];
document.addEventListener('securitypolicyviolation', e => { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || '')); });`

func startBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := testenv.NeedBinary(t, "chromium")
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: ctx, base: base}
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.dialogs.Add(1)
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: tripwire}); err != nil {
		t.Fatal(err)
	}
	return b
}

// open navigates to path and waits for the page to say it is ready.
func (b *browser) open(path, ready string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(b.base+path)); err != nil {
		b.t.Fatalf("%s: %v", path, err)
	}
	b.waitFor(fmt.Sprintf(`document.getElementById('main').dataset.ready === %q`, ready))
}

// waitFor evaluates a JavaScript condition until it is true. (chromedp's
// Poll compiles its predicate with new Function, which the CSP forbids.)
func (b *browser) waitFor(cond string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
			b.t.Fatalf("waiting for %s: %v; page shows:\n%s", cond, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// screenshot saves the page as NAME.png in the test's temporary directory,
// or in $SMTPLOG_SCREENSHOT_DIR when set (to look at it).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	dir := b.t.TempDir()
	if d := os.Getenv("SMTPLOG_SCREENSHOT_DIR"); d != "" {
		dir = d
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// noScriptRan checks that no payload ran or was parsed into markup.
func (b *browser) noScriptRan(where string) {
	b.t.Helper()
	if v := eval[string](b, `String(window.__xss)`); v != "undefined" {
		b.t.Errorf("%s: window.__xss = %s: a payload ran", where, v)
	}
	if n := b.dialogs.Load(); n != 0 {
		b.t.Errorf("%s: %d dialogs opened", where, n)
	}
	if v := eval[[]string](b, `window.__csp || []`); len(v) != 0 {
		b.t.Errorf("%s: CSP violations (markup from data was parsed): %q", where, v)
	}
	injected := eval[int](b, `document.querySelectorAll('main img, main script, main iframe, main object, main embed, main textarea, main style, main svg svg, main foreignObject').length +
		Array.from(document.querySelectorAll('main *')).filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on') || /^\s*javascript:/i.test(a.value))).length`)
	if injected != 0 {
		b.t.Errorf("%s: %d elements or attributes from payloads in the page", where, injected)
	}
}

func TestBrowser(t *testing.T) {
	now := base.Add(2 * time.Hour)
	// A day of synthetic traffic for the dashboard, the known records, and
	// the XSS corpus.
	g := gen.New(gen.Config{Seed: 7, Start: now.Add(-24 * time.Hour), Span: 24 * time.Hour, N: 4000, Domains: 40, Senders: 300, Recipients: 2000, TranscriptEvery: 10})
	synth := make([]*record.Record, 4000)
	for i := range synth {
		synth[i] = g.Next()
	}
	st := openStore(t, synth, known(), xssRecords(base.Add(30*time.Minute)))
	hub := NewHub(HubOptions{})
	h := newHandler(t, Config{Store: st, Tracer: BuildTracer(st), Hub: hub, Now: func() time.Time { return now }})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close) // ends live streams before srv.Close waits for them
	b := startBrowser(t, srv.URL)

	t.Run("dashboard", func(t *testing.T) {
		b.t = t
		b.open("/", "dashboard")
		// Not capture mode: "/" is the dashboard, and there is no message list.
		if nav := eval[[]string](b, `Array.from(document.querySelectorAll('header nav a')).filter(a => !a.hidden).map(a => a.getAttribute('data-nav') + (a.className === 'current' ? '*' : ''))`); strings.Join(nav, " ") != "dashboard* live search" {
			t.Errorf("navigation %q, want dashboard (current), live, search", nav)
		}
		if n := eval[int](b, `document.querySelectorAll('#chart-volume svg rect[data-status]').length`); n < 50 {
			t.Errorf("volume chart has %d bars", n)
		}
		for _, id := range []string{"chart-rates", "chart-codes", "chart-latency", "top-senders", "top-sender-domains", "top-recipients", "top-recipient-domains"} {
			if n := eval[int](b, `document.querySelectorAll('#`+id+` svg rect').length`); n == 0 {
				t.Errorf("%s has no bars", id)
			}
		}
		if n := eval[int](b, `document.querySelectorAll('#chart-tls svg path').length`); n != 2 {
			t.Errorf("TLS donut has %d arcs, want 2", n)
		}
		if v := eval[string](b, `document.querySelector('[data-kpi=messages] .v').textContent`); v == "0" || v == "" {
			t.Errorf("messages KPI is %q", v)
		}
		b.screenshot("dashboard")
		b.noScriptRan("dashboard")
	})

	t.Run("search", func(t *testing.T) {
		b.t = t
		b.open("/search?q="+url.QueryEscape("msgid:a1@shop.example"), "search")
		rows := eval[[]string](b, `Array.from(document.querySelectorAll('#results tbody tr .subject')).map(e => e.textContent)`)
		if len(rows) != 1 || rows[0] != "Invoice 42" {
			t.Errorf("search rows %q", rows)
		}
		// Typing a query into the form.
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#q"), `subject:"weekly news"`),
			chromedp.Submit(chromedp.CSS("#q")),
		); err != nil {
			t.Fatal(err)
		}
		b.waitFor(`location.search.includes('weekly') && document.getElementById('main').dataset.ready === 'search'`)
		b.waitFor(`Array.from(document.querySelectorAll('#results .subject')).some(e => e.textContent === 'Weekly news')`)
		// A query error marks the offending token.
		b.open("/search?q="+url.QueryEscape("from:app@shop.example status:nope"), "search")
		b.screenshot("search-error")
		if tok := eval[string](b, `document.querySelector('.qerr mark').textContent`); tok != "nope" {
			t.Errorf("marked token %q, want nope", tok)
		}
		if msg := eval[string](b, `document.querySelector('.qerr').textContent`); !strings.Contains(msg, "unknown status") {
			t.Errorf("error text %q", msg)
		}
	})

	t.Run("message", func(t *testing.T) {
		b.t = t
		id := idOf(t, h, "msgid:a1@shop.example")
		b.open("/messages/"+id, "message")
		b.waitFor(`document.querySelectorAll('#timeline-svg circle.step').length > 0`)
		steps := eval[[]string](b, `Array.from(document.querySelectorAll('#trace .steps li')).map(e => e.textContent)`)
		if len(steps) < 1 || !strings.Contains(strings.Join(steps, "\n"), "450 4.2.0 Mailbox full") {
			t.Errorf("trace steps %q", steps)
		}
		tr := eval[string](b, `document.getElementById('transcript').textContent`)
		if !strings.Contains(tr, "MAIL FROM:<app@shop.example>") || !strings.Contains(tr, "[10240 bytes of DATA]") {
			t.Errorf("transcript %q", tr)
		}
		if s := eval[string](b, `document.getElementById('subject').textContent`); s != "Invoice 42" {
			t.Errorf("subject %q", s)
		}
		b.screenshot("message")
		// A Postfix message with a delivery: two steps on the timeline.
		b.open("/messages/"+idOf(t, h, "msgid:n7@list.example"), "message")
		b.waitFor(`document.querySelectorAll('#timeline-svg circle.step').length >= 2`)
		if d := eval[string](b, `document.querySelector('#trace .steps').textContent`); !strings.Contains(d, "mx.example.org[192.0.2.7]:25") {
			t.Errorf("trace of the Postfix message lacks the delivery: %q", d)
		}
		b.screenshot("message-postfix")
	})

	t.Run("session", func(t *testing.T) {
		b.t = t
		b.open("/sessions/01SESSIONAAAAAAAAAAAAAAAAA", "session")
		if tr := eval[string](b, `document.getElementById('transcript').textContent`); !strings.Contains(tr, "AUTH PLAIN [redacted]") {
			t.Errorf("session transcript %q", tr)
		}
		if n := eval[int](b, `document.querySelectorAll('main table.results tbody tr').length`); n != 1 {
			t.Errorf("session lists %d messages", n)
		}
	})

	t.Run("live", func(t *testing.T) {
		b.t = t
		b.open("/live?q="+url.QueryEscape("status:deferred"), "live")
		b.waitFor(`document.getElementById('live-state').textContent === 'live'`)
		deadline := time.Now().Add(10 * time.Second)
		for hub.Subscribers() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		ctx := context.Background()
		sent := known()[2] // status sent: filtered out
		sent.Subject = "not for this view"
		deferred := known()[1]
		deferred.Subject = "live arrival"
		for _, r := range []*record.Record{sent, deferred} {
			if err := hub.Handle(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		b.waitFor(`Array.from(document.querySelectorAll('#live-table .subject')).some(e => e.textContent === 'live arrival')`)
		if n := eval[int](b, `document.querySelectorAll('#live-table tbody tr').length`); n != 1 {
			t.Errorf("live view shows %d rows, want 1 (the filter)", n)
		}
	})

	t.Run("xss", func(t *testing.T) {
		b.t = t
		b.open("/", "dashboard")
		b.noScriptRan("dashboard")
		b.open("/search?q="+url.QueryEscape("subject:xss"), "search")
		if n := eval[int](b, `document.querySelectorAll('#results tbody tr').length`); n != len(xssPayloads) {
			t.Errorf("search shows %d XSS records, want %d", n, len(xssPayloads))
		}
		// The payloads are shown as text, exactly.
		subjects := eval[[]string](b, `Array.from(document.querySelectorAll('#results .subject')).map(e => e.textContent)`)
		for _, p := range xssPayloads {
			found := false
			for _, s := range subjects {
				found = found || s == "xss "+p
			}
			if !found {
				t.Errorf("payload %q not shown as text", p)
			}
		}
		b.noScriptRan("search")
		b.screenshot("search-xss")
		b.open("/search?q="+url.QueryEscape("type:session helo:*evil*")+"", "search")
		b.noScriptRan("session search")
		res := decode[searchResp](t, do(t, h, req{path: "/api/search?q=subject:xss&limit=100"}))
		for i, r := range res.Records {
			b.open("/messages/"+r.ID, "message")
			b.waitFor(`document.querySelector('#trace .steps, #trace .muted, #trace .empty')`)
			b.noScriptRan("message " + r.ID)
			if i == 0 {
				b.screenshot("message-xss")
				b.open("/sessions/"+url.PathEscape(r.SessionID), "session")
				b.noScriptRan("session " + r.SessionID)
				b.open("/trace/"+url.PathEscape(r.MessageID), "trace")
				b.noScriptRan("trace " + r.MessageID)
			}
		}
		b.open("/live", "live")
		b.waitFor(`document.getElementById('live-state').textContent === 'live'`)
		for _, r := range xssRecords(now) {
			if err := hub.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		b.waitFor(fmt.Sprintf(`document.querySelectorAll('#live-table tbody tr').length === %d`, 2*len(xssPayloads)))
		b.noScriptRan("live")
		b.screenshot("live-xss")
	})
}
