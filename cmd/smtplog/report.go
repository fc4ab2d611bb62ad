package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/report/postfixnotes"
)

func newReportCmd(e *env) *cobra.Command {
	var (
		mta      string
		since    time.Duration
		format   string
		outPath  string
		top      int
		maxLine  int
		progress string
		cpuProf  string
		db       string
		host     string
	)
	cmd := &cobra.Command{
		Use:   "report [flags] FILE...|- | --db PATH",
		Short: "Summarise MTA logs like pflogsumm, with latency percentiles and failure codes",
		Long: `Read MTA log files as "smtplog ingest" does (plain or gzip, "-" for standard
input, several files merged in time order) and print a summary: pflogsumm's
Grand Totals, per-day and per-hour traffic, top senders, recipients and
domains, deferral, bounce and reject details, SASL, TLS and warnings, plus
delivery latency percentiles, failures by enhanced status code and remote
MTAs by failure rate. --format json prints the Grand Totals under "totals".

With --db, summarise the records a store holds instead (from every input:
MTA logs, the relay, capture mode); the sections that only log lines give,
warnings and unparsed lines, are then empty.`,
		Example: `  smtplog report /var/log/mail.log
  smtplog report --since 24h --format html -o report.html /var/log/mail.log.1 /var/log/mail.log
  smtplog report --db smtplog.db --since 168h`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case db != "" && len(args) > 0:
				return exitError{code: 2, msg: "give log files or --db, not both"}
			case db == "" && len(args) == 0:
				return exitError{code: 2, msg: "give the log files to summarise (- for standard input), or --db PATH for a store"}
			}
			switch format {
			case "text", "json", "html":
			default:
				return exitError{code: 2, msg: fmt.Sprintf("--format %s: use text, json or html", format)}
			}
			if since < 0 {
				return exitError{code: 2, msg: "--since must not be negative"}
			}
			if cpuProf != "" {
				stop, err := startCPUProfile(cpuProf)
				if err != nil {
					return exitError{code: 1, msg: err.Error()}
				}
				defer stop()
			}
			dialects := ingestDialects()
			if mta != "auto" {
				if _, ok := findDialect(dialects, mta); !ok {
					return exitError{code: 2, msg: fmt.Sprintf("--mta %s: not supported yet; known: auto, %v", mta, mtalog.DialectNames(dialects))}
				}
			}
			if err := checkInputs("report", args, false); err != nil {
				return err
			}
			opt := report.Options{Top: top}
			if top == 0 {
				opt.Top = -1
			}
			if since > 0 {
				opt.Since = time.Now().Add(-since)
			}
			if db != "" {
				return runStoreReport(cmd.Context(), e, db, format, outPath, opt)
			}
			return runReport(cmd.Context(), e, reportConfig{
				dialects: dialects, mta: mta, files: args, format: format, outPath: outPath,
				opt: opt, maxLine: maxLine, progress: progress, host: host,
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&mta, "mta", "auto", "which MTA wrote the logs: auto, postfix, exim, sendmail, opensmtpd")
	fs.DurationVar(&since, "since", 0, "only events of this last period, e.g. 24h (0: everything)")
	fs.StringVar(&format, "format", "text", "report format: text, json or html")
	fs.StringVarP(&outPath, "out", "o", "-", "write the report to this file (- is standard output)")
	fs.IntVar(&top, "top", report.DefaultTop, "rows per top-N table (0: all)")
	fs.IntVar(&maxLine, "max-line", mtalog.DefaultMaxLine, "longest log line kept whole, in bytes")
	fs.StringVar(&progress, "progress", "auto", "progress on standard error: auto (on a terminal), always, never")
	fs.StringVar(&db, "db", "", "summarise the records of this store (SQLite file) instead of log files")
	fs.StringVar(&host, "host", "", "the host to name in records of lines that name none, such as Exim's own mainlog and rejectlog (default: none)")
	fs.StringVar(&cpuProf, "cpu-profile", "", "write a Go CPU profile to this file until exit (for performance work)")
	_ = fs.MarkHidden("cpu-profile")
	return cmd
}

type reportConfig struct {
	dialects []mtalog.Dialect
	mta      string
	files    []string
	format   string
	outPath  string
	opt      report.Options
	maxLine  int
	progress string
	host     string // --host: the host of lines that name none
}

func runReport(ctx context.Context, e *env, c reportConfig) (err error) {
	agg := report.New(c.opt)
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: postfixnotes.Dialects(c.dialects, agg),
		MTA:      c.mta,
		Handler:  agg,
		Recycle:  true, // the Aggregator keeps no record, only strings
		// and those it copies (TestReuseBuffersSameReport holds it to that)
		ReuseBuffers: true,

		Correlator: mtalog.CorrelatorOptions{Host: c.host},
	})
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	var rs readCounter
	parser := mtalog.NewParser(c.dialects)
	files := make([]mtalog.FileSource, len(c.files))
	var total int64
	for i, path := range c.files {
		files[i] = mtalog.FileSource{Path: path, Stdin: e.stdin, Parse: parser.Parse, ParseTo: parser.ParseTo, MaxLine: c.maxLine, Stats: &rs.stats}
		if path != "-" {
			if st, err := os.Stat(path); err == nil {
				total += st.Size()
			}
		}
	}
	stop := startProgress(ctx, e, "report", c.progress, total, &rs.stats.Bytes)
	runErr := p.Run(ctx, mtalog.Merge(files...))
	stop()
	if runErr != nil {
		return exitError{code: 1, msg: fmt.Sprintf("report: %v", runErr)}
	}
	rep := agg.Report()
	st := p.Stats()
	rep.Input = &report.Input{Lines: st.Lines, Bytes: rs.stats.Bytes, Records: st.Records, Unparsed: st.Unparsed}
	return outputReport(e, rep, c.format, c.outPath)
}

// runStoreReport summarises the records of the store at path.
func runStoreReport(ctx context.Context, e *env, path, format, outPath string, opt report.Options) error {
	st, err := openStoreForReading(ctx, path)
	if err != nil {
		return exitError{code: 1, msg: "report: " + err.Error()}
	}
	defer st.Close(context.WithoutCancel(ctx))
	agg := report.New(opt)
	var n int64
	if err := st.Scan(ctx, opt.Since, time.Time{}, func(r *record.Record) error {
		n++
		return agg.Handle(ctx, r)
	}); err != nil {
		return exitError{code: 1, msg: fmt.Sprintf("report: %v", err)}
	}
	rep := agg.Report()
	rep.Input = &report.Input{Records: n}
	return outputReport(e, rep, format, outPath)
}

// outputReport writes rep to outPath ("-" or "" for standard output).
func outputReport(e *env, rep *report.Report, format, outPath string) (err error) {
	var out io.Writer = e.stdout
	if outPath != "-" && outPath != "" {
		fh, err := os.Create(outPath)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("report: %v", err)}
		}
		defer func() {
			if cerr := fh.Close(); cerr != nil && err == nil {
				err = exitError{code: 1, msg: fmt.Sprintf("report: %v", cerr)}
			}
		}()
		out = fh
	}
	if err := writeReport(out, rep, format); err != nil {
		return exitError{code: 1, msg: fmt.Sprintf("report: %v", err)}
	}
	return nil
}

func writeReport(w io.Writer, rep *report.Report, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "html":
		return report.WriteHTML(w, rep)
	}
	return report.WriteText(w, rep)
}
