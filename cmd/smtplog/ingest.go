package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/exim"
	"github.com/smtplog/smtplog/internal/mtalog/opensmtpd"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/mtalog/sendmail"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// ingestDialects lists the MTAs `smtplog ingest` knows, one line each; --mta
// auto gives each line to the first dialect that claims its program.
func ingestDialects() []mtalog.Dialect {
	return []mtalog.Dialect{
		postfix.Dialect(),
		exim.Dialect(),
		sendmail.Dialect(),
		opensmtpd.Dialect(),
	}
}

func newIngestCmd(e *env) *cobra.Command {
	var (
		mta        string
		outPath    string
		dbPath     string
		format     string
		unparsed   string
		flushAfter time.Duration
		maxLine    int
		progress   string
		host       string
		follow     bool
		ckDir      string
		flushEvery time.Duration
		maxJournal int
		poll       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ingest [flags] FILE...|-",
		Short: "Turn MTA logs (Postfix, Exim, Sendmail, OpenSMTPD) into message and session records",
		Long: `Read MTA log files (plain or gzip, detected by content; "-" is standard
input), join their lines by queue ID into one record per message (with
per-recipient deliveries) and per SMTP session, and write them as JSON lines
or text or, with --db, store them (in bulk) for search and trace. Several
files (a rotated set like mail.log.2.gz mail.log.1 mail.log) are merged in
time order. With --mta auto (the default) each line
goes to the MTA its program name belongs to (postfix/*, exim, exim4,
sm-mta, sendmail, smtpd) or, for other program names, the MTA whose message
shape it certainly has; Exim's own mainlog and rejectlog (no syslog
prefix) are recognised too. Lines no parser understands are counted per
program and, with --unparsed, kept in a file. A summary goes to standard
error.

` + followGuarantee,
		Example: `  smtplog ingest /var/log/mail.log.1.gz /var/log/mail.log --out -
  smtplog ingest --mta postfix --unparsed unknown.txt - < mail.log > records.jsonl
  smtplog ingest --follow /var/log/mail.log --checkpoint-dir /var/lib/smtplog/ingest --out /var/log/smtplog.jsonl
  smtplog ingest --db smtplog.db /var/log/mail.log.1 /var/log/mail.log`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := record.ParseFormat(format)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			dialects := ingestDialects()
			if mta != "auto" {
				if _, ok := findDialect(dialects, mta); !ok {
					return exitError{code: 2, msg: fmt.Sprintf("--mta %s: unknown; use auto or one of %v", mta, mtalog.DialectNames(dialects))}
				}
			}
			if flushAfter < 0 {
				return exitError{code: 2, msg: "--flush-after must not be negative"}
			}
			if dbPath != "" && cmd.Flags().Changed("out") {
				return exitError{code: 2, msg: "--db and --out are mutually exclusive: records go either to a store or to a file"}
			}
			if follow {
				if err := checkFollowable(args); err != nil {
					return exitError{code: 2, msg: err.Error()}
				}
				if flushEvery <= 0 || poll <= 0 {
					return exitError{code: 2, msg: "--flush-every and --poll-interval must be positive"}
				}
			} else if ckDir != "" {
				return exitError{code: 2, msg: "--checkpoint-dir needs --follow"}
			}
			if err := checkInputs("ingest", args, follow); err != nil {
				return err
			}
			c := ingestConfig{
				dialects: dialects, mta: mta, files: args, outPath: outPath, dbPath: dbPath, format: f,
				unparsed: unparsed, flushAfter: flushAfter, maxLine: maxLine, progress: progress, host: host,
				checkpointDir: ckDir, flushEvery: flushEvery, maxJournal: maxJournal, poll: poll,
			}
			if follow {
				return runFollow(cmd.Context(), e, c)
			}
			return runIngest(cmd.Context(), e, c)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&mta, "mta", "auto", "which MTA wrote the logs: auto, postfix, exim, sendmail, opensmtpd")
	fs.StringVar(&outPath, "out", "-", "write records to this file (- is standard output)")
	fs.StringVar(&dbPath, "db", "", "store records in this SQLite database (as search and trace read) instead of writing them to --out")
	fs.StringVar(&format, "format", "json", "record format: json or text")
	fs.StringVar(&unparsed, "unparsed", "", "append the lines no parser understood to this file")
	fs.DurationVar(&flushAfter, "flush-after", mtalog.DefaultFlushAfter, "emit a message as incomplete after this long (log time) without a line")
	fs.StringVar(&host, "host", "", "the host to name in records of lines that name none, such as Exim's own mainlog and rejectlog (default: none)")
	fs.IntVar(&maxLine, "max-line", mtalog.DefaultMaxLine, "longest log line kept whole, in bytes; longer lines are cut and counted")
	fs.StringVar(&progress, "progress", "auto", "progress on standard error: auto (on a terminal), always, never")
	fs.BoolVar(&follow, "follow", false, "follow the files like tail -F, across rotation (see above)")
	fs.StringVar(&ckDir, "checkpoint-dir", "", "with --follow: keep a state file per FILE here, so a restart neither loses nor repeats a record")
	fs.DurationVar(&flushEvery, "flush-every", time.Minute, "with --follow: how often (wall clock) to emit messages idle for --flush-after")
	fs.IntVar(&maxJournal, "max-journal", 200000, "with --follow: lines kept for replay while a FILE's messages are never all complete")
	fs.DurationVar(&poll, "poll-interval", 250*time.Millisecond, "with --follow: how often to look for new lines and rotation besides inotify")
	return cmd
}

