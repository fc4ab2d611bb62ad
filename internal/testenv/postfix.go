package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions configure a private Postfix instance. The zero value is a
// strict relay for 127.0.0.0/8 that offers STARTTLS with a certificate from
// a new [CA] and keeps every message it accepts in its deferred queue.
type PostfixOptions struct {
	// Lenient makes smtpd accept a bare LF as end of line in DATA
	// (smtpd_forbid_bare_newline = no) and allow unauthorised pipelining:
	// an upstream vulnerable to SMTP smuggling (CVE-2023-51764). The default
	// is strict: smtpd_forbid_bare_newline = reject and
	// smtpd_forbid_unauth_pipelining = yes. In both modes
	// smtpd_forbid_bare_newline_exclusions is empty, so loopback clients are
	// not exempt.
	Lenient bool

	// RelayHost receives all mail not routed by Transports, DeferDomains or
	// BounceDomains, e.g. a [Sink]'s Addr(). "127.0.0.1:2526" is written as
	// "[127.0.0.1]:2526" (no MX lookup); a value starting with "[" is used
	// as is. When empty, such mail is deferred with "4.4.1 no relay host
	// configured" and stays in the queue (see [Postfix.Queue]).
	RelayHost string

	// Transports are raw transport(5) entries, domain → transport:nexthop,
	// e.g. {"slow.test": "smtp:[127.0.0.1]:2527"} to send one domain to a
	// second smtp-sink, or {"gone.test": "error:5.1.2 no such domain"}.
	Transports map[string]string

	// DeferDomains are recipient domains whose mail is deferred at delivery
	// ("status=deferred", 4.4.1) without any network traffic, by
	// Postfix's retry transport.
	DeferDomains []string

	// BounceDomains are recipient domains whose mail is bounced at delivery
	// ("status=bounced", 5.1.1) by Postfix's error transport. The bounce
	// notice goes to the sender and is itself routed like any other mail.
	BounceDomains []string

	// RejectRecipients are refused at RCPT TO with "550 5.1.1". Each entry
	// is an access(5) key: "user@domain", "user@" (that local part in any
	// domain) or "domain".
	RejectRecipients []string

	// TempRejectRecipients are refused at RCPT TO with "450 4.2.0", keys as
	// for RejectRecipients.
	TempRejectRecipients []string

	// MaximalQueueLifetime and BounceQueueLifetime set the Postfix
	// parameters of the same name (e.g. "20s"; "0" tries delivery once).
	// Empty keeps Postfix's defaults (5d).
	MaximalQueueLifetime string
	BounceQueueLifetime  string

	// MessageSizeLimit sets message_size_limit in bytes; 0 keeps Postfix's
	// default of 10240000.
	MessageSizeLimit int64

	// XClientHosts sets smtpd_authorized_xclient_hosts, e.g. "127.0.0.0/8".
	XClientHosts string

	// TLSCertFile and TLSKeyFile are the server certificate and key. When
	// both are empty and NoTLS is false, a leaf for the hostname,
	// "localhost" and 127.0.0.1 is issued by CA (or by a new CA when CA is
	// nil); [Postfix.CA] returns it.
	TLSCertFile, TLSKeyFile string
	CA                      *CA

	// NoTLS turns STARTTLS off (smtpd_tls_security_level = none).
	NoTLS bool

	// Hostname is myhostname, shown in the greeting and Received headers.
	// The default is "postfix.test".
	Hostname string

	// Extra are main.cf parameters applied last, overriding the harness's
	// own settings.
	Extra map[string]string

	// MasterCF are lines appended to master.cf, e.g. a second smtpd
	// listener on an address from [FreeAddr].
	MasterCF []string
	// ConfigFiles are written into the instance's config directory before
	// it starts, by path relative to it, e.g. "sasl/smtpd.conf": Debian's
	// Postfix reads Cyrus SASL configuration from $config_directory/sasl.
	ConfigFiles map[string]string
}

// Postfix is a private Postfix instance started by [StartPostfix]. Its
// config, queue and data directories and its log file belong to it alone.
type Postfix struct {
	opts      PostfixOptions
	addr      string
	dir       string
	confDir   string
	queueDir  string
	logPath   string
	ca        *CA
	master    string
	proc      *child // the guardian shell
	masterPID int
	stopOnce  sync.Once
}

