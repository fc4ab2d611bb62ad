package relay_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/testenv"
)

// TestDotStuffingRoundTrip (P-10): what the upstream stores is byte for
// byte what the client sent, and the record's hash is of those bytes.
func TestDotStuffingRoundTrip(t *testing.T) {
	sink := testenv.StartSink(t, "-d", "%H%M%S.")
	p := startProxy(t, relay.Config{Upstream: sink.Addr(), TLSMode: relay.TLSNone}, nil)
	body := "Subject: dots\r\n\r\n.\r\n..\r\n.foo\r\n..bar\r\nmiddle . line\r\n8-bit: \xc3\xa9t\xc3\xa9\r\nlast\r\n"
	stuffed := strings.ReplaceAll("\r\n"+body, "\r\n.", "\r\n..")[2:]
	c := testenv.DialSMTP(t, p.addr)
	c.Cmd("EHLO client.example", 250)
	c.Cmd("MAIL FROM:<a@shop.example>", 250)
	c.Cmd("RCPT TO:<v@dest.example>", 250)
	c.Cmd("DATA", 354)
	c.Send(stuffed + ".\r\n")
	c.Expect(250)
	c.Cmd("QUIT", 221)
	m := p.waitMessages(t, 1)[0]
	sum := sha256.Sum256([]byte(body))
	if m.BodySHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(body)) {
		t.Errorf("record hash/size %s %d, want hash of the unstuffed body (%d bytes)", m.BodySHA256, m.Size, len(body))
	}
	files := sink.WaitDumps(t, 1, 10*time.Second)
	dump, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// smtp-sink writes LF line ends and prepends its own X- and Received
	// headers and ends the dump with one empty line; the message follows
	// from our Subject line on.
	got := string(dump)
	i := strings.Index(got, "Subject: dots\n")
	if i < 0 {
		t.Fatalf("dump: %q", got)
	}
	if want := strings.ReplaceAll(body, "\r\n", "\n") + "\n"; got[i:] != want {
		t.Errorf("upstream stored\n%q\nwant\n%q", got[i:], want)
	}
}

// TestCapabilitiesMirrored (P-11): the client is offered only what the
// upstream offers, and parameters for missing extensions are refused
// before anything reaches the upstream.
func TestCapabilitiesMirrored(t *testing.T) {
	sink := testenv.StartSink(t, "-8") // no 8BITMIME; smtp-sink has no SMTPUTF8 or CHUNKING either
	p := startProxy(t, relay.Config{Upstream: sink.Addr(), TLSMode: relay.TLSNone}, nil)
	c := testenv.DialSMTP(t, p.addr)
	ehlo := strings.Join(c.Cmd("EHLO client.example", 250).Lines, "|")
	for _, absent := range []string{"8BITMIME", "SMTPUTF8", "CHUNKING"} {
		if strings.Contains(ehlo, absent) {
			t.Errorf("offered %s the upstream lacks: %s", absent, ehlo)
		}
	}
	for _, present := range []string{"PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if !strings.Contains(ehlo, present) {
			t.Errorf("%s missing: %s", present, ehlo)
		}
	}
	c.Cmd("MAIL FROM:<a@shop.example> BODY=8BITMIME", 555)
	c.Cmd("MAIL FROM:<a@shop.example> SMTPUTF8", 555)
	c.Cmd("MAIL FROM:<jürgen@shop.example>", 553)
	c.Cmd("MAIL FROM:<a@shop.example> RET=HDRS", 250)
	c.Cmd("RCPT TO:<v@dest.example> NOTIFY=FAILURE", 250)
	c.Send("BDAT 3 LAST\r\nabc")
	c.Expect(502)
}
