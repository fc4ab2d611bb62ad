package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

type searchResp struct {
	Query      string       `json:"query"`
	Records    []recordJSON `json:"records"`
	NextCursor string       `json:"next_cursor"`
}

func TestSearchOperators(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known())})
	A, N, R := "<a1@shop.example>", "<n7@list.example>", "<r9@shop.example>"
	for _, tc := range []struct {
		q    string
		want []string // Message-IDs, newest first
	}{
		{"", []string{R, N, A}},
		{"from:app@shop.example", []string{R, A}},
		{"from:@list.example", []string{N}},
		{"to:a@example.net", []string{A}},
		{"rcpt:x@bad.example", []string{R}},
		{"domain:example.org", []string{N, A}},
		{"status:deferred", []string{A}},
		{"code:5xx", []string{R}},
		{"code:450", []string{A}},
		{"code:4.2.0", []string{A}},
		{"msgid:a1@shop.example", []string{A}},
		{"msgid:<n7@list.example>", []string{N}},
		{"queue:ABC123", []string{N}},
		{"session:01SESSIONAAAAAAAAAAAAAAAAA", []string{A}},
		{"ip:10.0.0.0/8", []string{R}},
		{"ip:203.0.113.45", []string{A}},
		{"user:app@shop.example", []string{A}},
		{"helo:bad.example", []string{R}},
		{"tls:yes", []string{A}},
		{"source:postfix", []string{N}},
		{`subject:"invoice"`, []string{A}},
		{"invoice", []string{A}},
		{`"relay access"`, []string{R}},
		{"-status:deferred", []string{R, N}},
		{"status:sent OR status:rejected", []string{R, N}},
		{"after:2026-11-29T10:00:30Z", []string{R, N}},
		{"before:2026-11-29T10:00:30Z", []string{A}},
		{"status:bounced", nil},
	} {
		w := do(t, h, req{path: "/api/search?q=" + url.QueryEscape(tc.q)})
		if w.Code != http.StatusOK {
			t.Errorf("%q: status %d: %s", tc.q, w.Code, w.Body)
			continue
		}
		res := decode[searchResp](t, w)
		var got []string
		for _, r := range res.Records {
			got = append(got, r.MessageID)
			if r.ID == "" || r.Type != record.TypeMessage {
				t.Errorf("%q: record without id or not a message: %+v", tc.q, r)
			}
			if len(r.Transcript) != 0 {
				t.Errorf("%q: search results carry transcripts", tc.q)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.q, got, tc.want)
		}
	}

	// type:session lists sessions instead of messages.
	res := decode[searchResp](t, do(t, h, req{path: "/api/search?q=type:session"}))
	if len(res.Records) != 2 || res.Records[0].Type != record.TypeSession {
		t.Errorf("type:session: got %+v", res.Records)
	}
}

func TestSearchPaging(t *testing.T) {
	const n = 53
	h := newHandler(t, Config{Store: openStore(t, known(), bulk(n))})
	var got []string
	cursor := ""
	pages := 0
	for {
		w := do(t, h, req{path: "/api/search?q=subject:bulk&limit=10&cursor=" + url.QueryEscape(cursor)})
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		res := decode[searchResp](t, w)
		pages++
		for _, r := range res.Records {
			got = append(got, r.ID)
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != n || pages != 6 {
		t.Fatalf("got %d records in %d pages, want %d in 6", len(got), pages, n)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("record %s twice", id)
		}
		seen[id] = true
	}
	// Newest first, and stable while records arrive: a new newest record
	// does not shift the second page.
	first := decode[searchResp](t, do(t, h, req{path: "/api/search?q=subject:bulk&limit=10"}))
	st := h.cfg.Store.(interface {
		Handle(context.Context, *record.Record) error
	})
	if err := st.Handle(context.Background(), bulk(1)[0]); err != nil {
		t.Fatal(err)
	}
	second := decode[searchResp](t, do(t, h, req{path: "/api/search?q=subject:bulk&limit=10&cursor=" + url.QueryEscape(first.NextCursor)}))
	if second.Records[0].ID != got[10] {
		t.Errorf("second page starts with %s after an insert, want %s", second.Records[0].ID, got[10])
	}

	for _, bad := range []string{"limit=0", "limit=x", "cursor=nonsense", "cursor=" + url.QueryEscape("!!!")} {
		if w := do(t, h, req{path: "/api/search?" + bad}); w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, w.Code)
		}
	}
	if res := decode[searchResp](t, do(t, h, req{path: "/api/search?limit=5000"})); len(res.Records) != n+1+3 {
		t.Errorf("limit=5000 gave %d records", len(res.Records))
	}
}

