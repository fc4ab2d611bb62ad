package postfix_test

import (
	"context"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
)

// TestHostOption: lines that name no host (RFC 5424's "-", syslog
// messages relayed without a hostname) take CorrelatorOptions.Host; the
// others keep their own.
func TestHostOption(t *testing.T) {
	var got []string
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects:   []mtalog.Dialect{postfix.Dialect()},
		Correlator: mtalog.CorrelatorOptions{Host: "mx1.example"},
		Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			got = append(got, r.QueueID+"@"+r.Host)
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, raw := range []string{
		`<22>1 2026-11-30T01:44:10Z - postfix/qmgr 100 - - 1A2B3C: from=<a@example.org>, size=10, nrcpt=1 (queue active)`,
		`<22>1 2026-11-30T01:44:11Z - postfix/qmgr 100 - - 1A2B3C: removed`,
		`<22>1 2026-11-30T01:44:12Z mx2 postfix/qmgr 100 - - 4D5E6F: from=<a@example.org>, size=10, nrcpt=1 (queue active)`,
		`<22>1 2026-11-30T01:44:13Z mx2 postfix/qmgr 100 - - 4D5E6F: removed`,
	} {
		l, err := mtalog.ParseLine(raw, fixtureRef)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if err := p.Feed(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx, fixtureRef.AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1A2B3C@mx1.example", "4D5E6F@mx2"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("records %v, want %v", got, want)
	}
}
