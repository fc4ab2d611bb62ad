package mtalog

import "testing"

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
