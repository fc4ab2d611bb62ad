package smtpwire

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestAuthUser(t *testing.T) {
	b := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		mech, resp string
		round      int
		want       string
	}{
		{"PLAIN", b("\x00alice\x00s3cret"), 0, "alice"},
		{"PLAIN", b("admin\x00\x00s3cret"), 0, "admin"},
		{"PLAIN", b("no separators"), 0, ""},
		{"LOGIN", b("bob"), 1, "bob"},
		{"LOGIN", b("s3cret"), 2, ""},
		{"CRAM-MD5", b("carol 0123456789abcdef"), 1, "carol"},
		{"XOAUTH2", b("user=dave@example.com\x01auth=Bearer s3cret\x01\x01"), 0, "dave@example.com"},
		{"OAUTHBEARER", b("n,a=erin@example.com,\x01auth=Bearer s3cret\x01\x01"), 0, "erin@example.com"},
		{"PLAIN", "*", 0, ""},
		{"PLAIN", "not base64!", 0, ""},
		{"PLAIN", b("\x00line\r\nbreak\x00s3cret"), 0, `line\r\nbreak`},
		{"PLAIN", b("\x00" + strings.Repeat("u", 300) + "\x00s3cret"), 0, strings.Repeat("u", 256)},
	} {
		got := AuthUser(tc.mech, tc.resp, tc.round)
		if got != tc.want {
			t.Errorf("AuthUser(%s, %q, %d) = %q, want %q", tc.mech, tc.resp, tc.round, got, tc.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("AuthUser(%s) let the secret out: %q", tc.mech, got)
		}
	}
}
