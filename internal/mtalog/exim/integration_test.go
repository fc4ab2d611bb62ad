package exim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const requireEnv = "SMTPLOG_REQUIRE_INTEGRATION"

func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("integration prerequisite missing ("+requireEnv+"=1): "+format, args...)
	}
	t.Skipf("integration prerequisite missing: "+format, args...)
}

// eximBinary finds Debian's exim4 unpacked by testdata/exim/extract.sh:
// $SMTPLOG_EXIM, or smtplog-exim in the temporary directory (Exim re-executes
// itself as its own user, so the path must be open to it). Under
// SMTPLOG_REQUIRE_INTEGRATION=1 it runs extract.sh when neither has it.
func eximBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SMTPLOG_EXIM"); p != "" {
		return p
	}
	dir := filepath.Join(os.TempDir(), "smtplog-exim")
	bin := filepath.Join(dir, "root", "usr", "sbin", "exim4")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if os.Getenv(requireEnv) != "1" {
		t.Skipf("Exim is not unpacked; run testdata/exim/extract.sh %s (or set SMTPLOG_EXIM)", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Only standard output names the binary: apt-get's notes on standard
	// error (debconf's, when it installs a library) must not join it.
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(testdata, "extract.sh"), dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("extract.sh: %v\n%s%s", err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// TestIntegrationExim runs a private Exim daemon with testdata/exim/
// make-logs.sh, sends it real traffic (swaks, smtp-sink peers that accept,
// defer and bounce) and checks the records made from the log it wrote.
func TestIntegrationExim(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the Exim test must run as root (euid %d)", os.Geteuid())
	}
	for _, prog := range []string{"swaks", "smtp-sink", "openssl", "unshare", "ss", "apt-get"} {
		if _, err := exec.LookPath(prog); err != nil {
			if _, err := os.Stat("/usr/sbin/" + prog); err != nil {
				unavailable(t, "program %q not found", prog)
			}
		}
	}
	bin := eximBinary(t)
	work, out := t.TempDir(), t.TempDir()
	// Exim's user must reach the spool under the test's directory.
	if err := os.Chmod(filepath.Dir(work), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Exit status 75: a port it chose was taken before its daemons bound
	// it (other tests run beside this one); it runs again on new ports.
	for attempt := 1; ; attempt++ {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(testdata, "make-logs.sh"), bin, work, out, "all")
		b, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 75 && attempt < 3 {
			t.Logf("make-logs.sh, attempt %d: %s", attempt, b)
			continue
		}
		t.Fatalf("make-logs.sh: %v\n%s", err, b)
	}
	recs, unparsed := correlate(t, readRaw(t, filepath.Join(out, "mainlog"), filepath.Join(out, "rejectlog")))
	checkRealTraffic(t, recs, unparsed)
}
