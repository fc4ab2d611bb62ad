package syslogd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// sink collects delivered lines.
type sink struct {
	mu    sync.Mutex
	lines []mtalog.Line
}

func (s *sink) handle(_ context.Context, l mtalog.Line) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

func (s *sink) all() []mtalog.Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mtalog.Line(nil), s.lines...)
}

func (s *sink) has(want string) bool {
	for _, l := range s.all() {
		if strings.Contains(l.Message, want) {
			return true
		}
	}
	return false
}

// waitFor waits until a line's message contains want and returns it.
func (s *sink) waitFor(t *testing.T, want string) mtalog.Line {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range s.all() {
			if strings.Contains(l.Message, want) {
				return l
			}
		}
	}
	all := s.all()
	t.Fatalf("no line with %q; got %d lines, last %+v", want, len(all), all[max(0, len(all)-3):])
	return mtalog.Line{}
}

func start(t *testing.T, cfg Config) (*Server, *sink) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	k := &sink{}
	s, err := New(cfg, k.handle)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, k
}

// need returns the path of a program, skipping the test when it is missing
// unless SMTPLOG_REQUIRE_INTEGRATION=1.
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, prog)); serr == nil {
				return filepath.Join(dir, prog)
			}
		}
		if os.Getenv("SMTPLOG_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("%s not found: install the Debian package %s", prog, pkg)
		}
		t.Skipf("%s not found (Debian package %s)", prog, pkg)
	}
	return p
}

func port(s *Server) string {
	_, p, _ := net.SplitHostPort(s.Addr().String())
	return p
}

