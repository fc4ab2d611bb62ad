package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/sink/file"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

// smtpFlags are the session-engine options shared by proxy and serve.
type smtpFlags struct {
	hostname       string
	tlsCert        string
	tlsKey         string
	tlsListen      string
	dataPolicy     string
	maxSize        int64
	maxRcpt        int
	maxConns       int
	maxPerIP       int
	cmdTimeout     time.Duration
	dataTimeout    time.Duration
	insecureAuth   bool
	noMsgTranscrpt bool
}

func (f *smtpFlags) register(fs *pflag.FlagSet) {
	d := smtpd.DefaultLimits()
	fs.StringVar(&f.hostname, "hostname", "", "name in the greeting and EHLO reply (default: this host's name)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "certificate (PEM) for STARTTLS and implicit TLS; a self-signed one is generated when omitted")
	fs.StringVar(&f.tlsKey, "tls-key", "", "private key (PEM) for --tls-cert")
	fs.StringVar(&f.tlsListen, "tls-listen", "", "also accept implicit-TLS connections (port 465 style) on this address")
	fs.StringVar(&f.dataPolicy, "data-policy", "", "bare CR/LF or NUL in DATA: reject or normalize")
	fs.Int64Var(&f.maxSize, "max-message-size", d.MaxMessageBytes, "largest message accepted, in bytes")
	fs.IntVar(&f.maxRcpt, "max-recipients", d.MaxRecipients, "recipients per message")
	fs.IntVar(&f.maxConns, "max-connections", d.MaxConnections, "concurrent SMTP sessions")
	fs.IntVar(&f.maxPerIP, "max-connections-per-ip", d.MaxPerIP, "concurrent SMTP sessions from one client address")
	fs.DurationVar(&f.cmdTimeout, "command-timeout", d.CommandTimeout, "time allowed for a client to send one whole command")
	fs.DurationVar(&f.dataTimeout, "data-timeout", d.DataTimeout, "time allowed for a client to send a whole message")
	fs.BoolVar(&f.insecureAuth, "allow-insecure-auth", false, "accept AUTH from clients before STARTTLS")
	fs.BoolVar(&f.noMsgTranscrpt, "no-message-transcript", false, "leave transcripts out of message records (session records keep them)")
}

func (f *smtpFlags) config(defPolicy smtpd.DataPolicy) (smtpd.Config, error) {
	host := f.hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		host = h
	}
	tcfg, err := tlsutil.ServerConfig(f.tlsCert, f.tlsKey, host, "localhost", "127.0.0.1")
	if err != nil {
		return smtpd.Config{}, err
	}
	policy := defPolicy
	switch f.dataPolicy {
	case "":
	case string(smtpd.DataReject), string(smtpd.DataNormalize), string(smtpd.DataAccept):
		policy = smtpd.DataPolicy(f.dataPolicy)
	default:
		return smtpd.Config{}, fmt.Errorf("--data-policy %q: use reject or normalize", f.dataPolicy)
	}
	return smtpd.Config{
		Hostname: host,
		TLS:      tcfg,
		Limits: smtpd.Limits{
			MaxMessageBytes: f.maxSize,
			MaxRecipients:   f.maxRcpt,
			MaxConnections:  f.maxConns,
			MaxPerIP:        f.maxPerIP,
			CommandTimeout:  f.cmdTimeout,
			DataTimeout:     f.dataTimeout,
		},
		DataPolicy:          policy,
		AllowInsecureAuth:   f.insecureAuth,
		NoMessageTranscript: f.noMsgTranscrpt,
	}, nil
}

// outputFlags choose where records go.
type outputFlags struct {
	logFile string
	format  string
	sync    bool
}

func (f *outputFlags) register(fs *pflag.FlagSet, defFile string) {
	fs.StringVar(&f.logFile, "log-file", defFile, "where records go: a file (appended) or - for standard output")
	fs.StringVar(&f.format, "format", "json", "record format: json or text")
	fs.BoolVar(&f.sync, "fsync", false, "fsync the log file after every record")
}

func (f *outputFlags) open(e *env) (*file.Sink, error) {
	format, err := record.ParseFormat(f.format)
	if err != nil {
		return nil, err
	}
	return file.Open(f.logFile, format, e.stdout, f.sync)
}

// upstreamFlags configure the relay's leg to the upstream MTA.
type upstreamFlags struct {
	addr       string
	tlsMode    string
	ca         string
	skipVerify bool
	xclient    bool
}

