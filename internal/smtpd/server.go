package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// DataPolicy says what to do with bare CR, bare LF or NUL inside DATA.
type DataPolicy string

const (
	// DataReject refuses the message (the relay's default: it never
	// forwards the SMTP-smuggling vector).
	DataReject DataPolicy = "reject"
	// DataNormalize turns bare CR/LF into CRLF before passing the message
	// on, so no new end-of-data can appear downstream.
	DataNormalize DataPolicy = "normalize"
	// DataAccept passes the message unchanged and flags it (the capture
	// server: development tools do send bare LF).
	DataAccept DataPolicy = "accept"
)

// Limits bound what one client can make the server do. Zero fields take
// the defaults of DefaultLimits.
type Limits struct {
	MaxLineLength      int           // command line, without CRLF
	MaxMessageBytes    int64         // DATA or BDAT total
	MaxRecipients      int           // per transaction
	MaxConnections     int           // concurrent sessions
	MaxPerIP           int           // concurrent sessions per client IP
	CommandTimeout     time.Duration // to receive one whole command (not reset per byte)
	DataTimeout        time.Duration // to receive a whole DATA payload or BDAT chunk
	SessionTimeout     time.Duration // a whole connection
	TLSHandshake       time.Duration
	HardErrorLimit     int // errors before disconnecting
	MaxTranscriptLines int
}

// DefaultLimits follow Postfix's defaults and RFC 5321 §4.5.3.
func DefaultLimits() Limits {
	return Limits{
		MaxLineLength:      2048,
		MaxMessageBytes:    50 << 20,
		MaxRecipients:      1000,
		MaxConnections:     200,
		MaxPerIP:           50,
		CommandTimeout:     5 * time.Minute,
		DataTimeout:        10 * time.Minute,
		SessionTimeout:     time.Hour,
		TLSHandshake:       30 * time.Second,
		HardErrorLimit:     20,
		MaxTranscriptLines: 2000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = d.MaxLineLength
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = d.MaxRecipients
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.MaxPerIP <= 0 {
		l.MaxPerIP = d.MaxPerIP
	}
	if l.CommandTimeout <= 0 {
		l.CommandTimeout = d.CommandTimeout
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = d.DataTimeout
	}
	if l.SessionTimeout <= 0 {
		l.SessionTimeout = d.SessionTimeout
	}
	if l.TLSHandshake <= 0 {
		l.TLSHandshake = d.TLSHandshake
	}
	if l.HardErrorLimit <= 0 {
		l.HardErrorLimit = d.HardErrorLimit
	}
	if l.MaxTranscriptLines <= 0 {
		l.MaxTranscriptLines = d.MaxTranscriptLines
	}
	return l
}

// Config configures a Server.
type Config struct {
	Hostname          string      // in the greeting and EHLO reply
	TLS               *tls.Config // STARTTLS and implicit TLS; nil: no TLS
	Limits            Limits
	DataPolicy        DataPolicy
	AllowInsecureAuth bool          // AUTH before TLS (never the default)
	Source            record.Source // proxy or capture
	Handler           record.Handler
	Logger            *slog.Logger
	Upstream          string // recorded on every record (relay)
	// Transcripts in records: the session record always carries its
	// transcript; message records carry their transaction's share unless
	// NoMessageTranscript is set.
	NoMessageTranscript bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Server accepts SMTP connections and runs one session per connection.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	closing   atomic.Bool
	wg        sync.WaitGroup

	// Buffers shared by connections one after another: clients that open
	// a connection per message would otherwise make each of them anew.
	// A short free list rather than sync.Pools, which every collection
	// empties, and capture mode collects every few dozen messages.
	bufMu sync.Mutex
	free  []*connBufs
}

// connBufs are the buffers of one connection: command and DATA input,
// replies, and the message content.
type connBufs struct {
	br   *bufio.Reader
	bw   *bufio.Writer
	data *bytes.Buffer
}

// Bounds of the free list: it never holds more than maxFreeBufs sets, and
// no content buffer larger than maxFreeData, so what it keeps is at most
// about a megabyte whatever the messages were.
const (
	maxFreeBufs = 16
	maxFreeData = 48 << 10
)

// getBufs returns a set of buffers for nc, reused when one is free.
func (s *Server) getBufs(nc net.Conn) *connBufs {
	s.bufMu.Lock()
	var b *connBufs
	if n := len(s.free); n > 0 {
		b = s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
	}
	s.bufMu.Unlock()
	if b == nil {
		return &connBufs{br: bufio.NewReaderSize(nc, 8*1024), bw: bufio.NewWriterSize(nc, 4*1024), data: &bytes.Buffer{}}
	}
	b.br.Reset(nc)
	b.bw.Reset(nc)
	return b
}

// putBufs takes back a connection's buffers; data may be nil (dropped
// after a large message).
func (s *Server) putBufs(b *connBufs) {
	b.br.Reset(nil)
	b.bw.Reset(nil)
	if b.data == nil || b.data.Cap() > maxFreeData {
		b.data = &bytes.Buffer{}
	}
	b.data.Reset()
	s.bufMu.Lock()
	if len(s.free) < maxFreeBufs {
		s.free = append(s.free, b)
	}
	s.bufMu.Unlock()
}

// New returns a server for backend.
func New(cfg Config, backend Backend) *Server {
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.DataPolicy == "" {
		cfg.DataPolicy = DataReject
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Handler == nil {
		cfg.Handler = record.HandlerFunc(func(context.Context, *record.Record) error { return nil })
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:       cfg,
		backend:   backend,
		log:       log,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[netip.Addr]int{},
	}
}

// Serve accepts connections on l (plain SMTP with STARTTLS) until Shutdown
// or Close.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts connections on l that start with a TLS handshake
// (implicit TLS, "submissions", RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtpd: implicit TLS needs a TLS configuration")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary(err)) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtpd: accept: %w", err)
		}
		delay = 0
		c := s.newConn(nc, implicitTLS)
		if c == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.release()
			c.serve()
		}()
	}
}

// errTemporary matches accept errors worth retrying (EMFILE and the like).
func errTemporary(err error) error {
	type temporary interface{ Temporary() bool }
	var t temporary
	if errors.As(err, &t) && t.Temporary() {
		return err
	}
	return errNever
}

var errNever = errors.New("never matches")

// Shutdown stops accepting, lets sessions that are in a transaction finish,
// ends idle ones with "421 4.3.2", and waits until all are gone or ctx ends;
// then it closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// newConn registers a connection and applies connection limits; it returns
// nil when the connection was refused (after answering 421 and recording).
func (s *Server) newConn(nc net.Conn, implicitTLS bool) *conn {
	c := newConnState(s, nc, implicitTLS)
	s.mu.Lock()
	ip := c.client.Addr()
	var refuse string
	switch {
	case len(s.conns) >= s.cfg.Limits.MaxConnections:
		refuse = "too many connections"
	case s.perIP[ip] >= s.cfg.Limits.MaxPerIP:
		refuse = "too many connections from your address"
	}
	if refuse == "" {
		s.conns[c] = struct{}{}
		s.perIP[ip]++
	}
	s.mu.Unlock()
	if refuse != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.release()
			c.refuse(refuse)
		}()
		return nil
	}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	ip := c.client.Addr()
	if s.perIP[ip] <= 1 {
		delete(s.perIP, ip)
	} else {
		s.perIP[ip]--
	}
}

// Active returns the number of open sessions.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
