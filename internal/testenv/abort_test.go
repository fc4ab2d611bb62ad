package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const abortHelperEnv = "SMTPLOG_TESTENV_ABORT_HELPER"

// TestAbortHelper is not a test of its own: TestAbortLeavesNoDaemons runs
// the test binary with it, and kills that process while it runs.
func TestAbortHelper(t *testing.T) {
	if os.Getenv(abortHelperEnv) != "1" {
		t.Skip("helper for TestAbortLeavesNoDaemons")
	}
	pf := StartPostfix(t, PostfixOptions{NoTLS: true})
	sink := StartSink(t)
	fmt.Printf("PIDS %d %d DIRS %s %s\n", pf.masterPID, sink.proc.cmd.Process.Pid, pf.dir, sink.dir)
	time.Sleep(time.Minute) // killed long before
}

// TestAbortLeavesNoDaemons proves that when a test process dies without
// running its cleanups (a panic, a timeout, kill -9), the Postfix master and
// smtp-sink it started die too (parent-death signal).
func TestAbortLeavesNoDaemons(t *testing.T) {
	NeedRoot(t)
	NeedBinary(t, "postfix")
	NeedBinary(t, "smtp-sink")
	cmd := exec.Command(os.Args[0], "-test.run=^TestAbortHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), abortHelperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "PIDS ") {
				lines <- sc.Text()
				break
			}
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start Postfix and smtp-sink within 30s")
	}
	f := strings.Fields(line) // PIDS master sink DIRS pfdir sinkdir
	if len(f) != 6 {
		t.Fatalf("helper said %q", line)
	}
	t.Cleanup(func() {
		removeAll(t, f[4])
		removeAll(t, f[5])
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f[1:3] {
		pid, _ := strconv.Atoi(s)
		deadline := time.Now().Add(10 * time.Second)
		for processRunning(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processRunning(pid) {
			t.Errorf("process %d survived its test process", pid)
		}
	}
}

// processRunning reports whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}
