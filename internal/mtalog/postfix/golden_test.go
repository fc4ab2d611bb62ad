package postfix_test

import (
	"bytes"
	"context"
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
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/postfix")

const fixtures = "../../../testdata/postfix"

// fixtureRef is the reference time for year inference: the fixtures were
// written in late November 2026.
var fixtureRef = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

// ingest runs the pipeline over data and returns the records as JSON lines
// and the unparsed lines.
func ingest(t testing.TB, data []byte, ref time.Time) (records []record.Record, jsonl, unparsed string, st mtalog.Stats) {
	t.Helper()
	var out, un bytes.Buffer
	w := record.NewWriter(&out, record.FormatJSON)
	var col record.Collector
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: []mtalog.Dialect{postfix.Dialect()},
		MTA:      "auto",
		Handler: record.Multi{&col, record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			return w.Write(r)
		})},
		Unparsed: &un,
	})
	if err != nil {
		t.Fatal(err)
	}
	src := mtalog.ReaderSource(bytes.NewReader(data), mtalog.ReaderOptions{Origin: "fixture", Ref: ref})
	if err := p.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	return col.Records(), out.String(), un.String(), p.Stats()
}

// TestGolden ingests every testdata/postfix/*.log and compares the records
// (and the unparsed lines) with NAME.golden.jsonl and NAME.unparsed.
func TestGolden(t *testing.T) {
	logs, err := filepath.Glob(filepath.Join(fixtures, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range logs {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, got, un, _ := ingest(t, data, fixtureRef)
			checkGolden(t, strings.TrimSuffix(path, ".log")+".golden.jsonl", got)
			checkGolden(t, strings.TrimSuffix(path, ".log")+".unparsed", un)
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	mtalogtest.GoldenBytes(t, path, []byte(got), *update)
}
