package exim

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/record"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testdata = "../../../testdata/exim"

// readRaw reads Exim's own log files and merges them in time order, each
// entry keeping its continuation lines (as the dispatcher merges files).
func readRaw(t testing.TB, files ...string) []mtalog.Line {
	t.Helper()
	type entry struct {
		t     time.Time
		lines []mtalog.Line
	}
	var entries []entry
	for _, f := range files {
		p := f
		if !filepath.IsAbs(p) {
			p = filepath.Join(testdata, f)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			l, _ := LineFromRaw(sc.Text(), f, time.UTC)
			if l.Time.IsZero() && len(entries) > 0 {
				last := &entries[len(entries)-1]
				last.lines = append(last.lines, l)
				continue
			}
			entries = append(entries, entry{l.Time, []mtalog.Line{l}})
		}
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return a.t.Compare(b.t) })
	var out []mtalog.Line
	for _, e := range entries {
		out = append(out, e.lines...)
	}
	return out
}

func readSyslog(t testing.TB, file string) []mtalog.Line {
	return mtalogtest.ReadSyslog(t, testdata, file)
}

func correlate(t testing.TB, lines []mtalog.Line) ([]*record.Record, []string) {
	return mtalogtest.Correlate(NewCorrelator(Options{Host: "mx.example.test", Location: time.UTC}), lines)
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	mtalogtest.Golden(t, filepath.Join(testdata, "golden", name), v, *update)
}

var cases = []struct {
	name  string
	lines func(t testing.TB) []mtalog.Line
}{
	{"default", func(t testing.TB) []mtalog.Line { return readRaw(t, "default/mainlog", "default/rejectlog") }},
	{"all", func(t testing.TB) []mtalog.Line { return readRaw(t, "all/mainlog", "all/rejectlog") }},
	{"handwritten", func(t testing.TB) []mtalog.Line { return readRaw(t, "handwritten/mainlog") }},
	{"syslog", func(t testing.TB) []mtalog.Line { return readSyslog(t, "handwritten/syslog") }},
}

func TestGoldenRecords(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs, unparsed := correlate(t, tc.lines(t))
			res := mtalogtest.NewResult(t, recs, unparsed)
			golden(t, tc.name+".records.json", res)
		})
	}
}

func TestGoldenEvents(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := mtalogtest.Events(tc.lines(t), Parse)
			golden(t, tc.name+".events.json", evs)
		})
	}
}

// byQueueID indexes message records.
func byQueueID(recs []*record.Record) map[string]*record.Record {
	m := map[string]*record.Record{}
	for _, r := range recs {
		if r.Type == record.TypeMessage && r.QueueID != "" {
			m[r.QueueID] = r
		}
	}
	return m
}

func find(recs []*record.Record, f func(*record.Record) bool) *record.Record {
	for _, r := range recs {
		if f(r) {
			return r
		}
	}
	return nil
}

func hasRcpt(r *record.Record, a string) bool { return slices.Contains(r.RcptTo, a) }

// TestRealTraffic checks the records of the logs a real Exim wrote for the
// traffic make-logs.sh sent, in both log_selector variants.
func TestRealTraffic(t *testing.T) {
	for _, variant := range []string{"default", "all"} {
		t.Run(variant, func(t *testing.T) {
			recs, unparsed := correlate(t, readRaw(t, variant+"/mainlog", variant+"/rejectlog"))
			checkRealTraffic(t, recs, unparsed)
		})
	}
}

