package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/report/postfixnotes"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/report")

const (
	postfixFixtures = "../../testdata/postfix"
	goldenDir       = "../../testdata/report"
)

// fixtureRef is the reference time for year inference: the fixtures were
// written in late November 2026.
var fixtureRef = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

// summarise runs a Postfix log through the ingest pipeline into a report,
// as smtplog report does.
func summarise(t testing.TB, data []byte, ref time.Time, opt report.Options) *report.Report {
	t.Helper()
	agg := report.New(opt)
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: postfixnotes.Dialects([]mtalog.Dialect{postfix.Dialect()}, agg),
		Handler:  agg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background(), mtalog.ReaderSource(bytes.NewReader(data), mtalog.ReaderOptions{Ref: ref})); err != nil {
		t.Fatal(err)
	}
	return agg.Report()
}

func fixtures(t *testing.T) []string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(postfixFixtures, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return logs
}

// TestGolden renders every testdata/postfix/*.log as json and text and
// compares with testdata/report/NAME.json and NAME.txt.
func TestGolden(t *testing.T) {
	for _, path := range fixtures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rep := summarise(t, data, fixtureRef, report.Options{Top: -1})
			js, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(goldenDir, name+".json"), string(js)+"\n")
			var txt bytes.Buffer
			if err := report.WriteText(&txt, rep); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join(goldenDir, name+".txt"), txt.String())
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	mtalogtest.GoldenBytes(t, path, []byte(got), *update)
}

// TestTotalsKeys pins the contract of DESIGN §5: totals holds exactly
// these keys.
func TestTotalsKeys(t *testing.T) {
	js, err := json.Marshal(report.New(report.Options{}).Report())
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Totals map[string]any `json:"totals"`
	}
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	want := []string{"received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "rejected",
		"reject_warnings", "held", "discarded", "bytes_received", "bytes_delivered", "senders",
		"sending_hosts", "recipients", "recipient_hosts"}
	if len(v.Totals) != len(want) {
		t.Errorf("totals has %d keys, want %d: %v", len(v.Totals), len(want), v.Totals)
	}
	for _, k := range want {
		if _, ok := v.Totals[k]; !ok {
			t.Errorf("totals lacks %q", k)
		}
	}
}

// TestAnyMTA: records of other MTAs (no Postfix flags) count too.
func TestAnyMTA(t *testing.T) {
	agg := report.New(report.Options{})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	agg.Handle(ctx, &record.Record{Type: record.TypeMessage, Source: record.SourceExim, Timestamp: t0, QueueID: "1abcde-000001-AB",
		MailFrom: record.Ptr("Ann@Example.COM"), Size: 1000, ClientIP: "192.0.2.1",
		Deliveries: []record.Delivery{
			{Timestamp: t0.Add(time.Second), Rcpt: "bob@example.net", Status: "sent", Relay: "mx.example.net[198.51.100.1]:25", DelayS: 1},
			{Timestamp: t0.Add(time.Second), Rcpt: "carl@example.org", Status: "deferred", Relay: "mx.example.org[198.51.100.2]:25", SMTPResponse: "451 4.7.1 greylisted"},
			{Timestamp: t0.Add(time.Minute), Rcpt: "carl@example.org", Status: "bounced", Relay: "mx.example.org[198.51.100.2]:25", SMTPResponse: "550 5.1.1 no such user"},
		}})
	agg.Handle(ctx, &record.Record{Type: record.TypeMessage, Source: record.SourceSendmail, Timestamp: t0, Status: record.StatusRejected,
		SMTPResponse: "550 5.7.1 relaying denied", ClientIP: "203.0.113.9", Reason: "reject: RCPT"})
	rep := agg.Report()
	want := report.Totals{Received: 1, Delivered: 1, Deferred: 1, Deferrals: 1, Bounced: 1, Rejected: 1,
		BytesReceived: 1000, BytesDelivered: 1000, Senders: 1, SendingHosts: 1, Recipients: 1, RecipientHosts: 1}
	if rep.Totals != want {
		t.Errorf("totals\n got %+v\nwant %+v", rep.Totals, want)
	}
	if len(rep.SendersByCount) != 1 || rep.SendersByCount[0].Name != "Ann@example.com" {
		t.Errorf("senders %+v", rep.SendersByCount)
	}
	if len(rep.RemoteMX) != 2 || rep.RemoteMX[0].Relay != "mx.example.org[198.51.100.2]:25" || rep.RemoteMX[0].FailureRate != 1 {
		t.Errorf("remote MX %+v", rep.RemoteMX)
	}
	classes := map[string]int64{}
	for _, c := range rep.StatusCodes {
		classes[c.Class+" "+c.EnhancedCode] += c.Count
	}
	if classes["4xx 4.7.1"] != 1 || classes["5xx 5.1.1"] != 1 || classes["5xx 5.7.1"] != 1 {
		t.Errorf("status codes %+v", rep.StatusCodes)
	}
}

