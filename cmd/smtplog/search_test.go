package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

func fillStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "smtplog.db")
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	recs := []record.Record{
		{Type: record.TypeMessage, Timestamp: now.Add(-time.Hour), Source: record.SourceProxy, SessionID: "S1", MessageID: "<a1@shop.example>",
			MailFrom: record.Ptr("app@shop.example"), RcptTo: []string{"x@dest.example"}, Status: "accepted",
			ReplyCode: 250, QueueID: "QA1", Subject: "=cmd|' /C calc'!A0", ClientIP: "10.0.0.7"},
		{Type: record.TypeMessage, Timestamp: now.Add(-50 * time.Minute), Source: record.SourcePostfix, Host: "mx", MessageID: "<a1@shop.example>", QueueID: "QA1",
			MailFrom: record.Ptr("app@shop.example"), RcptTo: []string{"x@dest.example"}, Status: "deferred",
			Deliveries: []record.Delivery{{Timestamp: now.Add(-49 * time.Minute), Rcpt: "x@dest.example", Status: "deferred", Relay: "mx.dest.example[192.0.2.7]:25", DSN: "4.2.0", SMTPResponse: "host said: 450 4.2.0 Mailbox full"}}},
		{Type: record.TypeMessage, Timestamp: now.Add(-10 * time.Minute), Source: record.SourceProxy, MessageID: "<b2@other.example>",
			MailFrom: record.Ptr("news@other.example"), RcptTo: []string{"y@dest.example"}, Status: "rejected", SMTPResponse: "550 5.7.1 Spam", ReplyCode: 550, EnhancedCode: "5.7.1", Subject: "hello\x1b[31m"},
	}
	for i := range recs {
		if err := st.Handle(ctx, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSearchCLI(t *testing.T) {
	db := fillStore(t)
	code, out, errOut := runCLI(t, nil, "search", "--db", db, "from:@shop.example after:-2h")
	if code != 0 || !strings.Contains(out, "<app@shop.example>") || strings.Contains(out, "other.example") {
		t.Fatalf("table: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, nil, "search", "--db", db, "--format", "json", "code:5xx")
	var r record.Record
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &r) != nil || r.MessageID != "<b2@other.example>" {
		t.Fatalf("json: %d %q", code, out)
	}
	_, out, _ = runCLI(t, nil, "search", "--db", db, "--format", "csv", "msgid:a1@shop.example source:proxy")
	if !strings.Contains(out, `'=cmd|`) {
		t.Errorf("CSV field not defused against formula injection:\n%s", out)
	}
	_, out, _ = runCLI(t, nil, "search", "--db", db, "status:rejected")
	if strings.ContainsRune(out, '\x1b') {
		t.Errorf("terminal escape in table output: %q", out)
	}
	code, _, errOut = runCLI(t, nil, "search", "--db", db, "form:x")
	if code != 2 || !strings.Contains(errOut, `"form:"`) || !strings.Contains(errOut, "^") {
		t.Errorf("bad query: %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "search", "--db", filepath.Join(t.TempDir(), "none.db"), "x")
	if code != 1 || !strings.Contains(errOut, "no store at") {
		t.Errorf("missing store: %d %q", code, errOut)
	}
}

func TestTraceCLI(t *testing.T) {
	db := fillStore(t)
	code, out, errOut := runCLI(t, nil, "trace", "--db", db, "<a1@shop.example>")
	if code != 0 {
		t.Fatalf("trace: %d %s", code, errOut)
	}
	for _, want := range []string{"queue ids:  QA1", "relay", "deferred to x@dest.example via mx.dest.example[192.0.2.7]:25: host said: 450 4.2.0 Mailbox full (dsn 4.2.0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, nil, "trace", "--db", db, "--format", "json", "QA1")
	var tr struct {
		Steps []struct{ Kind string } `json:"steps"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &tr) != nil || len(tr.Steps) != 3 {
		t.Errorf("json trace: %d %s", code, out)
	}
	code, _, errOut = runCLI(t, nil, "trace", "--db", db, "nothing-here")
	if code != 1 || !strings.Contains(errOut, "nothing recorded") {
		t.Errorf("unknown id: %d %q", code, errOut)
	}
}

func TestPruneCLI(t *testing.T) {
	db := fillStore(t)
	code, _, errOut := runCLI(t, nil, "prune", "--db", db)
	if code != 2 || !strings.Contains(errOut, "--older-than") {
		t.Errorf("prune without limits: %d %q", code, errOut)
	}
	code, out, errOut := runCLI(t, nil, "prune", "--db", db, "--older-than", "30m")
	if code != 0 || !strings.Contains(out, "deleted 2 records") {
		t.Fatalf("prune: %d %q %q", code, out, errOut)
	}
	_, out, _ = runCLI(t, nil, "search", "--db", db, "--format", "json", "type:message")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "<b2@other.example>") {
		t.Errorf("after prune: %q", out)
	}
}
