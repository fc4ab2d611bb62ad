package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/smtpwire"
	"github.com/smtplog/smtplog/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runCLI(t *testing.T, envv map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return envv[k] }}
	code := run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "smtplog ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestBadInvocationsSayWhatToFix(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("listen: 127.0.0.1:2525\nupstrem: mail:25\n"), 0o600)
	notMap := filepath.Join(dir, "list.yaml")
	os.WriteFile(notMap, []byte("- a\n- b\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{[]string{"proxy"}, nil, 2, "--upstream HOST:PORT is required"},
		{[]string{"proxy", "--upstream", "nohostport"}, nil, 2, "is not host:port"},
		{[]string{"proxy", "--upstream", "a:25", "--upstream-tls", "maybe"}, nil, 2, "use required, opportunistic, none or implicit"},
		{[]string{"proxy", "--upstream", "a:25", "--format", "xml"}, nil, 1, "use json or text"},
		{[]string{"proxy", "--upstream", "a:25", "--data-policy", "accept"}, nil, 2, "relay never forwards bare CR/LF"},
		{[]string{"proxy", "--upstream", "a:25", "--tls-cert", "x.pem"}, nil, 2, "both a certificate and a key"},
		{[]string{"proxy", "--config", unknown}, nil, 1, `line 2: unknown key "upstrem"`},
		{[]string{"proxy", "--config", notMap}, nil, 1, "must be a mapping"},
		{[]string{"proxy", "--config", filepath.Join(dir, "missing.yaml")}, nil, 1, "read config"},
		{[]string{"proxy"}, map[string]string{"SMTPLOG_UPSTREAM_TLS": "bogus", "SMTPLOG_UPSTREAM": "a:25"}, 2, "use required, opportunistic, none or implicit"},
		{[]string{"proxy", "--upstream", "a:25", "--max-recipients", "many"}, nil, 1, "invalid argument"},
		{[]string{"nosuch"}, nil, 1, "unknown command"},
	} {
		code, _, errOut := runCLI(t, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

func TestConfigLayering(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "smtplog.yaml")
	os.WriteFile(cfg, []byte("upstream: 127.0.0.1:1\nupstream_tls: none\naccept-domain: [a.example, b.example]\nlisten: 127.0.0.1:1\n"), 0o600)
	root := newRoot(&env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(k string) string {
		return map[string]string{"SMTPLOG_LISTEN": "127.0.0.1:2"}[k]
	}})
	proxy, _, err := root.Find([]string{"proxy"})
	if err != nil {
		t.Fatal(err)
	}
	proxy.ParseFlags([]string{"--config", cfg, "--upstream", "127.0.0.1:3"})
	if err := applyConfig(proxy, &env{getenv: func(k string) string {
		return map[string]string{"SMTPLOG_LISTEN": "127.0.0.1:2"}[k]
	}}); err != nil {
		t.Fatal(err)
	}
	get := func(n string) string { return proxy.Flags().Lookup(n).Value.String() }
	// flag > env > file > default
	if get("upstream") != "127.0.0.1:3" || get("listen") != "127.0.0.1:2" || get("upstream-tls") != "none" {
		t.Errorf("layering: upstream=%s listen=%s upstream-tls=%s", get("upstream"), get("listen"), get("upstream-tls"))
	}
}

// startServe runs `smtplog serve` in-process on a free port until the test
// ends and returns the SMTP address and the record output.
func startServe(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, append([]string{"serve", "--smtp", addr, "--hostname", "capture.test", "--log-file", "-", "--db", ":memory:", "--http", "off"}, args...))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never listened: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, &out
}

func waitFor(t *testing.T, b *syncBuffer, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q:\n%s", s, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b.String()
}

func TestServeCaptureWithSwaks(t *testing.T) {
	swaks := testenv.NeedBinary(t, "swaks")
	addr, out := startServe(t)
	host, port, _ := net.SplitHostPort(addr)
	res, err := exec.Command(swaks, "-s", host, "-p", port, "--tls", "--auth", "LOGIN", "--auth-user", "dev", "--auth-password", "pw-CANARY-7f3a9d",
		"-f", "app@dev.example", "-t", "user@example.com", "--header", "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=").CombinedOutput()
	if err != nil || !strings.Contains(string(res), "queued as") {
		t.Fatalf("swaks: %v\n%s", err, res)
	}
	got := waitFor(t, out, `"type":"session"`)
	for _, want := range []string{`"source":"capture"`, `"subject":"Grüße"`, `"username":"dev"`, `"status":"accepted"`, `"tls":{"used":true`} {
		if !strings.Contains(got, want) {
			t.Errorf("records lack %s:\n%s", want, got)
		}
	}
	testenv.AssertNoSecret(t, "pw-CANARY-7f3a9d", []byte(got))
}

func TestServeTextFormatEscapes(t *testing.T) {
	addr, out := startServe(t, "--format", "text")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// A subject with an encoded CR LF and an ANSI escape must stay on one line.
	br := bufio.NewReader(c)
	for _, line := range []string{"", "EHLO x.example", "MAIL FROM:<a@x.example>", "RCPT TO:<b@y.example>", "DATA"} {
		if line != "" {
			c.Write([]byte(line + "\r\n"))
		}
		if _, _, err := smtpwire.ReadReply(br, 512); err != nil {
			t.Fatal(err)
		}
	}
	c.Write([]byte("Subject: =?UTF-8?B?" + "aGkNClgtRm9yZ2VkOiB5ZXMbWzJK" + "?=\r\nFrom: \"\x1b[31mred\" <a@x.example>\r\n\r\nbody\r\n.\r\nQUIT\r\n"))
	got := waitFor(t, out, "close=quit")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.Contains(l, "close=client_lost") { // the readiness probe
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want 2 text lines, got %d:\n%s", len(lines), got)
	}
	if strings.ContainsRune(got, '\x1b') || strings.Contains(got, "\r") {
		t.Errorf("control characters reached the text output: %q", got)
	}
	if !strings.Contains(lines[0], "X-Forged: yes") || !strings.HasPrefix(lines[1], "20") {
		t.Errorf("text lines: %q", lines)
	}
}
