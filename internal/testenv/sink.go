package testenv

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sink is a running smtp-sink(1) from Debian's postfix package, started by
// [StartSink].
type Sink struct {
	addr     string
	dir      string
	proc     *child
	stopOnce sync.Once
}

// StartSink runs smtp-sink with the given options on 127.0.0.1 at a free
// port, in a new directory ([Sink.Dir]) that the sink can write to, and
// returns once the port listens. It is stopped at cleanup. The harness adds
// the listen address and a backlog of 64; as root it runs smtp-sink as the
// user postfix (or nobody), since smtp-sink refuses to keep root
// privileges.
//
// The smtp-sink options that smtplog's tests rely on (smtp-sink(1) of
// Postfix 3.7):
//
//	-r CMD,...  answer these commands with 450 4.3.0 (soft reject; implies -p)
//	-f CMD,...  answer these commands with 500 5.3.0 (hard reject; implies -p)
//	-b TEXT     the soft reject reply instead of "450 4.3.0 Error: command failed"
//	-B TEXT     the hard reject reply instead of "500 5.3.0 Error: command failed"
//	-q CMD,...  disconnect without reply after these commands ("-q ." drops after the dot)
//	-Q CMD,...  reply 421 and disconnect after these commands
//	-A SECS     after DATA, wait, reply 550 and stop reading
//	-w SECS     delay the reply to DATA
//	-W CMD:SECS[:ODDS]  delay the reply to CMD
//	-d TMPL     dump each transaction to its own file named by strftime(TMPL)
//	            plus a random hex suffix, e.g. "-d %H%M%S." ; a relative
//	            TMPL is under Dir()
//	-D TMPL     append all transactions to one dump file
//	-h NAME     host name in the greeting (default "smtp-sink")
//	-8 -p -N -a -e -E  do not announce 8BITMIME, PIPELINING, DSN, AUTH, ESMTP, ENHANCEDSTATUSCODES
//	-M N, -n N  exit after N messages / N sessions
//	-t SECS     command timeout (default 100)
//	-v          print the conversations to the output (see Output)
//
// CMD names are CONNECT, HELO, EHLO, MAIL, RCPT, DATA, ".", RSET, NOOP,
// QUIT, case-insensitive.
func StartSink(t testing.TB, args ...string) *Sink {
	t.Helper()
	bin := NeedBinary(t, "smtp-sink")
	s := &Sink{dir: shortTempDir(t, "sink")}
	// As root, start smtp-sink as an unprivileged user rather than with
	// its -u option: a process that changes its own user loses its
	// parent-death signal, and would outlive an aborted test run.
	var cred *syscall.Credential
	if os.Geteuid() == 0 && !hasFlag(args, "-u") {
		u, err := user.Lookup("postfix")
		if err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				t.Fatalf("testenv: no unprivileged user for smtp-sink: %v", err)
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("testenv: smtp-sink %s output:\n%s", s.addr, tail(s.Output(), 40))
		}
	})

	const attempts = 3
	for i := 1; ; i++ {
		s.addr = FreeAddr(t)
		cmd := exec.Command(bin, append(append([]string(nil), args...), s.addr, "64")...)
		cmd.Dir = s.dir
		proc, err := startChild(cmd, cred)
		if err != nil {
			t.Fatalf("testenv: start smtp-sink: %v", err)
		}
		s.proc = proc
		if s.waitListening(10 * time.Second) {
			return s
		}
		proc.stop(time.Second, 0)
		out := proc.out.String()
		if i == attempts || !strings.Contains(out, "in use") {
			t.Fatalf("testenv: smtp-sink %s did not start: %v\n%s", strings.Join(cmd.Args, " "), proc.err, out)
		}
	}
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

// waitListening waits until the sink listens, without connecting to it when
// /proc tells (a probe connection would count against -n and show in -v).
func (s *Sink) waitListening(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	port := s.Port()
	for time.Now().Before(deadline) {
		if s.proc.hasExited() {
			return false
		}
		listening, known := tcpListening(port)
		if !known {
			listening = probeConnect(s.addr)
		}
		if listening {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Addr returns the listen address "127.0.0.1:<port>".
func (s *Sink) Addr() string { return s.addr }

// Port returns the listen port.
func (s *Sink) Port() int {
	i := strings.LastIndexByte(s.addr, ':')
	n, _ := strconv.Atoi(s.addr[i+1:])
	return n
}

// Dir returns the sink's working directory, where relative -d and -D dump
// templates are written.
func (s *Sink) Dir() string { return s.dir }

// Output returns what smtp-sink printed so far (with -v, the
// conversations; with -c, the counters; and its errors).
func (s *Sink) Output() string { return s.proc.out.String() }

// Exited reports whether smtp-sink has exited (after -M or -n, or a crash).
func (s *Sink) Exited() bool { return s.proc.hasExited() }

// DumpFiles returns the regular files under Dir(), sorted by name.
func (s *Sink) DumpFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(s.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: list sink dumps: %v", err)
	}
	sort.Strings(files)
	return files
}

// WaitDumps polls until at least n dump files exist under Dir() and returns
// them; it fails the test after timeout. A dump file is complete once the
// transaction has ended, i.e. after the client got the reply to the dot.
func (s *Sink) WaitDumps(t testing.TB, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files := s.DumpFiles(t)
		if len(files) >= n {
			return files
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %d of %d smtp-sink dumps after %v", len(files), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops smtp-sink (SIGTERM, then SIGKILL after a second). It is
// idempotent and is called at cleanup.
func (s *Sink) Stop() {
	s.stopOnce.Do(func() {
		if s.proc != nil {
			s.proc.stop(time.Second, 0)
		}
	})
}
