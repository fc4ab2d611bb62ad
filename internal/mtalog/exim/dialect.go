package exim

import (
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Dialect describes Exim to the ingest pipeline: syslog lines of the
// programs exim and exim4, and the lines of Exim's own mainlog and
// rejectlog (ParseRaw; their timestamps are in the local zone).
//
// Exim's own files name no host (the syslog prefix is what does), so their
// records have the one the correlator options name (--host), or none: the
// host running smtplog need not be the one that wrote the file.
func Dialect() mtalog.Dialect {
	return mtalog.Dialect{
		Name:   string(record.SourceExim),
		Claims: Claims,
		Detect: Detect,
		ParseRaw: func(raw string, _ time.Time) (mtalog.Line, error) {
			return LineFromRaw(raw, "", nil)
		},
		New: func(o mtalog.CorrelatorOptions) mtalog.Correlator {
			return NewCorrelator(Options{MaxOpen: o.MaxOpen, Host: o.Host})
		},
	}
}

// Claims reports whether a syslog program name is Exim's ("exim",
// "exim4", or a path ending in one).
func Claims(program string) bool {
	if i := strings.LastIndexByte(program, '/'); i >= 0 {
		program = program[i+1:]
	}
	return program == "exim" || program == "exim4"
}
