package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/follow"
	"github.com/smtplog/smtplog/internal/mtalog/syslogd"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// mtaInputs are serve's MTA log inputs: followed files (--ingest) and
// syslog receivers (--syslog). Each source drives a Pipeline of its own
// (a Pipeline is single-goroutine); all of them hand records to the same
// handler as the SMTP server.
type mtaInputs struct {
	dialects   []mtalog.Dialect
	mta        string
	handler    record.Handler
	log        *slog.Logger
	flushAfter time.Duration
	flushEvery time.Duration
	queue      int    // lines buffered per syslog receiver
	host       string // --host: the host of lines that name none
}

// storeLoader stores the records of MTA inputs with Store.Load: while
// the store is behind, an input waits (and with it the file it follows or
// the TCP sender it reads) instead of failing, which would stop serve and
// lose the lines read. It says so in the log, at most once a minute. A
// store that inserts nothing at all (Load gives up after a minute) is
// waited for again until serve stops: the lines wait in the file or the
// sender meanwhile; once serve is stopping, the error ends the input.
type storeLoader struct {
	st interface {
		Load(context.Context, []*record.Record) error
	} // a *store.Store
	log *slog.Logger
	// stopping is closed when serve stops; set before the inputs start.
	stopping <-chan struct{}

	mu     sync.Mutex
	logged time.Time
}

func (l *storeLoader) Handle(ctx context.Context, r *record.Record) error {
	t := time.Now()
	for {
		err := l.st.Load(ctx, []*record.Record{r})
		stuck := errors.Is(err, store.ErrBusy) && ctx.Err() == nil
		if d := time.Since(t); d >= time.Second {
			l.mu.Lock()
			if time.Since(l.logged) >= time.Minute {
				l.logged = time.Now()
				if stuck {
					l.log.Error("store inserts nothing; log inputs keep waiting for it", "waited", d.Round(time.Second), "err", err)
				} else {
					l.log.Warn("store behind: log inputs wait for it", "waited", d.Round(time.Millisecond))
				}
			}
			l.mu.Unlock()
		}
		if !stuck {
			return err
		}
		select {
		case <-l.stopping:
			return err
		default:
		}
	}
}

// pipeline returns a new pipeline for one source.
func (m *mtaInputs) pipeline() (*mtalog.Pipeline, error) {
	return mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: m.dialects, MTA: m.mta, FlushAfter: m.flushAfter, Handler: m.handler,
		Correlator: mtalog.CorrelatorOptions{Host: m.host},
	})
}

// finish flushes what a source still holds open when serve stops, so
// that no message it saw is lost (they come out flagged incomplete), and
// logs its counters.
func (m *mtaInputs) finish(ctx context.Context, name string, p *mtalog.Pipeline, extra ...any) error {
	err := p.Flush(context.WithoutCancel(ctx), time.Time{})
	st := p.Stats()
	m.log.Info("mta input stopped", append([]any{"input", name, "summary", st.Summary()}, extra...)...)
	return err
}

