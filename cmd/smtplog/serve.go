package main

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/smtpd"
)

// newServeCmd is the main job: a capture SMTP server for development, or
// the logging relay when --upstream is given.
func newServeCmd(e *env) *cobra.Command {
	var (
		listen     string
		upstream   string
		upTLS      string
		upCA       string
		skipVerify bool
		xclient    bool
		domains    []string
		logLevel   string
		sf         smtpFlags
		of         outputFlags
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
			if upstream != "" {
				rc := relay.Config{Upstream: upstream, TLSMode: upTLS, SkipVerify: skipVerify, XClient: xclient}
				if upCA != "" {
					pem, err := os.ReadFile(upCA)
					if err != nil {
						return exitError{code: 2, msg: fmt.Sprintf("--upstream-ca: %v", err)}
					}
					rc.RootCAs = x509.NewCertPool()
					if !rc.RootCAs.AppendCertsFromPEM(pem) {
						return exitError{code: 2, msg: "--upstream-ca: no PEM certificate found in " + upCA}
					}
				}
				if err := rc.Validate(); err != nil {
					return exitError{code: 2, msg: err.Error()}
				}
				be = relay.New(rc)
				policy = smtpd.DataReject
				source = record.SourceProxy
			} else {
				be = capture.New(capture.Config{Domains: domains})
			}
			scfg, err := sf.config(policy)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if upstream == "" && !cmd.Flags().Changed("allow-insecure-auth") {
				// Applications under development authenticate on loopback
				// without TLS; capture mode accepts that by default.
				scfg.AllowInsecureAuth = true
			}
			if upstream != "" && scfg.DataPolicy == smtpd.DataAccept {
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
			scfg.Upstream = upstream
			return runSMTP(cmd.Context(), log, scfg, be, listen, sf.tlsListen)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "smtp", "127.0.0.1:2525", "SMTP listen address (plain, with STARTTLS)")
	fs.StringVar(&upstream, "upstream", "", "relay to this MTA (HOST:PORT) instead of capturing")
	fs.StringVar(&upTLS, "upstream-tls", relay.TLSOpportunistic, "STARTTLS to the upstream: required, opportunistic or none")
	fs.StringVar(&upCA, "upstream-ca", "", "CA certificates (PEM) that verify the upstream's certificate (default: the system's)")
	fs.BoolVar(&skipVerify, "upstream-tls-skip-verify", false, "accept any upstream certificate even with --upstream-tls required (dangerous)")
	fs.BoolVar(&xclient, "xclient", false, "tell the upstream the real client with XCLIENT (Postfix)")
	fs.StringSliceVar(&domains, "accept-domain", nil, "capture mode: accept only these recipient domains (repeatable)")
	fs.StringVar(&logLevel, "log-level", "info", "operator log level on standard error: debug, info, warn, error")
	sf.register(fs)
	of.register(fs, "-")
	return cmd
}