func TestSearchQueryError(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known())})
	for _, tc := range []struct {
		q     string
		pos   int
		token string
	}{
		{"frm:x", 1, "frm:"},
		{"status:deferred code:99", 22, "99"},
		{"from:a (status:sent", 8, "("},
		{"é status:nope", 10, "nope"},
	} {
		w := do(t, h, req{path: "/api/search?q=" + url.QueryEscape(tc.q)})
		if w.Code != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", tc.q, w.Code)
			continue
		}
		e := decode[apiError](t, w)
		if e.Position != tc.pos || e.Offset == nil || !strings.Contains(e.Error, "query") {
			t.Errorf("%q: got %+v, want position %d", tc.q, e, tc.pos)
		}
		if e.Token != tc.token {
			t.Errorf("%q: token %q, want %q", tc.q, e.Token, tc.token)
		}
		if w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%q: content type %q", tc.q, w.Header().Get("Content-Type"))
		}
	}
}

type messageResp struct {
	Record     recordJSON              `json:"record"`
	Deliveries []record.Delivery       `json:"deliveries"`
	Transcript []record.TranscriptLine `json:"transcript"`
	Session    *recordJSON             `json:"session"`
}

func idOf(t *testing.T, h http.Handler, q string) string {
	t.Helper()
	res := decode[searchResp](t, do(t, h, req{path: "/api/search?q=" + url.QueryEscape(q)}))
	if len(res.Records) != 1 {
		t.Fatalf("%q: %d records", q, len(res.Records))
	}
	return res.Records[0].ID
}

func TestMessageAndSession(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known())})
	id := idOf(t, h, "msgid:a1@shop.example")
	w := do(t, h, req{path: "/api/messages/" + id})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	m := decode[messageResp](t, w)
	if m.Record.ID != id || m.Record.Subject != "Invoice 42" || len(m.Transcript) != 5 || m.Record.Transcript != nil {
		t.Errorf("message: %+v", m)
	}
	if m.Session == nil || m.Session.Type != record.TypeSession || m.Session.Auth == nil || m.Session.Auth.Result != "success" {
		t.Errorf("message's session: %+v", m.Session)
	}
	if m.Deliveries == nil {
		t.Error("deliveries is null, want []")
	}

	nid := idOf(t, h, "msgid:n7@list.example")
	m = decode[messageResp](t, do(t, h, req{path: "/api/messages/" + nid}))
	if len(m.Deliveries) != 1 || m.Deliveries[0].Relay != "mx.example.org[192.0.2.7]:25" || m.Session != nil {
		t.Errorf("postfix message: %+v", m)
	}

	for path, code := range map[string]int{
		"/api/messages/999999":       404,
		"/api/messages/abc":          400,
		"/api/messages/-1":           400,
		"/api/messages/1e3":          400,
		"/api/sessions/NOSUCH":       404,
		"/api/nonsense":              404,
		"/api/sessions/%00":          400,
		"/api/sessions/" + "..%2F..": 404,
	} {
		if w := do(t, h, req{path: path}); w.Code != code || !strings.HasPrefix(w.Body.String(), `{"error":`) {
			t.Errorf("%s: %d %s, want %d with a JSON error", path, w.Code, w.Body, code)
		}
	}
	if w := do(t, h, req{method: "PUT", path: "/api/search"}); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") == "" {
		t.Errorf("PUT /api/search: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}

	w = do(t, h, req{path: "/api/sessions/01SESSIONAAAAAAAAAAAAAAAAA"})
	if w.Code != http.StatusOK {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}
	s := decode[struct {
		Record   *recordJSON  `json:"record"`
		Messages []recordJSON `json:"messages"`
	}](t, w)
	if s.Record == nil || len(s.Record.Transcript) != 4 || len(s.Messages) != 1 || s.Messages[0].ID != id {
		t.Errorf("session: %+v", s)
	}
	if !strings.Contains(w.Body.String(), "AUTH PLAIN [redacted]") {
		t.Error("session transcript lacks the redacted AUTH line")
	}
}

