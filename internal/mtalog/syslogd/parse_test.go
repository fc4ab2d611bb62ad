package syslogd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParse(t *testing.T) {
	utc := time.UTC
	now := time.Date(2026, 1, 1, 0, 5, 0, 0, utc)
	for _, tc := range []struct {
		in              string
		time            string
		host, prog, msg string
		pid             int
		unparsed        bool
	}{
		{in: "<22>Dec 31 23:59:58 mx1 postfix/smtpd[123]: connect from x[1.2.3.4]", time: "2025-12-31T23:59:58Z", host: "mx1", prog: "postfix/smtpd", pid: 123, msg: "connect from x[1.2.3.4]"},
		{in: "<22>Jan  1 00:04:00 mx1 postfix/submission/smtpd[9]: hi", time: "2026-01-01T00:04:00Z", host: "mx1", prog: "postfix/submission/smtpd", pid: 9, msg: "hi"},
		{in: "<13>Jan 1 00:04:00 tag: no host", time: "2026-01-01T00:04:00Z", prog: "tag", msg: "no host"},
		{in: "<13>Jan  1 00:04:00.123456 h exim[1]: x", time: "2026-01-01T00:04:00.123456Z", host: "h", prog: "exim", pid: 1, msg: "x"},
		{in: "<30>2025-06-01T10:00:00.5+02:00 mail sm-mta[77]: abc: from=<a@b>", time: "2025-06-01T08:00:00.5Z", host: "mail", prog: "sm-mta", pid: 77, msg: "abc: from=<a@b>"},
		{in: "<13>Jan  1 00:04:00 host message without tag", time: "2026-01-01T00:04:00Z", host: "host", msg: "message without tag"},
		{in: "<13>just text", time: "2026-01-01T00:05:00Z", msg: "just text"},
		{in: "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\"] An application event", time: "2003-10-11T22:14:15.003Z", host: "mymachine.example.com", prog: "evntslog", msg: "An application event"},
		{in: "<13>1 2026-01-01T00:00:00Z h smtpd 4321 - - session 1: connected", time: "2026-01-01T00:00:00Z", host: "h", prog: "smtpd", pid: 4321, msg: "session 1: connected"},
		{in: "<13>1 - - - - - -", time: "2026-01-01T00:05:00Z"},
		{in: "no pri at all", time: "2026-01-01T00:05:00Z", msg: "no pri at all", unparsed: true},
		{in: "<999>Jan  1 00:00:00 h p: x", time: "2026-01-01T00:05:00Z", msg: "<999>Jan  1 00:00:00 h p: x", unparsed: true},
		{in: "\x00\xff\xfe<", time: "2026-01-01T00:05:00Z", msg: "\x00\xff\xfe<", unparsed: true},
	} {
		var p Parser
		p.Location = utc
		l, err := p.Parse([]byte(tc.in), "peer", now)
		if (err != nil) != tc.unparsed || (err != nil && !errors.Is(err, ErrUnparsed)) {
			t.Errorf("%q: err = %v", tc.in, err)
		}
		got := l.Time.UTC().Format(time.RFC3339Nano)
		if got != tc.time || l.Host != tc.host || l.Program != tc.prog || l.PID != tc.pid || l.Message != tc.msg || l.Raw != tc.in || l.Origin != "peer" {
			t.Errorf("%q:\n got %s %q %q %d %q\nwant %s %q %q %d %q", tc.in, got, l.Host, l.Program, l.PID, l.Message, tc.time, tc.host, tc.prog, tc.pid, tc.msg)
		}
	}
}

type frame struct {
	msg   string
	trunc bool
}

func frames(t *testing.T, r io.Reader, max int) ([]frame, error) {
	t.Helper()
	f := NewFramer(r, max, 1<<20)
	var out []frame
	for range 1000 {
		m, tr, err := f.Next()
		if err != nil {
			return out, err
		}
		out = append(out, frame{string(m), tr})
	}
	t.Fatal("too many frames")
	return nil, nil
}

