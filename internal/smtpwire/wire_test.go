package smtpwire

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in   string
		verb string
		arg  string
		err  error
	}{
		{"EHLO client.example", "EHLO", "client.example", nil},
		{"mail FROM:<a@b>", "MAIL", "FROM:<a@b>", nil},
		{"QUIT", "QUIT", "", nil},
		{"EHLO x\rX-Evil: 1", "", "", ErrBareCR},
		{"EHLO x\nX-Evil: 1", "", "", ErrBareLF},
		{"RCPT TO:<v@b.test>\x00", "", "", ErrNUL},
		{"EHLO \x1b[2J", "", "", ErrControl},
		{"EHLO \xff\xfe", "", "", ErrBadUTF8},
		{"EHLO héllo.example", "EHLO", "héllo.example", nil},
		{"", "", "", ErrSyntax},
		{"GET / HTTP/1.1", "GET", "/ HTTP/1.1", nil},
		{"M@IL FROM:<a@b>", "", "", ErrSyntax},
		{"VERYLONGVERBXX x", "", "", ErrSyntax},
	}
	for _, tc := range tests {
		c, err := ParseCommand([]byte(tc.in))
		if !errors.Is(err, tc.err) {
			t.Errorf("ParseCommand(%q) error = %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (c.Verb != tc.verb || c.Arg != tc.arg) {
			t.Errorf("ParseCommand(%q) = %+v", tc.in, c)
		}
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		mail   bool
		in     string
		addr   string
		params string
		ok     bool
	}{
		{true, "FROM:<a@b.example>", "a@b.example", "", true},
		{true, "FROM:<>", "", "", true},
		{true, "from: <a@b.example> SIZE=1234 BODY=8BITMIME", "a@b.example", "SIZE=1234 BODY=8BITMIME", true},
		{true, "FROM:<a@b.example> SMTPUTF8", "a@b.example", "SMTPUTF8", true},
		{true, "FROM:<\"john doe\"@b.example>", "\"john doe\"@b.example", "", true},
		{true, "FROM:<用户@例子.广告>", "用户@例子.广告", "", true},
		{true, "FROM:<@relay.example:a@b.example>", "a@b.example", "", true},
		{true, "FROM:a@b.example", "", "", false},
		{true, "FROM:<a@b.example", "", "", false},
		{true, "FROM:<a@b.example>x", "", "", false},
		{true, "FROM:<a b@c>", "", "", false},
		{true, "FROM:<a@>", "", "", false},
		{true, "FROM:<noat>", "", "", false},
		{true, "FROM:<a@b.example> SIZE==1", "", "", false},
		{true, "TO:<a@b>", "", "", false},
		{false, "TO:<v@up.test>", "v@up.test", "", true},
		{false, "TO:<Postmaster>", "Postmaster", "", true},
		{false, "TO:<>", "", "", false},
		{false, "TO:<v@up.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;v@up.test", "v@up.test", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;v@up.test", true},
		{false, "TO:<v@b_x.test>", "", "", false},
	}
	for _, tc := range tests {
		var p Path
		var err error
		if tc.mail {
			p, err = ParseMailArg(tc.in)
		} else {
			p, err = ParseRcptArg(tc.in)
		}
		if (err == nil) != tc.ok {
			t.Errorf("parse %q: err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil {
			continue
		}
		var ps []string
		for _, x := range p.Params {
			ps = append(ps, x.String())
		}
		if p.Addr != tc.addr || strings.Join(ps, " ") != tc.params {
			t.Errorf("parse %q = %q %q", tc.in, p.Addr, ps)
		}
		if got := FormatPath(p); !strings.Contains(got, "<"+p.Addr+">") {
			t.Errorf("FormatPath = %q", got)
		}
	}
}

func TestReadReply(t *testing.T) {
	in := "250-mail.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 SMTPUTF8\r\n" +
		"550 5.1.1 <x@y>: Recipient address rejected\r\n" +
		"451-4.3.0 first\r\n451 4.3.0 second\r\n" +
		"220\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	rep, _, err := ReadReply(r, 512)
	if err != nil || rep.Code != 250 || len(rep.Lines) != 4 || rep.Lines[2] != "SIZE 10240000" {
		t.Fatalf("ehlo reply = %+v, %v", rep, err)
	}
	rep, _, err = ReadReply(r, 512)
	if err != nil || rep.Code != 550 || rep.Enhanced != "5.1.1" || rep.String() != "550 5.1.1 <x@y>: Recipient address rejected" {
		t.Fatalf("550 reply = %+v (%s), %v", rep, rep.String(), err)
	}
	rep, _, err = ReadReply(r, 512)
	if err != nil || rep.Enhanced != "4.3.0" || rep.Text() != "first second" {
		t.Fatalf("multi-line enhanced = %+v, %v", rep, err)
	}
	rep, _, err = ReadReply(r, 512)
	if err != nil || rep.Code != 220 || rep.String() != "220" {
		t.Fatalf("bare code = %+v, %v", rep, err)
	}
	bad := []string{"25\r\n", "abc ok\r\n", "250-x\r\n251 y\r\n", "250 ok\n", "250 o\rk\r\n", "999 x\r\n", "250+x\r\n"}
	for _, b := range bad {
		if _, _, err := ReadReply(bufio.NewReader(strings.NewReader(b)), 512); err == nil {
			t.Errorf("ReadReply(%q) accepted", b)
		}
	}
	// Enhanced code of the wrong class is text.
	rep, _, _ = ReadReply(bufio.NewReader(strings.NewReader("250 5.0.0 odd\r\n")), 512)
	if rep.Enhanced != "" || rep.Text() != "5.0.0 odd" {
		t.Errorf("wrong-class enhanced = %+v", rep)
	}
}

func TestReplyWire(t *testing.T) {
	r := Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"first", "se\rcond\n"}}
	if got := string(r.Wire()); got != "250-2.0.0 first\r\n250 2.0.0 se cond \r\n" {
		t.Errorf("Wire = %q", got)
	}
}

