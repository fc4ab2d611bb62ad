// Package syslogd receives syslog messages and turns them into mtalog
// Lines: over UDP (RFC 5426, one message per datagram), TCP (RFC 6587,
// octet counting and newline framing, recognised per frame) and TLS
// (RFC 5425), in RFC 3164 or RFC 5424 format.
//
// Every input is bounded: frame size (checked before allocating),
// connections, idle time, TLS handshake time. Oversized frames are
// truncated to MaxFrame and counted; messages that are not syslog are still
// delivered (Raw and Message hold them) and counted as unparsed; UDP
// datagrams that arrive faster than the handler takes them are dropped and
// counted. Nothing of this stops the server or desynchronises a stream.
package syslogd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("syslogd: server closed")

// Config configures a Server. Zero values take the defaults.
type Config struct {
	Network string // "udp", "tcp" or "tls"
	Addr    string // host:port; port 0 picks a free one

	CertFile, KeyFile string      // for "tls"
	TLSConfig         *tls.Config // for "tls"; overrides CertFile/KeyFile

	MaxFrame         int           // longest message kept whole (default 64 KiB)
	MaxSkip          int64         // longest octet-counted frame skipped past; above it the connection is closed (default 64 MiB)
	MaxConns         int           // concurrent TCP/TLS connections (default 256)
	IdleTimeout      time.Duration // a connection silent this long is closed (default 5 min)
	HandshakeTimeout time.Duration // TLS handshake limit (default 10 s)
	UDPQueue         int           // datagrams buffered for the handler (default 4096)
	Location         *time.Location
}

// ParseURL reads the --syslog URL form: udp://HOST:PORT, tcp://HOST:PORT,
// tls://HOST:PORT?cert=FILE&key=FILE. Other query keys: max_frame,
// max_conns, idle (a Go duration).
func ParseURL(s string) (Config, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Config{}, fmt.Errorf("syslog url: %w", err)
	}
	c := Config{Network: u.Scheme, Addr: u.Host}
	switch c.Network {
	case "udp", "tcp", "tls":
	default:
		return Config{}, fmt.Errorf("syslog url %q: scheme must be udp, tcp or tls", s)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return Config{}, fmt.Errorf("syslog url %q: %w", s, err)
	}
	q := u.Query()
	for k := range q {
		v := q.Get(k)
		switch k {
		case "cert":
			c.CertFile = v
		case "key":
			c.KeyFile = v
		case "max_frame", "max_conns":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return Config{}, fmt.Errorf("syslog url %q: bad %s", s, k)
			}
			if k == "max_frame" {
				c.MaxFrame = n
			} else {
				c.MaxConns = n
			}
		case "idle":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Config{}, fmt.Errorf("syslog url %q: bad idle", s)
			}
			c.IdleTimeout = d
		default:
			return Config{}, fmt.Errorf("syslog url %q: unknown parameter %q", s, k)
		}
	}
	if c.Network == "tls" && (c.CertFile == "" || c.KeyFile == "") {
		return Config{}, fmt.Errorf("syslog url %q: tls needs cert= and key=", s)
	}
	return c, nil
}

// Handler receives each message. It is called from many goroutines at once
// (one per connection, one for UDP); a TCP connection is not read while its
// handler call runs, so a slow handler pushes back on senders.
type Handler func(ctx context.Context, l mtalog.Line)

// Stats are the server's counters.
type Stats struct {
	Messages       int64 // delivered to the handler, parsed or not
	Unparsed       int64 // delivered but not understood as syslog
	Truncated      int64 // frames longer than MaxFrame, delivered truncated
	FrameTooLarge  int64 // octet counts beyond MaxSkip: connection closed
	UDPDropped     int64 // datagrams dropped because the handler fell behind
	Accepted       int64 // TCP/TLS connections accepted
	Rejected       int64 // connections closed at once: MaxConns reached
	TLSFailures    int64 // TLS handshakes failed or timed out
	IdleTimeouts   int64 // connections closed for silence
	ReadErrors     int64 // other connection errors
	PanicsRecovers int64 // handler or parser panics recovered (connection closed)
}

type counters struct {
	messages, unparsed, truncated, tooLarge, udpDropped, accepted, rejected,
	tlsFailures, idle, readErrors, panics atomic.Int64
}

// Server is a syslog receiver. Its lifecycle follows net/http: Listen (or
// ListenAndServe), Serve, Close.
type Server struct {
	cfg     Config
	handler Handler
	tlsConf *tls.Config
	c       counters

	mu      sync.Mutex
	ln      net.Listener
	pc      net.PacketConn
	conns   map[net.Conn]struct{}
	closed  bool
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

// New validates cfg and returns a Server; with TLS it loads the key pair.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("syslogd: nil handler")
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 64 << 10
	}
	if cfg.MaxSkip <= 0 {
		cfg.MaxSkip = 64 << 20
	}
	if cfg.MaxSkip < int64(cfg.MaxFrame) {
		cfg.MaxSkip = int64(cfg.MaxFrame)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.UDPQueue <= 0 {
		cfg.UDPQueue = 4096
	}
	s := &Server{cfg: cfg, handler: h, conns: map[net.Conn]struct{}{}}
	switch cfg.Network {
	case "udp", "tcp":
	case "tls":
		s.tlsConf = cfg.TLSConfig
		if s.tlsConf == nil {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("syslogd: %w", err)
			}
			s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
	default:
		return nil, fmt.Errorf("syslogd: network %q: want udp, tcp or tls", cfg.Network)
	}
	return s, nil
}

