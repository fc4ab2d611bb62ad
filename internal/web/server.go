package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Server serves the Handler over HTTP or HTTPS, with net/http's lifecycle:
// Serve or ListenAndServe until Shutdown or Close, which end the live
// streams too.
type Server struct {
	cfg Config
	h   *Handler
	srv *http.Server

	mu   sync.Mutex
	addr net.Addr
}

// NewServer checks cfg and builds the handler. Listening happens in
// ListenAndServe or Serve, which refuse a non-loopback address when no
// credentials are configured.
func NewServer(cfg Config) (*Server, error) {
	h, err := New(cfg)
	if err != nil {
		return nil, err
	}
	cfg = h.cfg
	s := &Server{cfg: cfg, h: h}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	s.srv.RegisterOnShutdown(h.Close)
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("web: HTTPS certificate: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

// Handler returns the server's handler.
func (s *Server) Handler() *Handler { return s.h }

// ErrExposedWithoutCredentials is returned for a non-loopback bind without
// credentials.
var ErrExposedWithoutCredentials = errors.New("web: refusing to serve beyond loopback without credentials")

// CheckBind decides whether a server bound to addr may run: a loopback
// address may run without credentials; any other address (including the
// unspecified 0.0.0.0 and ::, which mean every interface) needs auth to
// hold at least one credential.
func CheckBind(addr net.Addr, auth *Auth) error {
	return checkBind(addr, auth, nil)
}

func checkBind(addr net.Addr, auth *Auth, exposed []netip.Addr) error {
	if !auth.Empty() {
		return nil
	}
	ip, ok := bindIP(addr)
	if ok && ip.IsLoopback() {
		for _, e := range exposed {
			if e == ip {
				ok = false
			}
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is reachable from other hosts; bind to 127.0.0.1 (the default), or configure a password file or a token file", ErrExposedWithoutCredentials, addr)
}

func bindIP(addr net.Addr) (netip.Addr, bool) {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case *net.UnixAddr:
		return netip.IPv6Loopback(), true // a socket file: local by nature
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return ap.Addr().Unmap(), err == nil
}

// ListenAndServe listens on Config.Addr and serves until Shutdown or Close.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("web: listen: %w", err)
	}
	return s.Serve(l)
}

// Serve serves on l (HTTPS when a certificate is configured) until Shutdown
// or Close, and returns http.ErrServerClosed then. It closes l.
func (s *Server) Serve(l net.Listener) error {
	if err := checkBind(l.Addr(), s.cfg.Auth, s.cfg.exposedForTest); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	s.addr = l.Addr()
	s.mu.Unlock()
	if s.srv.TLSConfig != nil {
		l = tls.NewListener(l, s.srv.TLSConfig)
	}
	return s.srv.Serve(l)
}

// Addr is the address being served, once Serve has started; nil before.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens and serves until ctx is done, then shuts down, giving
// requests in flight up to 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("web: listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = s.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Shutdown stops accepting connections, ends live streams and waits for
// other requests to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.h.Close()
	return s.srv.Shutdown(ctx)
}

// Close closes the listener and every connection now.
func (s *Server) Close() error {
	s.h.Close()
	return s.srv.Close()
}
