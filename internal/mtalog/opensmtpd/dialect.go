package opensmtpd

import (
	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Dialect describes OpenSMTPD to the ingest pipeline.
func Dialect() mtalog.Dialect {
	return mtalog.Dialect{
		Name:   string(record.SourceOpenSMTPD),
		Claims: Claims,
		Detect: Detect,
		New: func(o mtalog.CorrelatorOptions) mtalog.Correlator {
			return NewCorrelator(Options{MaxOpen: o.MaxOpen, Host: o.Host})
		},
	}
}

// Claims reports whether a syslog program name is OpenSMTPD's: "smtpd"
// (Postfix's smtpd always logs as "postfix/smtpd").
func Claims(program string) bool { return program == "smtpd" }