func checkRealTraffic(t *testing.T, recs []*record.Record, unparsed []string) {
	t.Helper()
	for _, u := range unparsed {
		if !strings.Contains(u, "Warning: purging the environment") && !strings.Contains(u, "Suggested action") {
			t.Errorf("unparsed line: %s", u)
		}
	}
	msg := func(subject string) *record.Record {
		r := find(recs, func(r *record.Record) bool { return r.Type == record.TypeMessage && r.Subject == subject })
		if r == nil {
			t.Fatalf("no message record with subject %q", subject)
		}
		return r
	}
	one := msg("hello one")
	if one.Status != record.StatusSent || one.MessageID != "one@client.example.test" || *one.MailFrom != "alice@ok.test" ||
		one.Helo != "client.example.test" || one.ClientIP != "127.0.0.1" || len(one.Deliveries) != 1 ||
		one.Deliveries[0].Rcpt != "bob@ok.test" || one.Deliveries[0].DSN != "2.0.0" || one.Size == 0 {
		t.Errorf("hello one: %+v", one)
	}
	mixed := msg("mixed")
	if mixed.Status != record.StatusBounced || len(mixed.RcptTo) != 4 {
		t.Errorf("mixed: status %q rcpts %v", mixed.Status, mixed.RcptTo)
	}
	want := map[string]string{"bob@ok.test": "sent", "carol@ok.test": "sent", "dave@defer.test": "deferred", "erin@bounce.test": "bounced"}
	for _, d := range mixed.Deliveries {
		if want[d.Rcpt] != d.Status {
			t.Errorf("mixed: %s is %s, want %s", d.Rcpt, d.Status, want[d.Rcpt])
		}
		if d.Rcpt == "erin@bounce.test" && (d.DSN != "5.3.0" || !strings.HasPrefix(d.SMTPResponse, "500 5.3.0")) {
			t.Errorf("mixed: erin: %+v", d)
		}
	}
	// The bounce message names its parent.
	dsn := find(recs, func(r *record.Record) bool {
		return r.Reason == "delivery status notification for "+mixed.QueueID
	})
	if dsn == nil || dsn.MailFrom == nil || *dsn.MailFrom != "" || dsn.Status != record.StatusSent {
		t.Errorf("bounce of %s: %+v", mixed.QueueID, dsn)
	}
	if a := msg("authenticated"); a.Username != "alice" || a.TLS == nil || a.TLS.Version != "TLSv1.3" {
		t.Errorf("authenticated: %+v tls %+v", a, a.TLS)
	}
	// The TLS hop: outbound certificate verified, inbound copy over TLS.
	hops := 0
	for _, r := range recs {
		if r.Subject != "tls hop" {
			continue
		}
		hops++
		if r.UpstreamTLS != nil && (r.UpstreamTLS.Trust != "Verified" || r.UpstreamTLS.PeerCert != "CN=mx.example.test") {
			t.Errorf("tls hop upstream: %+v", r.UpstreamTLS)
		}
		if r.TLS != nil && r.TLS.Trust != "Anonymous" {
			t.Errorf("tls hop inbound: %+v", r.TLS)
		}
	}
	if hops != 2 {
		t.Errorf("tls hop: %d records, want 2", hops)
	}
	if c := msg("cutthrough"); c.Status != record.StatusSent || c.MailFrom == nil {
		t.Errorf("cutthrough: %+v", c)
	}
	exp := msg("will expire")
	if exp.Status != record.StatusExpired || exp.Deliveries[len(exp.Deliveries)-1].Status != record.StatusExpired {
		t.Errorf("will expire: %+v", exp)
	}
	if n := msg("null sender"); n.MailFrom == nil || *n.MailFrom != "" {
		t.Errorf("null sender: %+v", n)
	}
	if f := msg("fake"); f.Status != record.StatusSent || f.Deliveries[0].SMTPResponse != "delivery bypassed by -N option" {
		t.Errorf("fake: %+v", f)
	}
	// Rejections: two RCPT, one MAIL, one after DATA (with rejectlog's
	// headers, and once although both logs have it).
	var rcpt, mail, data int
	for _, r := range recs {
		if r.Status != record.StatusRejected {
			continue
		}
		switch r.Reason {
		case "rejected RCPT":
			rcpt++
			if len(r.RejectedRcpt) != 1 || r.RejectedRcpt[0].SMTPResponse != "relay not permitted" {
				t.Errorf("rcpt reject: %+v", r)
			}
		case "rejected MAIL":
			mail++
			if *r.MailFrom != "spammer@bad.test" {
				t.Errorf("mail reject: %+v", r)
			}
		case "rejected after DATA":
			data++
			if r.Subject != "REJECTME now" || !hasRcpt(r, "bob@ok.test") || r.MessageID == "" || r.QueueID == "" {
				t.Errorf("data reject: %+v", r)
			}
		}
	}
	if rcpt != 2 || mail != 1 || data != 1 {
		t.Errorf("rejections: rcpt %d mail %d data %d, want 2 1 1", rcpt, mail, data)
	}
	// Sessions: the failed AUTH and the failed TLS handshake.
	auth := find(recs, func(r *record.Record) bool {
		return r.Type == record.TypeSession && r.Auth != nil && r.Auth.Result == "failure"
	})
	if auth == nil || auth.Auth.Username != "alice" || auth.Auth.Mechanism != "PLAIN" || auth.Helo != "badauth.example.test" {
		t.Errorf("auth failure session: %+v", auth)
	}
	tlsErr := find(recs, func(r *record.Record) bool { return r.Type == record.TypeSession && r.TLS != nil && r.TLS.Error != "" })
	if tlsErr == nil || tlsErr.Helo != "broken-tls.example.test" {
		t.Errorf("TLS error session: %+v", tlsErr)
	}
	// Every message record that arrived has a mail_from.
	for id, r := range byQueueID(recs) {
		if r.Status != record.StatusRejected && r.MailFrom == nil {
			t.Errorf("%s: no mail_from: %+v", id, r)
		}
	}
}

