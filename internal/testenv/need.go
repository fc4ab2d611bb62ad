package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// RequireIntegrationEnv is the environment variable that turns missing
// integration prerequisites from skips into failures. CI sets it to "1".
const RequireIntegrationEnv = "SMTPLOG_REQUIRE_INTEGRATION"

// IntegrationRequired reports whether SMTPLOG_REQUIRE_INTEGRATION=1 is set.
func IntegrationRequired() bool {
	return os.Getenv(RequireIntegrationEnv) == "1"
}

// Unavailable is called when a prerequisite of an integration test is
// missing. It skips the test, or fails it when [IntegrationRequired]. The
// message should say what to install or change.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if IntegrationRequired() {
		t.Fatalf("integration prerequisite missing ("+RequireIntegrationEnv+"=1): "+format, args...)
	}
	t.Skipf("integration prerequisite missing: "+format, args...)
}

// NeedBinary returns the absolute path of the program name, looked up in
// $PATH and then in /usr/sbin, /sbin and Postfix's daemon directory (which a
// non-root $PATH often lacks). An absolute name is checked as is. When the
// program is not found, the test is skipped, or fails under
// SMTPLOG_REQUIRE_INTEGRATION=1 with the Debian package that provides it.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := findBinary(name); err == nil {
		return p
	}
	if pkg := debianPackage(name); pkg != "" {
		Unavailable(t, "program %q not found; install it with: apt-get install %s", name, pkg)
	} else {
		Unavailable(t, "program %q not found", name)
	}
	return ""
}

// NeedRoot skips the test (or fails it under SMTPLOG_REQUIRE_INTEGRATION=1)
// unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "test must run as root (euid is %d)", os.Geteuid())
	}
}

func findBinary(name string) (string, error) {
	if filepath.IsAbs(name) {
		return exec.LookPath(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"} {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", errors.New("not found")
}

// debianPackage names the Debian 12 package that ships the program name, or
// "" when unknown.
func debianPackage(name string) string {
	switch filepath.Base(name) {
	case "postfix", "postconf", "postqueue", "postsuper", "postcat", "postmap",
		"postdrop", "postlog", "postmulti", "sendmail", "master",
		"smtp-sink", "smtp-source", "posttls-finger", "qmqp-sink", "qmqp-source":
		return "postfix"
	case "swaks":
		return "swaks"
	case "pflogsumm":
		return "pflogsumm"
	case "sqlite3":
		return "sqlite3"
	case "jq":
		return "jq"
	case "openssl":
		return "openssl"
	case "ncat":
		return "ncat"
	case "socat":
		return "socat"
	case "rsyslogd":
		return "rsyslog"
	case "logger":
		return "bsdutils"
	case "python3":
		return "python3"
	case "faketime":
		return "faketime"
	case "tcpdump":
		return "tcpdump"
	case "tshark":
		return "tshark"
	case "editcap", "mergecap":
		return "wireshark-common"
	case "exim4", "exim":
		return "exim4-daemon-light"
	case "gnutls-cli", "certtool":
		return "gnutls-bin"
	case "chromium":
		return "chromium"
	case "logrotate":
		return "logrotate"
	case "taskset", "flock", "setsid":
		return "util-linux"
	}
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is not reserved: a program started with it may still lose a race,
// so harness code that starts servers retries with a new port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:<port>" for a port from [FreePort].
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
