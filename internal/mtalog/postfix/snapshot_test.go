package postfix_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
)

// TestSnapshotRoundTrip snapshots the correlator after every line of each
// testdata/postfix log, restores it into a fresh one and checks that it
// goes on as if uninterrupted (content filter links, lingering messages,
// sessions and outbound TLS included).
func TestSnapshotRoundTrip(t *testing.T) {
	logs, err := filepath.Glob(filepath.Join(fixtures, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	newC := func() mtalog.Correlator { return postfix.NewCorrelator(mtalog.CorrelatorOptions{}) }
	for _, path := range logs {
		mtalogtest.CheckSnapshotRuns(t, strings.TrimSuffix(filepath.Base(path), ".log"), readLines(t, path), newC)
	}
	// Two hosts at once: the same log again as another host, line by line
	// interleaved, so that several sessions and messages are open; a
	// second later, as the correlator orders ties by time and queue ID only.
	var two []mtalog.Line
	for _, l := range readLines(t, filepath.Join(fixtures, "real-3.7.log")) {
		m := l
		m.Host += "-b"
		m.Time = m.Time.Add(time.Second)
		two = append(two, l, m)
	}
	t.Run("two-hosts", func(t *testing.T) { mtalogtest.CheckSnapshots(t, two, newC, 7) })
}

// readLines parses a fixture with the real prefix parser.
func readLines(t *testing.T, path string) []mtalog.Line {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []mtalog.Line
	for _, raw := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l, err := mtalog.ParseLine(raw, fixtureRef)
		if err != nil {
			l = mtalog.Line{Raw: raw}
		}
		lines = append(lines, l)
	}
	return lines
}

// TestSnapshotRefusesOtherVersions: a snapshot of another version, or
// garbage, is refused rather than half restored.
func TestSnapshotRefusesOtherVersions(t *testing.T) {
	for _, b := range []string{`{"v":2}`, `{"v":1,"lingering":[3]}`, `not json`} {
		c := postfix.NewCorrelator(mtalog.CorrelatorOptions{})
		if err := c.Restore([]byte(b)); err == nil {
			t.Errorf("Restore(%s) = nil", b)
		}
	}
}
