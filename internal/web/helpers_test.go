package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// base is the time of the known records; now is a little later.
var base = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func testNow() time.Time { return base.Add(2 * time.Hour) }

// known returns the records the API tests search for.
func known() []*record.Record {
	tls := &record.TLS{Used: true, Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256"}
	return []*record.Record{
		{
			Type: record.TypeSession, Timestamp: base, End: base.Add(3 * time.Second), Source: record.SourceProxy,
			SessionID: "01SESSIONAAAAAAAAAAAAAAAAA", ClientIP: "203.0.113.45", Helo: "app.shop.example", TLS: tls,
			Auth: &record.Auth{Mechanism: "PLAIN", Username: "app@shop.example", Result: "success"}, Messages: 1,
			CloseReason: record.CloseQuit, DurationMS: 3000,
			Transcript: []record.TranscriptLine{
				{TMS: 0, Dir: "S", Line: "220 relay ESMTP"},
				{TMS: 1, Dir: "C", Line: "EHLO app.shop.example"},
				{TMS: 2, Dir: "C", Line: "AUTH PLAIN [redacted]"},
				{TMS: 3, Dir: "S", Line: "235 2.7.0 Authentication successful"},
			},
		},
		{
			Type: record.TypeMessage, Timestamp: base.Add(time.Second), Source: record.SourceProxy,
			SessionID: "01SESSIONAAAAAAAAAAAAAAAAA", ClientIP: "203.0.113.45", Helo: "app.shop.example",
			Username: "app@shop.example", MessageID: "<a1@shop.example>", Subject: "Invoice 42",
			MailFrom: record.Ptr("app@shop.example"), RcptTo: []string{"a@example.net", "b@example.org"},
			Status: record.StatusDeferred, SMTPResponse: "450 4.2.0 Mailbox full", ReplyCode: 450, EnhancedCode: "4.2.0",
			QueueID: "4QX7YV1XR7Z9", Size: 10240, TLS: tls, LatencyMS: 40,
			Transcript: []record.TranscriptLine{
				{TMS: 10, Dir: "C", Line: "MAIL FROM:<app@shop.example>"},
				{TMS: 11, Dir: "S", Line: "250 2.1.0 Ok"},
				{TMS: 12, Dir: "C", Line: "DATA"},
				{TMS: 13, Dir: "C", Line: "[10240 bytes of DATA]"},
				{TMS: 14, Dir: "S", Line: "450 4.2.0 Mailbox full"},
			},
		},
		{
			Type: record.TypeMessage, Timestamp: base.Add(time.Minute), Source: record.SourcePostfix,
			MessageID: "<n7@list.example>", Subject: "Weekly news", MailFrom: record.Ptr("news@list.example"),
			RcptTo: []string{"reader@example.org"}, Status: record.StatusSent, QueueID: "ABC123",
			Deliveries: []record.Delivery{{Timestamp: base.Add(time.Minute + time.Second), Rcpt: "reader@example.org",
				Status: "sent", Relay: "mx.example.org[192.0.2.7]:25", DSN: "2.0.0", SMTPResponse: "250 2.0.0 Ok", DelayS: 1.2}},
			LatencyMS: 900,
		},
		{
			Type: record.TypeMessage, Timestamp: base.Add(2 * time.Minute), Source: record.SourceProxy,
			SessionID: "01SESSIONBBBBBBBBBBBBBBBBB", ClientIP: "10.1.2.3", Helo: "bad.example",
			MessageID: "<r9@shop.example>", Subject: "Password reset", MailFrom: record.Ptr("app@shop.example"),
			RejectedRcpt: []record.Rejection{{Address: "x@bad.example", SMTPResponse: "550 5.7.1 Relay access denied"}},
			Status:       record.StatusRejected, SMTPResponse: "550 5.7.1 Relay access denied", ReplyCode: 550, EnhancedCode: "5.7.1",
			TLS: &record.TLS{Used: false}, LatencyMS: 5,
		},
		{
			Type: record.TypeSession, Timestamp: base.Add(2 * time.Minute), Source: record.SourceProxy,
			SessionID: "01SESSIONBBBBBBBBBBBBBBBBB", ClientIP: "10.1.2.3", Helo: "bad.example",
			Auth: &record.Auth{Mechanism: "LOGIN", Username: "guess", Result: "failure"}, CloseReason: record.CloseQuit,
		},
	}
}

// bulk returns n message records a second apart after base+1h, subject "bulk".
func bulk(n int) []*record.Record {
	out := make([]*record.Record, n)
	for i := range out {
		out[i] = &record.Record{
			Type: record.TypeMessage, Timestamp: base.Add(time.Hour + time.Duration(i)*time.Second), Source: record.SourceCapture,
			MailFrom: record.Ptr("bulk@bulk.example"), RcptTo: []string{"to@bulk.example"}, Subject: "bulk mail",
			Status: record.StatusAccepted, ReplyCode: 250, SMTPResponse: "250 2.0.0 Ok", TLS: &record.TLS{Used: true},
		}
	}
	return out
}

// openStore opens a real store in a temporary directory and fills it.
func openStore(t testing.TB, recs ...[]*record.Record) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "smtplog.db"), store.Options{Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	for _, rs := range recs {
		if err := st.Insert(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func newHandler(t testing.TB, cfg Config) *Handler {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = testNow
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

type req struct {
	method, path, body string
	header             map[string]string
	host               string
	remote             string // the client's address; httptest's default when ""
}

// do runs one request through h, on a loopback Host unless r.host is set.
func do(t testing.TB, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.Host = "127.0.0.1:8025"
	if r.host != "" {
		hr.Host = r.host
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

func decode[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	return v
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// readEvents parses an SSE stream into ch until it ends.
func readEvents(r io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[len("data: "):]
		}
	}
}
