package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/smtplog/smtplog/internal/record"
)

// WriteText writes rep as a readable report laid out like pflogsumm's,
// followed by the sections pflogsumm lacks. Every value that came from
// mail or logs is escaped so it can neither forge a line nor move the
// cursor.
func WriteText(w io.Writer, rep *Report) error {
	b := bufio.NewWriter(w)
	t := textWriter{b}
	e := record.Escape

	if !rep.From.IsZero() {
		fmt.Fprintf(b, "smtplog report: %s to %s\n", rep.From.Format("2006-01-02 15:04:05"), rep.To.Format("2006-01-02 15:04:05"))
	}
	if !rep.Since.IsZero() {
		fmt.Fprintf(b, "events since %s\n", rep.Since.Format("2006-01-02 15:04:05"))
	}
	tt := rep.Totals
	t.title("Grand Totals")
	fmt.Fprintf(b, "messages\n\n")
	rejPct, disPct := 0, 0
	if all := tt.Delivered + tt.Rejected + tt.Discarded; all > 0 {
		rejPct = int(tt.Rejected * 100 / all)
		disPct = int(tt.Discarded * 100 / all)
	}
	t.num(tt.Received, "received")
	t.num(tt.Delivered, "delivered")
	t.num(tt.Forwarded, "forwarded")
	fmt.Fprintf(b, " %7s  deferred", units(tt.Deferred))
	if tt.Deferrals > 0 {
		fmt.Fprintf(b, "  (%s deferrals)", strings.TrimSpace(units(tt.Deferrals)))
	}
	fmt.Fprintln(b)
	t.num(tt.Bounced, "bounced")
	t.num(tt.Rejected, fmt.Sprintf("rejected (%d%%)", rejPct))
	t.num(tt.RejectWarnings, "reject warnings")
	t.num(tt.Held, "held")
	t.num(tt.Discarded, fmt.Sprintf("discarded (%d%%)", disPct))
	fmt.Fprintln(b)
	t.num(tt.BytesReceived, "bytes received")
	t.num(tt.BytesDelivered, "bytes delivered")
	t.num(tt.Senders, "senders")
	t.num(tt.SendingHosts, "sending hosts/domains")
	t.num(tt.Recipients, "recipients")
	t.num(tt.RecipientHosts, "recipient hosts/domains")

	if len(rep.PerDay) > 1 {
		t.title("Per-Day Traffic Summary")
		fmt.Fprintf(b, "    date          received  delivered   deferred    bounced     rejected\n")
		fmt.Fprintf(b, "    --------------------------------------------------------------------\n")
		for _, d := range rep.PerDay {
			fmt.Fprintf(b, "    %-11s", d.Date)
			t.counts(d.Counts)
		}
	}
	kind := "Summary"
	if rep.Days > 1 {
		kind = "Daily Average"
	}
	t.title("Per-Hour Traffic " + kind)
	fmt.Fprintf(b, "    time          received  delivered   deferred    bounced     rejected\n")
	fmt.Fprintf(b, "    --------------------------------------------------------------------\n")
	for _, h := range rep.PerHour {
		fmt.Fprintf(b, "    %02d00-%02d00  ", h.Hour, h.Hour+1)
		c := h.Counts
		if rep.Days > 1 {
			n := int64(rep.Days)
			c = Counts{(c.Received + n/2) / n, (c.Delivered + n/2) / n, (c.Deferred + n/2) / n, (c.Bounced + n/2) / n, (c.Rejected + n/2) / n}
		}
		t.counts(c)
	}

	t.title("Host/Domain Summary: Message Delivery")
	fmt.Fprintf(b, " sent cnt  bytes   defers   avg dly max dly host/domain\n")
	fmt.Fprintf(b, " -------- -------  -------  ------- ------- -----------\n")
	for _, d := range rep.RecipientDomains {
		fmt.Fprintf(b, " %7s  %7s  %7s  %7s %7s  %s\n", units(d.Delivered), units(d.Bytes), units(d.Deferrals),
			dur(d.AvgDelayS), dur(d.MaxDelayS), e(d.Name))
	}
	t.title("Host/Domain Summary: Messages Received")
	fmt.Fprintf(b, " msg cnt   bytes   host/domain\n")
	fmt.Fprintf(b, " -------- -------  -----------\n")
	for _, d := range rep.SendingDomains {
		fmt.Fprintf(b, " %7s  %7s  %s\n", units(d.Messages), units(d.Bytes), e(d.Name))
	}
	t.volumes("Senders by message count", rep.SendersByCount, false)
	t.volumes("Recipients by message count", rep.RecipientsByCount, false)
	t.volumes("Senders by message size", rep.SendersBySize, true)
	t.volumes("Recipients by message size", rep.RecipientsBySize, true)

	t.reasons("message deferral detail", rep.Deferrals)
	t.reasons("message bounce detail (by relay)", rep.Bounces)
	t.reasons("message reject detail", rep.Rejects)
	t.reasons("message reject warning detail", rep.RejectWarnings)
	t.reasons("message hold detail", rep.Holds)
	t.reasons("message discard detail", rep.Discards)

	t.sub("Warnings, errors, fatal errors and panics", len(rep.Diagnostics) == 0)
	for _, d := range rep.Diagnostics {
		fmt.Fprintf(b, " %7s  %s %s: %s\n", units(d.Count), d.Level, e(d.Program), e(d.Text))
	}

	t.sub("SASL authenticated senders", len(rep.SASL.Users) == 0)
	for _, u := range rep.SASL.Users {
		fmt.Fprintf(b, " %7s  %s\n", units(u.Messages), e(u.Name))
	}
	t.sub("SASL authentication failures", len(rep.SASL.Failures) == 0)
	for _, f := range rep.SASL.Failures {
		fmt.Fprintf(b, " %7s  %s", units(f.Count), e(f.ClientIP))
		if f.Username != "" {
			fmt.Fprintf(b, " user %s", e(f.Username))
		}
		if f.Mechanism != "" {
			fmt.Fprintf(b, " (%s)", e(f.Mechanism))
		}
		fmt.Fprintln(b)
	}

	t.title("TLS")
	for _, s := range [...]struct {
		name string
		side TLSSide
	}{{"received", rep.TLS.Inbound}, {"delivered", rep.TLS.Outbound}} {
		fmt.Fprintf(b, " %-9s %d of %d messages encrypted (%s)", s.name, s.side.Encrypted, s.side.Messages, pct(s.side.Encrypted, s.side.Messages))
		for i, v := range s.side.Versions {
			sep := ", "
			if i == 0 {
				sep = ": "
			}
			fmt.Fprintf(b, "%s%s %d", sep, e(v.Key), v.Count)
		}
		fmt.Fprintln(b)
	}

	t.title("Delivery latency (seconds; what pflogsumm lacks)")
	fmt.Fprintf(b, " %-22s %8s %8s %8s %8s %8s %8s\n", "", "count", "mean", "p50", "p90", "p99", "max")
	for _, l := range [...]struct {
		name string
		p    Percentiles
	}{{"total delay", rep.Latency.Total}, {"a: before queue mgr", rep.Latency.BeforeQmgr}, {"b: in queue manager", rep.Latency.InQmgr},
		{"c: connection setup", rep.Latency.ConnSetup}, {"d: transmission", rep.Latency.Transmission}} {
		fmt.Fprintf(b, " %-22s %8d %8.3f %8.3f %8.3f %8.3f %8.3f\n", l.name, l.p.Count, l.p.Mean, l.p.P50, l.p.P90, l.p.P99, l.p.Max)
	}

	t.sub("Failures by class and enhanced status code", len(rep.StatusCodes) == 0)
	for _, c := range rep.StatusCodes {
		fmt.Fprintf(b, " %7s  %s %-8s %s\n", units(c.Count), c.Class, e(c.EnhancedCode), e(c.Example))
	}
	t.sub("Remote MTAs by failure rate", len(rep.RemoteMX) == 0)
	if len(rep.RemoteMX) > 0 {
		fmt.Fprintf(b, " attempts     sent deferred  bounced  failed  relay\n")
	}
	for _, m := range rep.RemoteMX {
		fmt.Fprintf(b, " %8d %8d %8d %8d  %5.1f%%  %s\n", m.Attempts, m.Sent, m.Deferred, m.Bounced, 100*m.FailureRate, e(m.Relay))
	}
	if rep.Incomplete > 0 {
		fmt.Fprintf(b, "\n%d message records were incomplete (their first or last lines were not in the input)\n", rep.Incomplete)
	}
	if len(rep.Truncated) > 0 {
		fmt.Fprintf(b, "\ntables that reached their key limit (distinct counts are lower bounds): %s\n", strings.Join(rep.Truncated, ", "))
	}
	if in := rep.Input; in != nil {
		var un int64
		for _, v := range in.Unparsed {
			un += v
		}
		fmt.Fprintf(b, "\ninput: %d lines, %d records, %d lines not understood\n", in.Lines, in.Records, un)
	}
	return b.Flush()
}