func TestQueueID(t *testing.T) {
	for s, want := range map[string]bool{
		"1rAbCd-000123-Ab":        true,
		"1rAbCd-00000000123-Ab":   true,
		"1vAbCe-00000000ZmQ-3Ivj": true,
		"1rAbCd-000123-A":         false,
		"1rAbCd-0001-Ab":          false,
		"1rAbC!-000123-Ab":        false,
		"":                        false,
		"1rAbCd-000123-Ab-x":      false,
	} {
		if got := IsQueueID(s); got != want {
			t.Errorf("IsQueueID(%q) = %v", s, got)
		}
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		l    mtalog.Line
		want int
	}{
		{mtalog.Line{Program: "exim", Message: "1rAbCd-000123-Ab <= a@b H=x [1.2.3.4] P=esmtp S=1"}, 2},
		{mtalog.Line{Message: "2026-01-01 00:00:00 1rAbCd-000123-Ab Completed"}, 2},
		{mtalog.Line{Message: "1rAbCd-00000000123-AbCd => a@b R=r T=t"}, 2},
		{mtalog.Line{Program: "exim4", Message: "Start queue run: pid=1"}, 1},
		{mtalog.Line{Program: "postfix/smtpd", Message: "connect from x[1.2.3.4]"}, 0},
		{mtalog.Line{Program: "sm-mta", Message: "abc: from=<a>, size=1"}, 0},
	} {
		if got := Detect(tc.l); got != tc.want {
			t.Errorf("Detect(%+v) = %d, want %d", tc.l, got, tc.want)
		}
	}
}

