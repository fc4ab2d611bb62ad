package pcapsmtp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"net/netip"
	"net/smtp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/pcapsmtp/pcaptest"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

// recConn records every write, in order across both ends, as a step.
type recConn struct {
	net.Conn
	side  int
	mu    *sync.Mutex
	steps *[]step
}

func (r recConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	*r.steps = append(*r.steps, step{r.side, string(b)})
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// serverTLS is a server configuration for mx.example and a client
// configuration that trusts it and asks for that name.
func serverTLS(t testing.TB) (srv, cli *tls.Config) {
	t.Helper()
	cert, err := tlsutil.SelfSigned("mx.example")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: "mx.example"}
}

// handshake runs a real crypto/tls handshake over a loopback TCP pair and
// returns the bytes each end wrote, the client's connection state and
// both ends' errors.
func handshake(t testing.TB, srvCfg, cliCfg *tls.Config) (steps []step, cs tls.ConnectionState, cliErr, srvErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer sc.Close()
		sc.SetDeadline(time.Now().Add(10 * time.Second))
		done <- tls.Server(recConn{sc, 1, &mu, &steps}, srvCfg).Handshake()
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(recConn{cc, 0, &mu, &steps}, cliCfg)
	cliErr = tc.Handshake()
	cs = tc.ConnectionState()
	if cliErr != nil {
		cc.Close()
	}
	srvErr = <-done
	cc.Close()
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(steps), cs, cliErr, srvErr
}

// implicitTLS decodes a port-465 connection that carries steps.
func implicitTLS(t *testing.T, steps []step) record.Record {
	t.Helper()
	recs, _, err := decode(t, pcapBytes(t, capture(t, script{server: netip.MustParseAddrPort("198.51.100.25:465"), steps: steps})))
	if err != nil {
		t.Fatal(err)
	}
	ss := byType(recs, record.TypeSession)
	if len(ss) != 1 || len(recs) != 1 {
		t.Fatalf("%d records, %d sessions", len(recs), len(ss))
	}
	if ss[0].TLS == nil || !ss[0].TLS.Used || !slices.Contains(ss[0].Flags, pcapsmtp.FlagContentEncrypted) {
		t.Fatalf("session: tls %+v flags %v", ss[0].TLS, ss[0].Flags)
	}
	return ss[0]
}

// TestTLSHandshake reads real TLS 1.3 and 1.2 handshakes on an
// implicit-TLS port: the record says what the client's own connection
// state says (as tlsutil.Describe puts it for live connections).
func TestTLSHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     uint16
		offered []string
	}{
		{"TLS 1.3", 0, []string{"TLS 1.3", "TLS 1.2"}},
		{"TLS 1.2", tls.VersionTLS12, []string{"TLS 1.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := serverTLS(t)
			cli.MaxVersion = tc.max
			steps, cs, cerr, serr := handshake(t, srv, cli)
			if cerr != nil || serr != nil {
				t.Fatalf("handshake: client %v, server %v", cerr, serr)
			}
			got := implicitTLS(t, steps).TLS
			want := tlsutil.Describe(cs)
			if got.Version != tc.name || got.Version != want.Version || got.Cipher != want.Cipher || got.Cipher == "" ||
				got.SNI != "mx.example" || got.SNI != want.SNI || !slices.Equal(got.OfferedVersions, tc.offered) || got.Error != "" {
				t.Errorf("tls %+v; live connection: %+v", got, want)
			}
		})
	}
}