type statsResp struct {
	BucketSeconds int64              `json:"bucket_seconds"`
	Series        []map[string]any   `json:"series"`
	Totals        map[string]int64   `json:"totals"`
	ByStatus      map[string]int64   `json:"by_status"`
	Rates         map[string]float64 `json:"rates"`
	Classes       map[string]int64   `json:"classes"`
	Codes         []countJSON        `json:"codes"`
	TopSenders    []countJSON        `json:"top_senders"`
	TopRcptDom    []countJSON        `json:"top_recipient_domains"`
	TLS           map[string]float64 `json:"tls"`
	Auth          map[string]int64   `json:"auth"`
	Latency       map[string]float64 `json:"latency_ms"`
}

func TestStats(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known())})
	w := do(t, h, req{path: "/api/stats?from=2026-11-29T09:00:00Z&to=2026-11-29T12:00:00Z&bucket=1h"})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	s := decode[statsResp](t, w)
	if s.BucketSeconds != 3600 || len(s.Series) != 3 || s.Totals["messages"] != 3 || s.Totals["sessions"] != 2 {
		t.Errorf("totals: %+v", s)
	}
	if s.ByStatus["deferred"] != 1 || s.ByStatus["sent"] != 1 || s.ByStatus["rejected"] != 1 {
		t.Errorf("by status: %v", s.ByStatus)
	}
	if s.Classes["4xx"] != 1 || s.Classes["5xx"] != 1 || s.Auth["failures"] != 1 {
		t.Errorf("classes %v auth %v", s.Classes, s.Auth)
	}
	if s.Series[1]["total"].(float64) != 3 || s.Series[1]["deferred"].(float64) != 1 {
		t.Errorf("series: %v", s.Series)
	}
	if len(s.TopSenders) == 0 || s.TopSenders[0] != (countJSON{"app@shop.example", 2}) {
		t.Errorf("top senders: %v", s.TopSenders)
	}
	if s.Rates["deferral"] != 0.3333 || s.Latency["p50"] != 40 {
		t.Errorf("rates %v latency %v", s.Rates, s.Latency)
	}

	// Relative times and the default range (the last 24 hours).
	for _, p := range []string{"", "?from=-3h", "?from=2026-11-29&to=2026-11-30"} {
		w := do(t, h, req{path: "/api/stats" + p})
		if w.Code != http.StatusOK || decode[statsResp](t, w).Totals["messages"] != 3 {
			t.Errorf("%q: %d %s", p, w.Code, w.Body)
		}
	}
	for _, p := range []string{"?from=yesterday", "?from=-1h&to=-2h", "?bucket=1ms", "?from=-1000d", "?bucket=1s&from=-7d", "?to=a%20b"} {
		if w := do(t, h, req{path: "/api/stats" + p}); w.Code != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", p, w.Code)
		}
	}
}

