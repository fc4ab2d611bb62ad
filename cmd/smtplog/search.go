package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// openStoreForReading opens an existing store; a missing file is an error
// that says how to make one, not a new empty database.
func openStoreForReading(ctx context.Context, path string) (*store.Store, error) {
	if path != ":memory:" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no store at %s: run `smtplog serve` (or `smtplog ingest --db %s`) first, or give --db", path, path)
		}
	}
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return st, nil
}

func newSearchCmd(e *env) *cobra.Command {
	var (
		db     string
		format string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "search QUERY",
		Short: "Search the store with smtplog's query language",
		Long: `Search the records in the store, newest first.

Terms (all must match; OR between terms, - to negate, quotes for spaces):
  from:ADDR  to:ADDR (rcpt:)  domain:DOMAIN  status:STATUS  code:4xx|550|5.7.1
  msgid:ID  queue:ID  session:ID  ip:ADDR|CIDR  user:NAME  helo:NAME  tls:yes|no
  source:proxy|capture|postfix|exim|sendmail|opensmtpd  type:message|session
  subject:"TEXT"  after:2026-11-01|-2h  before:...  free text
Addresses: user@example.com exactly, @example.com any at that domain, * wildcards.`,
		Example: `  smtplog search 'from:@shop.example status:deferred after:2026-11-01'
  smtplog search --format json 'code:5xx -status:rejected after:-2h'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := query.Parse(args[0], time.Now())
			if err != nil {
				var qe *query.Error
				if errors.As(err, &qe) {
					return exitError{code: 2, msg: fmt.Sprintf("query: %v\n  %s\n  %s^", err, args[0], strings.Repeat(" ", qe.Pos))}
				}
				return exitError{code: 2, msg: "query: " + err.Error()}
			}
			switch format {
			case "table", "json", "csv":
			default:
				return exitError{code: 2, msg: fmt.Sprintf("--format %q: use table, json or csv", format)}
			}
			ctx := cmd.Context()
			st, err := openStoreForReading(ctx, db)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer st.Close(context.WithoutCancel(ctx))
			var items []store.Item
			page := store.Page{Limit: min(limit, 1000)}
			for len(items) < limit {
				res, err := st.Search(ctx, q, page)
				if err != nil {
					return exitError{code: 1, msg: err.Error()}
				}
				items = append(items, res.Items...)
				if res.Next == "" {
					break
				}
				page.Cursor = res.Next
			}
			if len(items) > limit {
				items = items[:limit]
			}
			return writeSearch(e.stdout, format, items)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&db, "db", "smtplog.db", "the store (SQLite file)")
	fs.StringVar(&format, "format", "table", "output: table, json (one record per line) or csv")
	fs.IntVar(&limit, "limit", 100, "at most this many results")
	return cmd
}

// searchRow is one result as table and CSV columns.
func searchRow(it store.Item) []string {
	r := &it.Record
	from := ""
	if r.MailFrom != nil {
		from = "<" + *r.MailFrom + ">"
	}
	what := r.Subject
	if r.SMTPResponse != "" {
		what = r.SMTPResponse
	}
	if r.Type == record.TypeSession {
		what = r.CloseReason
		if r.Reason != "" {
			what += ": " + r.Reason
		}
	}
	return []string{
		r.Timestamp.UTC().Format("2006-01-02 15:04:05"),
		string(r.Type), string(r.Source), r.Status, from, strings.Join(r.RcptTo, ","), r.QueueID, r.MessageID, what,
	}
}

var searchHeader = []string{"time", "type", "source", "status", "from", "to", "queue", "message_id", "response/subject"}

func writeSearch(w io.Writer, format string, items []store.Item) error {
	switch format {
	case "json":
		for _, it := range items {
			b, err := record.MarshalJSONLine(&it.Record)
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(searchHeader)
		for _, it := range items {
			row := searchRow(it)
			for i := range row {
				// Keep spreadsheet programs from executing a field.
				if strings.ContainsAny(row[i][:min(1, len(row[i]))], "=+-@\t\r") {
					row[i] = "'" + row[i]
				}
			}
			cw.Write(row)
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(searchHeader, "\t")))
	for _, it := range items {
		row := searchRow(it)
		for i := range row {
			row[i] = record.Escape(row[i])
			if len(row[i]) > 60 {
				row[i] = row[i][:57] + "..."
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if len(items) == 0 {
		fmt.Fprintln(tw, "(no records match)")
	}
	return tw.Flush()
}

func newTraceCmd(e *env) *cobra.Command {
	var (
		db     string
		format string
	)
	cmd := &cobra.Command{
		Use:   "trace ID",
		Short: "Show the whole story of one message: relay, queue, deliveries, bounces",
		Long: `Follow one message through every vantage point in the store: the relay's or
capture server's session, the queue ID the upstream returned, the MTA log's
delivery attempts (also for re-injected copies) and the bounces it caused.
ID is a Message-ID (angle brackets optional), a queue ID or a session ID.`,
		Example: `  smtplog trace '<20261129.abc@app.example>'
  smtplog trace 4Qx7Yv1Xr7z9vLn --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return exitError{code: 2, msg: fmt.Sprintf("--format %q: use text or json", format)}
			}
			ctx := cmd.Context()
			st, err := openStoreForReading(ctx, db)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer st.Close(context.WithoutCancel(ctx))
			tr, err := traceBuild(ctx, st, args[0])
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			if format == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(tr)
			}
			return writeTrace(e.stdout, tr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&db, "db", "smtplog.db", "the store (SQLite file)")
	fs.StringVar(&format, "format", "text", "output: text or json")
	return cmd
}
