package syslogd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRsyslogForwarding runs a private rsyslogd (never the system one) that
// reads a file with imfile and forwards it to our receiver: over TCP with
// newline framing in the traditional format, and over TLS (gtls driver,
// anonymous authentication) with octet counting in RFC 5424 format.
func TestRsyslogForwarding(t *testing.T) {
	rsyslogd := need(t, "rsyslogd", "rsyslog")
	for _, tc := range []struct{ name, network string }{{"tcp", "tcp"}, {"tls", "tls"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Network: tc.network}
			global := fmt.Sprintf(`workDirectory=%q`, filepath.Join(dir, "work"))
			action := `TCP_Framing="traditional" template="RSYSLOG_TraditionalForwardFormat"`
			if tc.network == "tls" {
				if !hasGTLS() {
					if os.Getenv("SMTPLOG_REQUIRE_INTEGRATION") == "1" {
						t.Fatal("rsyslog's gtls driver missing: install the Debian package rsyslog-gnutls")
					}
					t.Skip("rsyslog's gtls driver missing (Debian package rsyslog-gnutls)")
				}
				ca, cert, key := testPKI(t, dir)
				cfg.CertFile, cfg.KeyFile = cert, key
				global += fmt.Sprintf(` defaultNetstreamDriverCAFile=%q`, ca)
				action = `TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format" StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="anon"`
			}
			s, k := start(t, cfg)
			if err := os.Mkdir(filepath.Join(dir, "work"), 0o755); err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(dir, "mail.log")
			const n = 200
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "4Xy7Zq%04d: to=<u%d@example.org>, status=sent line %d\n", i, i, i)
			}
			if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, "rsyslog.conf")
			err := os.WriteFile(conf, []byte(fmt.Sprintf(`global(%s)
module(load="imfile" mode="polling" PollingInterval="1")
input(type="imfile" File=%q Tag="postfix/smtpd[77]:" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port=%q protocol="tcp" %s)
}
`, global, in, port(s), action)), 0o644)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslog.pid"))
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM) // the instance this test started
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					cmd.Process.Kill()
					<-done
				}
				if t.Failed() {
					t.Logf("rsyslogd output:\n%s", out.String())
				}
			})
			k.waitFor(t, fmt.Sprintf("line %d", n-1))
			lines := k.all()
			if len(lines) != n {
				t.Errorf("got %d lines, want %d", len(lines), n)
			}
			for i, l := range lines {
				want := fmt.Sprintf("4Xy7Zq%04d: to=<u%d@example.org>, status=sent line %d", i, i, i)
				if l.Message != want || l.Host == "" || l.Program == "" {
					t.Fatalf("line %d = %+v, want message %q", i, l, want)
				}
			}
			if tc.network == "tcp" && (lines[0].Program != "postfix/smtpd" || lines[0].PID != 77) {
				t.Errorf("program/pid = %q/%d", lines[0].Program, lines[0].PID)
			}
			if st := s.Stats(); st.Unparsed != 0 || st.TLSFailures != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// hasGTLS looks for rsyslog's gtls network stream driver in the usual
// module directories.
func hasGTLS() bool {
	m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so")
	m2, _ := filepath.Glob("/usr/lib/rsyslog/lmnsd_gtls.so")
	return len(m)+len(m2) > 0
}
