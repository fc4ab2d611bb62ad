// Package relay is the smtpd Backend of the logging relay: for each client
// session it dials the upstream MTA, mirrors the client's EHLO, takes
// STARTTLS to the upstream (RFC 3207) or speaks implicit TLS to it (RFC 8314
// §3.3, port 465) as configured, passes AUTH through
// (RFC 4954) without ever recording the secret, optionally tells the
// upstream the real client with XCLIENT (Postfix), and relays each command
// and the meaning of each reply. The upstream leg is serialised: one command,
// one reply.
package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/smtpwire"
	"github.com/smtplog/smtplog/internal/tlsutil"
)

// TLS modes for the upstream leg.
const (
	TLSRequired      = "required"
	TLSOpportunistic = "opportunistic"
	TLSNone          = "none"
	// TLSImplicit starts TLS at connect, before the greeting (RFC 8314
	// §3.3, the "submissions" port 465); the certificate must verify
	// unless SkipVerify is set.
	TLSImplicit = "implicit"
)

// Config configures the relay backend.
type Config struct {
	Upstream string // host:port
	TLSMode  string // required, opportunistic (default), none or implicit
	// RootCAs verifies the upstream's certificate; nil uses the system pool.
	RootCAs *x509.CertPool
	// ServerName to verify; default the upstream's host.
	ServerName string
	// SkipVerify accepts any upstream certificate even in required and
	// implicit mode.
	SkipVerify     bool
	XClient        bool
	DialTimeout    time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.Upstream == "" {
		return errors.New("relay: an upstream host:port is required")
	}
	host, port, err := net.SplitHostPort(c.Upstream)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("relay: upstream %q is not host:port", c.Upstream)
	}
	switch c.TLSMode {
	case "":
		c.TLSMode = TLSOpportunistic
	case TLSRequired, TLSOpportunistic, TLSNone, TLSImplicit:
	default:
		return fmt.Errorf("relay: upstream TLS mode %q: use required, opportunistic, none or implicit", c.TLSMode)
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 30 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.DataTimeout <= 0 {
		c.DataTimeout = 10 * time.Minute
	}
	return nil
}

// Backend dials the upstream once per client session.
type Backend struct {
	cfg      Config
	loopback bool
}

var _ smtpd.Backend = (*Backend)(nil)

// New returns a relay backend; cfg must have passed Validate.
func New(cfg Config) *Backend {
	host, _, _ := net.SplitHostPort(cfg.Upstream)
	lb := host == "localhost"
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		lb = true
	}
	return &Backend{cfg: cfg, loopback: lb}
}

// Replies the relay gives itself.
var (
	replyUnavailable = smtpwire.NewReply(421, "4.3.2", "Upstream mail server unavailable, try again later")
	replyLost        = smtpwire.NewReply(421, "4.4.2", "Upstream connection lost, try again later")
	replyLostAtDot   = smtpwire.NewReply(451, "4.4.2", "Upstream connection lost, message not accepted; try again later")
	replyTLSFailed   = smtpwire.NewReply(421, "4.7.0", "TLS to the upstream mail server failed, try again later")
)

