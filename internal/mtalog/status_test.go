package mtalog

import (
	"testing"

	"github.com/smtplog/smtplog/internal/record"
)

func TestSplitReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		enh  string
	}{
		{"550 5.7.1 Relaying denied", 550, "5.7.1"},
		{"450-4.2.0 Mailbox full", 450, "4.2.0"},
		{"250 2.0.0\nOk", 250, "2.0.0"},
		{"250 Ok", 250, ""},
		{"550 4.7.1 class mismatch", 550, ""},
		{"550 5.1234.1 too long", 550, ""},
		{"550  5.7.1", 550, ""},
		{"550", 550, ""},
		{"650 6.0.0 no such class", 0, ""},
		{"55", 0, ""},
		{"5500 x", 0, ""},
		{"", 0, ""},
	} {
		code, enh := SplitReply(tc.in)
		if code != tc.code || enh != tc.enh {
			t.Errorf("SplitReply(%q) = %d %q, want %d %q", tc.in, code, enh, tc.code, tc.enh)
		}
	}
}

func TestWorstLatest(t *testing.T) {
	ds := []record.Delivery{
		{Rcpt: "a", Status: record.StatusDeferred, SMTPResponse: "450 4.2.0 full"},
		{Rcpt: "b", Status: record.StatusSent},
		{Rcpt: "a", Status: record.StatusSent, SMTPResponse: "250 2.0.0 ok"},
		{Rcpt: "c", Status: record.StatusBounced, DSN: "5.1.1"},
	}
	i := WorstLatest(ds, nil)
	if i != 3 {
		t.Fatalf("WorstLatest = %d, want 3 (c bounced)", i)
	}
	var r record.Record
	SetOutcome(&r, ds[i])
	if r.Status != record.StatusBounced || r.EnhancedCode != "5.1.1" || r.ReplyCode != 0 {
		t.Errorf("SetOutcome: %+v", r)
	}
	if i := WorstLatest(ds[:3], nil); i != 2 {
		t.Errorf("equally bad: WorstLatest = %d, want the last (2)", i)
	}
	if WorstLatest(nil, nil) != -1 {
		t.Error("empty: want -1")
	}
}
