package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ledger is a consumer that stores each batch and its checkpoint under one
// lock: the "atomic with its effects" consumer of the exactly-once guarantee.
type ledger struct {
	mu    sync.Mutex
	count map[int]int
	bad   []string
	lines int
	ck    Checkpoint
	hasCk bool
}

func newLedger() *ledger { return &ledger{count: map[int]int{}} }

func (l *ledger) handle(_ context.Context, b Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ln := range b.Lines {
		l.add(ln.Text)
	}
	l.ck, l.hasCk = b.Checkpoint, true
	return nil
}

func (l *ledger) add(text string) {
	n, err := strconv.Atoi(strings.Fields(text + " x")[0])
	if err != nil {
		l.bad = append(l.bad, text)
		return
	}
	l.count[n]++
	l.lines++
}

func (l *ledger) load(context.Context) (Checkpoint, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ck, l.hasCk, nil
}

// check reports lines missing or repeated among 0..n-1.
func (l *ledger) check(t *testing.T, n int, allowMissing func(int) bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing, dup []int
	for i := range n {
		switch c := l.count[i]; {
		case c == 0 && (allowMissing == nil || !allowMissing(i)):
			missing = append(missing, i)
		case c > 1:
			dup = append(dup, i)
		}
	}
	if len(l.bad) > 0 {
		t.Errorf("%d malformed lines, first %q", len(l.bad), l.bad[0])
	}
	if len(missing) > 0 || len(dup) > 0 {
		t.Fatalf("missing %d (first %v), repeated %d (first %v)", len(missing), head(missing), len(dup), head(dup))
	}
}

func head(s []int) []int { return s[:min(len(s), 5)] }

func (l *ledger) waitFor(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		got := len(l.count)
		l.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func line(i int) string {
	return fmt.Sprintf("%09d postfix/smtp[4242]: 4Xy7Zq1abcD: to=<u%d@example.org>, status=sent\n", i, i)
}

// rotation says how the writer rotates: by rename (and keeps writing to the
// old file for a while, as a daemon does until it reopens), or by
// copytruncate done by the writer itself (so nothing is written between
// the copy and the truncation).
type rotation int

const (
	byRename rotation = iota
	byCopyTruncate
	byDeleteRecreate
)

// writer appends n numbered lines to path at full speed, rotating every
// `every` lines; it shifts rotated files path.1 → path.2 → … up to keep.
// writer writes n numbered lines at full speed, rotating every `every`
// lines. gate, when set, is called before each rotation with a line number
// from the middle of the file being rotated away; it returns once the
// follower has read it (the follower's documented precondition: each new
// file is seen at the path at least once before the next rotation).
func writer(ctx context.Context, path string, n, every int, how rotation, pause time.Duration, gate ...func(line int)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	shift := func() error {
		const keep = 16 // more than the test rotates: no file is dropped before it is read
		for i := keep - 1; i >= 1; i-- {
			if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	var old *os.File
	oldLeft := 0
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if i > 0 && i%every == 0 {
			for _, g := range gate {
				g(i - every/2)
			}
			switch how {
			case byRename:
				if err := shift(); err != nil {
					return err
				}
				if err := os.Rename(path, path+".1"); err != nil {
					return err
				}
				// Keep writing to the renamed file for a while before
				// reopening, like a daemon waiting for its HUP.
				old, oldLeft = f, 50+rand.IntN(500)
			case byCopyTruncate:
				if err := shift(); err != nil {
					return err
				}
				if err := copyFile(path, path+".1"); err != nil {
					return err
				}
				if err := f.Truncate(0); err != nil {
					return err
				}
			case byDeleteRecreate:
				f.Close()
				if err := os.Remove(path); err != nil {
					return err
				}
				if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
					return err
				}
			}
		}
		if old != nil {
			if oldLeft == 0 {
				old.Close()
				old = nil
				if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
					return err
				}
			} else {
				oldLeft--
			}
		}
		if pause > 0 && i%500 == 0 {
			time.Sleep(pause)
		}
		if _, err := io.WriteString(f, line(i)); err != nil {
			return err
		}
	}
	if old != nil {
		old.Close()
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// runCrashing runs followers one after another, each cancelled abruptly at a
// random moment, until the ledger has n lines or the budget runs out.
func runCrashing(t *testing.T, ctx context.Context, cfg Config, l *ledger, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for restarts := 0; time.Now().Before(deadline); restarts++ {
		f, err := New(cfg, l.handle)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(5+rand.IntN(50))*time.Millisecond)
		err = f.Run(rctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: %v", restarts, err)
		}
		l.mu.Lock()
		done := len(l.count) >= n
		l.mu.Unlock()
		if done {
			t.Logf("%d restarts", restarts+1)
			return
		}
	}
}

func TestRotationWithRestarts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		how      rotation
		fileCkpt bool
	}{
		{"rename", byRename, false},
		{"rename-file-checkpoint", byRename, true},
		{"copytruncate", byCopyTruncate, false},
		{"delete-recreate", byDeleteRecreate, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 200000
			if testing.Short() {
				n = 20000
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			l := newLedger()
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			werr := make(chan error, 1)
			seen := func(line int) {
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(2 * time.Millisecond) {
					l.mu.Lock()
					ok := l.count[line] > 0
					l.mu.Unlock()
					if ok {
						return
					}
				}
			}
			go func() { werr <- writer(ctx, path, n, n/10, tc.how, 0, seen) }()
			cfg := Config{Path: path, Checkpointer: NopSave(l.load), PollInterval: 20 * time.Millisecond}
			if tc.fileCkpt {
				// Stops are clean (ctx cancelled), so the acknowledged batch is
				// saved: exactly once with a separate checkpoint file too.
				cfg.Checkpointer = FileCheckpointer{Path: filepath.Join(dir, "ckpt")}
			}
			if tc.how == byDeleteRecreate {
				// A deleted file may be reopened by another name only by
				// inode; run without restarts so the old fd stays open.
				f, _ := New(cfg, l.handle)
				fctx, fcancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- f.Run(fctx) }()
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				l.waitFor(t, n, 30*time.Second)
				fcancel()
				<-done
			} else {
				runCrashing(t, ctx, cfg, l, n)
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			}
			l.check(t, n, nil)
		})
	}
}