// Open dials the upstream and reads its greeting.
func (b *Backend) Open(ctx context.Context, c *smtpd.Conn) (smtpd.Session, error) {
	s := &session{b: b, conn: c, start: time.Now()}
	if err := s.dial(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

type session struct {
	b     *Backend
	conn  *smtpd.Conn
	start time.Time

	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	tls *record.TLS

	greeted bool
	caps    upstreamCaps
	lost    string
}

type upstreamCaps struct {
	smtpd.Caps
	startTLS bool
	xclient  bool
	auth     []string
}

func (s *session) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: s.b.cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", s.b.cfg.Upstream)
	if err != nil {
		return &smtpd.ReplyError{Reply: replyUnavailable, Reason: "upstream unavailable: " + shortErr(err)}
	}
	s.nc = nc
	s.br = bufio.NewReaderSize(nc, 4*1024)
	s.bw = bufio.NewWriterSize(nc, 16*1024)
	if s.b.cfg.TLSMode == TLSImplicit {
		if err := s.handshake(ctx); err != nil {
			nc.Close()
			s.tls = &record.TLS{Used: false, Error: err.Error()}
			return &smtpd.ReplyError{Reply: replyTLSFailed, Reason: "upstream TLS failed: " + err.Error()}
		}
		nc = s.nc
	}
	rep, err := s.read(s.b.cfg.CommandTimeout)
	if err != nil {
		nc.Close()
		return &smtpd.ReplyError{Reply: replyUnavailable, Reason: "upstream greeting: " + shortErr(err)}
	}
	if rep.Code != 220 {
		nc.Close()
		if rep.Class() == 2 {
			rep = replyUnavailable
		}
		return &smtpd.ReplyError{Reply: rep, Reason: "upstream refused the connection: " + rep.String()}
	}
	return nil
}

func shortErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) {
		return "connection closed"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return record.Escape(oe.Err.Error())
	}
	return record.Escape(err.Error())
}

// cmd sends one command line and reads the reply. redacted is what the
// transcript shows instead of line ("" shows line).
func (s *session) cmd(line, redacted string, timeout time.Duration) (smtpwire.Reply, error) {
	if s.lost != "" {
		return smtpwire.Reply{}, errors.New(s.lost)
	}
	shown := line
	if redacted != "" {
		shown = redacted
	}
	s.conn.Transcript.Add(time.Now(), "C", "upstream", shown)
	s.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := s.bw.WriteString(line + "\r\n"); err != nil {
		return smtpwire.Reply{}, s.fail("write", err)
	}
	if err := s.bw.Flush(); err != nil {
		return smtpwire.Reply{}, s.fail("write", err)
	}
	return s.read(timeout)
}

func (s *session) read(timeout time.Duration) (smtpwire.Reply, error) {
	s.nc.SetReadDeadline(time.Now().Add(timeout))
	rep, _, err := smtpwire.ReadReply(s.br, 4096)
	if err != nil {
		return smtpwire.Reply{}, s.fail("read", err)
	}
	s.conn.Transcript.AddReply(time.Now(), "upstream", rep)
	return rep, nil
}

func (s *session) fail(op string, err error) error {
	if s.lost == "" {
		s.lost = "upstream connection lost (" + op + ": " + shortErr(err) + ")"
		if errors.Is(err, smtpwire.ErrSyntax) || errors.Is(err, smtpwire.ErrBareLF) || errors.Is(err, smtpwire.ErrBareCR) || errors.Is(err, smtpwire.ErrLineTooLong) {
			s.lost = "upstream protocol error (" + shortErr(err) + ")"
		}
		s.nc.Close()
	}
	return errors.New(s.lost)
}

// Hello mirrors the client's EHLO upstream, secures the upstream leg on the
// first call, and returns the extensions both sides support.
func (s *session) Hello(ctx context.Context, name string, extended bool) (smtpwire.Reply, smtpd.Caps) {
	if s.lost != "" {
		return replyLost, smtpd.Caps{}
	}
	if !s.greeted {
		s.greeted = true
		if rep, ok := s.firstHello(ctx, name); !ok {
			return rep, smtpd.Caps{}
		}
	} else if rep, err := s.ehlo(name); err != nil {
		return replyLost, smtpd.Caps{}
	} else if rep.Code != 250 {
		return rep, smtpd.Caps{}
	}
	caps := s.caps.Caps
	if len(s.caps.auth) > 0 && (s.tls != nil && s.tls.Used || s.b.loopback || s.b.cfg.TLSMode == TLSNone) {
		caps.AuthMechs = s.caps.auth
	}
	return replyOK(), caps
}

func replyOK() smtpwire.Reply { return smtpwire.NewReply(250, "", "Ok") }

