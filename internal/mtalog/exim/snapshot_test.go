package exim

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
)

// TestSnapshotRoundTrip snapshots the correlator after every line of each
// testdata/exim log, restores it into a fresh one and checks that it goes
// on as if uninterrupted: Exim's own files of a directory merged in time
// order (rejections held for their copy from rejectlog, cut between a
// rejection and its header lines included), and the syslog fixture.
func TestSnapshotRoundTrip(t *testing.T) {
	newC := func() mtalog.Correlator {
		return NewCorrelator(Options{Host: "mx.example.test", Location: time.UTC})
	}
	for _, f := range snapshotFixtures(t) {
		mtalogtest.CheckSnapshotRuns(t, f.name, f.lines, newC)
	}
}

// TestResumeFromSnapshots restarts the ingest pipeline's Resumer from each
// of its states, snapshots included.
func TestResumeFromSnapshots(t *testing.T) {
	for _, f := range snapshotFixtures(t) {
		for _, batch := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/batch%d", f.name, batch), func(t *testing.T) {
				mtalogtest.CheckResume(t, Dialect(), f.lines, batch)
			})
		}
	}
}

type fixture struct {
	name  string
	lines []mtalog.Line
}

// snapshotFixtures returns every testdata/exim log: each directory's own
// files (mainlog, rejectlog, paniclog) merged in time order, and each
// syslog file.
func snapshotFixtures(t *testing.T) []fixture {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(testdata, "*", "mainlog"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var fixtures []fixture
	for _, mainlog := range dirs {
		dir := filepath.Base(filepath.Dir(mainlog))
		var files []string
		for _, f := range []string{"mainlog", "rejectlog", "paniclog"} {
			if _, err := os.Stat(filepath.Join(testdata, dir, f)); err == nil {
				files = append(files, filepath.Join(dir, f))
			}
		}
		fixtures = append(fixtures, fixture{dir, readRaw(t, files...)})
	}
	syslogs, err := filepath.Glob(filepath.Join(testdata, "*", "syslog"))
	if err != nil || len(syslogs) == 0 {
		t.Fatalf("no syslog fixtures: %v", err)
	}
	for _, p := range syslogs {
		rel, _ := filepath.Rel(testdata, p)
		fixtures = append(fixtures, fixture{filepath.Dir(rel) + "-syslog", readSyslog(t, rel)})
	}
	return fixtures
}

// TestSnapshotRefusesOtherVersions: a snapshot of another version, an
// inconsistent one, or garbage, is refused rather than half restored.
func TestSnapshotRefusesOtherVersions(t *testing.T) {
	mtalogtest.CheckRestoreRefuses(t, func() mtalog.Correlator { return NewCorrelator(Options{Location: time.UTC}) }, readRaw(t, "handwritten/mainlog")[0],
		`{"v":1,"target":1}`,
		`{"v":1,"target":-1}`,
		`{"v":1,"messages":[{"id":"a","rec":{"type":"message"}},{"id":"a","rec":{"type":"message"}}]}`,
		`{"v":1,"sessions":[{"key":"a","rec":{"type":"session"}},{"key":"a","rec":{"type":"session"}}]}`,
		`{"v":1,"seen":["x","x"]}`,
		`{"v":1,"seen":[""]}`)
}
