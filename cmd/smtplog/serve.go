package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/web"
)

// newServeCmd is the main job: a capture SMTP server for development, or
// the logging relay when --upstream is given.
func newServeCmd(e *env) *cobra.Command {
	var (
		listen   string
		up       upstreamFlags
		domains  []string
		logLevel string
		cpuProf  string
		sf       smtpFlags
		of       outputFlags
		ingest   []string
		syslogs  []string
		mta      string
		mtaHost  string
		flushAft time.Duration
		flushEv  time.Duration
		stf      storeFlags
		hf       httpFlags
		cf       captureFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run smtplog's SMTP server: capture mode, or the logging relay with --upstream",
		Long: `Run smtplog on its defaults: SMTP on 127.0.0.1:2525 in capture mode (every
message is accepted, nothing leaves the machine) or, with --upstream, as the
logging relay; the web UI and API on http://127.0.0.1:8025; records kept in
./smtplog.db (SQLite). One record per message and per session goes to the
store, to live viewers, and to --log-file when one is given.

A message is acknowledged (250) only once its record (and in capture mode
its bytes) is durable in the store's acknowledgement log (DB-ack beside the
database), from which the store inserts it into SQLite a moment later, and
at the next start after a crash. The relay runs with --store-sync FULL by
default: the log is fsynced, so an acknowledged record survives a power
loss. Capture mode, a development tool, runs with --store-sync NORMAL by
default: an acknowledged message survives a crash of smtplog, but the last
ones may be lost to a power loss or a crash of the machine; give
--store-sync FULL to keep them too.

With --ingest FILE (repeatable) serve also follows MTA log files like
tail -F, from their end at start (for what they already hold, and for
restarts without losing or repeating a record, use smtplog ingest --follow
--checkpoint-dir); with --syslog URL (repeatable: udp://HOST:PORT,
tcp://HOST:PORT, tls://HOST:PORT?cert=FILE&key=FILE) it receives MTA logs
over syslog (RFC 3164 and 5424). Their message and session records join
the SMTP records, so smtplog trace follows a message from the relay into the
MTA's queue; messages still open when serve stops are written flagged
incomplete.`,
		Example: `  smtplog serve
  smtplog serve --upstream 127.0.0.1:25 --log-file /var/log/smtplog.jsonl
  smtplog serve --ingest /var/log/mail.log --syslog udp://127.0.0.1:5514`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := operatorLogger(e, logLevel)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if cpuProf != "" {
				stop, err := startCPUProfile(cpuProf)
				if err != nil {
					return exitError{code: 1, msg: err.Error()}
				}
				defer stop()
			}
			scfgs, err := parseSyslogURLs(syslogs)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if mta != "auto" {
				if _, ok := findDialect(ingestDialects(), mta); !ok {
					return exitError{code: 2, msg: fmt.Sprintf("--mta %s: unknown; use auto or one of %v", mta, mtalog.DialectNames(ingestDialects()))}
				}
			}
			if flushEv <= 0 || flushAft <= 0 {
				return exitError{code: 2, msg: "--flush-after and --flush-every must be positive"}
			}
			if up.addr == "" {
				defer captureGC(e.getenv)()
			}
			var be smtpd.Backend
			policy := smtpd.DataAccept // development tools do send bare LF
			source := record.SourceCapture
			if up.addr != "" {
				rb, err := up.backend()
				if err != nil {
					return exitError{code: 2, msg: err.Error()}
				}
				be = rb
				policy = smtpd.DataReject
				source = record.SourceProxy
			}
			scfg, err := sf.config(policy)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if up.addr == "" && !cmd.Flags().Changed("allow-insecure-auth") {
				// Applications under development authenticate on loopback
				// without TLS; capture mode accepts that by default.
				scfg.AllowInsecureAuth = true
			}
			if up.addr != "" && scfg.DataPolicy == smtpd.DataAccept {
				return exitError{code: 2, msg: "--data-policy accept is for capture mode; the relay never forwards bare CR/LF: use reject or normalize"}
			}
			// Records go to the store (then to live viewers), and to a log
			// file when one is asked for.
			ctx := cmd.Context()
			st, err := stf.open(ctx, log, up.addr == "", cf.keep)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := st.Close(cctx); err != nil {
					log.Error("closing the store", "err", err)
				}
			}()
			hub := web.NewHub(web.HubOptions{})
			defer hub.Close()
			var extra []record.Handler
			if of.logFile != "" {
				out, err := of.open(e)
				if err != nil {
					return exitError{code: 1, msg: err.Error()}
				}
				defer out.Close()
				extra = append(extra, out)
			}
			// In capture mode a session record rides in the commit of the
			// next message record rather than paying for one of its own.
			var toStore record.Handler = st
			if up.addr == "" {
				toStore = capture.NewSessionBatcher(st, 0)
			}
			handler := outputs(toStore, hub, extra...)
			// Records from MTA logs wait for a store that falls behind
			// (the followed file or the TCP sender is read more slowly)
			// where the SMTP server's answer 451.
			loader := &storeLoader{st: st, log: log}
			mtaHandler := outputs(loader, hub, extra...)
			var routes []web.Route
			if up.addr == "" {
				cp, err := cf.open(st, handler, log)
				if err != nil {
					return exitError{code: 2, msg: err.Error()}
				}
				defer cp.close()
				be = capture.New(capture.Config{Domains: domains, Keep: cp.api.Keep, Chaos: cp.chaos})
				routes = cp.api.Routes()
				if cp.hook != nil {
					handler = record.Multi{handler, cp.hook}
					mtaHandler = record.Multi{mtaHandler, cp.hook}
				}
			}
			ws, err := hf.server(st, hub, log, []web.Check{storeReady(st)}, routes)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			scfg.Source = source
			scfg.Handler = handler
			scfg.Logger = log
			scfg.Upstream = up.addr
			// SMTP, the web UI and the MTA inputs run as one group: the
			// first to fail stops the others; a signal stops them all.
			mi := &mtaInputs{dialects: ingestDialects(), mta: mta, handler: mtaHandler, log: log,
				flushAfter: flushAft, flushEvery: flushEv, queue: 4096, host: mtaHost}
			var g group
			gctx := g.start(ctx)
			loader.stopping = gctx.Done()
			for _, path := range ingest {
				g.run(func() error { return mi.followFile(gctx, path) })
			}
			for _, c := range scfgs {
				g.run(func() error { return mi.receive(gctx, c, nil) })
			}
			if ws != nil {
				g.run(func() error { return ws.Run(gctx) })
				log.Info("web UI and API", "url", webURL(hf))
			}
			log.Info("store", "db", stf.db)
			g.run(func() error { return runSMTP(gctx, log, scfg, be, listen, sf.tlsListen) })
			if err := g.wait(); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
				var ee exitError
				if errors.As(err, &ee) {
					return ee
				}
				return exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "smtp", "127.0.0.1:2525", "SMTP listen address (plain, with STARTTLS)")
	up.register(fs, "upstream", "relay to this MTA (HOST:PORT) instead of capturing")
	fs.StringSliceVar(&domains, "accept-domain", nil, "capture mode: accept only these recipient domains (repeatable)")
	fs.StringVar(&logLevel, "log-level", "info", "operator log level on standard error: debug, info, warn, error")
	fs.StringVar(&cpuProf, "cpu-profile", "", "write a Go CPU profile to this file until exit (for performance work)")
	_ = fs.MarkHidden("cpu-profile")
	fs.StringArrayVar(&ingest, "ingest", nil, "follow this MTA log file from its end (repeatable)")
	fs.StringArrayVar(&syslogs, "syslog", nil, "receive MTA logs over syslog: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT?cert=FILE&key=FILE (repeatable)")
	fs.StringVar(&mta, "mta", "auto", "which MTA wrote the --ingest and --syslog logs: auto, postfix, exim, sendmail, opensmtpd")
	fs.DurationVar(&flushAft, "flush-after", mtalog.DefaultFlushAfter, "emit an MTA message as incomplete after this long without a line")
	fs.StringVar(&mtaHost, "host", "", "the host to name in records of --ingest and --syslog lines that name none, such as Exim's own mainlog and rejectlog (default: none)")
	fs.DurationVar(&flushEv, "flush-every", time.Minute, "how often to look for such idle messages")
	sf.register(fs)
	of.register(fs, "")
	fs.Lookup("log-file").Usage = "also write records to this file (appended), or - for standard output"
	stf.register(fs)
	hf.register(fs)
	cf.register(fs)
	return cmd
}

// captureGCPercent is capture mode's GOGC. Its live heap is a few MiB
// that turn over once per message (the message's bytes, its record, its
// JSON), and the runtime's default of 100 lets the heap reach twice the
// live size between collections. With 50, peak RSS under bench/capture.sh
// is 1.4-1.9 MiB lower; the price is about 2.6 times as many collections,
// some 5-10% more CPU per message. GOGC=100 in the environment undoes it.
const captureGCPercent = 50

// captureGC sets capture mode's GOGC unless the user chose GOGC or
// GOMEMLIMIT; the returned function restores the previous setting (tests
// run serve in-process).
func captureGC(getenv func(string) string) func() {
	if getenv == nil || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(captureGCPercent)
	return func() { debug.SetGCPercent(old) }
}
