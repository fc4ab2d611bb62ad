package smtpwire

import (
	"encoding/base64"
	"strings"

	"github.com/smtplog/smtplog/internal/record"
)

// AuthUser extracts the user name, and only the user name, from an AUTH
// response (RFC 4616 PLAIN, LOGIN, RFC 2195 CRAM-MD5, XOAUTH2, RFC 7628
// OAUTHBEARER). round 0 is the initial response of the AUTH command. The
// decoded response is never kept: a secret in it goes no further.
func AuthUser(mech, b64 string, round int) string {
	if b64 == "" || b64 == "=" || b64 == "*" {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return ""
	}
	s := string(raw)
	var u string
	switch mech {
	case "PLAIN":
		parts := strings.Split(s, "\x00")
		if len(parts) == 3 {
			u = parts[1]
			if u == "" {
				u = parts[0]
			}
		}
	case "LOGIN":
		// The first response (initial or round 1) is the user name; the
		// second is the password and is never looked at.
		if round <= 1 {
			u = s
		}
	case "CRAM-MD5":
		if i := strings.LastIndexByte(s, ' '); i > 0 {
			u = s[:i]
		}
	case "XOAUTH2":
		for _, f := range strings.Split(s, "\x01") {
			if v, ok := strings.CutPrefix(f, "user="); ok {
				u = v
			}
		}
	case "OAUTHBEARER":
		gs2, _, _ := strings.Cut(s, "\x01")
		for _, f := range strings.Split(gs2, ",") {
			if v, ok := strings.CutPrefix(f, "a="); ok {
				u = v
			}
		}
	}
	if len(u) > 256 {
		u = u[:256]
	}
	return record.Escape(u)
}
