// Package testenv is the shared harness for smtplog's integration tests: it
// finds the external programs a test needs ([NeedBinary]), picks free
// loopback ports ([FreePort]), runs private Postfix instances
// ([StartPostfix]) and smtp-sink servers ([StartSink]), sends test mail
// ([SendMail]), mints throw-away certificates ([NewCA]), and scans test
// output for leaked secrets ([AssertNoSecretInFiles], test plan A-01).
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
// Every process the harness starts is stopped in t.Cleanup and also dies
// when the test process dies without running its cleanups (kill -9, a
// panic, the -timeout alarm): smtp-sink gets a parent-death signal
// (PR_SET_PDEATHSIG, Linux), and Postfix's master runs under a small
// guardian shell that has one and passes SIGTERM on, since master clears
// its own when it briefly changes its effective user at start-up. The
// harness never signals a process it did not start. There is no
// package-level mutable state: any number of instances may run in one test
// process, also in parallel tests, each on its own 127.0.0.1 port and in
// its own directories.
//
// # Postfix as root
//
// [StartPostfix] runs Postfix's master(8) directly from the test, with
// "-c <private config directory>". It needs no system Postfix
// configuration: /etc/postfix/main.cf may be absent, the system instance
// is never started, and alternate_config_directories is not needed because
// Postfix only checks it for unprivileged callers. It does need root
// (master starts as root and runs its daemons as the mail_owner "postfix"
// with the setgid_group "postdrop", both created by the Debian package);
// without root the test is skipped, or fails under
// SMTPLOG_REQUIRE_INTEGRATION=1. The harness creates the queue directories
// itself with the owners and modes of Postfix's postfix-files, and dates
// its configuration files a minute back, because Postfix polls a file
// modified within the last second or two until it has aged, which would
// add seconds to every start; change settings of a running instance with
// [Postfix.Reconfigure], which does the same.
package testenv
