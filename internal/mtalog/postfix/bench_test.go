package postfix_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
)

// bigLog replays the real Postfix fixture n times with fresh queue IDs and
// pids, so every copy is its own set of messages and sessions; with advance
// the copies follow one another in time (see Replay).
func bigLog(tb testing.TB, n int, advance bool) []byte {
	tb.Helper()
	return mtalogtest.Replayed(tb, filepath.Dir(fixtures), n, advance)
}

// BenchmarkIngest measures the prefix parser, the Postfix parser and the
// correlator together, with JSON encoding of the records to io.Discard, on
// copies of the fixture that all keep its times.
func BenchmarkIngest(b *testing.B) { benchIngest(b, false) }

// BenchmarkIngestAdvancing is BenchmarkIngest on copies that follow one
// another in time, as a continuous log does: idle scans and link windows
// run as they would on a real log.
func BenchmarkIngestAdvancing(b *testing.B) { benchIngest(b, true) }

func benchIngest(b *testing.B, advance bool) {
	data := bigLog(b, 500, advance)
	lines := bytes.Count(data, []byte("\n"))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		w := record.NewWriter(io.Discard, record.FormatJSON)
		p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
			Dialects: []mtalog.Dialect{postfix.Dialect()},
			Handler:  record.HandlerFunc(func(_ context.Context, r *record.Record) error { return w.Write(r) }),
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Run(context.Background(), mtalog.ReaderSource(bytes.NewReader(data), mtalog.ReaderOptions{Ref: ref})); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkParse is the pure parsers alone: prefix and Postfix message.
func BenchmarkParse(b *testing.B) {
	data := bigLog(b, 50, false)
	raws := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	strs := make([]string, len(raws))
	for i, r := range raws {
		strs[i] = string(r)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		for _, s := range strs {
			l, err := mtalog.ParseLine(s, ref)
			if err == nil {
				_ = postfix.Parse(l.Program, l.Message)
			}
		}
	}
	b.ReportMetric(float64(len(strs))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