func TestTrace(t *testing.T) {
	st := openStore(t, known())
	h := newHandler(t, Config{Store: st})
	if w := do(t, h, req{path: "/api/trace/%3Ca1@shop.example%3E"}); w.Code != http.StatusNotImplemented {
		t.Errorf("nil tracer: %d", w.Code)
	}
	var gotID string
	h = newHandler(t, Config{Store: st, Tracer: TracerFunc(func(ctx context.Context, id string) (any, error) {
		gotID = id
		if id == "nope" {
			return nil, fmt.Errorf("trace: %w", ErrNotFound)
		}
		if id == "boom" {
			return nil, errors.New("secret internal detail")
		}
		return map[string]any{"id": id, "steps": []any{}}, nil
	})})
	w := do(t, h, req{path: "/api/trace/%3Ca%2Fb@shop.example%3E"})
	if w.Code != http.StatusOK || gotID != "<a/b@shop.example>" {
		t.Errorf("trace: %d %s, tracer got %q", w.Code, w.Body, gotID)
	}
	if w := do(t, h, req{path: "/api/trace/nope"}); w.Code != http.StatusNotFound {
		t.Errorf("unknown id: %d", w.Code)
	}
	if w := do(t, h, req{path: "/api/trace/boom"}); w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("tracer error: %d %s", w.Code, w.Body)
	}
}

func TestHealthReadyPrune(t *testing.T) {
	st := openStore(t, known(), bulk(5))
	ready := errors.New("listener not up")
	h := newHandler(t, Config{Store: st, Ready: []Check{{Name: "smtp", Check: func(context.Context) error { return ready }}}})
	if w := do(t, h, req{path: "/api/health"}); w.Code != 200 || !strings.Contains(w.Body.String(), `"ok"`) {
		t.Errorf("health: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, req{path: "/api/ready"}); w.Code != 503 || !strings.Contains(w.Body.String(), "listener not up") {
		t.Errorf("ready: %d %s", w.Code, w.Body)
	}
	ready = nil
	if w := do(t, h, req{path: "/api/ready"}); w.Code != 200 {
		t.Errorf("ready: %d %s", w.Code, w.Body)
	}
	js := map[string]string{"Content-Type": "application/json"}
	for body, code := range map[string]int{
		`{}`:                  400,
		`{"before":"soon"}`:   400,
		`{"bogus":1}`:         400,
		`{"max_bytes":-1}`:    400,
		`{"before":"-1h"} {}`: 400,
	} {
		if w := do(t, h, req{method: "POST", path: "/api/prune", body: body, header: js}); w.Code != code {
			t.Errorf("prune %s: %d %s, want %d", body, w.Code, w.Body, code)
		}
	}
	if w := do(t, h, req{method: "POST", path: "/api/prune", body: `{"before":"x"}`}); w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("prune without JSON content type: %d", w.Code)
	}
	// The known records are older than base+30m; the bulk ones are not.
	w := do(t, h, req{method: "POST", path: "/api/prune", body: `{"before":"2026-11-29T10:30:00Z"}`, header: js})
	if w.Code != 200 || decode[map[string]int64](t, w)["deleted"] != 5 {
		t.Errorf("prune: %d %s", w.Code, w.Body)
	}
}