func TestFramer(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []frame
		err      error
	}{
		{"newline", "<1>a\n<2>b\r\n\n<3>c", []frame{{"<1>a", false}, {"<2>b", false}, {"<3>c", false}}, io.EOF},
		{"octet", "4 <1>a5 <2>bc", []frame{{"<1>a", false}, {"<2>bc", false}}, io.EOF},
		{"octet with LF", "4 <1>a\n4 <2>b\n", []frame{{"<1>a", false}, {"<2>b", false}}, io.EOF},
		{"mixed", "4 <1>a<2>line\n3 <3>", []frame{{"<1>a", false}, {"<2>line", false}, {"<3>", false}}, io.EOF},
		{"octet truncated", "12 <1>abcdefghi<2>x\n", []frame{{"<1>abcde", true}, {"<2>x", false}}, io.EOF},
		{"line truncated", "<1>abcdefghijkl\n<2>x\n", []frame{{"<1>abcde", true}, {"<2>x", false}}, io.EOF},
		{"line exactly max", "<1>abcde\n", []frame{{"<1>abcde", false}}, io.EOF},
		{"digits not a count", "123abc\n", []frame{{"123abc", false}}, io.EOF},
		{"leading zero", "04 <1>a\n", []frame{{"04 <1>a", false}}, io.EOF},
		{"absurd count", "999999999999 <13>x", nil, ErrFrameTooLarge},
		{"too many digits", "99999999999999999999 <13>x", nil, ErrFrameTooLarge},
		{"over skip limit", "2000000 <13>x", nil, ErrFrameTooLarge},
		{"short octet frame", "10 <1>a", nil, io.ErrUnexpectedEOF},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tc.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			got, err := frames(t, r, 8)
			if !errors.Is(err, tc.err) || len(got) != len(tc.want) {
				t.Errorf("%s (one byte %v): got %+v, %v; want %+v, %v", tc.name, oneByte, got, err, tc.want, tc.err)
				continue
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s: frame %d = %+v, want %+v", tc.name, i, got[i], tc.want[i])
				}
			}
		}
	}
}

// TestFramerNoAllocationForHugeCount: an absurd octet count is refused
// before anything is allocated.
func TestFramerNoAllocationForHugeCount(t *testing.T) {
	in := []byte("999999999999 <13>x")
	allocs := testing.AllocsPerRun(100, func() {
		f := NewFramer(bytes.NewReader(in), 64<<10, 64<<20)
		if _, _, err := f.Next(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	})
	// bytes.Reader, Framer and its 16 KiB bufio buffer; nothing sized by the count.
	if allocs > 4 {
		t.Errorf("%v allocations", allocs)
	}
}

func FuzzFramer(f *testing.F) {
	for _, s := range []string{"4 <1>a5 <2>bc", "<1>a\n<2>b\r\n", "999999999999 <13>x", "12 <1>abcdefghi<2>x\n", "0 \n", "1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 16
		fr := NewFramer(bytes.NewReader(in), max, 1024)
		total := 0
		for i := 0; ; i++ {
			m, _, err := fr.Next()
			if err != nil {
				break
			}
			if len(m) > max {
				t.Fatalf("frame of %d bytes > max", len(m))
			}
			if len(m) == 0 {
				t.Fatal("empty frame")
			}
			total++
			if i > len(in) {
				t.Fatal("more frames than input bytes")
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"<22>Dec 31 23:59:58 mx1 postfix/smtpd[123]: connect from x[1.2.3.4]",
		"<30>2025-06-01T10:00:00.5+02:00 mail sm-mta[77]: abc",
		"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] An application event",
		"<13>Feb 29 00:00:00 h p[: x", "<0>", "<13>1 ",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in []byte) {
		var p Parser
		p.Location = time.UTC
		l, err := p.Parse(in, "o", now)
		if l.Raw != string(in) || l.Origin != "o" {
			t.Fatal("raw or origin lost")
		}
		if err != nil && !errors.Is(err, ErrUnparsed) {
			t.Fatalf("error not ErrUnparsed: %v", err)
		}
		if l.PID < 0 {
			t.Fatal("negative pid")
		}
	})
}

func BenchmarkParse(b *testing.B) {
	msgs := [][]byte{
		[]byte("<22>Mar  4 12:00:01 mx1 postfix/smtp[4242]: 4Xy7Zq1abcD: to=<u@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 12345)"),
		[]byte("<22>1 2026-03-04T12:00:01.123456+00:00 mx1 postfix/smtp 4242 - - 4Xy7Zq1abcD: to=<u@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)"),
	}
	for i, name := range []string{"rfc3164", "rfc5424"} {
		b.Run(name, func(b *testing.B) {
			var p Parser
			now := time.Now()
			b.SetBytes(int64(len(msgs[i])))
			for b.Loop() {
				if _, err := p.Parse(msgs[i], "o", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
