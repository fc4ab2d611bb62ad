package smtpwire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO x", "MAIL FROM:<a@b> SIZE=1", "RCPT TO:<\"q\"@b>", "EHLO x\rY", "BDAT 10 LAST", "AUTH PLAIN AGEAYg=="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommand(b)
		if err != nil {
			return
		}
		if strings.ContainsAny(c.Arg, "\r\n\x00") {
			t.Fatalf("control byte passed: %q", c.Arg)
		}
		if p, err := ParseMailArg(c.Arg); err == nil {
			if strings.ContainsAny(FormatPath(p), "\r\n\x00") {
				t.Fatal("control byte in path")
			}
		}
		if p, err := ParseRcptArg(c.Arg); err == nil {
			// Re-parsing the formatted path gives the same address.
			q, err := ParseRcptArg("TO:" + FormatPath(p))
			if err != nil || q.Addr != p.Addr {
				t.Fatalf("round trip %q -> %q: %v", p.Addr, q.Addr, err)
			}
		}
		ParseBDAT(c.Arg)
	})
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 no\r\n", "4", "250 x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 10; i++ {
			rep, _, err := ReadReply(r, 512)
			if err != nil {
				return
			}
			if bytes.Count(rep.Wire(), []byte("\r\n")) != len(rep.Lines) && len(rep.Lines) > 0 {
				t.Fatalf("reply wire form forges lines: %q", rep.Wire())
			}
			QueueIDFromReply(rep)
		}
	})
}

func FuzzReadData(f *testing.F) {
	for _, s := range smuggling {
		f.Add([]byte("a" + s + "b\r\n.\r\n"))
	}
	f.Add([]byte(".\r\n"))
	f.Add([]byte("..x\r\n.\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := ReadData(bufio.NewReaderSize(bytes.NewReader(b), 16), DataLimits{MaxSize: 1 << 16, MaxLine: 100})
		if err != nil {
			return
		}
		// A clean body survives stuffing and re-reading byte for byte.
		if res.Clean() && !res.TooLarge {
			var w bytes.Buffer
			if err := DotStuff(&w, res.Body); err != nil {
				t.Fatal(err)
			}
			again, err := ReadData(bufio.NewReader(&w), DataLimits{MaxSize: 1 << 17})
			if err != nil {
				t.Fatal(err)
			}
			want := res.Body
			if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
				want = append(append([]byte{}, want...), '\r', '\n')
			}
			if !bytes.Equal(again.Body, want) {
				t.Fatalf("round trip changed body: %q -> %q", res.Body, again.Body)
			}
		}
		// Normalised and stuffed content has exactly one end-of-data.
		var w bytes.Buffer
		DotStuff(&w, Normalize(res.Body))
		if i := bytes.Index(w.Bytes(), []byte("\r\n.\r\n")); i >= 0 && i != w.Len()-5 {
			t.Fatalf("normalised body has an early end-of-data: %q", w.Bytes())
		}
	})
}