func TestReadLineLimits(t *testing.T) {
	long := strings.Repeat("a", 5000)
	r := bufio.NewReaderSize(strings.NewReader(long+"\r\nNOOP\r\nx\ny\r\n"), 1024)
	if _, err := ReadLine(r, 2000); err != ErrLineTooLong {
		t.Fatalf("long line: %v", err)
	}
	if l, err := ReadLine(r, 2000); err != nil || string(l) != "NOOP" {
		t.Fatalf("after long line: %q %v (stream out of sync)", l, err)
	}
	if _, err := ReadLine(r, 2000); err != ErrBareLF {
		t.Fatalf("bare LF: %v", err)
	}
}

func TestQueueIDFromReply(t *testing.T) {
	tests := map[string]string{
		"250 2.0.0 Ok: queued as 4Qx7Yv1Xr7z9vLn":                                  "4Qx7Yv1Xr7z9vLn",
		"250 OK id=1rAbCd-000123-Ab":                                               "1rAbCd-000123-Ab",
		"250 2.0.0 4ATAbcde012345 Message accepted for delivery":                   "4ATAbcde012345",
		"250 2.6.0 <m@x> [InternalId=1234, Hostname=EX1] Queued mail for delivery": "1234",
		"250 2.0.0 OK  1700000000 x12-20020a.123 - gsmtp":                          "x12-20020a.123",
		"250 ok 1700000000 qp 12345":                                               "12345",
		"250 Message Queued (4A1B-99)":                                             "4A1B-99",
		"250 2.0.0 Ok":                                                             "",
		"550 5.0.0 queued as X":                                                    "",
	}
	for in, want := range tests {
		rep, _, err := ReadReply(bufio.NewReader(strings.NewReader(in+"\r\n")), 512)
		if err != nil {
			t.Fatal(err)
		}
		if got := QueueIDFromReply(rep); got != want {
			t.Errorf("QueueIDFromReply(%q) = %q, want %q", in, got, want)
		}
	}
}