// TestTLSHandshakeFails: an alert in cleartext is the record's error; in
// TLS 1.3 a client's alert about the certificate is encrypted, and the
// record says only what the ServerHello showed.
func TestTLSHandshakeFails(t *testing.T) {
	t.Run("untrusted TLS 1.2", func(t *testing.T) {
		srv, _ := serverTLS(t)
		steps, _, cerr, serr := handshake(t, srv, &tls.Config{ServerName: "mx.example", MaxVersion: tls.VersionTLS12})
		if cerr == nil || serr == nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		got := implicitTLS(t, steps).TLS
		// The server read the same alert: "remote error: tls: bad certificate".
		desc, ok := strings.CutPrefix(got.Error, "client sent alert: ")
		if !ok || desc == "" || !strings.HasSuffix(serr.Error(), "tls: "+desc) || got.Version != "TLS 1.2" || got.Cipher == "" {
			t.Errorf("tls %+v; server: %v", got, serr)
		}
	})
	t.Run("untrusted TLS 1.3", func(t *testing.T) {
		srv, _ := serverTLS(t)
		steps, _, cerr, _ := handshake(t, srv, &tls.Config{ServerName: "mx.example"})
		if cerr == nil {
			t.Fatal("the handshake succeeded")
		}
		got := implicitTLS(t, steps).TLS
		if got.Error != "" || got.Version != "TLS 1.3" || got.Cipher == "" || got.SNI != "mx.example" {
			t.Errorf("tls %+v", got)
		}
	})
	t.Run("no common version", func(t *testing.T) {
		srv, cli := serverTLS(t)
		srv.MinVersion = tls.VersionTLS13
		cli.MaxVersion = tls.VersionTLS12
		steps, _, cerr, serr := handshake(t, srv, cli)
		if cerr == nil || serr == nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		got := implicitTLS(t, steps).TLS
		desc, ok := strings.CutPrefix(got.Error, "server sent alert: ")
		if !ok || desc == "" || !strings.HasSuffix(cerr.Error(), "tls: "+desc) || got.Version != "" || got.Cipher != "" || got.SNI != "mx.example" {
			t.Errorf("tls %+v; client: %v", got, cerr)
		}
	})
}

// refragment splits the handshake records of b into records of at most n
// bytes of handshake content each, so that messages span records.
func refragment(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("short record")
		}
		l := int(binary.BigEndian.Uint16(b[3:5]))
		hdr, frag := b[:3], b[5:5+l]
		for len(frag) > 0 {
			k := min(n, len(frag))
			out = append(out, hdr...)
			out = binary.BigEndian.AppendUint16(out, uint16(k))
			out = append(out, frag[:k]...)
			frag = frag[k:]
		}
		b = b[5+l:]
	}
	return out
}

// conversation feeds a STARTTLS session followed by the client's and
// server's first handshake writes to a Conversation, each in pieces of
// piece bytes, the server's with a gap first when gap is set.
func conversation(t *testing.T, ch, sh []byte, piece int, gap bool) record.Record {
	t.Helper()
	var recs []record.Record
	h := record.HandlerFunc(func(_ context.Context, r *record.Record) error {
		recs = append(recs, *r)
		return nil
	})
	ep := pcapsmtp.Endpoints{Client: netip.MustParseAddrPort("192.0.2.1:40000"), Server: netip.MustParseAddrPort("192.0.2.2:25")}
	c := pcapsmtp.NewConversation(pcapsmtp.Options{Handler: h}, ep, true, t0)
	ts := t0
	send := func(d pcapsmtp.Dir, b []byte) {
		for len(b) > 0 {
			k := min(piece, len(b))
			ts = ts.Add(time.Millisecond)
			c.Data(d, ts, b[:k])
			b = b[k:]
		}
	}
	send(pcapsmtp.FromServer, []byte("220 mx ESMTP\r\n"))
	send(pcapsmtp.FromClient, []byte("EHLO c\r\n"))
	send(pcapsmtp.FromServer, []byte("250-mx\r\n250 STARTTLS\r\n"))
	send(pcapsmtp.FromClient, []byte("STARTTLS\r\n"))
	send(pcapsmtp.FromServer, []byte("220 go ahead\r\n"))
	send(pcapsmtp.FromClient, ch)
	if gap {
		c.Gap(pcapsmtp.FromServer, ts, 100)
	}
	send(pcapsmtp.FromServer, sh)
	c.End(pcapsmtp.FromClient, ts, false)
	c.End(pcapsmtp.FromServer, ts, false)
	c.Finish()
	ss := byType(recs, record.TypeSession)
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	return ss[0]
}

