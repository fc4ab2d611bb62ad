package testenv

import (
	"errors"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSinkDump proves that a plain sink accepts mail and that a relative
// -d template dumps each transaction under Dir().
func TestSinkDump(t *testing.T) {
	s := StartSink(t, "-d", "%H%M%S.", "-h", "sink.test")
	reply, _, err := SendMail(s.Addr(), nil, "a@client.test", []string{"b@example.test"}, testMessage("sink-1@client.test", "b@example.test"))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !strings.HasPrefix(reply, "2.0.0") {
		t.Errorf("reply %q", reply)
	}
	files := s.WaitDumps(t, 1, 5*time.Second)
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"X-Mail-Args: <a@client.test>", "X-Rcpt-Args: <b@example.test>", "Message-ID: <sink-1@client.test>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("dump lacks %q:\n%s", want, b)
		}
	}
}

// TestSinkRejects proves -r (4xx) and -f (5xx) at RCPT.
func TestSinkRejects(t *testing.T) {
	for _, c := range []struct {
		flag string
		code int
	}{{"-r", 450}, {"-f", 500}} {
		s := StartSink(t, c.flag, "RCPT")
		_, rcptErrs, _ := SendMail(s.Addr(), nil, "a@client.test", []string{"b@example.test"}, "x\r\n")
		var te *textproto.Error
		if len(rcptErrs) != 1 || !errors.As(rcptErrs[0], &te) || te.Code != c.code {
			t.Errorf("%s RCPT: %v, want %d", c.flag, rcptErrs, c.code)
		}
	}
}

// TestSinkDropAfterDot proves "-q ." : the connection closes after the dot
// without a reply.
func TestSinkDropAfterDot(t *testing.T) {
	s := StartSink(t, "-q", ".")
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	if err := w.Close(); err == nil {
		t.Errorf("reply to the dot, want a dropped connection")
	}
}

// TestSinkNoProbeSession proves that waiting for the sink does not connect
// to it (smtp-sink -v prints every connection), that -M 1 ends the sink
// after one message, and that Stop closes the port.
func TestSinkNoProbeSession(t *testing.T) {
	s := StartSink(t, "-v", "-M", "1")
	if strings.Contains(s.Output(), "connect (") {
		t.Errorf("harness connected to the sink:\n%s", s.Output())
	}
	if _, _, err := SendMail(s.Addr(), nil, "a@client.test", []string{"b@example.test"}, "Subject: x\r\n\r\nx\r\n"); err != nil {
		t.Logf("send: %v", err) // the sink may exit before answering QUIT
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.Exited() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !s.Exited() {
		t.Errorf("sink with -M 1 still running after one message")
	}
	if n := strings.Count(s.Output(), "connect ("); n != 1 {
		t.Errorf("%d connections in the sink's output, want 1:\n%s", n, s.Output())
	}

	s2 := StartSink(t)
	s2.Stop()
	if c, err := net.DialTimeout("tcp", s2.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("stopped sink still listens")
	}
}
