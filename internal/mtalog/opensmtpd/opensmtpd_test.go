package opensmtpd

import (
	"flag"
	"path/filepath"
	"slices"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/record"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testdata = "../../../testdata/opensmtpd"

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

var fixtures = []string{"smtpd.log", "handwritten.log"}

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

// TestRealTraffic checks the records of the log a real OpenSMTPD 6.8 wrote
// for the traffic make-logs.sh sent.
func TestRealTraffic(t *testing.T) {
	recs, unparsed := correlate(t, readSyslog(t, "smtpd.log"))
	if len(unparsed) != 0 {
		t.Errorf("unparsed: %q", unparsed)
	}
	var mixed, one, null, bounce *record.Record
	var rejected, sessions, tlsErrors int
	for _, r := range recs {
		switch {
		case r.Type == record.TypeSession:
			sessions++
			if r.TLS != nil && r.TLS.Error != "" {
				tlsErrors++
			}
		case r.Status == record.StatusRejected:
			rejected++
			if len(r.RejectedRcpt) != 1 || r.ReplyCode != 550 || r.ClientIP != "127.0.0.1" {
				t.Errorf("rejection: %+v", r)
			}
		case slices.Contains(r.RcptTo, "dave@defer.test"):
			mixed = r
		case slices.Contains(r.RcptTo, "olivia@ok.test"):
			null = r
		case slices.Contains(r.RcptTo, "bob@ok.test"):
			one = r
		case r.MailFrom != nil && *r.MailFrom == "" && slices.Contains(r.RcptTo, "alice@ok.test"):
			bounce = r
		}
	}
	if one == nil || one.Status != record.StatusSent || one.Size == 0 || one.ClientIP != "127.0.0.1" || one.Deliveries[0].DSN != "2.0.0" || one.Deliveries[0].Relay != "localhost[127.0.0.1]" {
		t.Errorf("one: %+v", one)
	}
	if mixed == nil || mixed.Status != record.StatusBounced || len(mixed.RcptTo) != 4 || !slices.Contains(mixed.Flags, "incomplete") {
		t.Errorf("mixed: %+v", mixed)
	} else {
		want := map[string]string{"bob@ok.test": "sent", "carol@ok.test": "sent", "dave@defer.test": "deferred", "erin@bounce.test": "bounced"}
		for _, d := range mixed.Deliveries {
			if want[d.Rcpt] != d.Status {
				t.Errorf("mixed: %s is %s", d.Rcpt, d.Status)
			}
		}
	}
	if null == nil || *null.MailFrom != "" || null.Status != record.StatusSent {
		t.Errorf("null sender: %+v", null)
	}
	if bounce == nil || bounce.Status != record.StatusSent {
		t.Errorf("bounce report: %+v", bounce)
	}
	if rejected != 2 || tlsErrors < 2 || sessions < 8 {
		t.Errorf("rejected %d, TLS errors %d, sessions %d", rejected, tlsErrors, sessions)
	}
}

func TestHandwritten(t *testing.T) {
	recs, unparsed := correlate(t, readSyslog(t, "handwritten.log"))
	if len(unparsed) != 2 {
		t.Errorf("unparsed: %q", unparsed)
	}
	var msg, auth *record.Record
	for _, r := range recs {
		if r.QueueID == "1a2b3c4d" {
			msg = r
		}
		if r.Type == record.TypeSession && r.Auth != nil && r.Auth.Result == "failure" {
			auth = r
		}
	}
	if msg == nil || msg.Username != "alice" || msg.TLS == nil || msg.TLS.Version != "TLSv1.3" || msg.Status != record.StatusSent ||
		len(msg.Deliveries) != 2 || msg.Deliveries[1].Relay != "local" || msg.Deliveries[0].DelayS != 3 {
		t.Errorf("message: %+v", msg)
	}
	if auth == nil || auth.Auth.Username != "mallory" || auth.CloseReason != record.CloseQuit {
		t.Errorf("auth failure: %+v", auth)
	}
}

func TestDetect(t *testing.T) {
	if Detect(mtalog.Line{Program: "smtpd", Message: "0123456789abcdef smtp connected address=1.2.3.4 host=x"}) != 2 {
		t.Error("smtp connected")
	}
	if Detect(mtalog.Line{Program: "postfix/smtpd", Message: "connect from x[1.2.3.4]"}) != 0 {
		t.Error("postfix smtpd")
	}
	if Detect(mtalog.Line{Program: "smtpd", Message: "info: OpenSMTPD 6.8.0p2 starting"}) != 1 {
		t.Error("info line")
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
	mtalogtest.BenchmarkCorrelate(b, readSyslog(b, "smtpd.log"), NewCorrelator(Options{}))
}
