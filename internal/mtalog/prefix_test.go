package mtalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/quick"
	"time"
)

func TestParseLine(t *testing.T) {
	ref := time.Date(2026, time.November, 30, 12, 0, 0, 0, time.UTC)
	jan := time.Date(2027, time.January, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		raw  string
		ref  time.Time
		want Line
	}{
		{"traditional", "Nov 30 01:44:11 mx postfix/smtpd[28932]: connect from unknown[127.0.0.1]", ref,
			Line{Time: time.Date(2026, 11, 30, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "postfix/smtpd", PID: 28932, Message: "connect from unknown[127.0.0.1]"}},
		{"space-padded day", "Nov  3 01:44:11 mx postfix/qmgr[7]: 4Qx7Yv1Xr7z9vLn: removed", ref,
			Line{Time: time.Date(2026, 11, 3, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "postfix/qmgr", PID: 7, Message: "4Qx7Yv1Xr7z9vLn: removed"}},
		{"december read in january", "Dec 31 23:59:59 mx postfix/qmgr[7]: ABCDEF123: removed", jan,
			Line{Time: time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), Host: "mx", Program: "postfix/qmgr", PID: 7, Message: "ABCDEF123: removed"}},
		{"no pid", "Nov 30 01:44:11 mx kernel: hello", ref,
			Line{Time: time.Date(2026, 11, 30, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "kernel", Message: "hello"}},
		{"multi-instance", "Nov 30 01:44:11 mx postfix-lab/submission/smtpd[9]: x", ref,
			Line{Time: time.Date(2026, 11, 30, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "postfix-lab/submission/smtpd", PID: 9, Message: "x"}},
		{"rfc3339 precise", "2026-11-29T10:12:34.123456+01:00 mx postfix/smtp[1]: m", ref,
			Line{Time: time.Date(2026, 11, 29, 9, 12, 34, 123456000, time.UTC), Host: "mx", Program: "postfix/smtp", PID: 1, Message: "m"}},
		{"short-iso", "2026-11-29T10:12:34+0100 mx postfix/smtp[1]: m", ref,
			Line{Time: time.Date(2026, 11, 29, 9, 12, 34, 0, time.UTC), Host: "mx", Program: "postfix/smtp", PID: 1, Message: "m"}},
		{"short-iso-precise", "2026-11-29T10:12:34.500000-0230 mx postfix/smtp[1]: m", ref,
			Line{Time: time.Date(2026, 11, 29, 12, 42, 34, 500000000, time.UTC), Host: "mx", Program: "postfix/smtp", PID: 1, Message: "m"}},
		{"rfc3164 with pri", "<22>Nov 30 01:44:11 mx postfix/smtpd[2]: m", ref,
			Line{Time: time.Date(2026, 11, 30, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "postfix/smtpd", PID: 2, Message: "m"}},
		{"rfc5424", `<22>1 2026-11-29T10:12:34.5Z mx postfix/smtpd 4711 - [meta x="a\]b"] connect from a[1.2.3.4]`, ref,
			Line{Time: time.Date(2026, 11, 29, 10, 12, 34, 500000000, time.UTC), Host: "mx", Program: "postfix/smtpd", PID: 4711, Message: "connect from a[1.2.3.4]"}},
		{"rfc5424 nil sd bom", "<22>1 2026-11-29T10:12:34Z mx exim - - - \ufeffhello", ref,
			Line{Time: time.Date(2026, 11, 29, 10, 12, 34, 0, time.UTC), Host: "mx", Program: "exim", Message: "hello"}},
		{"empty message", "Nov 30 01:44:11 mx postfix/smtpd[2]:", ref,
			Line{Time: time.Date(2026, 11, 30, 1, 44, 11, 0, time.UTC), Host: "mx", Program: "postfix/smtpd", PID: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLine(tc.raw, tc.ref)
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", tc.raw, err)
			}
			tc.want.Raw = tc.raw
			if !got.Time.Equal(tc.want.Time) {
				t.Errorf("time = %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseLineRejects(t *testing.T) {
	ref := time.Now()
	for _, raw := range []string{
		"", "garbage", "Nov 30 01:44:11", "Nov 30 01:44:11 mx", "Nov 30 25:44:11 mx a: b",
		"Foo 30 01:44:11 mx a: b", "Nov 30 01:44:11 mx no colon here", "<999999>x", "<22>1 - - -",
		"2026-13-29T10:12:34Z mx a: b", "2026-11-29T10:12:34+99:00 mx a: b", "Nov 30 01:44:11 mx a[x]: b",
	} {
		if l, err := ParseLine(raw, ref); !errors.Is(err, ErrNoPrefix) {
			t.Errorf("ParseLine(%q) = %+v, %v; want ErrNoPrefix", raw, l, err)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"Nov 30 01:44:11 mx postfix/smtpd[28932]: connect from unknown[127.0.0.1]",
		"2026-11-29T10:12:34.123456+01:00 mx postfix/smtp[1]: m",
		"2026-11-29T10:12:34+0100 mx postfix/smtp[1]: m",
		`<22>1 2026-11-29T10:12:34.5Z mx postfix/smtpd 4711 - [meta x="a\]b"] msg`,
		"<22>Nov 30 01:44:11 mx postfix/smtpd[2]: m",
	} {
		f.Add(s)
	}
	if data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "postfix", "real-3.7.log")); err == nil {
		for i, l := range strings.Split(string(data), "\n") {
			if i%20 == 0 {
				f.Add(l)
			}
		}
	}
	ref := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		l, err := ParseLine(raw, ref)
		if err != nil {
			return
		}
		if l.Raw != raw || !strings.Contains(raw, l.Program) || !strings.Contains(raw, l.Message) {
			t.Fatalf("parts not from the line: %+v", l)
		}
	})
}

// splitTagLoop is splitTag's search for the tag's end as first written,
// byte by byte.
func splitTagLoop(s string) int {
	for i := 0; i < len(s) && i < 256; i++ {
		c := s[i]
		if c == ':' && (i+1 == len(s) || s[i+1] == ' ') {
			return i
		}
		if c == ' ' {
			return -1
		}
	}
	return -1
}

// TestSplitTagEnd: splitTag accepts what the byte-by-byte search found a
// tag in, and takes the same tag.
func TestSplitTagEnd(t *testing.T) {
	check := func(s string) bool {
		var l Line
		ok := splitTag(&l, s)
		end := splitTagLoop(s)
		if end <= 0 {
			return !ok
		}
		if !ok {
			// The tag was found but its pid did not parse.
			return strings.HasSuffix(s[:end], "]")
		}
		return strings.HasPrefix(s[:end], l.Program) && l.Message == s[min(end+2, len(s)):]
	}
	for _, s := range []string{"", ":", "a:", "a: b", "a:b c: d", "a b: c", " a: b", "a[1]: b", "a[x]: b", "a:: b", "a:",
		strings.Repeat("x", 255) + ": m", strings.Repeat("x", 256) + ": m", strings.Repeat("x", 254) + ":", strings.Repeat("x", 255) + ":"} {
		if !check(s) {
			t.Errorf("splitTag(%q) differs from the byte-by-byte search", s)
		}
	}
	if err := quick.Check(func(a, b string, n uint8) bool {
		return check(a+": "+b) && check(a+":"+b) && check(strings.Repeat("p", int(n))+a+":")
	}, nil); err != nil {
		t.Error(err)
	}
}