func findDialect(ds []mtalog.Dialect, name string) (mtalog.Dialect, bool) {
	for _, d := range ds {
		if d.Name == name {
			return d, true
		}
	}
	return mtalog.Dialect{}, false
}

type ingestConfig struct {
	dialects   []mtalog.Dialect
	mta        string
	files      []string
	outPath    string
	dbPath     string // --db: records go to the store instead of outPath
	format     record.Format
	unparsed   string
	flushAfter time.Duration
	maxLine    int
	progress   string
	host       string // --host: the host of lines that name none
	// --follow
	checkpointDir string
	flushEvery    time.Duration
	maxJournal    int
	poll          time.Duration
}

// ingestDBBatch is the number of records per Insert with --db.
const ingestDBBatch = 5000

// checkInputs checks the input files of command cmd: "-" (standard
// input) at most once, and every other one present, unless missing files
// may appear later (a followed file, like tail -F).
func checkInputs(cmd string, args []string, mayAppear bool) error {
	stdinUsed := false
	for _, a := range args {
		if a == "-" {
			if stdinUsed {
				return exitError{code: 2, msg: "standard input (-) can be named once"}
			}
			stdinUsed = true
			continue
		}
		if _, err := os.Stat(a); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if mayAppear {
					continue
				}
				return exitError{code: 1, msg: fmt.Sprintf("%s: %s: no such file", cmd, a)}
			}
			return exitError{code: 1, msg: fmt.Sprintf("%s: %v", cmd, err)}
		}
	}
	return nil
}

// openAppend opens the records output of command cmd: standard output
// for "-" or "", else path for appending. done closes it and folds a
// close error into *err.
func openAppend(e *env, cmd, path string) (out io.Writer, done func(err *error), err error) {
	if path == "-" || path == "" {
		return e.stdout, func(*error) {}, nil
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, exitError{code: 1, msg: fmt.Sprintf("%s: %v", cmd, err)}
	}
	return fh, func(err *error) {
		if cerr := fh.Close(); cerr != nil && *err == nil {
			*err = exitError{code: 1, msg: fmt.Sprintf("%s: %v", cmd, cerr)}
		}
	}, nil
}

