package opensmtpd

import (
	"fmt"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
)

// TestSnapshotRoundTrip snapshots the correlator after every line of each
// testdata/opensmtpd log, restores it into a fresh one and checks that it
// goes on as if uninterrupted (sessions, and messages between their
// envelopes and their deliveries).
func TestSnapshotRoundTrip(t *testing.T) {
	newC := func() mtalog.Correlator { return NewCorrelator(Options{}) }
	for _, f := range fixtures {
		mtalogtest.CheckSnapshotRuns(t, f, readSyslog(t, f), newC)
	}
}

// TestSnapshotRefusesOtherVersions: a snapshot of another version, an
// inconsistent one, or garbage, is refused rather than half restored.
func TestSnapshotRefusesOtherVersions(t *testing.T) {
	mtalogtest.CheckRestoreRefuses(t, func() mtalog.Correlator { return NewCorrelator(Options{}) }, readSyslog(t, "smtpd.log")[1],
		`{"v":1,"sessions":[{"id":"a","rec":{"type":"session"}},{"id":"a","rec":{"type":"session"}}]}`,
		`{"v":1,"messages":[{"id":"a","rec":{"type":"message"}},{"id":"a","rec":{"type":"message"}}]}`,
		`{"v":1,"messages":[{"id":"a","rec":{"type":"message"},"final":{"a0000001":"sent"}}]}`)
}

// TestResumeFromSnapshots restarts the ingest pipeline's Resumer from each
// of its states, snapshots included.
func TestResumeFromSnapshots(t *testing.T) {
	for _, f := range fixtures {
		for _, batch := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/batch%d", f, batch), func(t *testing.T) { mtalogtest.CheckResume(t, Dialect(), readSyslog(t, f), batch) })
		}
	}
}
