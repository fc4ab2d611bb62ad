package follow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outputLog is the child's consumer: each batch is appended to one file as
// "L <line>" records followed by a "C <checkpoint>" record, in one write.
// The checkpoint thus commits with the lines; Load cuts a batch torn by
// kill -9 (a write to a file can be cut short by a fatal signal).
type outputLog struct{ path string }

func (o outputLog) handle(_ context.Context, b Batch) error {
	var buf bytes.Buffer
	for _, l := range b.Lines {
		buf.WriteString("L ")
		buf.WriteString(l.Text)
		buf.WriteByte('\n')
	}
	ck, _ := json.Marshal(b.Checkpoint)
	buf.WriteString("C ")
	buf.Write(ck)
	buf.WriteByte('\n')
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(buf.Bytes())
	return err
}

// committed returns the output up to its last complete checkpoint record
// and that checkpoint.
func (o outputLog) committed() ([]byte, Checkpoint, bool, error) {
	b, err := os.ReadFile(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, Checkpoint{}, false, nil
	}
	if err != nil {
		return nil, Checkpoint{}, false, err
	}
	end := len(b)
	for end > 0 {
		start := bytes.LastIndexByte(b[:end-1], '\n') + 1
		rec := b[start:end]
		if bytes.HasPrefix(rec, []byte("C ")) && rec[len(rec)-1] == '\n' {
			var ck Checkpoint
			if json.Unmarshal(rec[2:], &ck) == nil {
				return b[:end], ck, true, nil
			}
		}
		end = start
	}
	return nil, Checkpoint{}, false, nil
}

func (o outputLog) load(context.Context) (Checkpoint, bool, error) {
	good, ck, ok, err := o.committed()
	if err != nil {
		return Checkpoint{}, false, err
	}
	if err := os.Truncate(o.path, int64(len(good))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Checkpoint{}, false, err
	}
	return ck, ok, nil
}

// TestKill9Child is the follower process of TestKill9; it runs only when
// re-executed by it.
func TestKill9Child(t *testing.T) {
	path := os.Getenv("FOLLOW_TEST_CHILD_PATH")
	if path == "" {
		t.Skip("helper process for TestKill9")
	}
	out := outputLog{path: os.Getenv("FOLLOW_TEST_CHILD_OUT")}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	f, err := New(Config{Path: path, Checkpointer: NopSave(out.load), PollInterval: 20 * time.Millisecond}, out.handle)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestKill9 follows a file rotated by rename while being written at full
// speed, in a child process killed with SIGKILL at random moments and
// restarted; every line must be in the committed output exactly once.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	out := outputLog{path: filepath.Join(dir, "out")}
	n := 200000
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	werr := make(chan error, 1)
	go func() {
		// Slow the writer down a little so that kills land during rotations.
		werr <- writer(ctx, path, n, n/10, byRename, 5*time.Millisecond)
	}()
	countLines := func() int {
		good, _, _, _ := out.committed()
		return bytes.Count(good, []byte("\nL ")) + map[bool]int{true: 1}[bytes.HasPrefix(good, []byte("L "))]
	}
	kills := 0
	writerDone := false
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FOLLOW_TEST_CHILD_PATH="+path, "FOLLOW_TEST_CHILD_OUT="+out.path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(30+rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL) // this child only
		err := cmd.Wait()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() != -1 {
			t.Fatalf("child failed: %v\n%s", err, stderr.String())
		}
		kills++
		if !writerDone {
			select {
			case err := <-werr:
				if err != nil {
					t.Fatal(err)
				}
				writerDone = true
			default:
			}
		}
		if writerDone && countLines() >= n {
			break
		}
	}
	t.Logf("%d kills", kills)
	good, _, _, err := out.committed()
	if err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	sc := bufio.NewScanner(bytes.NewReader(good))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "L "); ok {
			l.add(rest)
		}
	}
	l.check(t, n, nil)
}