// followFile follows one file like tail -F from its end (what the file
// holds when serve starts was logged before; `smtplog ingest` reads it),
// until ctx ends.
func (m *mtaInputs) followFile(ctx context.Context, path string) error {
	p, err := m.pipeline()
	if err != nil {
		return err
	}
	parse := mtalog.ParserFor(m.dialects, m.mta)
	var mu sync.Mutex // the follower's batches and the idle flushes
	var lastT time.Time
	var clock logClock
	f, err := follow.New(follow.Config{
		Path: path, StartAtEnd: true,
		OnEvent: func(ev follow.Event) {
			m.log.Info("ingest "+string(ev.Kind), "path", path, "file", ev.File, "detail", ev.Detail)
		},
	}, func(ctx context.Context, b follow.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		for _, fl := range b.Lines {
			l := mtalog.ParseKept(parse, fl.Text, now, &lastT)
			l.Origin, l.Truncated = path, fl.Truncated
			clock.fed(l.Time, now)
			if err := p.Feed(ctx, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.log.Info("ingest following", "path", path)
	stop := m.idleFlusher(ctx, &mu, p, &clock)
	err = f.Run(ctx)
	stop()
	mu.Lock()
	defer mu.Unlock()
	fst := f.Stats()
	ferr := m.finish(ctx, path, p, "rotations", fst.Rotations, "truncations", fst.Truncations, "possible_loss", fst.PossibleLoss)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return errors.Join(err, ferr)
}

// idleFlusher flushes p's idle messages every flushEvery until the
// returned stop is called.
func (m *mtaInputs) idleFlusher(ctx context.Context, mu *sync.Mutex, p *mtalog.Pipeline, clock *logClock) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(m.flushEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				mu.Lock()
				err := p.Flush(ctx, clock.idleBefore(now, m.flushAfter))
				mu.Unlock()
				if err != nil {
					m.log.Error("ingest idle flush", "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// syslogCounters count what a receiver's queue did.
type syslogCounters struct {
	waits   atomic.Int64 // handler calls that waited for room (backpressure)
	dropped atomic.Int64 // lines dropped because serve was stopping
}

// receive runs one syslog receiver. Its handler is called from many
// goroutines; lines go through a bounded queue to the one goroutine that
// owns the pipeline. A full queue makes the handler wait (TCP and TLS
// senders are then not read: backpressure; UDP datagrams queue and are
// dropped and counted inside the receiver).
func (m *mtaInputs) receive(ctx context.Context, cfg syslogd.Config, ready func(addr string)) error {
	p, err := m.pipeline()
	if err != nil {
		return err
	}
	q := make(chan mtalog.Line, m.queue)
	var c syslogCounters
	srv, err := syslogd.New(cfg, func(hctx context.Context, l mtalog.Line) {
		select {
		case q <- l:
			return
		default:
		}
		c.waits.Add(1)
		select {
		case q <- l:
		case <-hctx.Done():
			c.dropped.Add(1)
		}
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(ctx); err != nil {
		return err
	}
	addr := cfg.Network + "://" + srv.Addr().String()
	m.log.Info("syslog listening", "syslog", addr)
	if ready != nil {
		ready(addr)
	}
	// The consumer owns p; it ends once the server has stopped calling
	// the handler and the queue is drained.
	serveDone := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		t := time.NewTicker(m.flushEvery)
		defer t.Stop()
		var clock logClock
		for {
			select {
			case l := <-q:
				clock.fed(l.Time, time.Now())
				if err := p.Feed(ctx, l); err != nil {
					srv.Close()
					consumed <- err
					return
				}
			case now := <-t.C:
				if err := p.Flush(ctx, clock.idleBefore(now, m.flushAfter)); err != nil {
					srv.Close()
					consumed <- err
					return
				}
			case <-serveDone:
				for {
					select {
					case l := <-q:
						if err := p.Feed(context.WithoutCancel(ctx), l); err != nil {
							consumed <- err
							return
						}
					default:
						consumed <- nil
						return
					}
				}
			}
		}
	}()
	serr := srv.Serve(ctx)
	close(serveDone)
	cerr := <-consumed
	st := srv.Stats()
	ferr := m.finish(ctx, addr, p, "messages", st.Messages, "not_syslog", st.Unparsed, "truncated", st.Truncated,
		"too_large", st.FrameTooLarge, "udp_dropped", st.UDPDropped, "queue_waits", c.waits.Load(), "dropped_at_stop", c.dropped.Load())
	if (errors.Is(serr, context.Canceled) && ctx.Err() != nil) || errors.Is(serr, syslogd.ErrServerClosed) {
		serr = nil
	}
	return errors.Join(serr, cerr, ferr)
}

// parseSyslogURLs checks every --syslog URL before anything starts.
func parseSyslogURLs(urls []string) ([]syslogd.Config, error) {
	var out []syslogd.Config
	for _, u := range urls {
		c, err := syslogd.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("--syslog: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}