// StartPostfix starts a private Postfix instance listening on 127.0.0.1 at a
// free port and returns once the port answers with a 220 greeting. It is
// stopped and its directories are removed when the test ends; if the test
// failed, the tail of the instance's log is logged first.
//
// The instance logs through postlogd to [Postfix.LogPath] (maillog_file),
// runs no daemon chrooted, delivers nothing locally (mydestination is
// empty), does no DNS lookups, and retries deferred mail quickly
// (queue_run_delay = minimal_backoff_time = 1s, maximal_backoff_time = 2s),
// so deferrals and bounces appear in the log within seconds. Client-side
// errors are not slowed down (smtpd_error_sleep_time = 0s) and neither is
// acceptance under load (in_flow_delay = 0s). Mail from 127.0.0.0/8 may
// be relayed anywhere (mynetworks); SMTPUTF8 and 8BITMIME are offered.
//
// The log starts with the harness's own probe session (a connect and
// disconnect from 127.0.0.1 without a transaction) made while starting.
//
// Postfix needs root; see the package documentation.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	NeedRoot(t)
	postconf := NeedBinary(t, "postconf")
	NeedBinary(t, "postfix")
	if _, err := user.Lookup("postfix"); err != nil {
		Unavailable(t, "user postfix: %v; install it with: apt-get install postfix", err)
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		Unavailable(t, "group postdrop: %v; install it with: apt-get install postfix", err)
	}
	daemonDir, err := exec.Command(postconf, "-dh", "daemon_directory").Output()
	if err != nil {
		t.Fatalf("testenv: postconf -dh daemon_directory: %v", err)
	}
	p := &Postfix{opts: opts, master: filepath.Join(strings.TrimSpace(string(daemonDir)), "master")}
	if _, err := os.Stat(p.master); err != nil {
		Unavailable(t, "postfix master daemon: %v; install it with: apt-get install postfix", err)
	}

	p.dir = shortTempDir(t, "pf")
	p.confDir = filepath.Join(p.dir, "conf")
	p.queueDir = filepath.Join(p.dir, "queue")
	p.logPath = filepath.Join(p.dir, "maillog")
	if err := os.Mkdir(p.confDir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := makeQueueDirs(p.queueDir, filepath.Join(p.dir, "data")); err != nil {
		t.Fatalf("testenv: postfix queue: %v", err)
	}
	if !opts.NoTLS && opts.TLSCertFile == "" && opts.TLSKeyFile == "" {
		p.ca = opts.CA
		if p.ca == nil {
			p.ca = NewCA(t)
		}
		p.opts.TLSCertFile, p.opts.TLSKeyFile, _ = p.ca.Leaf(t, p.hostname(), "localhost", "127.0.0.1")
	}
	p.writeMaps(t)
	writeConfig(t, filepath.Join(p.confDir, "main.cf"), []byte(p.mainCF(t)))

	// Cleanup order: stop first, then (registered earlier) remove the
	// directory.
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("testenv: tail of postfix log %s:\n%s", p.logPath, tail(string(b), 40))
			}
		}
	})

	// The port comes from FreePort and may be taken before master binds
	// it; retry with another.
	const attempts = 3
	for i := 1; ; i++ {
		err := p.start(t)
		if err == nil {
			return p
		}
		if i == attempts || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("testenv: start postfix: %v", err)
		}
		t.Logf("testenv: start postfix: %v; retrying with another port", err)
	}
}