// Stats returns the counters; safe at any time.
func (s *Server) Stats() Stats {
	c := &s.c
	return Stats{
		Messages: c.messages.Load(), Unparsed: c.unparsed.Load(), Truncated: c.truncated.Load(),
		FrameTooLarge: c.tooLarge.Load(), UDPDropped: c.udpDropped.Load(), Accepted: c.accepted.Load(),
		Rejected: c.rejected.Load(), TLSFailures: c.tlsFailures.Load(), IdleTimeouts: c.idle.Load(),
		ReadErrors: c.readErrors.Load(), PanicsRecovers: c.panics.Load(),
	}
}

// Listen binds the address; Addr is valid afterwards.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.ln != nil || s.pc != nil {
		return errors.New("syslogd: already listening")
	}
	var lc net.ListenConfig
	if s.cfg.Network == "udp" {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("syslogd: %w", err)
		}
		if uc, ok := pc.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(4 << 20) // best effort; the kernel may cap it
		}
		s.pc = pc
		return nil
	}
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("syslogd: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ln != nil:
		return s.ln.Addr()
	case s.pc != nil:
		return s.pc.LocalAddr()
	}
	return nil
}

// ListenAndServe is Listen then Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(ctx); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve receives until ctx is done (it then closes the server and returns
// ctx's error) or Close is called (ErrServerClosed). It waits for its
// connections to end before returning.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln, pc := s.ln, s.pc
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	if ln == nil && pc == nil {
		return errors.New("syslogd: Serve before Listen")
	}
	// Handlers see a context that Close cancels too.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancels = append(s.cancels, cancel)
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var err error
	if pc != nil {
		err = s.serveUDP(ctx, pc)
	} else {
		err = s.serveTCP(ctx, ln)
	}
	s.wg.Wait()
	if perr := parent.Err(); perr != nil {
		return perr
	}
	if s.isClosed() {
		return ErrServerClosed
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the listener and every connection. Serve returns once its
// goroutines have ended.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	if s.pc != nil {
		err = s.pc.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	for _, cancel := range s.cancels {
		cancel()
	}
	return err
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) serveTCP(ctx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() || ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				// Back off like net/http on EMFILE and friends.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("syslogd: accept: %w", err)
		}
		delay = 0
		if !s.track(c) {
			s.c.rejected.Add(1)
			c.Close()
			continue
		}
		s.c.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			defer c.Close()
			s.serveConn(ctx, c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			s.c.panics.Add(1)
		}
	}()
	origin := c.RemoteAddr().String()
	var rd io.Reader = c
	if s.tlsConf != nil {
		tc := tls.Server(c, s.tlsConf)
		hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			s.c.tlsFailures.Add(1)
			return
		}
		rd = tc
	}
	fr := NewFramer(deadlineReader{c: c, r: rd, idle: s.cfg.IdleTimeout}, s.cfg.MaxFrame, s.cfg.MaxSkip)
	p := Parser{Location: s.cfg.Location}
	for {
		msg, trunc, err := fr.Next()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
			case errors.Is(err, ErrFrameTooLarge):
				s.c.tooLarge.Add(1)
			case errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && !s.isClosed():
				s.c.idle.Add(1)
			case ctx.Err() == nil && !s.isClosed():
				s.c.readErrors.Add(1)
			}
			return
		}
		s.deliver(ctx, &p, msg, trunc, origin)
	}
}

func (s *Server) deliver(ctx context.Context, p *Parser, msg []byte, trunc bool, origin string) {
	if trunc {
		s.c.truncated.Add(1)
	}
	l, err := p.Parse(msg, origin, time.Now())
	if err != nil {
		s.c.unparsed.Add(1)
	}
	s.c.messages.Add(1)
	s.handler(ctx, l)
}

// deadlineReader renews the idle deadline before every read.
type deadlineReader struct {
	c    net.Conn
	r    io.Reader
	idle time.Duration
}

func (d deadlineReader) Read(b []byte) (int, error) {
	if err := d.c.SetReadDeadline(time.Now().Add(d.idle)); err != nil {
		return 0, err
	}
	return d.r.Read(b)
}

type datagram struct {
	buf    []byte
	n      int
	origin string
}

func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn) error {
	// The reader never waits for the handler: datagrams queue up to UDPQueue
	// and beyond that are dropped and counted, so the kernel buffer keeps
	// draining.
	queue := make(chan datagram, s.cfg.UDPQueue)
	free := make(chan []byte, s.cfg.UDPQueue+2)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p := Parser{Location: s.cfg.Location}
		for d := range queue {
			s.handleDatagram(ctx, &p, d)
			select {
			case free <- d.buf:
			default:
			}
		}
	}()
	defer close(queue)
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, 65536)
		}
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if s.isClosed() || ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				continue
			}
			return fmt.Errorf("syslogd: read: %w", err)
		}
		d := datagram{buf: buf, n: n, origin: addr.String()}
		select {
		case queue <- d:
		default:
			s.c.udpDropped.Add(1)
		}
	}
}

func (s *Server) handleDatagram(ctx context.Context, p *Parser, d datagram) {
	defer func() {
		if r := recover(); r != nil {
			s.c.panics.Add(1)
		}
	}()
	msg := trimEOL(d.buf[:d.n])
	trunc := false
	if len(msg) > s.cfg.MaxFrame {
		msg, trunc = msg[:s.cfg.MaxFrame], true
	}
	if len(msg) == 0 {
		return
	}
	s.deliver(ctx, p, msg, trunc, d.origin)
}