func TestLineFromRaw(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	l, err := LineFromRaw("2026-11-29 10:12:34.123 [4242] 1rAbCd-000123-Ab Completed", "mainlog", berlin)
	if err != nil || l.PID != 4242 || l.Message != "1rAbCd-000123-Ab Completed" ||
		!l.Time.Equal(time.Date(2026, 11, 29, 9, 12, 34, 123e6, time.UTC)) || l.Program != "exim" {
		t.Errorf("got %+v, %v", l, err)
	}
	l, err = LineFromRaw("2026-11-29 10:12:34 +0200 x", "mainlog", berlin)
	if err != nil || !l.Time.Equal(time.Date(2026, 11, 29, 8, 12, 34, 0, time.UTC)) {
		t.Errorf("zone: got %+v, %v", l, err)
	}
	if _, err := LineFromRaw("Nov 29 10:12:34 host postfix/smtpd[1]: x", "", nil); err == nil {
		t.Errorf("syslog line accepted as raw exim")
	}
	if l, err := LineFromRaw("\tby mx.example.test", "", nil); err != nil || !l.Time.IsZero() {
		t.Errorf("continuation: %+v %v", l, err)
	}
}

// TestBounded checks that open state stays within MaxOpen and that flushed
// messages are flagged incomplete.
func TestBounded(t *testing.T) {
	c := NewCorrelator(Options{MaxOpen: 100})
	var n, incomplete int
	emit := func(r *record.Record) {
		n++
		if slices.Contains(r.Flags, "incomplete") {
			incomplete++
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ {
		id := "1rAbCd-" + strconv.FormatInt(100000+int64(i), 10) + "-Ab"
		l := mtalog.Line{Time: base.Add(time.Duration(i) * time.Second), Message: id + " <= a@b.example H=(x) [192.0.2.1] P=esmtp S=10"}
		if !c.Feed(l, emit) {
			t.Fatal("arrival not understood")
		}
		if len(c.msgs) > 100 {
			t.Fatalf("%d messages open", len(c.msgs))
		}
	}
	c.Flush(base.Add(990*time.Second), emit)
	if len(c.msgs) > 10 {
		t.Errorf("%d open after idle flush", len(c.msgs))
	}
	c.Flush(time.Time{}, emit)
	if n != 1000 || incomplete != 1000 {
		t.Errorf("emitted %d, incomplete %d", n, incomplete)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range cases {
		for _, l := range tc.lines(f) {
			f.Add(l.Message)
		}
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ev, err := Parse(msg)
		if err == nil && ev.Kind == KindUnknown {
			t.Fatalf("no error for unknown line %q", msg)
		}
		c := NewCorrelator(Options{MaxOpen: 4})
		emit := func(*record.Record) {}
		l, _ := LineFromRaw(msg, "fuzz", time.UTC)
		c.Feed(l, emit)
		c.Feed(mtalog.Line{Message: msg}, emit)
		c.Flush(time.Time{}, emit)
	})
}

func BenchmarkCorrelate(b *testing.B) {
	mtalogtest.BenchmarkCorrelate(b, readRaw(b, "all/mainlog", "all/rejectlog"), NewCorrelator(Options{}))
}

func BenchmarkParse(b *testing.B) {
	lines := readRaw(b, "all/mainlog")
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			_, _ = Parse(l.Message)
		}
	}
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}

// TestOwnFileHost: lines of Exim's own files carry no host, so their
// records have the host of Options.Host, or none (omitted from the JSON)
// as the pipeline's correlators are made; syslog lines keep their own.
func TestOwnFileHost(t *testing.T) {
	raw := readRaw(t, "handwritten/mainlog")
	for _, tc := range []struct {
		c    mtalog.Correlator
		want string
	}{
		{NewCorrelator(Options{Host: "mx.example.test", Location: time.UTC}), "mx.example.test"},
		{Dialect().New(mtalog.CorrelatorOptions{}), ""},
	} {
		recs, _ := mtalogtest.Correlate(tc.c, raw)
		for _, r := range recs {
			if r.Host != tc.want {
				t.Fatalf("host %q, want %q: %+v", r.Host, tc.want, r)
			}
		}
	}
	recs, _ := mtalogtest.Correlate(Dialect().New(mtalog.CorrelatorOptions{}), readSyslog(t, "handwritten/syslog"))
	for _, r := range recs {
		if r.Host != "mx" {
			t.Fatalf("syslog line's host %q, want mx", r.Host)
		}
	}
}