func collect(t *testing.T, cfg Config) (*ledger, func() []Line, context.CancelFunc) {
	t.Helper()
	var mu sync.Mutex
	var got []Line
	l := newLedger()
	f, err := New(cfg, func(ctx context.Context, b Batch) error {
		mu.Lock()
		got = append(got, b.Lines...)
		mu.Unlock()
		return l.handle(ctx, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l, func() []Line { mu.Lock(); defer mu.Unlock(); return append([]Line(nil), got...) }, cancel
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPartialLineHeldAndLongLineTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	// The file does not exist yet.
	_, got, _ := collect(t, Config{Path: path, MaxLineBytes: 16, PollInterval: 10 * time.Millisecond})
	time.Sleep(50 * time.Millisecond)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("first\nsec")
	eventually(t, "first line", func() bool { return len(got()) == 1 })
	time.Sleep(100 * time.Millisecond)
	if len(got()) != 1 {
		t.Fatalf("partial line delivered: %+v", got())
	}
	f.WriteString("ond\n" + strings.Repeat("y", 100000) + "\nlast\n")
	eventually(t, "all lines", func() bool { return len(got()) == 4 })
	g := got()
	if g[1].Text != "second" || g[1].Offset != 6 {
		t.Errorf("line 2 = %+v", g[1])
	}
	if g[2].Text != strings.Repeat("y", 16) || !g[2].Truncated {
		t.Errorf("line 3 = %q truncated=%v", g[2].Text, g[2].Truncated)
	}
	if g[3].Text != "last" || g[3].Offset != 13+100001 {
		t.Errorf("line 4 = %+v", g[3])
	}
}

// TestResumeAfterRotationWhileStopped: the checkpoint points into a file
// that was rotated twice while the follower was stopped; the follower
// finishes it, then the newer rotated file, then the path.
func TestResumeAfterRotationWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	ckpt := FileCheckpointer{Path: filepath.Join(dir, "mail.log.ckpt")}
	write := func(name string, from, to int) {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			f.WriteString(line(i))
		}
		f.Close()
	}
	write(path, 0, 100)
	l := newLedger()
	cfg := Config{Path: path, Checkpointer: ckpt, PollInterval: 10 * time.Millisecond}
	f, _ := New(cfg, l.handle)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	l.waitFor(t, 100, 5*time.Second)
	cancel()
	<-done
	// Stopped: more lines, rotate, more, rotate again, more.
	write(path, 100, 150)
	time.Sleep(5 * time.Millisecond)
	os.Rename(path, path+".1")
	write(path, 150, 200)
	time.Sleep(5 * time.Millisecond)
	os.Rename(path+".1", path+".2")
	os.Rename(path, path+".1")
	write(path, 200, 250)

	f, _ = New(cfg, l.handle)
	ctx, cancel = context.WithCancel(t.Context())
	done = make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	l.waitFor(t, 250, 5*time.Second)
	cancel()
	<-done
	l.check(t, 250, nil)
	// Order: each file in turn.
	if s := f.Stats(); s.PossibleLoss != 0 {
		t.Errorf("possible loss reported: %+v", s)
	}
}

func TestCheckpointStaleFileReportsLoss(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	os.WriteFile(path, []byte(line(0)+line(1)), 0o644)
	ck := FileCheckpointer{Path: filepath.Join(dir, "ck")}
	ck.Save(t.Context(), Checkpoint{Path: path, Dev: 1, Ino: 1, Offset: 5, HeadHash: "x", LastHash: "y", LastLen: 1})
	var events []Event
	l, _, _ := collect(t, Config{Path: path, Checkpointer: ck, PollInterval: 10 * time.Millisecond, OnEvent: func(e Event) { events = append(events, e) }})
	l.waitFor(t, 2, 5*time.Second)
	l.check(t, 2, nil)
	if len(events) == 0 || events[0].Kind != EventPossibleLoss {
		t.Errorf("events = %+v", events)
	}
}

func TestSplitter(t *testing.T) {
	in := "a\nbb\n" + strings.Repeat("z", 10) + "\n\nccc"
	for chunk := 1; chunk <= len(in); chunk++ {
		var sp splitter
		sp.reset(0, 4)
		var out []string
		for i := 0; i < len(in); i += chunk {
			sp.feed([]byte(in[i:min(len(in), i+chunk)]), func(l Line) {
				out = append(out, fmt.Sprintf("%d:%s:%v", l.Offset, l.Text, l.Truncated))
			})
		}
		want := "0:a:false 2:bb:false 5:zzzz:true 16::false"
		if got := strings.Join(out, " "); got != want || sp.committed != 17 {
			t.Fatalf("chunk %d: got %q committed %d", chunk, got, sp.committed)
		}
		if l, ok := sp.flush("f"); !ok || l.Text != "ccc" || !l.Unterminated || sp.committed != 20 {
			t.Fatalf("flush = %+v %v", l, ok)
		}
	}
}