// smuggling is the twelve end-of-data sequences of the SMTP-smuggling
// research (SEC Consult, hannob/smtpsmug, The-Login).
var smuggling = []string{"\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "\r\n.\x00\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n"}

func TestReadDataSmuggling(t *testing.T) {
	for _, seq := range smuggling {
		payload := "Subject: s\r\n\r\nbody" + seq + "MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<v@up.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nSMUGGLED\r\n.\r\nQUIT\r\n"
		for _, size := range []int{16, 4096} { // small buffers exercise fragment boundaries
			r := bufio.NewReaderSize(strings.NewReader(payload), size)
			res, err := ReadData(r, DataLimits{MaxSize: 1 << 20, MaxLine: 998})
			if err != nil {
				t.Fatalf("%q: %v", seq, err)
			}
			if res.Clean() {
				t.Errorf("%q (buf %d): not flagged: %+v", seq, size, res)
			}
			if !bytes.Contains(res.Body, []byte("SMUGGLED")) {
				t.Errorf("%q: end of data found too early: %q", seq, res.Body)
			}
			rest, _ := ReadLine(r, 100)
			if string(rest) != "QUIT" {
				t.Errorf("%q: next command %q", seq, rest)
			}
		}
	}
}

func TestReadDataRoundTrip(t *testing.T) {
	bodies := []string{
		"",
		"a\r\n",
		".\r\n..\r\n.foo\r\n..bar\r\n",
		"last line without CRLF",
		"8-bit: \xc3\xa9t\xc3\xa9\r\n",
		strings.Repeat("x", 5000) + "\r\n.\r\n.",
	}
	for _, b := range bodies {
		var wire bytes.Buffer
		if err := DotStuff(&wire, []byte(b)); err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{16, 4096} {
			res, err := ReadData(bufio.NewReaderSize(bytes.NewReader(wire.Bytes()), size), DataLimits{MaxSize: 1 << 20, MaxLine: 998})
			if err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			want := b
			if want != "" && !strings.HasSuffix(want, "\r\n") {
				want += "\r\n"
			}
			if string(res.Body) != want || !res.Clean() {
				t.Errorf("round trip %q (buf %d) = %q %+v", b, size, res.Body, res)
			}
		}
	}
}

func TestReadDataLimits(t *testing.T) {
	in := strings.Repeat("0123456789\r\n", 1000) + ".\r\nNOOP\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	res, err := ReadData(r, DataLimits{MaxSize: 100, MaxLine: 5})
	if err != nil || !res.TooLarge || res.Size != 12000 || len(res.Body) > 100 || res.LongLines != 1000 {
		t.Fatalf("limits: %v size=%d kept=%d long=%d", err, res.Size, len(res.Body), res.LongLines)
	}
	if l, _ := ReadLine(r, 100); string(l) != "NOOP" {
		t.Fatalf("stream out of sync after oversize: %q", l)
	}
	if _, err := ReadData(bufio.NewReader(strings.NewReader("abc\r\n")), DataLimits{}); err != ErrDataEOF {
		t.Fatalf("EOF during DATA: %v", err)
	}
}

func TestNormalize(t *testing.T) {
	for _, seq := range smuggling {
		n := Normalize([]byte("body" + seq + "MAIL FROM:<x@y>\r\n"))
		var wire bytes.Buffer
		DotStuff(&wire, n)
		// After normalising and stuffing, the only end-of-data is the last one.
		if i := bytes.Index(wire.Bytes(), []byte("\r\n.\r\n")); i != wire.Len()-5 {
			t.Errorf("%q: early end-of-data at %d in %q", seq, i, wire.Bytes())
		}
		if bytes.Contains(bytes.ReplaceAll(n, []byte("\r\n"), nil), []byte("\r")) || bytes.Contains(bytes.ReplaceAll(n, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("%q: bare CR/LF left: %q", seq, n)
		}
	}
}

func TestChunkScanner(t *testing.T) {
	var s ChunkScanner
	s.Scan([]byte("a\r"))
	s.Scan([]byte("\nb\nc\r"))
	s.Scan([]byte("d\x00"))
	s.Finish()
	if s.BareLF != 1 || s.BareCR != 1 || s.NUL != 1 {
		t.Errorf("scanner = %+v", s)
	}
}

func TestParseBDAT(t *testing.T) {
	if n, last, err := ParseBDAT("100 LAST"); err != nil || n != 100 || !last {
		t.Error(n, last, err)
	}
	for _, bad := range []string{"", "x", "-1", "1 2", "99999999999999999999", "10 LAST x"} {
		if _, _, err := ParseBDAT(bad); err == nil {
			t.Errorf("ParseBDAT(%q) accepted", bad)
		}
	}
}
