package testenv

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// SMTPSService is a master.cf line for [PostfixOptions.MasterCF]: a second
// smtpd on addr that speaks TLS from the first byte (smtpd_tls_wrappermode,
// the port 465 style of RFC 8314), logging as postfix/smtps/smtpd.
func SMTPSService(addr string) string {
	return addr + " inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt"
}

// WaitTLS waits until addr completes a TLS handshake that verifies with ca.
func WaitTLS(t testing.TB, addr string, ca *CA) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, ca.ClientConfig("127.0.0.1"))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no implicit-TLS listener on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
