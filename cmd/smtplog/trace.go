package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/trace"
)

func traceBuild(ctx context.Context, st *store.Store, id string) (trace.Trace, error) {
	return trace.Build(ctx, st, id)
}

// writeTrace prints a trace as a timeline, every value escaped.
func writeTrace(w io.Writer, tr trace.Trace) error {
	fmt.Fprintf(w, "trace %s\n", record.Escape(tr.ID))
	if len(tr.MessageIDs) > 0 {
		fmt.Fprintf(w, "  message-id: %s\n", record.Escape(strings.Join(tr.MessageIDs, " ")))
	}
	if len(tr.QueueIDs) > 0 {
		fmt.Fprintf(w, "  queue ids:  %s\n", record.Escape(strings.Join(tr.QueueIDs, " ")))
	}
	if len(tr.SessionIDs) > 0 {
		fmt.Fprintf(w, "  sessions:   %s\n", record.Escape(strings.Join(tr.SessionIDs, " ")))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range tr.Steps {
		src := s.Source
		if s.Host != "" && s.Source != "proxy" && s.Source != "capture" {
			src += "@" + s.Host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Time.UTC().Format("2006-01-02 15:04:05.000"), record.Escape(src), s.Kind, record.Escape(s.Status), record.Escape(s.Summary))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if tr.Truncated {
		fmt.Fprintf(w, "\n(trace cut at %d records)\n", trace.MaxRecords)
	}
	return nil
}
