package testenv

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/smtpwire"
)

// RawSMTP is an SMTP client for tests that must send exact bytes: it writes
// what it is given and parses replies strictly.
type RawSMTP struct {
	T  testing.TB
	NC net.Conn
	BR *bufio.Reader
}

// DialSMTP connects to addr, reads the greeting and expects 220. The
// connection closes when the test ends; the whole session must finish
// within 30 seconds.
func DialSMTP(t testing.TB, addr string) *RawSMTP {
	t.Helper()
	return DialSMTPFrom(t, "", addr, 220)
}

// DialSMTPFrom connects from the local IP from (e.g. "127.0.0.2"; "" for
// any) and expects greeting as the first reply's code.
func DialSMTPFrom(t testing.TB, from, addr string, greeting int) *RawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &RawSMTP{T: t, NC: nc, BR: bufio.NewReader(nc)}
	c.Expect(greeting)
	return c
}

// Upgrade replaces the connection, e.g. with a tls.Client after STARTTLS.
func (c *RawSMTP) Upgrade(nc net.Conn) {
	c.NC, c.BR = nc, bufio.NewReader(nc)
}

// Send writes s as it is.
func (c *RawSMTP) Send(s string) {
	c.T.Helper()
	if _, err := c.NC.Write([]byte(s)); err != nil {
		c.T.Fatalf("write %q: %v", s, err)
	}
}

// Read reads one reply.
func (c *RawSMTP) Read() smtpwire.Reply {
	c.T.Helper()
	rep, _, err := smtpwire.ReadReply(c.BR, 4096)
	if err != nil {
		c.T.Fatalf("read reply: %v", err)
	}
	return rep
}

// Expect reads one reply and fails the test unless it has code.
func (c *RawSMTP) Expect(code int) smtpwire.Reply {
	c.T.Helper()
	rep := c.Read()
	if rep.Code != code {
		c.T.Fatalf("got %q, want %d", rep.Full(), code)
	}
	return rep
}

// Cmd sends line with CRLF and expects code.
func (c *RawSMTP) Cmd(line string, code int) smtpwire.Reply {
	c.T.Helper()
	c.Send(line + "\r\n")
	return c.Expect(code)
}

// Closed reports whether the server closed the connection (within 3 s).
func (c *RawSMTP) Closed() bool {
	c.NC.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.BR.ReadByte()
	return err != nil
}
