package main

import (
	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
)

// newServeCmd is the main job: a capture SMTP server for development, or
// the logging relay when --upstream is given.
func newServeCmd(e *env) *cobra.Command {
	var (
		listen   string
		up       upstreamFlags
		domains  []string
		logLevel string
		sf       smtpFlags
		of       outputFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run smtplog's SMTP server: capture mode, or the logging relay with --upstream",
		Long: `Run smtplog's SMTP server on its defaults: SMTP on 127.0.0.1:2525 in capture
mode (every message is accepted, nothing leaves the machine) or, with
--upstream, as the logging relay. One record per message and per session
goes to --log-file.`,
		Example: `  smtplog serve
  smtplog serve --upstream 127.0.0.1:25 --log-file /var/log/smtplog.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := operatorLogger(e, logLevel)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
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
			} else {
				be = capture.New(capture.Config{Domains: domains})
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
			out, err := of.open(e)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer out.Close()
			scfg.Source = source
			scfg.Handler = out
			scfg.Logger = log
			scfg.Upstream = up.addr
			return runSMTP(cmd.Context(), log, scfg, be, listen, sf.tlsListen)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "smtp", "127.0.0.1:2525", "SMTP listen address (plain, with STARTTLS)")
	up.register(fs, "upstream", "relay to this MTA (HOST:PORT) instead of capturing")
	fs.StringSliceVar(&domains, "accept-domain", nil, "capture mode: accept only these recipient domains (repeatable)")
	fs.StringVar(&logLevel, "log-level", "info", "operator log level on standard error: debug, info, warn, error")
	sf.register(fs)
	of.register(fs, "-")
	return cmd
}
