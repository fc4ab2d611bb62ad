// Package postfixnotes passes the facts of Postfix log lines that records
// do not carry — warning, error, fatal and panic lines and master daemon
// messages, which pflogsumm reports — from the Postfix correlator to a
// report.Aggregator. It is the one place where the Postfix input and the
// report output meet, outside cmd/smtplog.
package postfixnotes

import (
	"strings"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/report"
)

// Dialects returns a copy of ds whose Postfix dialect gives its
// correlators an observer that passes notes to agg.
func Dialects(ds []mtalog.Dialect, agg *report.Aggregator) []mtalog.Dialect {
	out := make([]mtalog.Dialect, len(ds))
	copy(out, ds)
	name := postfix.Dialect().Name
	for i, d := range out {
		if d.Name != name {
			continue
		}
		out[i].New = func(o mtalog.CorrelatorOptions) mtalog.Correlator {
			c := postfix.NewCorrelator(o)
			c.SetObserver(func(l *mtalog.Line, ev *postfix.Event) { note(agg, l, ev) })
			return c
		}
	}
	return out
}

func note(agg *report.Aggregator, l *mtalog.Line, ev *postfix.Event) {
	level, text := ev.Level, ev.Text
	switch {
	case level == "" && ev.Daemon == "master":
		level, text = "master", l.Message
	case level == "":
		return
	case ev.Kind == postfix.KindSASLFailed:
		text, _ = strings.CutPrefix(l.Message, "warning: ")
	}
	// The Aggregator copies what it keeps.
	agg.Note(report.Note{Time: l.Time, Level: level, Program: ev.Daemon, Text: text})
}
