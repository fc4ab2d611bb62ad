// Command capturesrv runs capture mode the way smtplog serve does (a
// capture SMTP server whose messages and bytes go to a SQLite store), with
// no web server, for bench/capture.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/capture/api"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/store"
)

func main() {
	addr := flag.String("smtp", "127.0.0.1:2525", "SMTP listen address")
	db := flag.String("db", "smtplog.db", "store path (:memory: for none)")
	keep := flag.Int("keep", 0, "messages kept (0: default 500)")
	flag.Parse()
	if err := run(*addr, *db, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "capturesrv:", err)
		os.Exit(1)
	}
}

func run(addr, db string, keep int) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(ctx, db, store.Options{Logger: log})
	if err != nil {
		return err
	}
	a, err := api.New(st, nil, log, api.Options{Keep: keep})
	if err != nil {
		return err
	}
	srv := smtpd.New(smtpd.Config{Hostname: "capture.bench", Source: record.SourceCapture, Handler: st, Logger: log,
		AllowInsecureAuth: true, DataPolicy: smtpd.DataAccept}, capture.New(capture.Config{Keep: a.Keep}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	a.Close()
	return st.Close(sctx)
}