// start writes master.cf for a new port, runs master and waits for the
// greeting.
func (p *Postfix) start(t testing.TB) error {
	t.Helper()
	p.addr = FreeAddr(t)
	writeConfig(t, filepath.Join(p.confDir, "master.cf"), []byte(p.masterCF()))
	_ = os.Remove(p.logPath) // a failed earlier attempt

	// master is not our direct child but the child of a guardian shell:
	// master briefly changes its effective user at start-up, which clears
	// its parent-death signal, while the shell keeps its own and passes
	// SIGTERM on. So master also dies when the test process does.
	cmd := exec.Command("/bin/sh", "-c", masterGuardian, "master-guardian", p.master, "-c", p.confDir)
	cmd.Dir = p.queueDir
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.confDir)
	proc, err := startChild(cmd, nil)
	if err != nil {
		return err
	}
	p.proc = proc

	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		if proc.hasExited() {
			// Give postlogd a moment to write master's last words.
			time.Sleep(200 * time.Millisecond)
			b, _ := os.ReadFile(p.logPath)
			return fmt.Errorf("master %v; output %q; log:\n%s", proc.err, proc.out.String(), tail(string(b), 20))
		}
		if lastErr = probeGreeting(p.addr); lastErr == nil {
			if p.masterPID = readPIDFile(filepath.Join(p.queueDir, "pid", "master.pid")); p.masterPID == 0 {
				return errors.New("master answers but wrote no pid/master.pid")
			}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	proc.stop(5*time.Second, readPIDFile(filepath.Join(p.queueDir, "pid", "master.pid")))
	b, _ := os.ReadFile(p.logPath)
	return fmt.Errorf("no 220 greeting on %s within 20s: %v; log:\n%s", p.addr, lastErr, tail(string(b), 20))
}

// masterGuardian runs "$@" (master) and passes SIGTERM, SIGINT and SIGHUP
// on to it, then waits until it has exited.
const masterGuardian = `trap 'kill -TERM "$pid" 2>/dev/null' TERM INT HUP
"$@" &
pid=$!
wait "$pid"
st=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; st=$?; done
exit "$st"`

// readPIDFile returns the process ID in a Postfix pid file, or 0.
func readPIDFile(name string) int {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 1 {
		return 0
	}
	return n
}

// probeGreeting connects to addr, expects a 220 greeting and quits.
func probeGreeting(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	for strings.HasPrefix(line, "220-") { // multi-line greeting
		if line, err = r.ReadString('\n'); err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
	}
	if _, err := conn.Write([]byte("QUIT\r\n")); err != nil {
		return err
	}
	_, _ = r.ReadString('\n')
	return nil
}

// makeQueueDirs creates the queue and data directories with the owners and
// modes that Postfix's postfix-files prescribes (what "postfix
// set-permissions" would do, without its two-second run time).
func makeQueueDirs(queueDir, dataDir string) error {
	owner, err := user.Lookup("postfix")
	if err != nil {
		return err
	}
	postdrop, err := user.LookupGroup("postdrop")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(postdrop.Gid)
	dirs := []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{queueDir, 0, 0, 0o755},
		{filepath.Join(queueDir, "pid"), 0, 0, 0o755},
		{filepath.Join(queueDir, "maildrop"), uid, gid, 0o730},
		{filepath.Join(queueDir, "public"), uid, gid, 0o710},
		{dataDir, uid, 0, 0o700},
	}
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush",
		"hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, struct {
			path     string
			uid, gid int
			mode     os.FileMode
		}{filepath.Join(queueDir, d), uid, 0, 0o700})
	}
	for _, d := range dirs {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // umask
			return err
		}
	}
	return nil
}

func (p *Postfix) hostname() string {
	if p.opts.Hostname != "" {
		return p.opts.Hostname
	}
	return "postfix.test"
}

