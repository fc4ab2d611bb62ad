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
