// Package testenv is the shared harness for smtplog's integration tests: it
// finds the external programs a test needs, picks free loopback ports, runs
// private Postfix instances and smtp-sink servers, mints throw-away
// certificates, and scans test output for leaked secrets.
//
// # Skipping versus failing
//
// Integration tests use real peers (Debian's postfix, swaks, rsyslog, …).
// When a program is missing, [NeedBinary] skips the test, so that `go test
// ./...` works on a developer machine without them. CI sets the environment
// variable SMTPLOG_REQUIRE_INTEGRATION=1 (see [RequireIntegrationEnv]); a
// missing program then fails the test and names the Debian package to
// install, so that a broken CI image cannot turn the integration suite into a
// row of silent skips.
//
// # Processes
//
// Every process the harness starts is a child of the test process, is stopped
// in t.Cleanup, and on Linux receives SIGTERM if the test process dies
// (PR_SET_PDEATHSIG), so an aborted `go test` leaves no daemons behind. The
// harness never signals a process it did not start. There is no
// package-level mutable state: any number of instances may run in one test
// process, each on its own 127.0.0.1 port and its own directories.
//
// # Postfix as root
//
// [StartPostfix] runs Postfix's master(8) directly from the test, with
// "-c <private config directory>". It needs no system Postfix
// configuration: /etc/postfix/main.cf may be absent, the system instance
// is never started, and alternate_config_directories is not needed because
// Postfix only checks it for unprivileged callers. It does need root (the
// master binds the port and the daemons drop to the mail_owner "postfix"
// and the setgid_group "postdrop", both created by the Debian package);
// without root the test is skipped, or fails under
// SMTPLOG_REQUIRE_INTEGRATION=1.
package testenv