// mainCF renders main.cf: the harness's settings, then Extra.
func (p *Postfix) mainCF(t testing.TB) string {
	t.Helper()
	o := p.opts
	type kv struct{ k, v string }
	conf := []kv{
		{"compatibility_level", "3.6"},
		{"queue_directory", p.queueDir},
		{"data_directory", filepath.Join(p.dir, "data")},
		{"mail_owner", "postfix"},
		{"setgid_group", "postdrop"},
		{"maillog_file", p.logPath},
		{"maillog_file_prefixes", p.dir},
		{"myhostname", p.hostname()},
		{"mydestination", ""},
		{"myorigin", "$myhostname"},
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"local_recipient_maps", ""},
		{"local_transport", "error:5.1.1 local delivery is disabled"},
		{"biff", "no"},
		{"append_dot_mydomain", "no"},
		{"readme_directory", "no"},
		{"smtp_dns_support_level", "disabled"},
		{"mailbox_size_limit", "0"},
		{"smtputf8_enable", "yes"},
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "2s"},
		{"in_flow_delay", "0s"},
		{"smtpd_error_sleep_time", "0s"},
		// Otherwise smtpd refuses at RCPT mail that the error and retry
		// transports would bounce or defer later.
		{"smtpd_reject_unlisted_recipient", "no"},
		{"smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"},
		{"smtpd_recipient_restrictions", "check_recipient_access texthash:" + filepath.Join(p.confDir, "recipient_access")},
		{"transport_maps", "texthash:" + filepath.Join(p.confDir, "transport")},
		{"smtpd_forbid_bare_newline_exclusions", ""},
	}
	if o.Lenient {
		conf = append(conf, kv{"smtpd_forbid_bare_newline", "no"}, kv{"smtpd_forbid_unauth_pipelining", "no"})
	} else {
		conf = append(conf, kv{"smtpd_forbid_bare_newline", "reject"}, kv{"smtpd_forbid_unauth_pipelining", "yes"})
	}
	if o.RelayHost != "" {
		rh := o.RelayHost
		if !strings.HasPrefix(rh, "[") {
			host, port, err := net.SplitHostPort(rh)
			if err != nil {
				t.Fatalf("testenv: RelayHost %q: %v", rh, err)
			}
			rh = "[" + host + "]:" + port
		}
		conf = append(conf, kv{"relayhost", rh})
	} else {
		conf = append(conf, kv{"default_transport", "retry:4.4.1 no relay host configured"})
	}
	if o.MaximalQueueLifetime != "" {
		conf = append(conf, kv{"maximal_queue_lifetime", o.MaximalQueueLifetime})
	}
	if o.BounceQueueLifetime != "" {
		conf = append(conf, kv{"bounce_queue_lifetime", o.BounceQueueLifetime})
	}
	if o.MessageSizeLimit > 0 {
		conf = append(conf, kv{"message_size_limit", strconv.FormatInt(o.MessageSizeLimit, 10)})
	}
	if o.XClientHosts != "" {
		conf = append(conf, kv{"smtpd_authorized_xclient_hosts", o.XClientHosts})
	}
	if o.NoTLS {
		conf = append(conf, kv{"smtpd_tls_security_level", "none"})
	} else {
		conf = append(conf,
			kv{"smtpd_tls_security_level", "may"},
			kv{"smtpd_tls_cert_file", o.TLSCertFile},
			kv{"smtpd_tls_key_file", o.TLSKeyFile},
			kv{"smtpd_tls_loglevel", "1"},
			kv{"smtpd_tls_received_header", "yes"},
		)
	}
	keys := make([]string, 0, len(o.Extra))
	for k := range o.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		replaced := false
		for i := range conf {
			if conf[i].k == k {
				conf[i].v, replaced = o.Extra[k], true
			}
		}
		if !replaced {
			conf = append(conf, kv{k, o.Extra[k]})
		}
	}
	var b strings.Builder
	b.WriteString("# written by the smtplog test harness\n")
	for _, c := range conf {
		if !validParam.MatchString(c.k) || strings.ContainsAny(c.v, "\r\n") {
			t.Fatalf("testenv: invalid main.cf parameter %q = %q", c.k, c.v)
		}
		fmt.Fprintf(&b, "%s = %s\n", c.k, c.v)
	}
	return b.String()
}

var validParam = regexp.MustCompile(`^[a-z0-9_]+$`)