func TestLogger(t *testing.T) {
	logger := need(t, "logger", "bsdutils")
	for _, tc := range []struct {
		name, network string
		args          []string
	}{
		{"udp-rfc3164", "udp", []string{"-d", "--rfc3164"}},
		{"udp-rfc5424", "udp", []string{"-d", "--rfc5424"}},
		{"tcp-newline", "tcp", []string{"-T", "--rfc3164"}},
		{"tcp-octet-count", "tcp", []string{"-T", "--octet-count", "--rfc3164"}},
		{"tcp-rfc5424-octet-count", "tcp", []string{"-T", "--octet-count", "--rfc5424"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, k := start(t, Config{Network: tc.network})
			msg := "4Xy7Zq1abcD: to=<u@example.org>, status=sent " + tc.name
			args := append([]string{"-n", "127.0.0.1", "-P", port(s), "-t", "postfix/smtp", "--id=4242"}, tc.args...)
			out, err := exec.CommandContext(t.Context(), logger, append(args, msg)...).CombinedOutput()
			if err != nil {
				t.Fatalf("logger: %v: %s", err, out)
			}
			l := k.waitFor(t, msg)
			if l.Program != "postfix/smtp" || l.PID != 4242 || l.Message != msg || l.Host == "" || !strings.HasPrefix(l.Origin, "127.0.0.1:") {
				t.Errorf("line = %+v", l)
			}
			if d := time.Since(l.Time); d < -time.Minute || d > time.Minute {
				t.Errorf("time %v", l.Time)
			}
			if st := s.Stats(); st.Unparsed != 0 || st.Messages != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// testPKI makes a CA and a server certificate for 127.0.0.1/localhost and
// writes them as PEM files in dir.
func testPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtplog test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(caFile, "CERTIFICATE", caDER)
	write(certFile, "CERTIFICATE", der)
	write(keyFile, "EC PRIVATE KEY", kder)
	return
}

func TestParseURL(t *testing.T) {
	c, err := ParseURL("tls://127.0.0.1:6514?cert=/c.pem&key=/k.pem&max_frame=8192&idle=30s")
	if err != nil || c.Network != "tls" || c.Addr != "127.0.0.1:6514" || c.CertFile != "/c.pem" || c.KeyFile != "/k.pem" || c.MaxFrame != 8192 || c.IdleTimeout != 30*time.Second {
		t.Errorf("%+v %v", c, err)
	}
	for _, bad := range []string{"http://x:1", "udp://nohost", "tls://127.0.0.1:1", "tcp://127.0.0.1:1?bogus=1", "tcp://127.0.0.1:1?max_frame=-1"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestAbuseTCP: an absurd octet count, an oversized frame, binary garbage,
// too many connections and an idle one are counted; the server keeps
// serving good clients.
func TestAbuseTCP(t *testing.T) {
	s, k := start(t, Config{Network: "tcp", MaxFrame: 1024, MaxSkip: 1 << 20, MaxConns: 3, IdleTimeout: 500 * time.Millisecond})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c net.Conn, b string) {
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	good := "<13>Jan  1 00:00:00 h p[1]: "

	c := dial()
	send(c, "999999999999 <13>x")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection with absurd octet count not closed")
	}

	c = dial()
	big := good + strings.Repeat("A", 5000)
	send(c, fmt.Sprintf("%d %s", len(big), big))
	m := good + "after oversized"
	send(c, fmt.Sprintf("%d %s", len(m), m))
	k.waitFor(t, "after oversized")

	c = dial()
	garbage := make([]byte, 8192)
	rand.Read(garbage)
	send(c, string(garbage)+"\n"+good+"after garbage\n")
	k.waitFor(t, "after garbage")
	c.Close()

	// 5424 with 10k SD params, octet-counted.
	var sd strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sd, " p%d=\"v\"", i)
	}
	m = "<13>1 2026-01-01T00:00:00Z h app 1 - [x@1" + sd.String() + "] after sd"
	c = dial()
	send(c, fmt.Sprintf("%d %s", len(m), m))
	good5424 := "<13>1 2026-01-01T00:00:00Z h app 1 - - after big 5424"
	send(c, fmt.Sprintf("%d %s", len(good5424), good5424))
	k.waitFor(t, "after big 5424")
	c.Close()

	// Idle connections: held open past MaxConns; then they time out.
	time.Sleep(100 * time.Millisecond)
	for range 4 {
		dial()
	}
	time.Sleep(1500 * time.Millisecond)
	c = dial()
	send(c, good+"after idle\n")
	k.waitFor(t, "after idle")

	st := s.Stats()
	t.Logf("%+v", st)
	if st.FrameTooLarge != 1 || st.Truncated < 2 || st.Unparsed < 1 || st.Rejected < 1 || st.IdleTimeouts < 3 || st.PanicsRecovers != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testPKI(t, dir)
	s, k := start(t, Config{Network: "tls", CertFile: certFile, KeyFile: keyFile, HandshakeTimeout: 300 * time.Millisecond})

	// A client that never completes its handshake, and one that speaks
	// plain text to the TLS port.
	stall, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	plain, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("<13>Jan  1 00:00:00 h p: not tls\n"))

	pool := x509.NewCertPool()
	b, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(b)
	c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := "<13>1 2026-01-01T00:00:00Z h postfix/qmgr 7 - - over tls"
	fmt.Fprintf(c, "%d %s", len(m), m)
	l := k.waitFor(t, "over tls")
	if l.Program != "postfix/qmgr" || l.PID != 7 {
		t.Errorf("%+v", l)
	}
	time.Sleep(500 * time.Millisecond)
	if st := s.Stats(); st.TLSFailures != 2 || st.Messages != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestUDPDropsCounted(t *testing.T) {
	release := make(chan struct{})
	k := &sink{}
	s, err := New(Config{Network: "udp", Addr: "127.0.0.1:0", UDPQueue: 16}, func(ctx context.Context, l mtalog.Line) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		k.handle(ctx, l)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := s.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2000 {
		fmt.Fprintf(c, "<13>Jan  1 00:00:00 h p: flood %d", i)
	}
	// Datagrams also of 64 KB.
	c.Write([]byte("<13>Jan  1 00:00:00 h p: " + strings.Repeat("x", 65000)))
	time.Sleep(300 * time.Millisecond)
	close(release)
	// UDP may lose this one too (kernel buffer): resend until it is seen.
	for i := 0; i < 50 && !k.has("after flood"); i++ {
		fmt.Fprintf(c, "<13>Jan  1 00:00:00 h p: after flood")
		time.Sleep(100 * time.Millisecond)
	}
	k.waitFor(t, "after flood")
	st := s.Stats()
	t.Logf("%+v", st)
	if st.UDPDropped == 0 {
		t.Errorf("no drops counted: %+v", st)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v", err)
	}
}

func TestCloseLifecycle(t *testing.T) {
	s, err := New(Config{Network: "tcp", Addr: "127.0.0.1:0"}, func(context.Context, mtalog.Line) {})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Error("Addr before Listen")
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(t.Context()) }()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}
