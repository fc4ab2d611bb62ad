package sendmail

import (
	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// Dialect describes Sendmail to the ingest pipeline.
func Dialect() mtalog.Dialect {
	return mtalog.Dialect{
		Name:   string(record.SourceSendmail),
		Claims: Claims,
		Detect: Detect,
		New: func(o mtalog.CorrelatorOptions) mtalog.Correlator {
			return NewCorrelator(Options{MaxOpen: o.MaxOpen, Host: o.Host})
		},
	}
}

// Claims reports whether a syslog program name is Sendmail's: sm-mta,
// sendmail, sm-msp-queue or sm-mta-rx (Postfix's own "postfix/sendmail"
// is Postfix's).
func Claims(program string) bool {
	switch program {
	case "sm-mta", "sendmail", "sm-msp-queue", "sm-mta-rx":
		return true
	}
	return false
}