// masterCF renders master.cf: Debian's services without chroot, and one
// smtpd listening on p.addr.
func (p *Postfix) masterCF() string {
	var b strings.Builder
	b.WriteString("# written by the smtplog test harness; no service is chrooted\n")
	fmt.Fprintf(&b, "%-16s inet  n - n - - smtpd\n", p.addr)
	b.WriteString(`pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
  -o syslog_name=postfix/$service_name
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
`)
	for _, l := range p.opts.MasterCF {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// writeMaps writes the texthash: tables (read by the daemons at start, so
// no postmap is needed).
func (p *Postfix) writeMaps(t testing.TB) {
	t.Helper()
	var access, transport strings.Builder
	line := func(b *strings.Builder, k, v string) {
		if k == "" || strings.ContainsAny(k, " \t\r\n#") || strings.ContainsAny(v, "\r\n") {
			t.Fatalf("testenv: invalid table entry %q → %q", k, v)
		}
		fmt.Fprintf(b, "%s %s\n", k, v)
	}
	for _, r := range p.opts.RejectRecipients {
		line(&access, r, "550 5.1.1 Recipient address rejected: test harness")
	}
	for _, r := range p.opts.TempRejectRecipients {
		line(&access, r, "450 4.2.0 Recipient address temporarily rejected: test harness")
	}
	for _, d := range p.opts.DeferDomains {
		line(&transport, d, "retry:4.4.1 deferred by test harness")
	}
	for _, d := range p.opts.BounceDomains {
		line(&transport, d, "error:5.1.1 bounced by test harness")
	}
	keys := make([]string, 0, len(p.opts.Transports))
	for k := range p.opts.Transports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line(&transport, k, p.opts.Transports[k])
	}
	writeConfig(t, filepath.Join(p.confDir, "recipient_access"), []byte(access.String()))
	writeConfig(t, filepath.Join(p.confDir, "transport"), []byte(transport.String()))
	for rel, content := range p.opts.ConfigFiles {
		path := filepath.Join(p.confDir, filepath.Clean("/"+rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		writeConfig(t, path, []byte(content))
	}
}

// Reconfigure sets main.cf parameters on the running instance, on top of
// PostfixOptions.Extra and earlier calls, and makes master reload its
// configuration (SIGHUP). It returns once the reload is logged; sessions
// opened after that see the new settings.
func (p *Postfix) Reconfigure(t testing.TB, params map[string]string) {
	t.Helper()
	extra := make(map[string]string, len(p.opts.Extra)+len(params))
	for k, v := range p.opts.Extra {
		extra[k] = v
	}
	for k, v := range params {
		extra[k] = v
	}
	p.opts.Extra = extra
	writeConfig(t, filepath.Join(p.confDir, "main.cf"), []byte(p.mainCF(t)))
	reload := regexp.MustCompile(`postfix/master\[\d+\]: reload -- `)
	n := len(reload.FindAllString(p.Log(t), -1))
	if p.masterPID == 0 || p.proc.hasExited() {
		t.Fatalf("testenv: reconfigure: postfix is not running")
	}
	old := childrenNamed(p.masterPID, "smtpd")
	if err := syscall.Kill(p.masterPID, syscall.SIGHUP); err != nil {
		t.Fatalf("testenv: reconfigure: %v", err)
	}
	p.WaitLogN(t, reload, n+1, 10*time.Second)
	// After a reload, smtpd processes of the old configuration exit "as
	// soon as is convenient" (master(8)): an idle one still takes one more
	// connection and exits after it. Give them those connections, so that
	// the test's next session meets the new settings. (Killing them
	// instead makes the master throttle the service.)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		alive := false
		for _, pid := range old {
			if syscall.Kill(pid, 0) == nil {
				alive = true
			}
		}
		if !alive {
			return
		}
		_ = probeGreeting(p.addr)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("testenv: reconfigure: smtpd processes %v of the old configuration did not exit", old)
}

// childrenNamed returns the processes whose parent is ppid and whose
// command name is name, from /proc.
func childrenNamed(ppid int, name string) []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		st := string(b)
		i, j := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(st[j+1:])
		if st[i+1:j] == name && len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Addr returns the SMTP listener, "127.0.0.1:<port>".
func (p *Postfix) Addr() string { return p.addr }

// Port returns the SMTP listener's port.
func (p *Postfix) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Hostname returns myhostname, as shown in the greeting.
func (p *Postfix) Hostname() string { return p.hostname() }

// LogPath returns the instance's log file (maillog_file, written by
// postlogd), in the traditional syslog line format
// "Mon _2 15:04:05 host postfix/smtpd[123]: ...".
func (p *Postfix) LogPath() string { return p.logPath }

// ConfigDir returns the directory with main.cf and master.cf, for "-c".
func (p *Postfix) ConfigDir() string { return p.confDir }

// QueueDir returns the instance's queue_directory.
func (p *Postfix) QueueDir() string { return p.queueDir }

// CA returns the CA that issued the server certificate, or nil when the
// certificate came from PostfixOptions.TLSCertFile or TLS is off.
func (p *Postfix) CA() *CA { return p.ca }

// Log returns the log's current content.
func (p *Postfix) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("testenv: read postfix log: %v", err)
	}
	return string(b)
}

// WaitLog polls the log every 50ms until a line matches re and returns all
// lines that match at that moment. It fails the test, showing the log's
// tail, when no line matches within timeout.
func (p *Postfix) WaitLog(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	return p.WaitLogN(t, re, 1, timeout)
}

// WaitLogN is like [Postfix.WaitLog] but waits for at least n matching
// lines.
func (p *Postfix) WaitLogN(t testing.TB, re *regexp.Regexp, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := p.Log(t)
		var match []string
		for _, l := range strings.Split(log, "\n") {
			if re.MatchString(l) {
				match = append(match, l)
			}
		}
		if len(match) >= n {
			return match
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %d of %d postfix log lines match %q after %v; log tail:\n%s",
				len(match), n, re, timeout, tail(log, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// QueueIDFor waits until cleanup logs the message with the given
// Message-ID ("QID: message-id=<id>"; angle brackets in messageID are
// optional) and returns its queue ID.
func (p *Postfix) QueueIDFor(t testing.TB, messageID string, timeout time.Duration) string {
	t.Helper()
	id := strings.TrimSuffix(strings.TrimPrefix(messageID, "<"), ">")
	re := regexp.MustCompile(`postfix/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=<?` + regexp.QuoteMeta(id) + `>?\s*$`)
	lines := p.WaitLog(t, re, timeout)
	return re.FindStringSubmatch(lines[0])[1]
}

// WaitDelivery waits until the log has a delivery line for queue ID qid
// with status=status ("sent", "deferred", "bounced", "expired") and returns
// all such lines.
func (p *Postfix) WaitDelivery(t testing.TB, qid, status string, timeout time.Duration) []string {
	t.Helper()
	re := regexp.MustCompile(`\]: ` + regexp.QuoteMeta(qid) + `: to=<.*, status=` + regexp.QuoteMeta(status) + `\b`)
	return p.WaitLog(t, re, timeout)
}

// Command runs a Postfix program (postqueue, postsuper, postcat, postconf,
// postfix, …) against this instance, with "-c <config dir>" as its first
// arguments, and returns its combined output. It fails the test when the
// program fails or runs longer than 30 seconds.
func (p *Postfix) Command(t testing.TB, program string, args ...string) string {
	t.Helper()
	path := NeedBinary(t, program)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-c", p.confDir}, args...)...)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.confDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: %s %s: %v\n%s", program, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Flush asks the queue manager to retry all deferred mail now
// (postqueue -f).
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	p.Command(t, "postqueue", "-f")
}

// QueuedMessage is one message in the queue, as listed by postqueue -j.
type QueuedMessage struct {
	QueueName   string `json:"queue_name"` // incoming, active, deferred, hold, maildrop
	QueueID     string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"` // Unix seconds
	MessageSize int64  `json:"message_size"`
	Sender      string `json:"sender"`
	Recipients  []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason,omitempty"`
	} `json:"recipients"`
}

// Queue lists the messages in the queue (postqueue -j).
func (p *Postfix) Queue(t testing.TB) []QueuedMessage {
	t.Helper()
	out := p.Command(t, "postqueue", "-j")
	var msgs []QueuedMessage
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m QueuedMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("testenv: postqueue -j line %q: %v", l, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// Stop stops the instance: SIGTERM to its master, which stops its
// daemons; whatever remains of the master's process group after five
// seconds is killed. Stop is idempotent and is called at cleanup; the
// directories and the log stay until the test ends.
func (p *Postfix) Stop() {
	p.stopOnce.Do(func() {
		if p.proc != nil {
			p.proc.stop(5*time.Second, p.masterPID)
		}
	})
}

// writeConfig writes a Postfix configuration file or table dated a minute
// back: Postfix does not read a file modified within the last second or
// two, it polls until the file has aged, which would add seconds to every
// start.
func writeConfig(t testing.TB, name string, data []byte) {
	t.Helper()
	writeFile(t, name, data, 0o644)
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(name, past, past); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
