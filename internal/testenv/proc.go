package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is a process started by the harness and owned by one test.
type child struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's result, valid after exited is closed
}

// startChild starts cmd with stdout and stderr captured, as the user in
// cred when it is not nil, and reaps it in the background.
func startChild(cmd *exec.Cmd, cred *syscall.Credential) (*child, error) {
	c := &child{cmd: cmd, out: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout = c.out
	cmd.Stderr = c.out
	cmd.SysProcAttr = childAttr()
	if cred != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// hasExited reports whether the process has exited.
func (c *child) hasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace for the process to exit, then sends
// SIGKILL. When group is not 0 it is a process group that the process
// created (Postfix's master makes itself a session leader): its remaining
// members are also waited for and then killed.
func (c *child) stop(grace time.Duration, group int) {
	if !c.hasExited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if group == 0 {
		return
	}
	deadline := time.Now().Add(grace)
	for groupAlive(group) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if groupAlive(group) {
		_ = syscall.Kill(-group, syscall.SIGKILL)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// shortTempDir creates a directory directly under os.TempDir() with mode
// 0755 and removes it at cleanup. Unlike t.TempDir() its path is short
// (Postfix addresses its logging socket by absolute path, and a UNIX socket
// path has at most 107 bytes) and every parent is searchable by the
// unprivileged users that Postfix and smtp-sink switch to.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { removeAll(t, dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// removeAll removes dir, retrying for a while: daemons that are still
// exiting may create files in it.
func removeAll(t testing.TB, dir string) {
	var err error
	for i := 0; i < 20; i++ {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("testenv: remove %s: %v", dir, err)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// probeConnect reports whether a TCP connection to addr succeeds.
func probeConnect(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