// TestBounded: tables stop growing at MaxKeys and say so; totals go on.
func TestBounded(t *testing.T) {
	agg := report.New(report.Options{MaxKeys: 10, Top: 5})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := range 1000 {
		from := "s" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "@d.test"
		agg.Handle(context.Background(), &record.Record{Type: record.TypeMessage, Source: record.SourceExim, Timestamp: t0, QueueID: "q",
			MailFrom: record.Ptr(from), Size: 10})
	}
	rep := agg.Report()
	if rep.Totals.Received != 1000 || rep.Totals.BytesReceived != 10000 || len(rep.SendersByCount) != 5 || rep.Totals.Senders != 10 {
		t.Errorf("received %d, bytes %d, senders %d/%d", rep.Totals.Received, rep.Totals.BytesReceived, len(rep.SendersByCount), rep.Totals.Senders)
	}
	if !strings.Contains(strings.Join(rep.Truncated, ","), "senders") {
		t.Errorf("truncated %v", rep.Truncated)
	}
}

// TestOddRecords: records with missing or malformed fields never panic.
func TestOddRecords(t *testing.T) {
	agg := report.New(report.Options{Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	for _, r := range []record.Record{
		{},
		{Type: record.TypeMessage},
		{Type: record.TypeMessage, QueueID: "x", Flags: []string{"local"}, Source: record.SourcePostfix},
		{Type: record.TypeMessage, Status: record.StatusRejected, RejectedRcpt: []record.Rejection{{}}},
		{Type: record.TypeMessage, Deliveries: []record.Delivery{{Status: "sent", Delays: "a/b/c/d/e/f"}, {Status: "sent", Delays: "/"}, {Status: "deferred", DelayS: -1}, {Status: "bounced", Relay: "]["}}},
		{Type: record.TypeSession, Auth: &record.Auth{Result: "failure"}, Anomalies: []string{"reject_warning: ", "warning: header", "warning: body x"}},
		{Type: record.TypeMessage, Timestamp: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Deliveries: []record.Delivery{{Timestamp: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Status: "deferred", SMTPResponse: "4"}}},
	} {
		agg.Handle(context.Background(), &r)
	}
	agg.Note(report.Note{})
	rep := agg.Report()
	for _, w := range []func() error{
		func() error { return report.WriteText(&bytes.Buffer{}, rep) },
		func() error { return report.WriteHTML(&bytes.Buffer{}, rep) },
	} {
		if err := w(); err != nil {
			t.Error(err)
		}
	}
}

// TestLatencyPercentiles: quantiles from the bounded histogram are within
// 2% of the exact ones.
func TestLatencyPercentiles(t *testing.T) {
	agg := report.New(report.Options{})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var ds []record.Delivery
	for i := 1; i <= 1000; i++ {
		ds = append(ds, record.Delivery{Timestamp: t0, Rcpt: "r@x.test", Status: "sent", DelayS: float64(i) / 100, Delays: "0.1/0/0.2/" + "1"})
	}
	agg.Handle(context.Background(), &record.Record{Type: record.TypeMessage, Timestamp: t0, Deliveries: ds})
	l := agg.Report().Latency
	for _, c := range []struct{ got, want float64 }{{l.Total.P50, 5}, {l.Total.P90, 9}, {l.Total.P99, 9.9}, {l.Total.Max, 10}, {l.ConnSetup.P50, 0.2}, {l.Transmission.P99, 1}} {
		if c.got < c.want*0.98 || c.got > c.want*1.02 {
			t.Errorf("quantile %v, want %v ±2%%", c.got, c.want)
		}
	}
	if l.Total.Count != 1000 || l.InQmgr.Max != 0 {
		t.Errorf("latency %+v", l)
	}
}