func (s *session) firstHello(ctx context.Context, name string) (smtpwire.Reply, bool) {
	rep, err := s.ehlo(name)
	if err != nil {
		return replyLost, false
	}
	if rep.Code != 250 {
		return rep, false
	}
	if s.b.cfg.XClient && s.caps.xclient {
		if rep, ok := s.xclient(name); !ok {
			return rep, false
		}
	}
	if s.b.cfg.TLSMode == TLSNone {
		s.tls = &record.TLS{Used: false}
		return rep, true
	}
	if s.b.cfg.TLSMode == TLSImplicit { // secured at connect
		return rep, true
	}
	if !s.caps.startTLS {
		s.tls = &record.TLS{Used: false, Error: "upstream does not offer STARTTLS"}
		if s.b.cfg.TLSMode == TLSRequired {
			s.lost = "upstream does not offer STARTTLS (upstream TLS is required)"
			return replyTLSFailed, false
		}
		return rep, true
	}
	if err := s.startTLS(ctx, false); err != nil {
		if s.b.cfg.TLSMode == TLSRequired {
			s.tls = &record.TLS{Used: false, Error: err.Error()}
			s.lost = "upstream TLS failed: " + err.Error()
			s.nc.Close()
			return replyTLSFailed, false
		}
		// Opportunistic: a failed handshake leaves the connection
		// unusable; start again in the clear and say so in the record.
		s.nc.Close()
		s.lost = ""
		if derr := s.dial(ctx); derr != nil {
			s.lost = "upstream unavailable after a failed TLS handshake"
			return replyLost, false
		}
		s.tls = &record.TLS{Used: false, Error: err.Error()}
		if rep, err := s.ehlo(name); err != nil || rep.Code != 250 {
			return replyLost, false
		}
		return rep, true
	}
	rep, err = s.ehlo(name)
	if err != nil {
		return replyLost, false
	}
	return rep, rep.Code == 250
}

func (s *session) ehlo(name string) (smtpwire.Reply, error) {
	rep, err := s.cmd("EHLO "+name, "", s.b.cfg.CommandTimeout)
	if err != nil {
		return rep, err
	}
	if rep.Code != 250 {
		return rep, nil
	}
	s.caps = parseCaps(rep)
	return rep, nil
}

