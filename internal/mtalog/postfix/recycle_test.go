package postfix_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
)

// jsonl runs the pipeline over data with a Handler that writes each record
// as a JSON line at once (it keeps nothing), recycling records or not.
func jsonl(t *testing.T, data []byte, recycle bool, maxOpen int, flushAfter time.Duration) string {
	t.Helper()
	var out bytes.Buffer
	w := record.NewWriter(&out, record.FormatJSON)
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects:   []mtalog.Dialect{postfix.Dialect()},
		Handler:    record.HandlerFunc(func(_ context.Context, r *record.Record) error { return w.Write(r) }),
		Recycle:    recycle,
		Correlator: mtalog.CorrelatorOptions{MaxOpen: maxOpen},
		FlushAfter: flushAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	src := mtalog.ReaderSource(bytes.NewReader(data), mtalog.ReaderOptions{Origin: "fixture", Ref: fixtureRef})
	if err := p.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestRecycleSameRecords: the correlator recycling the records it emitted
// (PipelineOptions.Recycle) emits the same records as without: nothing of
// one message leaks into the next that reuses its memory. Over every
// fixture and large replays of the real log, with idle flushes, evictions
// at a small MaxOpen, and content-filter links.
func TestRecycleSameRecords(t *testing.T) {
	logs, err := filepath.Glob(filepath.Join(fixtures, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	inputs := map[string][]byte{}
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(path)] = data
	}
	for _, advance := range []bool{true, false} {
		inputs[fmt.Sprintf("replay advance=%v", advance)] = mtalogtest.Replayed(t, filepath.Dir(fixtures), 60, advance)
	}
	for name, data := range inputs {
		for _, c := range []struct {
			maxOpen    int
			flushAfter time.Duration
		}{{0, 0}, {40, 0}, {0, time.Minute}, {7, 10 * time.Second}} {
			t.Run(fmt.Sprintf("%s/maxopen=%d,flush=%v", name, c.maxOpen, c.flushAfter), func(t *testing.T) {
				want := jsonl(t, data, false, c.maxOpen, c.flushAfter)
				got := jsonl(t, data, true, c.maxOpen, c.flushAfter)
				if got != want {
					gl, wl := bytes.Split([]byte(got), []byte("\n")), bytes.Split([]byte(want), []byte("\n"))
					for i := range min(len(gl), len(wl)) {
						if !bytes.Equal(gl[i], wl[i]) {
							t.Fatalf("record %d differs when recycled:\n got %s\nwant %s", i, gl[i], wl[i])
						}
					}
					t.Fatalf("%d records recycled, %d not", len(gl), len(wl))
				}
			})
		}
	}
}