func runIngest(ctx context.Context, e *env, c ingestConfig) (err error) {
	out, done, err := openAppend(e, "ingest", c.outPath)
	if err != nil {
		return err
	}
	defer done(&err)
	bw := bufio.NewWriterSize(out, 256<<10)
	w := record.NewWriter(bw, c.format)
	write := w.Write
	var db *store.Store
	var pending []*record.Record
	if c.dbPath != "" {
		if db, err = store.Open(ctx, c.dbPath, store.Options{}); err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		defer func() {
			if cerr := db.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
				err = exitError{code: 1, msg: fmt.Sprintf("ingest: %v", cerr)}
			}
		}()
		// Bulk inserts in batches, bounded.
		write = func(r *record.Record) error {
			pending = append(pending, r)
			if len(pending) < ingestDBBatch {
				return nil
			}
			err := db.Load(ctx, pending)
			pending = pending[:0]
			return err
		}
	}

	var unw *bufio.Writer
	if c.unparsed != "" {
		fh, err := os.OpenFile(c.unparsed, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", err)}
		}
		defer fh.Close()
		unw = bufio.NewWriterSize(fh, 64<<10)
	}
	opt := mtalog.PipelineOptions{
		Dialects:   c.dialects,
		MTA:        c.mta,
		FlushAfter: c.flushAfter,
		Correlator: mtalog.CorrelatorOptions{Host: c.host},
		Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			return write(r)
		}),
	}
	if unw != nil {
		opt.Unparsed = unw
	}
	p, err := mtalog.NewPipeline(opt)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}

	var rs readCounter
	parse := mtalog.ParserFor(c.dialects, c.mta)
	files := make([]mtalog.FileSource, len(c.files))
	var total int64
	for i, path := range c.files {
		files[i] = mtalog.FileSource{Path: path, Stdin: e.stdin, Parse: parse, MaxLine: c.maxLine, Stats: &rs.stats}
		if path != "-" {
			if st, err := os.Stat(path); err == nil {
				total += st.Size()
			}
		}
	}
	stop := startProgress(ctx, e, "ingest", c.progress, total, &rs.stats.Bytes)
	start := time.Now()
	runErr := p.Run(ctx, mtalog.Merge(files...))
	stop()
	if db != nil && len(pending) > 0 && runErr == nil {
		if err := db.Load(ctx, pending); err != nil {
			runErr = fmt.Errorf("store records: %w", err)
		}
	}
	if err := bw.Flush(); err != nil && runErr == nil {
		runErr = fmt.Errorf("write records: %w", err)
	}
	if unw != nil {
		if err := unw.Flush(); err != nil && runErr == nil {
			runErr = fmt.Errorf("write unparsed lines: %w", err)
		}
	}
	st := p.Stats()
	el := time.Since(start)
	mb := float64(rs.stats.Bytes) / 1e6
	fmt.Fprintf(e.stderr, "smtplog ingest: %s; %.1f MB in %.2fs (%.0f MB/s)\n",
		st.Summary(), mb, el.Seconds(), mb/max(el.Seconds(), 1e-9))
	if runErr != nil {
		if errors.Is(runErr, fs.ErrNotExist) {
			return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", runErr)}
		}
		return exitError{code: 1, msg: fmt.Sprintf("ingest: %v", runErr)}
	}
	return nil
}

// readCounter holds the reader's counters, shared with the progress display.
type readCounter struct {
	stats mtalog.ReadStats
}

// startProgress shows how many of total bytes were read (*n), after
// label, on standard error when it is a terminal (or always/never as
// asked) for inputs over 64 MB; it returns a function that stops and
// clears it.
func startProgress(ctx context.Context, e *env, label, mode string, total int64, n *int64) func() {
	show := false
	switch mode {
	case "always":
		show = true
	case "never":
	default:
		show = total > 64<<20 && isTerminal(e.stderr)
	}
	if !show {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(e.stderr, "\r\033[K")
				return
			case <-ctx.Done():
				return
			case <-t.C:
				read := atomic.LoadInt64(n)
				if total > 0 {
					fmt.Fprintf(e.stderr, "\r\033[K%s: %5.1f%% %d/%d MB", label, 100*float64(read)/float64(total), read>>20, total>>20)
				} else {
					fmt.Fprintf(e.stderr, "\r\033[K%s: %d MB", label, read>>20)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
