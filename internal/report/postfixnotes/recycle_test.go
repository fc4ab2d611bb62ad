package postfixnotes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/exim"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/opensmtpd"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/mtalog/sendmail"
	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/report/postfixnotes"
)

// reportJSON is `smtplog report --format json --top 0` of data, with the
// MTAs smtplog knows and --mta auto, the pipeline recycling records or not.
func reportJSON(t *testing.T, data []byte, recycle bool) string {
	t.Helper()
	agg := report.New(report.Options{Top: -1})
	ds := []mtalog.Dialect{postfix.Dialect(), exim.Dialect(), sendmail.Dialect(), opensmtpd.Dialect()}
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: postfixnotes.Dialects(ds, agg),
		Handler:  agg,
		Recycle:  recycle,
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	src := mtalog.ReaderSource(bytes.NewReader(data), mtalog.ReaderOptions{Ref: ref, Parse: mtalog.Parsers(ds)})
	if err := p.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(agg.Report(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestRecycleSameReport: the report is the same whether the pipeline
// recycles records for the Aggregator or not, over every MTA log under
// testdata and a large replay of the real Postfix log.
func TestRecycleSameReport(t *testing.T) {
	inputs := mtalogtest.Logs(t, "../../../testdata")
	inputs["replay"] = mtalogtest.Replayed(t, "../../../testdata", 100, true)
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			if got, want := reportJSON(t, data, true), reportJSON(t, data, false); got != want {
				t.Errorf("report differs when records are recycled:\n%s", firstDiff(got, want))
			}
		})
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return "line " + g[i] + "\nwant " + w[i]
		}
	}
	return "lengths differ"
}