func (f *upstreamFlags) register(fs *pflag.FlagSet, addrFlag, addrHelp string) {
	fs.StringVar(&f.addr, addrFlag, "", addrHelp)
	fs.StringVar(&f.tlsMode, "upstream-tls", relay.TLSOpportunistic, "TLS to the upstream: STARTTLS required, opportunistic or none, or implicit (TLS from the first byte, port 465 style)")
	fs.StringVar(&f.ca, "upstream-ca", "", "CA certificates (PEM) that verify the upstream's certificate (default: the system's)")
	fs.BoolVar(&f.skipVerify, "upstream-tls-skip-verify", false, "accept any upstream certificate even with --upstream-tls required (dangerous)")
	fs.BoolVar(&f.xclient, "xclient", false, "tell the upstream the real client with XCLIENT (Postfix smtpd_authorized_xclient_hosts)")
}

// backend validates the flags and builds the relay backend.
func (f *upstreamFlags) backend() (*relay.Backend, error) {
	rc := relay.Config{Upstream: f.addr, TLSMode: f.tlsMode, SkipVerify: f.skipVerify, XClient: f.xclient}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		rc.RootCAs = x509.NewCertPool()
		if !rc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--upstream-ca: no PEM certificate found in %s", f.ca)
		}
	}
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	return relay.New(rc), nil
}

func operatorLogger(e *env, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: l})), nil
}

func newProxyCmd(e *env) *cobra.Command {
	var (
		listen     string
		up         upstreamFlags
		logLevel   string
		cpuProfile string
		sf         smtpFlags
		of         outputFlags
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the logging relay between SMTP clients and an upstream MTA",
		Long: `Run the logging relay: applications connect to --listen instead of their MTA;
every session is relayed to --upstream unchanged in meaning, and one JSON
record per message and per session is written to --log-file.`,
		Example: `  smtplog proxy --listen 127.0.0.1:2525 --upstream mail.internal:25 --log-file -
  smtplog proxy --listen 127.0.0.1:2525 --upstream 127.0.0.1:10025 --upstream-tls none --log-file /var/log/smtplog.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if up.addr == "" {
				return exitError{code: 2, msg: "proxy: --upstream HOST:PORT is required (the MTA to relay to)"}
			}
			log, err := operatorLogger(e, logLevel)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			be, err := up.backend()
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return exitError{code: 1, msg: err.Error()}
				}
				defer stop()
			}
			scfg, err := sf.config(smtpd.DataReject)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if scfg.DataPolicy == smtpd.DataAccept {
				return exitError{code: 2, msg: "--data-policy accept is for capture mode; the relay never forwards bare CR/LF: use reject or normalize"}
			}
			out, err := of.open(e)
			if err != nil {
				return exitError{code: 1, msg: err.Error()}
			}
			defer out.Close()
			scfg.Source = record.SourceProxy
			scfg.Handler = out
			scfg.Logger = log
			scfg.Upstream = up.addr
			return runSMTP(cmd.Context(), log, scfg, be, listen, sf.tlsListen)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:2525", "address for SMTP clients (plain, with STARTTLS)")
	up.register(fs, "upstream", "the MTA to relay to, HOST:PORT")
	fs.StringVar(&logLevel, "log-level", "info", "operator log level on standard error: debug, info, warn, error")
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file until exit (for performance work)")
	_ = fs.MarkHidden("cpu-profile")
	sf.register(fs)
	of.register(fs, "-")
	return cmd
}

// runSMTP serves until ctx ends, then shuts down gracefully.
func runSMTP(ctx context.Context, log *slog.Logger, cfg smtpd.Config, be smtpd.Backend, listen, tlsListen string) error {
	srv := smtpd.New(cfg, be)
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return exitError{code: 1, msg: fmt.Sprintf("listen on %s: %v", listen, err)}
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l) }()
	log.Info("smtplog listening", "smtp", l.Addr().String(), "upstream", cfg.Upstream)
	if tlsListen != "" {
		tl, err := net.Listen("tcp", tlsListen)
		if err != nil {
			srv.Close()
			return exitError{code: 1, msg: fmt.Sprintf("listen on %s: %v", tlsListen, err)}
		}
		go func() { errc <- srv.ServeTLS(tl) }()
		log.Info("smtplog listening (implicit TLS)", "smtps", tl.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, smtpd.ErrServerClosed) {
			srv.Close()
			return err
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