type textWriter struct{ b *bufio.Writer }

func (t textWriter) title(s string) {
	fmt.Fprintf(t.b, "\n%s\n%s\n", s, strings.Repeat("-", len(s)))
}

// sub prints a title, with ": none" when the section is empty (as
// pflogsumm does).
func (t textWriter) sub(s string, empty bool) {
	if empty {
		fmt.Fprintf(t.b, "\n%s: none\n", s)
		return
	}
	t.title(s)
}

func (t textWriter) num(n int64, label string) {
	fmt.Fprintf(t.b, " %7s  %s\n", units(n), label)
}

func (t textWriter) counts(c Counts) {
	fmt.Fprintf(t.b, "    %7s    %7s    %7s    %7s    %7s\n", units(c.Received), units(c.Delivered), units(c.Deferred), units(c.Bounced), units(c.Rejected))
}

func (t textWriter) volumes(title string, vs []Volume, size bool) {
	t.sub(title, len(vs) == 0)
	for _, v := range vs {
		n := v.Messages
		if size {
			n = v.Bytes
		}
		fmt.Fprintf(t.b, " %7s  %s\n", units(n), record.Escape(v.Name))
	}
}

func (t textWriter) reasons(title string, rs []Reason) {
	t.sub(title, len(rs) == 0)
	group := "\x00"
	for _, r := range rs {
		if r.Group != group {
			group = r.Group
			if group != "" {
				fmt.Fprintf(t.b, "  %s\n", record.Escape(group))
			}
		}
		code := ""
		if r.ReplyCode != 0 {
			code = fmt.Sprintf("%d ", r.ReplyCode)
		}
		if r.EnhancedCode != "" {
			code += r.EnhancedCode + " "
		}
		fmt.Fprintf(t.b, "    %7s  %s%s\n", units(r.Count), code, record.Escape(r.Reason))
		for _, k := range r.Top {
			fmt.Fprintf(t.b, "      %7s  %s\n", units(k.Count), record.Escape(k.Key))
		}
	}
}

// units prints a count like pflogsumm: in k above 512k, in m above 512m.
func units(n int64) string {
	switch {
	case n > 512<<20:
		return fmt.Sprintf("%dm", n>>20)
	case n > 512<<10:
		return fmt.Sprintf("%dk", n>>10)
	}
	return fmt.Sprintf("%d ", n)
}

// dur prints seconds like pflogsumm: in minutes above 60 s, hours above
// an hour.
func dur(s float64) string {
	switch {
	case s > 3600:
		return fmt.Sprintf("%5.1f h", s/3600)
	case s > 60:
		return fmt.Sprintf("%5.1f m", s/60)
	}
	return fmt.Sprintf("%5.1f s", s)
}

func pct(n, of int64) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(of))
}
