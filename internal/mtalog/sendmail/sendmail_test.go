package sendmail

import (
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/record"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testdata = "../../../testdata/sendmail"

func readSyslog(t testing.TB, file string) []mtalog.Line {
	return mtalogtest.ReadSyslog(t, testdata, file)
}

func correlate(t testing.TB, lines []mtalog.Line) ([]*record.Record, []string) {
	return mtalogtest.Correlate(NewCorrelator(Options{}), lines)
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	mtalogtest.Golden(t, filepath.Join(testdata, "golden", name), v, *update)
}

var fixtures = []string{"maillog"}

func TestGolden(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f, func(t *testing.T) {
			lines := readSyslog(t, f)
			recs, unparsed := correlate(t, lines)
			golden(t, f+".records.json", mtalogtest.NewResult(t, recs, unparsed))
			evs := mtalogtest.Events(lines, Parse)
			golden(t, f+".events.json", evs)
		})
	}
}

func TestMaillog(t *testing.T) {
	recs, unparsed := correlate(t, readSyslog(t, "maillog"))
	if len(unparsed) != 1 || !strings.Contains(unparsed[0], "never logs") {
		t.Errorf("unparsed: %q", unparsed)
	}
	byID := map[string]*record.Record{}
	var sessions []*record.Record
	var rejected []*record.Record
	for _, r := range recs {
		switch {
		case r.Type == record.TypeSession:
			sessions = append(sessions, r)
		case r.Status == record.StatusRejected:
			rejected = append(rejected, r)
		}
		if r.QueueID != "" {
			byID[r.QueueID] = r
		}
	}
	m := byID["4BTA0001002001"]
	if m == nil || m.Status != record.StatusBounced || m.Username != "alice" || m.TLS == nil || m.TLS.Version != "TLSv1.3" ||
		m.MessageID != "abc123@example.org" || len(m.Deliveries) != 5 || m.ClientIP != "192.0.2.10" ||
		m.UpstreamTLS == nil || m.UpstreamTLS.Trust != "Verified" || m.Deliveries[0].Relay != "mx.example.net[203.0.113.5]" ||
		m.Deliveries[1].SMTPResponse != "450 4.2.0 <carol@example.com>... Mailbox full, try again later" {
		t.Errorf("4BTA0001002001: %+v", m)
	}
	if b := byID["4BTA1A05002100"]; b == nil || !slices.Contains(b.Flags, "dsn") || b.Reason != "delivery status notification for 4BTA0001002001" {
		t.Errorf("bounce: %+v", b)
	}
	if e := byID["4BTA3100002303"]; e == nil || e.Status != record.StatusExpired || e.Deliveries[0].DelayS != 5*86400+1 {
		t.Errorf("expired: %+v", e)
	}
	if r := byID["4BTA2800002200"]; r == nil || r.Status != record.StatusRejected || len(r.RejectedRcpt) != 1 || r.ReplyCode != 550 || *r.MailFrom != "spammer@bad.example" {
		t.Errorf("relaying denied: %+v", r)
	}
	if l := byID["4BTA3000002301"]; l == nil || l.Status != record.StatusSent || len(l.RejectedRcpt) != 1 || l.Deliveries[0].Relay != "local" {
		t.Errorf("local: %+v", l)
	}
	if a := byID["4BTA2B00002203"]; a == nil || a.Status != record.StatusAborted || a.Reason == "" {
		t.Errorf("lost input channel: %+v", a)
	}
	if len(rejected) != 3 {
		t.Errorf("%d rejected records", len(rejected))
	}
	var authFail, tlsErr bool
	for _, s := range sessions {
		if s.Auth != nil && s.Auth.Result == "failure" && s.Auth.Username == "mallory" && s.Auth.Mechanism == "LOGIN" {
			authFail = true
		}
		if s.TLS != nil && s.TLS.Error != "" {
			tlsErr = true
		}
	}
	if !authFail || !tlsErr {
		t.Errorf("sessions: auth failure %v, TLS error %v", authFail, tlsErr)
	}
}

func TestDetect(t *testing.T) {
	if Detect(mtalog.Line{Program: "sm-mta", Message: "4BTA0001002001: from=<a@b>, size=1, class=0, nrcpts=1"}) != 2 {
		t.Error("from line")
	}
	if Detect(mtalog.Line{Program: "postfix/qmgr", Message: "4BTA0001002: from=<a@b>, size=1, nrcpt=1 (queue active)"}) != 0 {
		t.Error("postfix qmgr line")
	}
	if Detect(mtalog.Line{Program: "sendmail", Message: "starting daemon (8.17.1.9): SMTP+queueing@00:10:00"}) != 1 {
		t.Error("daemon line")
	}
}

func FuzzParse(f *testing.F) {
	var seeds []mtalog.Line
	for _, fx := range fixtures {
		seeds = append(seeds, readSyslog(f, fx)...)
	}
	mtalogtest.FuzzCorrelate(f, seeds, Parse, func() mtalog.Correlator { return NewCorrelator(Options{MaxOpen: 4}) })
}

func BenchmarkCorrelate(b *testing.B) {
	mtalogtest.BenchmarkCorrelate(b, readSyslog(b, "maillog"), NewCorrelator(Options{}))
}
