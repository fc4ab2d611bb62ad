package mtalog

import (
	"strings"

	"github.com/smtplog/smtplog/internal/record"
)

// Helpers the MTA subpackages share to turn deliveries into a message's
// outcome (DESIGN §4: status is the worst/latest known outcome).

// StatusRank orders delivery outcomes from best to worst: 0 for anything
// that is not an outcome, then sent (Postfix's verify statuses "delivered"
// and "deliverable" alike), deferred, bounced ("undeliverable"), expired.
func StatusRank(status string) int {
	switch status {
	case record.StatusSent, "delivered", "deliverable":
		return 1
	case record.StatusDeferred:
		return 2
	case record.StatusBounced, "undeliverable":
		return 3
	case record.StatusExpired:
		return 4
	}
	return 0
}

// WorseStatus reports whether outcome a is at least as bad as b, so that
// of equally bad outcomes the later one wins when scanning in order.
func WorseStatus(a, b string) bool { return StatusRank(a) >= StatusRank(b) }

// WorstLatest returns the index of the delivery that decides a message's
// outcome: of each recipient's latest delivery (the last one in ds with its
// key; key nil means the recipient address), the worst, and of equally bad
// ones the last. It returns -1 when ds is empty.
func WorstLatest(ds []record.Delivery, key func(record.Delivery) string) int {
	if key == nil {
		key = func(d record.Delivery) string { return d.Rcpt }
	}
	latest := make(map[string]int, len(ds))
	for i, d := range ds {
		latest[key(d)] = i
	}
	best := -1
	for i, d := range ds {
		if latest[key(d)] == i && (best < 0 || WorseStatus(d.Status, ds[best].Status)) {
			best = i
		}
	}
	return best
}

// SetOutcome copies a deciding delivery's status and reply into r: the
// reply code and enhanced status code come from the reply text, the
// enhanced code from the delivery's DSN when the text has none.
func SetOutcome(r *record.Record, d record.Delivery) {
	r.Status, r.SMTPResponse = d.Status, d.SMTPResponse
	r.ReplyCode, r.EnhancedCode = SplitReply(d.SMTPResponse)
	if r.EnhancedCode == "" {
		r.EnhancedCode = d.DSN
	}
}

// SplitReply returns the reply code (RFC 5321 section 4.2) and the RFC
// 3463 enhanced status code at the start of an SMTP reply such as
// "550 5.7.1 Relaying denied": (550, "5.7.1"). The code is 0 when the text
// does not start with one; the enhanced code is "" when none follows the
// code or its class differs from the code's.
func SplitReply(resp string) (code int, enhanced string) {
	if len(resp) < 3 || resp[0] < '2' || resp[0] > '5' || !isDigit(resp[1]) || !isDigit(resp[2]) ||
		len(resp) > 3 && resp[3] != ' ' && resp[3] != '-' {
		return 0, ""
	}
	code = int(resp[0]-'0')*100 + int(resp[1]-'0')*10 + int(resp[2]-'0')
	return code, EnhancedCode(resp)
}

// EnhancedCode returns the RFC 3463 enhanced status code that follows the
// reply code of resp ("450 4.2.0 Mailbox full" → "4.2.0"), or "".
func EnhancedCode(resp string) string {
	if len(resp) < 9 || !isDigit(resp[0]) {
		return ""
	}
	f := resp[4:]
	if end := strings.IndexAny(f, " \n"); end >= 0 {
		f = f[:end]
	}
	if f == "" || f[0] != resp[0] || strings.Count(f, ".") != 2 {
		return ""
	}
	for p := range strings.SplitSeq(f, ".") {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return f
}