// TestTLSHandshakeFragmented: hello messages spread over many records and
// fed a few bytes at a time read the same; a gap before the ServerHello
// leaves what it would have said empty.
func TestTLSHandshakeFragmented(t *testing.T) {
	srv, cli := serverTLS(t)
	steps, cs, cerr, serr := handshake(t, srv, cli)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	ch, sh := []byte(steps[0].data), []byte(steps[1].data)
	if steps[0].side != 0 || steps[1].side != 1 {
		t.Fatalf("steps: %d then %d", steps[0].side, steps[1].side)
	}
	want := tlsutil.Describe(cs)
	for _, piece := range []int{1, 7, 1460} {
		got := conversation(t, refragment(t, ch, 50), refragment(t, sh, 3), piece, false)
		if got.TLS.Version != want.Version || got.TLS.Cipher != want.Cipher || got.TLS.SNI != "mx.example" || len(got.TLS.OfferedVersions) == 0 || slices.Contains(got.Flags, pcapsmtp.FlagIncomplete) {
			t.Errorf("pieces of %d: tls %+v flags %v; want %+v", piece, got.TLS, got.Flags, want)
		}
	}
	got := conversation(t, ch, sh[10:], 1460, true)
	if got.TLS.Version != "" || got.TLS.Cipher != "" || got.TLS.SNI != "mx.example" || !slices.Contains(got.Flags, pcapsmtp.FlagIncomplete) {
		t.Errorf("gap: tls %+v flags %v", got.TLS, got.Flags)
	}
	// A client that starts its handshake with bytes that are not TLS
	// (plaintext pipelined after STARTTLS) is not read at all.
	got = conversation(t, append([]byte("EHLO again\r\n"), ch...), sh, 1460, false)
	if got.TLS.SNI != "" || len(got.TLS.OfferedVersions) != 0 || !got.TLS.Used {
		t.Errorf("plaintext first: tls %+v", got.TLS)
	}
}

// TestSTARTTLSHandshake captures a real STARTTLS session through the
// recording forwarder.
func TestSTARTTLSHandshake(t *testing.T) {
	srvCfg, cliCfg := serverTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		var conn net.Conn = nc
		r := bufio.NewReader(conn)
		conn.Write([]byte("220 mx.example ESMTP\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " "); verb {
			case "EHLO":
				conn.Write([]byte("250-mx.example\r\n250 STARTTLS\r\n"))
			case "STARTTLS":
				conn.Write([]byte("220 2.0.0 Ready to start TLS\r\n"))
				tc := tls.Server(nc, srvCfg)
				if tc.Handshake() != nil {
					return
				}
				conn, r = tc, bufio.NewReader(tc)
			case "QUIT":
				conn.Write([]byte("221 bye\r\n"))
				return
			default:
				conn.Write([]byte("250 ok\r\n"))
			}
		}
	}()
	var file strings.Builder
	w, err := pcaptest.NewWriter(&file)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := pcaptest.NewForwarder(w, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(fw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(cliCfg); err != nil {
		t.Fatal(err)
	}
	cs, _ := c.TLSConnectionState()
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	fw.Close()
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	recs, _, err := decode(t, []byte(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	ss := byType(recs, record.TypeSession)
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	got, want := ss[0].TLS, tlsutil.Describe(cs)
	if got == nil || !got.Used || got.Version != want.Version || got.Cipher != want.Cipher || got.SNI != want.SNI || got.SNI != "mx.example" ||
		!slices.Equal(got.OfferedVersions, []string{"TLS 1.3", "TLS 1.2"}) || ss[0].Helo != "client.example" {
		t.Errorf("tls %+v helo %q; live connection: %+v", got, ss[0].Helo, want)
	}
}
