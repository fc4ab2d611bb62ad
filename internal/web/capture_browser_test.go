package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/capture/api"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/web"
)

// captureEnv is smtplog serve in capture mode, in process: a real SMTP
// server with the capture backend keeping bytes through api.Keep into a
// real store, records to the store and the live hub, and the capture
// routes mounted in the web handler.
type captureEnv struct {
	smtp string // host:port
	base string // the UI's base URL
	hub  *web.Hub
}

func startCapture(t *testing.T) *captureEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "smtplog.db"), store.Options{Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(st, nil, nil, api.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hub := web.NewHub(web.HubOptions{})
	srv := smtpd.New(smtpd.Config{Hostname: "capture.test", Source: record.SourceCapture, Handler: record.Multi{st, hub},
		DataPolicy: smtpd.DataAccept}, capture.New(capture.Config{Keep: a.Keep}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	h, err := web.New(web.Config{Store: st, Tracer: web.BuildTracer(st), Hub: hub, Routes: a.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close() // ends live streams before hs.Close waits for them
		hs.Close()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		hub.Close()
		a.Close()
		if err := st.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return &captureEnv{smtp: l.Addr().String(), base: hs.URL, hub: hub}
}

// send sends msg over SMTP, as an application would.
func (e *captureEnv) send(t *testing.T, msg string) {
	t.Helper()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if err := smtp.SendMail(e.smtp, nil, "app@shop.example", []string{"dev@example.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func (e *captureEnv) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(e.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// idOf waits for the record of the captured message with this subject and
// returns its record ID.
func (e *captureEnv) idOf(t *testing.T, subject string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, b := e.get(t, "/api/search?q=source:capture&limit=100")
		var res struct {
			Records []struct{ ID, Subject string } `json:"records"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			if r.Subject == subject {
				return r.ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no captured message %q", subject)
	return ""
}

func pngBytes(t *testing.T, c color.Color) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 24, 24))
	for x := 0; x < 24; x++ {
		for y := 0; y < 24; y++ {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hostileHTML is an XSS corpus for the HTML view: every payload tries to set
// window.__xss (in the frame or its parent), mark the frame's document, or
// open a dialog.
const hostileHTML = `<!doctype html><html><head><title>Hostile</title>
<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1">
<style>body { font-family: sans-serif; background: url("javascript:window.__xss=2"); width: expression(alert(3)); }
h1 { color: #1e3a5f; }</style>
<script>window.__xss=4; parent.__xss=4; document.documentElement.setAttribute('data-xss','4')</script>
</head><body onload="window.__xss=5; document.documentElement.setAttribute('data-xss','5')">
<h1>Your order has shipped</h1>
<p>Thanks for shopping. <a href="javascript:window.__xss=6;document.documentElement.setAttribute('data-xss','6')" id="js-link">Track it</a>.</p>
<img src="x" onerror="window.__xss=7; document.documentElement.setAttribute('data-xss','7')">
<svg onload="window.__xss=8; document.documentElement.setAttribute('data-xss','8')"><script>window.__xss=8</script><a href="javascript:alert(8)"><text>svg</text></a></svg>
<div style="width: expression(alert(9)); background-image: url(javascript:alert(9))">CSS expression</div>
<iframe srcdoc="&lt;script&gt;parent.__xss=10&lt;/script&gt;"></iframe>
<form action="javascript:alert(11)"><input autofocus onfocus="window.__xss=11; document.documentElement.setAttribute('data-xss','11')"><button>go</button></form>
<object data="javascript:alert(12)"></object><embed src="javascript:alert(13)">
<a href="vbscript:msgbox(14)">vb</a> <a href="data:text/html,&lt;script&gt;alert(15)&lt;/script&gt;">data</a>
<details open ontoggle="window.__xss=16; document.documentElement.setAttribute('data-xss','16')"><summary>details</summary>x</details>
<p><img src="cid:logo@shop.example" alt="logo" width="24" height="24"> inline logo</p>
<p><img src="%s" alt="tracking pixel" width="24" height="24"> remote image</p>
</body></html>`

func hostileMessage(subject, pixelURL string, logo, attachment []byte) string {
	b64 := func(b []byte) string {
		s := base64.StdEncoding.EncodeToString(b)
		var out strings.Builder
		for len(s) > 76 {
			out.WriteString(s[:76] + "\n")
			s = s[76:]
		}
		return out.String() + s
	}
	return `From: Shop <app@shop.example>
To: Dev <dev@example.test>
Subject: ` + subject + `
Date: Sun, 29 Nov 2026 10:00:00 +0000
Message-ID: <hostile.` + fmt.Sprint(len(subject)) + `@shop.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Your order has shipped. <script>window.__xss=99</script>

--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

` + fmt.Sprintf(hostileHTML, pixelURL) + `
--rel
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <logo@shop.example>
Content-Disposition: inline; filename="logo.png"

` + b64(logo) + `
--rel--

--alt--

--mixed
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="invoice 42.bin"

` + b64(attachment) + `
--mixed--
`
}

func plainMessage(subject string) string {
	return "From: app@shop.example\nTo: dev@example.test\nSubject: " + subject + "\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@shop.example>\n\nHello.\n"
}

// noScript checks the tripwire of the page (set by any payload that
// reached it), dialogs, and CSP violations in the UI.
func noScript(t *testing.T, b *web.Browser, where string) {
	t.Helper()
	if v := web.Eval[string](b, `String(window.__xss)`); v != "undefined" {
		t.Errorf("%s: window.__xss = %s: a payload ran", where, v)
	}
	if n := b.Dialogs(); n != 0 {
		t.Errorf("%s: %d dialogs opened", where, n)
	}
	if v := web.Eval[[]string](b, `window.__csp || []`); len(v) != 0 {
		t.Errorf("%s: CSP violations: %q", where, v)
	}
}

// frameCheck inspects the message frame's document from an isolated world
// (the frame runs no script of its own; DOM marks and the DOM are shared
// between worlds): it returns what a payload left there.
const frameCheck = `JSON.stringify({
	win: String(window.__xss),
	xss: document.documentElement.getAttribute('data-xss'),
	scripts: document.querySelectorAll('script, iframe, object, embed, form, meta[http-equiv], base').length,
	handlers: Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
	jsurls: Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes).some(a => /^\s*(javascript|vbscript|data:text)/i.test(a.value) || /expression\s*\(/i.test(a.value))).length,
	styles: Array.from(document.querySelectorAll('style')).filter(s => /expression\s*\(|javascript:/i.test(s.textContent)).length,
	h1: (document.querySelector('h1') || {}).textContent || '',
	imgs: Array.from(document.images).map(i => i.getAttribute('src')),
})`

type frameState struct {
	Win      string   `json:"win"`
	XSS      *string  `json:"xss"`
	Scripts  int      `json:"scripts"`
	Handlers int      `json:"handlers"`
	JSURLs   int      `json:"jsurls"`
	Styles   int      `json:"styles"`
	H1       string   `json:"h1"`
	Imgs     []string `json:"imgs"`
}

// inFrame evaluates expr in an isolated world of the first child frame
// whose URL contains urlPart (the message's sandboxed HTML). ok is false
// when the browser does not expose the frame to this target (an
// out-of-process frame).
func inFrame(t, top *testing.T, b *web.Browser, urlPart, expr string) (string, bool) {
	t.Helper()
	ctx := b.Ctx()
	tree, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var id cdp.FrameID
	var walk func(n *page.FrameTree)
	walk = func(n *page.FrameTree) {
		for _, c := range n.ChildFrames {
			if id == "" && strings.Contains(c.Frame.URL, urlPart) {
				id = c.Frame.ID
			}
			walk(c)
		}
	}
	walk(tree.FrameTree)
	if id == "" {
		// An out-of-process frame is a target of its own: evaluate in its
		// main world.
		infos, err := chromedp.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range infos {
			if in.Type == "iframe" && strings.Contains(in.URL, urlPart) {
				// Cancelling this context closes the page's tab too: it
				// ends with the whole test.
				fctx, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(in.TargetID))
				top.Cleanup(cancel)
				v, err := chromedp.Run(fctx, chromedp.Evaluate[string](expr))
				if err != nil {
					t.Fatalf("in the frame target: %v", err)
				}
				return v, true
			}
		}
		return "", false
	}
	world, err := chromedp.Call(ctx, page.CreateIsolatedWorld, page.CreateIsolatedWorldParams{FrameID: id, WorldName: "smtplog-test"})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	res, err := chromedp.Call(ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: expr, ContextID: world.ExecutionContextID, ReturnByValue: &yes})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExceptionDetails != nil {
		t.Fatalf("in frame: %s", res.ExceptionDetails.Text)
	}
	var out string
	if err := json.Unmarshal([]byte(res.Result.Value), &out); err != nil {
		t.Fatal(err)
	}
	return out, true
}

func checkFrameState(t *testing.T, where, js string) frameState {
	t.Helper()
	var fs frameState
	if err := json.Unmarshal([]byte(js), &fs); err != nil {
		t.Fatalf("%s: %v in %s", where, err, js)
	}
	if fs.Win != "undefined" {
		t.Errorf("%s: window.__xss = %s in the frame", where, fs.Win)
	}
	if fs.XSS != nil {
		t.Errorf("%s: payload %s ran in the frame", where, *fs.XSS)
	}
	if fs.Scripts+fs.Handlers+fs.JSURLs+fs.Styles != 0 {
		t.Errorf("%s: the sanitised HTML keeps active content: %s", where, js)
	}
	if fs.H1 != "Your order has shipped" {
		t.Errorf("%s: frame heading %q", where, fs.H1)
	}
	return fs
}

func TestCaptureBrowser(t *testing.T) {
	top := t
	e := startCapture(t)

	var pixelHits atomic.Int64
	pixel := pngBytes(t, color.RGBA{220, 38, 38, 255})
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pixel.png" {
			pixelHits.Add(1)
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(pixel)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(remote.Close)

	logo := pngBytes(t, color.RGBA{30, 58, 95, 255})
	attachment := make([]byte, 3000)
	for i := range attachment {
		attachment[i] = byte(i * 7)
	}
	e.send(t, plainMessage("earlier message"))
	earlierID := e.idOf(t, "earlier message")
	e.send(t, hostileMessage("Order shipped <script>alert(1)</script>", remote.URL+"/pixel.png", logo, attachment))
	hostileID := e.idOf(t, "Order shipped <script>alert(1)</script>")
	e.idOf(t, "earlier message")

	b := web.StartBrowser(t, e.base)

	t.Run("list", func(t *testing.T) {
		b.SetT(t)
		b.Open("/live", "live")
		b.WaitFor(`document.getElementById('main').dataset.capture === 'yes'`)
		b.WaitFor(`document.getElementById('live-state').textContent === 'live'`)
		subjects := web.Eval[[]string](b, `Array.from(document.querySelectorAll('#live-table tbody tr .subject')).map(e => e.textContent)`)
		if len(subjects) != 2 || subjects[0] != "Order shipped <script>alert(1)</script>" || subjects[1] != "earlier message" {
			t.Errorf("list before the new message, newest first: %q", subjects)
		}
		if n := web.Eval[int](b, `document.querySelectorAll('#live-table tbody tr.unread').length`); n != 2 {
			t.Errorf("%d unread rows, want 2", n)
		}
		deadline := time.Now().Add(10 * time.Second)
		for e.hub.Subscribers() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		e.send(t, plainMessage("arrives live"))
		b.WaitFor(`Array.from(document.querySelectorAll('#live-table .subject')).some(e => e.textContent === 'arrives live')`)
		first := web.Eval[string](b, `document.querySelector('#live-table tbody tr .subject').textContent`)
		if first != "arrives live" {
			t.Errorf("first row %q, want the new message on top", first)
		}
		id := e.idOf(t, "arrives live")
		b.WaitFor(fmt.Sprintf(`document.querySelector('#live-table tbody tr a').getAttribute('href') === '/messages/%s'`, id))
		if c := web.Eval[string](b, `document.querySelector('#live-table tbody tr').className`); !strings.Contains(c, "unread") {
			t.Errorf("new row class %q, want unread", c)
		}
		if n := web.Eval[int](b, `document.querySelectorAll('#live-table tbody tr').length`); n != 3 {
			t.Errorf("list has %d rows, want 3", n)
		}
		noScript(t, b, "list")
		b.Screenshot("capture-list")
	})

	// In capture mode "/" is the list of captured messages; opening one
	// marks it read, which the list, its counts and the API then show.
	t.Run("home-and-read", func(t *testing.T) {
		b.SetT(t)
		b.Open("/", "messages")
		if h := web.Eval[string](b, `document.querySelector('main h1').textContent`); h != "Messages" {
			t.Errorf("home page heading %q, want Messages", h)
		}
		nav := web.Eval[[]string](b, `Array.from(document.querySelectorAll('header nav a')).filter(a => !a.hidden).map(a => a.getAttribute('href') + (a.className === 'current' ? '*' : ''))`)
		if strings.Join(nav, " ") != "/* /dashboard /live /search" {
			t.Errorf("navigation %q, want Messages (current) at /, then the dashboard at /dashboard", nav)
		}
		subjects := web.Eval[[]string](b, `Array.from(document.querySelectorAll('#live-table tbody tr .subject')).map(e => e.textContent)`)
		if len(subjects) != 3 || subjects[2] != "earlier message" {
			t.Errorf("home list %q, want the three captured messages, newest first", subjects)
		}
		row := `document.querySelector('#live-table tr[data-id="` + earlierID + `"]')`
		if c := web.Eval[string](b, row+`.className`); c != "unread" {
			t.Errorf("row of the unopened message has class %q, want unread", c)
		}
		if c := web.Eval[string](b, `document.getElementById('capture-count').textContent`); c != "3 messages, 3 unread" {
			t.Errorf("counts %q", c)
		}
		if n := web.Eval[string](b, `document.getElementById('nav-unread').textContent`); n != "3" {
			t.Errorf("unread badge %q, want 3", n)
		}
		noScript(t, b, "home")
		b.Screenshot("capture-home")

		// Open the message from the list, as a user does.
		if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#live-table tr[data-id="`+earlierID+`"] a`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`location.pathname === '/messages/` + earlierID + `' && document.getElementById('main').dataset.ready === 'message'`)
		b.WaitFor(`document.getElementById('read-state').textContent === 'read'`)
		b.WaitFor(`document.getElementById('nav-unread').textContent === '2'`)
		if c := web.Eval[string](b, `document.querySelector('[data-nav=messages]').className`); c != "current" {
			t.Errorf("Messages is not the current navigation entry on a message page: %q", c)
		}
		_, vb := e.get(t, "/api/messages/"+earlierID+"/view")
		var v struct {
			Read bool `json:"read"`
		}
		if err := json.Unmarshal(vb, &v); err != nil {
			t.Fatal(err)
		}
		if !v.Read {
			t.Error("the API reports the opened message unread")
		}

		// Back to the list: the message is shown read.
		if _, err := chromedp.Run(b.Ctx(), chromedp.NavigateBack()); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`location.pathname === '/' && document.getElementById('main').dataset.ready === 'messages'`)
		b.WaitFor(row + ` && ` + row + `.className === 'read'`)
		if n := web.Eval[int](b, `document.querySelectorAll('#live-table tbody tr.unread').length`); n != 2 {
			t.Errorf("%d unread rows after opening one, want 2", n)
		}
		if c := web.Eval[string](b, `document.getElementById('capture-count').textContent`); c != "3 messages, 2 unread" {
			t.Errorf("counts after opening one %q", c)
		}

		// The dashboard is one click away.
		if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`header nav a[data-nav=dashboard]`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`location.pathname === '/dashboard' && document.getElementById('main').dataset.ready === 'dashboard'`)
		if v := web.Eval[string](b, `document.querySelector('[data-kpi=messages] .v').textContent`); v != "3" {
			t.Errorf("dashboard messages KPI %q, want 3", v)
		}
		noScript(t, b, "dashboard in capture mode")
	})

	t.Run("html-view", func(t *testing.T) {
		b.SetT(t)
		b.Open("/messages/"+hostileID, "message")
		b.WaitFor(`document.querySelector('#tab-html:not([hidden]) #html-frame')`)
		frame := web.Eval[map[string]string](b, `Object.fromEntries(['src', 'sandbox'].map(a => [a, document.getElementById('html-frame').getAttribute(a)]))`)
		if frame["src"] != "/api/messages/"+hostileID+"/html" || frame["sandbox"] != "" {
			t.Errorf("frame attributes %q: want src of /html and an empty sandbox (no allow-scripts, no allow-same-origin)", frame)
		}
		b.WaitFor(`document.getElementById('html-frame').dataset.loaded === '1'`)
		time.Sleep(500 * time.Millisecond) // time for any image request to reach the counter
		if js, ok := inFrame(t, top, b, "/html", frameCheck); ok {
			fs := checkFrameState(t, "frame", js)
			if slices.Contains(fs.Imgs, remote.URL+"/pixel.png") {
				t.Errorf("remote image kept before it was allowed: %q", fs.Imgs)
			}
		} else {
			t.Error("the message frame was not found")
		}
		noScript(t, b, "message page")
		if n := pixelHits.Load(); n != 0 {
			t.Errorf("the remote image was fetched %d times before Load remote content", n)
		}
		if s := web.Eval[string](b, `document.getElementById('subject').textContent`); s != "Order shipped <script>alert(1)</script>" {
			t.Errorf("subject %q", s)
		}
		b.Screenshot("capture-message-html")

		// Every other tab, with hostile data shown as text.
		b.WaitFor(`document.querySelectorAll('#tabs .tab').length === 7`)
		for _, tab := range []string{"text", "headers", "raw", "attachments", "mime", "checks"} {
			if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#tabs .tab[data-tab=`+tab+`]`))); err != nil {
				t.Fatal(err)
			}
			b.WaitFor(`!document.getElementById('tab-` + tab + `').hidden`)
			if tab == "attachments" {
				// The thumbnail loads lazily, as a user scrolls to it: only
				// while its tab shows. Wait for it before the next tab hides it.
				b.WaitFor(`document.querySelector('#inline-parts img.thumb') && document.querySelector('#inline-parts img.thumb').complete`)
			}
		}
		b.WaitFor(`document.getElementById('raw-source').textContent.includes('Content-ID: <logo@shop.example>')`)
		if txt := web.Eval[string](b, `document.getElementById('text-body').textContent`); !strings.Contains(txt, "<script>window.__xss=99</script>") {
			t.Errorf("text tab %q", txt)
		}
		if n := web.Eval[int](b, `document.querySelectorAll('#headers-table tbody tr').length`); n < 6 {
			t.Errorf("headers tab shows %d headers", n)
		}
		tree := web.Eval[string](b, `document.getElementById('mime-tree').textContent`)
		for _, want := range []string{"multipart/mixed", "multipart/alternative", "multipart/related", "text/html", "image/png", "application/octet-stream"} {
			if !strings.Contains(tree, want) {
				t.Errorf("MIME tree lacks %s: %q", want, tree)
			}
		}
		if rules := web.Eval[string](b, `document.getElementById('checks').textContent`); !strings.Contains(rules, "script") {
			t.Errorf("HTML checks do not flag the script: %q", rules)
		}
		if w := web.Eval[int](b, `document.querySelector('#inline-parts img.thumb').naturalWidth`); w != 24 {
			t.Errorf("inline image width %d, want 24 (shown from /part)", w)
		}
		noScript(t, b, "message tabs")

		// The frame's document on its own, as the browser gets it (its
		// CSP sandboxes it even outside the frame).
		if _, err := chromedp.Run(b.Ctx(), chromedp.Navigate(e.base+"/api/messages/"+hostileID+"/html")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		checkFrameState(t, "HTML document", web.Eval[string](b, frameCheck))
		noScript(t, b, "HTML document")
		if n := pixelHits.Load(); n != 0 {
			t.Errorf("the remote image was fetched %d times without remote=1", n)
		}
	})

	t.Run("remote-content", func(t *testing.T) {
		b.SetT(t)
		b.Open("/messages/"+hostileID, "message")
		b.WaitFor(`document.getElementById('html-frame').dataset.loaded === '1'`)
		time.Sleep(500 * time.Millisecond)
		if n := pixelHits.Load(); n != 0 {
			t.Fatalf("the remote image was fetched %d times before Load remote content", n)
		}
		if note := web.Eval[string](b, `document.getElementById('remote-note').textContent`); !strings.Contains(note, "1 remote resource blocked") {
			t.Errorf("remote note %q", note)
		}
		if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#load-remote`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`document.getElementById('html-frame').dataset.loaded === '2'`)
		if src := web.Eval[string](b, `document.getElementById('html-frame').getAttribute('src')`); src != "/api/messages/"+hostileID+"/html?remote=1" {
			t.Errorf("frame src after the click %q", src)
		}
		deadline := time.Now().Add(10 * time.Second)
		for pixelHits.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pixelHits.Load() == 0 {
			t.Error("the remote image was not fetched after Load remote content")
		}
		js, ok := inFrame(t, top, b, "remote=1", frameCheck)
		if !ok {
			t.Fatal("the frame with remote content was not found")
		}
		fs := checkFrameState(t, "frame with remote content", js)
		if !slices.Contains(fs.Imgs, remote.URL+"/pixel.png") {
			t.Errorf("frame images %q lack the remote one", fs.Imgs)
		}
		noScript(t, b, "remote content")
		b.Screenshot("capture-message-remote")
	})

	t.Run("attachment", func(t *testing.T) {
		b.SetT(t)
		b.Open("/messages/"+hostileID, "message")
		if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#tabs .tab[data-tab=attachments]`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`document.querySelector('#attachments a.download')`)
		link := web.Eval[map[string]string](b, `(a => ({href: a.getAttribute('href'), download: a.getAttribute('download'), text: a.textContent}))(document.querySelector('#attachments a.download'))`)
		if link["download"] != "invoice 42.bin" || link["text"] != "invoice 42.bin" {
			t.Errorf("attachment link %q", link)
		}
		resp, body := e.get(t, link["href"])
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", link["href"], resp.StatusCode)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "invoice 42.bin") {
			t.Errorf("Content-Disposition %q", cd)
		}
		if !bytes.Equal(body, attachment) {
			t.Errorf("attachment bytes differ: got %d bytes, want %d", len(body), len(attachment))
		}
		// The browser itself fetches the link as a download would.
		got, err := chromedp.Run(b.Ctx(), chromedp.Evaluate[int](`(async () => { const r = await fetch(document.querySelector('#attachments a.download').getAttribute('href')); return r.ok ? (await r.arrayBuffer()).byteLength : -r.status; })()`, chromedp.EvalAwaitPromise))
		if err != nil || got != len(attachment) {
			t.Errorf("the browser fetched %d bytes, want %d (%v)", got, len(attachment), err)
		}
	})

	t.Run("read-and-tags", func(t *testing.T) {
		b.SetT(t)
		// Opened before, so read; the button marks it unread again.
		b.Open("/messages/"+hostileID, "message")
		b.WaitFor(`document.getElementById('read-state').textContent === 'read'`)
		if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#mark-read`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`document.getElementById('read-state').textContent === 'unread'`)
		if err := chromedp.Do(b.Ctx(),
			chromedp.SetValue(chromedp.CSS(`#tags-input`), "orders, <b>bold</b>, orders"),
			chromedp.Click(chromedp.CSS(`#tags-save`))); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(`document.getElementById('action-state').textContent === 'Tags saved.'`)
		tags := web.Eval[[]string](b, `Array.from(document.querySelectorAll('#tags .tag')).map(e => e.textContent)`)
		if strings.Join(tags, "|") != "orders|<b>bold</b>" {
			t.Errorf("tags %q", tags)
		}
		_, vb := e.get(t, "/api/messages/"+hostileID+"/view")
		var v struct {
			Read bool     `json:"read"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(vb, &v); err != nil {
			t.Fatal(err)
		}
		if v.Read || len(v.Tags) != 2 {
			t.Errorf("stored read %v tags %q, want unread and two tags", v.Read, v.Tags)
		}
		noScript(t, b, "tags")
		b.Open("/live", "live")
		b.WaitFor(`document.getElementById('main').dataset.capture === 'yes'`)
		if c := web.Eval[string](b, `document.querySelector('#live-table tr[data-id="`+hostileID+`"]').className`); c != "unread" {
			t.Errorf("list row of the message marked unread has class %q", c)
		}
		// Opening it again marks it read again.
		b.Open("/messages/"+hostileID, "message")
		b.WaitFor(`document.getElementById('read-state').textContent === 'read'`)
	})

	t.Run("delete", func(t *testing.T) {
		b.SetT(t)
		b.Open("/messages/"+hostileID, "message")
		for range 2 { // the second click confirms
			if _, err := chromedp.Run(b.Ctx(), chromedp.Click(chromedp.CSS(`#delete`))); err != nil {
				t.Fatal(err)
			}
		}
		b.WaitFor(`location.pathname === '/' && document.getElementById('main').dataset.ready === 'messages' && document.getElementById('main').dataset.capture === 'yes'`)
		subjects := web.Eval[[]string](b, `Array.from(document.querySelectorAll('#live-table tbody tr .subject')).map(e => e.textContent)`)
		if strings.Join(subjects, "|") != "arrives live|earlier message" {
			t.Errorf("list after delete %q", subjects)
		}
		if resp, _ := e.get(t, "/api/messages/"+hostileID+"/view"); resp.StatusCode != 404 {
			t.Errorf("view of the deleted message: %d", resp.StatusCode)
		}
		noScript(t, b, "after delete")
	})
}
