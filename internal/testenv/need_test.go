package testenv

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNeedBinary proves that a present program is returned as an absolute
// path, and that a missing one skips the test normally but fails it, naming
// the Debian package, under SMTPLOG_REQUIRE_INTEGRATION=1.
func TestNeedBinary(t *testing.T) {
	if p := NeedBinary(t, "sh"); !filepath.IsAbs(p) {
		t.Errorf("NeedBinary(sh) = %q, want an absolute path", p)
	}

	t.Setenv(RequireIntegrationEnv, "")
	f := newFakeTB(t)
	f.run(func(tb testing.TB) { NeedBinary(tb, "/nonexistent/smtp-sink") })
	if f.skipped == "" || f.fatal != "" {
		t.Errorf("missing program without %s: skipped %q, fatal %q", RequireIntegrationEnv, f.skipped, f.fatal)
	}

	t.Setenv(RequireIntegrationEnv, "1")
	f = newFakeTB(t)
	f.run(func(tb testing.TB) { NeedBinary(tb, "/nonexistent/smtp-sink") })
	if f.skipped != "" || !strings.Contains(f.fatal, "apt-get install postfix") {
		t.Errorf("missing program with %s=1: skipped %q, fatal %q", RequireIntegrationEnv, f.skipped, f.fatal)
	}

	f = newFakeTB(t)
	f.run(func(tb testing.TB) { NeedBinary(tb, "no-such-program-smtplog") })
	if !strings.Contains(f.fatal, "no-such-program-smtplog") {
		t.Errorf("unknown program: fatal %q", f.fatal)
	}
}

// TestDebianPackage proves the package names for the programs .ci/run
// installs.
func TestDebianPackage(t *testing.T) {
	for prog, pkg := range map[string]string{
		"smtp-sink": "postfix", "/usr/sbin/postqueue": "postfix", "swaks": "swaks",
		"rsyslogd": "rsyslog", "logger": "bsdutils", "ncat": "ncat", "unknown": "",
	} {
		if got := debianPackage(prog); got != pkg {
			t.Errorf("debianPackage(%q) = %q, want %q", prog, got, pkg)
		}
	}
}

// TestFreePort proves that FreePort and FreeAddr give a bindable port on
// 127.0.0.1.
func TestFreePort(t *testing.T) {
	addr := FreeAddr(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr = %q", addr)
	}
	if n, _ := strconv.Atoi(port); n <= 0 || n > 65535 {
		t.Fatalf("FreeAddr port %q", port)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr %s: %v", addr, err)
	}
	l.Close()
	if p := FreePort(t); p <= 0 {
		t.Fatalf("FreePort = %d", p)
	}
}
