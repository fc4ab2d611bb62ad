package postfixnotes_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/report/postfixnotes"
)

// BenchmarkReport is `smtplog report` without the files: the real Postfix
// fixture replayed 500 times as a continuous log (postfix.Replay), through
// the pipeline into an Aggregator, then the Report.
func BenchmarkReport(b *testing.B) {
	big := mtalogtest.Replayed(b, "../../../testdata", 500, true)
	lines := bytes.Count(big, []byte("\n"))
	b.SetBytes(int64(len(big)))
	b.ReportAllocs()
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		agg := report.New(report.Options{Top: -1})
		p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
			Dialects:     postfixnotes.Dialects([]mtalog.Dialect{postfix.Dialect()}, agg),
			Handler:      agg,
			Recycle:      true,
			ReuseBuffers: true, // as smtplog report runs it
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Run(context.Background(), mtalog.ReaderSource(bytes.NewReader(big), mtalog.ReaderOptions{Ref: ref})); err != nil {
			b.Fatal(err)
		}
		if rep := agg.Report(); rep.Totals.Received == 0 {
			b.Fatal("nothing received")
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
