package mtalog

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestReplyCodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		enh  string
	}{
		{"554 5.7.1 <a@b>: Relay access denied", 554, "5.7.1"},
		{"host mx[1.2.3.4] said: 450 4.2.0 try later (in reply to RCPT TO command)", 450, "4.2.0"},
		{"host mx[1.2.3.4] said: 550-5.1.1 no such user 550 5.1.1 more", 550, "5.1.1"},
		{"250 ok", 250, ""},
		{"connection timed out", 0, ""},
		{"650 6.0.0 nonsense", 0, ""},
	} {
		code, enh := ReplyCodes(tc.in)
		if code != tc.code || enh != tc.enh {
			t.Errorf("ReplyCodes(%q) = %d, %q; want %d, %q", tc.in, code, enh, tc.code, tc.enh)
		}
	}
}

func TestParseDelay(t *testing.T) {
	for in, want := range map[string]float64{
		"1d2h3m4s": 93784, "0.123s": 0.123, "10s": 10, "1w": 604800, "2m3s": 123,
		"": 0, "s": 0, "12": 0, "1m5": 0, "1x": 0, "1..2s": 0,
	} {
		if got := ParseDelay(in); got != want {
			t.Errorf("ParseDelay(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestAfterSaid: AfterSaid cuts where strings.Index finds " said: ".
func TestAfterSaid(t *testing.T) {
	want := func(s string) string {
		if i := strings.Index(s, " said: "); i >= 0 {
			return s[i+len(" said: "):]
		}
		return s
	}
	for _, s := range []string{"", ":", " said: ", "said: x", " said:x said: y", "a: b said:  said: c", "x said:", "host h[1.2.3.4] said: 450 4.2.0 try later (in reply to RCPT TO command)"} {
		if got := AfterSaid(s); got != want(s) {
			t.Errorf("AfterSaid(%q) = %q, want %q", s, got, want(s))
		}
	}
	if err := quick.Check(func(ws []string) bool {
		s := strings.Join(ws, " said: ")
		return AfterSaid(s) == want(s) && AfterSaid(s[min(len(s), 3):]) == want(s[min(len(s), 3):])
	}, nil); err != nil {
		t.Error(err)
	}
}
