package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/smtplog/smtplog/internal/capture/api"
	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/sink/webhook"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/web"
)

// storeFlags choose the store and its retention.
type storeFlags struct {
	db       string
	maxAge   time.Duration
	maxBytes int64
	sync     string
}

func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.db, "db", "smtplog.db", "the store: a SQLite file, or :memory: to keep nothing on disk")
	fs.DurationVar(&f.maxAge, "retention-max-age", 0, "delete records older than this (e.g. 720h; 0: keep)")
	fs.Int64Var(&f.maxBytes, "retention-max-bytes", 0, "delete the oldest records while the store is larger (0: no limit)")
	fs.StringVar(&f.sync, "store-sync", "", "FULL: an acknowledged record survives power loss (fsync per commit; the relay's default); "+
		"NORMAL: it survives a crash of smtplog, the last commits may be lost to power loss (capture mode's default)")
}

// syncLevel is --store-sync, or the default of the mode: a capture server
// is a development tool, where an fsync per message costs more than the
// last messages before a power loss are worth; the relay keeps FULL.
func (f *storeFlags) syncLevel(capture bool) store.Sync {
	switch {
	case f.sync != "":
		return store.Sync(strings.ToUpper(f.sync))
	case capture:
		return store.SyncNormal
	}
	return store.SyncFull
}

// captureCacheKiB is the SQLite page cache of capture mode keeping at
// most captureSmallKeep messages: its database is a few MiB, whose
// working set (the newest pages of each table) fits in 2 MiB, where the
// default cache grows to hold every page a batch touched and adds a MiB
// or two to the peak memory (bench/capture.sh).
const (
	captureCacheKiB  = 2048
	captureSmallKeep = 5000
)

func (f *storeFlags) open(ctx context.Context, log *slog.Logger, capture bool, keep int) (*store.Store, error) {
	opts := store.Options{
		Sync:      f.syncLevel(capture),
		Retention: store.Retention{MaxAge: f.maxAge, MaxBytes: f.maxBytes},
		Logger:    log,
	}
	if capture && keep >= 0 && keep <= captureSmallKeep {
		opts.CacheKiB = captureCacheKiB
	}
	st, err := store.Open(ctx, f.db, opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", f.db, err)
	}
	return st, nil
}

// httpFlags configure the web UI and API.
type httpFlags struct {
	addr         string
	passwordFile string
	tokenFile    string
	certFile     string
	keyFile      string
	allowedHosts []string
}

func (f *httpFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "http", web.DefaultAddr, "web UI and API address (off: none); beyond loopback it needs --http-password-file or --http-token-file")
	fs.StringVar(&f.passwordFile, "http-password-file", "", "users for the web UI and API: lines of user:bcrypt-hash:role (role read or admin)")
	fs.StringVar(&f.tokenFile, "http-token-file", "", "bearer tokens: lines of sha256-hex-of-token role [name]")
	fs.StringVar(&f.certFile, "http-tls-cert", "", "certificate (PEM) to serve HTTPS")
	fs.StringVar(&f.keyFile, "http-tls-key", "", "private key (PEM) for --http-tls-cert")
	fs.StringSliceVar(&f.allowedHosts, "http-allowed-host", nil, "further Host names the UI answers to (besides loopback and localhost)")
}

// server builds the web server over st; nil when --http is off.
func (f *httpFlags) server(st *store.Store, hub *web.Hub, log *slog.Logger, ready []web.Check, routes []web.Route) (*web.Server, error) {
	if f.addr == "off" || f.addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(f.addr); err != nil {
		return nil, fmt.Errorf("--http %q: give HOST:PORT (or off)", f.addr)
	}
	var auth *web.Auth
	if f.passwordFile != "" || f.tokenFile != "" {
		a, err := web.LoadAuth(f.passwordFile, f.tokenFile)
		if err != nil {
			return nil, err
		}
		auth = a
	}
	return web.NewServer(web.Config{
		Store:        st,
		Tracer:       web.BuildTracer(st),
		Hub:          hub,
		Auth:         auth,
		Logger:       log,
		Ready:        ready,
		Routes:       routes,
		AllowedHosts: f.allowedHosts,
		Addr:         f.addr,
		TLSCertFile:  f.certFile,
		TLSKeyFile:   f.keyFile,
	})
}

// storeReady is the readiness check of the store: a cheap indexed read.
func storeReady(st *store.Store) web.Check {
	return web.Check{Name: "store", Check: func(ctx context.Context) error {
		_, err := st.Search(ctx, nil, store.Page{Limit: 1})
		return err
	}}
}

// outputs are where serve's records go: the store first (so what live
// viewers see is stored), then the live hub, then an optional log file.
func outputs(st record.Handler, hub *web.Hub, extra ...record.Handler) record.Handler {
	m := record.Multi{st}
	if hub != nil {
		m = append(m, hub)
	}
	for _, h := range extra {
		if h != nil {
			m = append(m, h)
		}
	}
	return m
}

// webURL is where the UI answers, for the start-up log line.
func webURL(f httpFlags) string {
	scheme := "http"
	if f.certFile != "" {
		scheme = "https"
	}
	return scheme + "://" + f.addr + "/"
}

// captureFlags configure capture mode's message keeping, chaos and webhook.
type captureFlags struct {
	keep          int
	maxAge        time.Duration
	chaos         []string
	webhook       string
	webhookSecret string
}

func (f *captureFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.keep, "keep", 500, "capture mode: keep the newest N messages, deleting the oldest once N/16 more arrived (negative: no limit)")
	fs.DurationVar(&f.maxAge, "keep-max-age", 0, "capture mode: delete messages older than this (0: no limit)")
	fs.StringArrayVar(&f.chaos, "chaos", nil, "capture mode: answer a command with an error, e.g. 'RCPT=451 4.7.1 Try later', 'DATA=552 5.3.4 Too big@10%' (repeatable; also GET/PUT /api/chaos)")
	fs.StringVar(&f.webhook, "webhook", "", "capture mode: POST a JSON summary of each new message to this URL")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "", "sign webhook bodies with HMAC-SHA256 under this secret (X-Smtplog-Signature)")
}

// capturePieces are capture mode's parts, closed in reverse order.
type capturePieces struct {
	api    *api.API
	chaos  *chaos.Chaos
	hook   *webhook.Sink
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *captureFlags) open(st *store.Store, release record.Handler, log *slog.Logger) (*capturePieces, error) {
	rules, err := chaos.ParseRules(f.chaos...)
	if err != nil {
		return nil, fmt.Errorf("--chaos: %w", err)
	}
	ch, err := chaos.New(rules, nil)
	if err != nil {
		return nil, fmt.Errorf("--chaos: %w", err)
	}
	a, err := api.New(st, ch, log, api.Options{Keep: f.keep, MaxAge: f.maxAge, Release: release, Version: version})
	if err != nil {
		return nil, err
	}
	cp := &capturePieces{api: a, chaos: ch}
	if f.webhook != "" {
		hook, err := webhook.New(webhook.Config{URL: f.webhook, Secret: f.webhookSecret, Logger: log})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("--webhook: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cp.hook, cp.cancel, cp.done = hook, cancel, make(chan struct{})
		go func() {
			defer close(cp.done)
			hook.Run(ctx)
		}()
	}
	return cp, nil
}

func (cp *capturePieces) close() {
	if cp.cancel != nil {
		cp.cancel()
		<-cp.done
	}
	cp.api.Close()
}