func parseCaps(rep smtpwire.Reply) upstreamCaps {
	var c upstreamCaps
	for _, l := range rep.Lines[1:] {
		f := strings.Fields(strings.ToUpper(l))
		if len(f) == 0 {
			continue
		}
		kw := f[0]
		if strings.HasPrefix(kw, "AUTH=") { // old form "AUTH=LOGIN PLAIN"
			f = append([]string{"AUTH", strings.TrimPrefix(kw, "AUTH=")}, f[1:]...)
			kw = "AUTH"
		}
		switch kw {
		case "PIPELINING":
			c.Pipelining = true
		case "8BITMIME":
			c.EightBitMIME = true
		case "SMTPUTF8":
			c.SMTPUTF8 = true
		case "CHUNKING":
			c.Chunking = true
		case "DSN":
			c.DSN = true
		case "ENHANCEDSTATUSCODES":
			c.Enhanced = true
		case "STARTTLS":
			c.startTLS = true
		case "XCLIENT":
			c.xclient = true
		case "SIZE":
			if len(f) > 1 {
				c.Size, _ = strconv.ParseInt(f[1], 10, 64)
			}
		case "AUTH":
			for _, m := range f[1:] {
				switch m {
				case "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER":
					if !contains(c.auth, m) {
						c.auth = append(c.auth, m)
					}
				}
			}
		}
	}
	return c
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// startTLS upgrades the upstream leg. Bytes the upstream sent after its
// 220 and before the handshake are a response-injection attempt (NO
// STARTTLS, client side): the connection is abandoned.
func (s *session) startTLS(ctx context.Context, _ bool) error {
	rep, err := s.cmd("STARTTLS", "", s.b.cfg.CommandTimeout)
	if err != nil {
		return errors.New("STARTTLS: " + shortErr(err))
	}
	if rep.Code != 220 {
		return errors.New("STARTTLS refused: " + rep.String())
	}
	if s.br.Buffered() > 0 {
		s.conn.Transcript.Add(time.Now(), "S", "upstream", fmt.Sprintf("[%d bytes after 220 to STARTTLS: discarded, connection abandoned]", s.br.Buffered()))
		return errors.New("upstream sent data after its STARTTLS reply (response injection)")
	}
	return s.handshake(ctx)
}

// handshake secures the upstream connection as a TLS client and records
// the result. The certificate is always checked; a failure ends the
// handshake in required and implicit mode unless SkipVerify is set, and is
// only recorded in opportunistic mode.
func (s *session) handshake(ctx context.Context) error {
	enforce := (s.b.cfg.TLSMode == TLSRequired || s.b.cfg.TLSMode == TLSImplicit) && !s.b.cfg.SkipVerify
	var verifyErr error
	cfg := &tls.Config{
		ServerName:         s.b.cfg.ServerName,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, so opportunistic mode can record the result
		VerifyConnection: func(cs tls.ConnectionState) error {
			verifyErr = verify(cs, s.b.cfg.RootCAs, s.b.cfg.ServerName)
			if verifyErr != nil && enforce {
				return verifyErr
			}
			return nil
		},
	}
	tc := tls.Client(s.nc, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.b.cfg.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		if verifyErr != nil {
			return fmt.Errorf("certificate not trusted: %s", shortErr(verifyErr))
		}
		return fmt.Errorf("handshake: %s", shortErr(err))
	}
	s.nc = tc
	s.br = bufio.NewReaderSize(tc, 4*1024)
	s.bw = bufio.NewWriterSize(tc, 16*1024)
	s.tls = tlsutil.Describe(tc.ConnectionState())
	s.tls.Trust = "verified"
	if verifyErr != nil {
		s.tls.Trust = "untrusted"
		s.tls.Error = shortErr(verifyErr)
	}
	s.conn.Transcript.Add(time.Now(), "C", "upstream", "[TLS "+s.tls.Version+" "+s.tls.Cipher+" "+s.tls.Trust+"]")
	return nil
}

func verify(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// xclient tells Postfix the real client (XCLIENT_README); the upstream
// answers with a new greeting and expects EHLO again.
func (s *session) xclient(helo string) (smtpwire.Reply, bool) {
	c := s.conn.Client
	line := "XCLIENT ADDR=" + xtextAddr(c.Addr()) + " PORT=" + strconv.Itoa(int(c.Port())) + " HELO=" + xtext(helo) + " PROTO=ESMTP"
	rep, err := s.cmd(line, "", s.b.cfg.CommandTimeout)
	if err != nil {
		return replyLost, false
	}
	if rep.Code != 220 {
		// Not authorised for XCLIENT: carry on without it, the upstream
		// session is unchanged.
		s.conn.Transcript.Add(time.Now(), "S", "upstream", "[XCLIENT refused; continuing without it]")
		return rep, true
	}
	rep, err = s.ehlo(helo)
	if err != nil {
		return replyLost, false
	}
	return rep, rep.Code == 250
}

func xtextAddr(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "IPV6:" + a.String()
	}
	return a.Unmap().String()
}

// xtext encodes per RFC 3461 §4.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (s *session) simple(line string) smtpwire.Reply {
	rep, err := s.cmd(line, "", s.b.cfg.CommandTimeout)
	if err != nil {
		return replyLost
	}
	return rep
}

func (s *session) Mail(_ context.Context, from smtpwire.Path) smtpwire.Reply {
	return s.simple("MAIL FROM:" + smtpwire.FormatPath(from))
}

func (s *session) Rcpt(_ context.Context, to smtpwire.Path) smtpwire.Reply {
	return s.simple("RCPT TO:" + smtpwire.FormatPath(to))
}

