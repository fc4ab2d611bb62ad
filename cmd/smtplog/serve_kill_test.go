package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/testenv"
)

// captureKillArgs runs serve in capture mode on the address in dir/addr,
// keeping every message.
func captureKillArgs(dir string) []string {
	addr, _ := os.ReadFile(filepath.Join(dir, "addr"))
	return []string{"serve", "--smtp", string(addr), "--http", "off", "--db", filepath.Join(dir, "smtplog.db"),
		"--hostname", "capture.test", "--keep", "-1", "--log-level", "warn"}
}

// TestServeCaptureKillChild is `smtplog serve` in capture mode for
// TestServeCaptureKill9; it runs only when re-executed by it.
func TestServeCaptureKillChild(t *testing.T) {
	runChild(t, "SMTPLOG_TEST_CAPTURE_KILL_DIR", "TestServeCaptureKill9", captureKillArgs)
}

// TestServeCaptureKill9 sends messages from several clients to capture
// mode and kills the server with SIGKILL at a random moment, three times
// over the same database: every message that got its 250 is there after
// the restarts, once, with its exact bytes.
func TestServeCaptureKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	if err := os.WriteFile(filepath.Join(dir, "addr"), []byte(addr), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]string{} // queue ID -> the message sent
	for round := range 3 {
		c := startChild(t, "TestServeCaptureKillChild", "SMTPLOG_TEST_CAPTURE_KILL_DIR", dir)
		waitListening(t, addr, c)
		killAt := int64(40 + rand.IntN(200))
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					msg := fmt.Sprintf("Message-ID: <r%d.w%d.%d@kill.test>\r\nSubject: kill %d/%d/%d\r\n\r\n%s",
						round, w, i, round, w, i, strings.Repeat(fmt.Sprintf("line %d of the body\r\n", i), 1+rand.IntN(300)))
					// The 250 counts even should QUIT then fail: the
					// message was acknowledged.
					reply, _, _ := testenv.SendMail(addr, nil, "app@dev.example", []string{"u@example.com"}, msg)
					_, qid, ok := strings.Cut(reply, "queued as ")
					if !ok {
						continue
					}
					mu.Lock()
					acked[strings.TrimSpace(qid)] = msg
					mu.Unlock()
					n.Add(1)
				}
			}()
		}
		deadline := time.Now().Add(60 * time.Second)
		for n.Load() < killAt && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		c.stop(true)
		close(stop)
		wg.Wait()
		if n.Load() < killAt {
			t.Fatalf("round %d: only %d messages acknowledged in a minute; stderr: %s", round, n.Load(), c.stderr())
		}
		t.Logf("round %d: killed after %d acknowledgements", round, n.Load())
	}
	// A clean start and stop inserts what the last kill left in the log.
	c := startChild(t, "TestServeCaptureKillChild", "SMTPLOG_TEST_CAPTURE_KILL_DIR", dir)
	waitListening(t, addr, c)
	if code := c.stop(false); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM: %s", code, c.stderr())
	}

	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "smtplog.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	capt, err := store.NewCapture(st, store.CaptureOptions{Keep: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	lost := 0
	for qid, msg := range acked {
		items, err := st.ByQueueID(ctx, qid)
		msgs := 0
		for _, it := range items {
			if it.Record.Type == "message" {
				msgs++
			}
		}
		_, raw, rerr := capt.Get(ctx, qid)
		if err != nil || msgs != 1 || rerr != nil || !bytes.Equal(raw, []byte(msg+"\r\n")) && !bytes.Equal(raw, []byte(msg)) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged message %s: %d message records (%v), %d bytes stored of %d sent (%v)",
					qid, msgs, err, len(raw), len(msg), rerr)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost or damaged", lost, len(acked))
	}
	t.Logf("%d acknowledged messages all there", len(acked))
}

// waitListening waits until addr accepts connections, or fails t with
// the child's standard error.
func waitListening(t *testing.T, addr string, c *child) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.stop(true)
			t.Fatalf("serve did not listen on %s: %v; stderr: %s", addr, err, c.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