func TestStream(t *testing.T) {
	hub := NewHub(HubOptions{})
	h := newHandler(t, Config{Store: openStore(t), Hub: hub, Keepalive: 50 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()

	if w := do(t, h, req{path: "/api/stream?q=" + url.QueryEscape("frm:x")}); w.Code != 400 || decode[apiError](t, w).Position != 1 {
		t.Errorf("bad stream query: %d %s", w.Code, w.Body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/stream?q="+url.QueryEscape("status:deferred"), nil)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("stream without security headers")
	}
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)
	for hub.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	recs := known()
	for _, r := range recs {
		if err := hub.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var ev sseEvent
	select {
	case ev = <-events:
	case <-ctx.Done():
		t.Fatal("no event")
	}
	if ev.name != "record" || !strings.Contains(ev.data, `"message_id":"\u003ca1@shop.example\u003e"`) {
		t.Errorf("event %+v", ev)
	}
	// Only the deferred record matched: the next event, if any, is not a record.
	select {
	case ev := <-events:
		if ev.name == "record" {
			t.Errorf("a record that does not match the filter was sent: %s", ev.data)
		}
	case <-time.After(200 * time.Millisecond):
	}
	// Shutting the handler down ends the stream.
	h.Close()
	for range events {
	}
}

func TestSlowConsumer(t *testing.T) {
	hub := NewHub(HubOptions{Buffer: 4})
	h := newHandler(t, Config{Store: openStore(t), Hub: hub})
	srv := httptest.NewServer(h)
	defer srv.Close()

	// A subscriber that never reads: the writer must not wait for it.
	idle, err := hub.Subscribe(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// An HTTP client that connects and stops reading.
	resp, err := http.Get(srv.URL + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for hub.Subscribers() < 2 {
		time.Sleep(time.Millisecond)
	}
	r := known()[1]
	r.Subject = strings.Repeat("x", 4000)
	const n = 5000
	start := time.Now()
	for range n {
		if err := hub.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 20*time.Second { // blocking would hang; this bound is loose for -race
		t.Errorf("%d records took %v with slow consumers", n, d)
	}
	if got := idle.TakeDropped(); got != n-4 {
		t.Errorf("idle subscriber dropped %d, want %d", got, n-4)
	}
	// The HTTP client, reading at last, is told about its losses.
	events := make(chan sseEvent, 64)
	go readEvents(resp.Body, events)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.name == "dropped" {
				if !strings.Contains(ev.data, `"dropped":`) {
					t.Errorf("dropped event %q", ev.data)
				}
				return
			}
		case <-timeout:
			t.Fatal("no dropped event")
		}
	}
}

func TestHubLimits(t *testing.T) {
	hub := NewHub(HubOptions{MaxSubscribers: 2})
	a, _ := hub.Subscribe(nil)
	if _, err := hub.Subscribe(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Subscribe(nil); !errors.Is(err, ErrTooManySubscribers) {
		t.Errorf("third subscriber: %v", err)
	}
	a.Close()
	a.Close() // twice is fine
	if _, err := hub.Subscribe(nil); err != nil {
		t.Errorf("after a Close: %v", err)
	}
	hub.Close()
	if _, err := hub.Subscribe(nil); !errors.Is(err, ErrHubClosed) {
		t.Errorf("after hub Close: %v", err)
	}
	if err := hub.Handle(context.Background(), known()[1]); err != nil {
		t.Error(err)
	}
}

// TestHostileQueries: FTS operators, quotes, SQL fragments and huge
// queries answer 200 or 400, never 500 (W-09).
func TestHostileQueries(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known())})
	qs := []string{
		`'`, `"`, `"unterminated`, `a' OR 1=1 --`, `NEAR(a b)`, `a NEAR b`, `"a" AND "b"`, `*`, `a*`, `**`, `^a`,
		`subject:"; DROP TABLE records; --"`, `msgid:../../etc/passwd`, `session:%2e%2e%2f`, `ip:::ffff:127.0.0.1`,
		`ip:0x7f000001`, `from:"\"" to:\`, `()`, `(((((((((((((((((((((((((((((((((((a`, `-`, `--a`, `OR`, `a OR`,
		`code:5.x.x`, `after:-99999999d`, `before:9999-99-99`, "\x00", "nul\x00byte", "\xff\xfe",
		strings.Repeat("a ", 5000), strings.Repeat("from:a ", 100), strings.Repeat("x", 10000),
	}
	for _, q := range qs {
		w := do(t, h, req{path: "/api/search?q=" + url.QueryEscape(q)})
		if w.Code != 200 && w.Code != 400 {
			t.Errorf("%q: %d %s", q, w.Code, w.Body)
		}
	}
}