func (s *session) Reset(context.Context) smtpwire.Reply { return s.simple("RSET") }

func (s *session) Noop(context.Context) smtpwire.Reply { return s.simple("NOOP") }

// Data sends the message with DATA (a client's BDAT chunks are joined and
// sent the same way). A body with bare CR or LF is normalised first: the
// relay never forwards the SMTP-smuggling vector raw, whatever the engine's
// policy.
func (s *session) Data(_ context.Context, m *smtpd.Message) smtpd.DataResult {
	body := m.Body
	for _, a := range m.Anomalies {
		if a == "bare_lf_in_data" || a == "bare_cr_in_data" {
			body = smtpwire.Normalize(body)
			break
		}
	}
	rep, err := s.cmd("DATA", "", s.b.cfg.CommandTimeout)
	if err != nil {
		return smtpd.DataResult{Reply: replyLost, Status: record.StatusAborted, Reason: s.lost, Close: true}
	}
	if rep.Code != 354 {
		if rep.Class() == 3 || rep.Class() == 2 {
			// An upstream that does not follow RFC 5321 here cannot be relayed safely.
			s.fail("DATA", fmt.Errorf("unexpected reply %d to DATA", rep.Code))
			return smtpd.DataResult{Reply: replyLost, Status: record.StatusAborted, Reason: s.lost, Close: true}
		}
		return smtpd.DataResult{Reply: rep, Sent: body}
	}
	s.nc.SetWriteDeadline(time.Now().Add(s.b.cfg.DataTimeout))
	if err := smtpwire.DotStuff(s.bw, body); err != nil {
		s.fail("write DATA", err)
		return smtpd.DataResult{Reply: replyLostAtDot, Status: record.StatusAborted, Reason: s.lost, Close: true}
	}
	if err := s.bw.Flush(); err != nil {
		s.fail("write DATA", err)
		return smtpd.DataResult{Reply: replyLostAtDot, Status: record.StatusAborted, Reason: s.lost, Close: true}
	}
	s.conn.Transcript.Add(time.Now(), "C", "upstream", fmt.Sprintf("[%d bytes of DATA]", len(body)))
	rep, err = s.read(s.b.cfg.DataTimeout)
	if err != nil {
		return smtpd.DataResult{Reply: replyLostAtDot, Status: record.StatusAborted, Reason: s.lost, Close: true, Sent: body}
	}
	return smtpd.DataResult{Reply: rep, QueueID: smtpwire.QueueIDFromReply(rep), Sent: body}
}

// AuthStep passes one AUTH line to the upstream; the line never reaches a
// transcript or log.
func (s *session) AuthStep(_ context.Context, mech, line string, first bool) smtpwire.Reply {
	shown := "[redacted]"
	if first {
		shown = smtpwire.RedactAuth(strings.TrimPrefix(line, "AUTH "))
	}
	rep, err := s.cmd(line, shown, s.b.cfg.CommandTimeout)
	if err != nil {
		return replyLost
	}
	return rep
}

// Close ends the upstream session: QUIT when the client quit, otherwise the
// connection is just closed.
func (s *session) Close(_ context.Context, reason string) {
	if s.nc == nil {
		return
	}
	if s.lost == "" && reason == record.CloseQuit {
		s.cmd("QUIT", "", 10*time.Second)
	}
	s.nc.Close()
}

// Annotate adds the upstream leg's facts to a record.
func (s *session) Annotate(r *record.Record) {
	r.Upstream = s.b.cfg.Upstream
	if s.tls != nil {
		t := *s.tls
		r.UpstreamTLS = &t
	}
	if s.lost != "" && r.Reason == "" && r.Type == record.TypeSession {
		r.Reason = s.lost
	}
}

var (
	_ smtpd.AuthSession = (*session)(nil)
	_ smtpd.Annotator   = (*session)(nil)
)
