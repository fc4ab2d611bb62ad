package follow

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// commandedWriter appends numbered lines to path at full speed and rotates
// when told: by rename (writing 100 more lines to the renamed file, as a
// daemon does until it reopens) or by copytruncate done by the writer itself
// (nothing written between copy and truncate). Each command is answered
// once done; stop ends it with the number of lines written.
type commandedWriter struct {
	path string
	cmd  chan string
	done chan struct{}
}

func (w *commandedWriter) run(ctx context.Context) (int, error) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer func() { f.Close() }()
	shift := func() error {
		if err := os.Rename(w.path+".1", w.path+".2"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	const limit = 5_000_000 // bounded even if the test forgets to stop it
	i := 0
	write := func(to *os.File) error {
		_, err := io.WriteString(to, line(i))
		i++
		return err
	}
	for i < limit {
		select {
		case <-ctx.Done():
			return i, ctx.Err()
		case c := <-w.cmd:
			switch c {
			case "rename":
				if err := shift(); err != nil {
					return i, err
				}
				if err := os.Rename(w.path, w.path+".1"); err != nil {
					return i, err
				}
				for range 100 {
					if err := write(f); err != nil {
						return i, err
					}
				}
				f.Close()
				if f, err = os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
					return i, err
				}
			case "copytruncate":
				if err := shift(); err != nil {
					return i, err
				}
				if err := copyFile(w.path, w.path+".1"); err != nil {
					return i, err
				}
				if err := f.Truncate(0); err != nil {
					return i, err
				}
			case "stop":
				return i, nil
			}
			w.done <- struct{}{}
		default:
		}
		if err := write(f); err != nil {
			return i, err
		}
	}
	return i, nil
}

// TestCopytruncateOfQueuedFile: the follower lags behind a rename rotation
// (a held handler), so the new file at the path waits in its queue; that
// file is then copytruncated. The follower must read the copy before the
// truncated file: every line exactly once, no loss reported.
func TestCopytruncateOfQueuedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var held atomic.Bool
	held.Store(true)
	l := newLedger()
	entered := make(chan struct{})
	var enter sync.Once
	handle := func(ctx context.Context, b Batch) error {
		enter.Do(func() { close(entered) })
		for held.Load() && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		return l.handle(ctx, b)
	}
	rotated := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var events []Event
	cfg := Config{Path: path, ReadSize: 4096, PollInterval: 10 * time.Millisecond, OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		if e.Kind == EventRotated {
			// Called from Run's goroutine right after the new file was
			// queued: hold the next batch, so the follower lags.
			held.Store(true)
			once.Do(func() { close(rotated) })
		}
	}}
	defer func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range events {
				t.Logf("event %+v", e)
			}
		}
	}()

	// The first file holds much more than the follower reads per step.
	w := &commandedWriter{path: path, cmd: make(chan string), done: make(chan struct{})}
	werr := make(chan error, 1)
	wn := make(chan int, 1)
	go func() {
		n, err := w.run(ctx)
		wn <- n
		werr <- err
	}()
	waitSize := func(min int64) {
		t.Helper()
		eventually(t, "the file to grow", func() bool {
			fi, err := os.Stat(path)
			return err == nil && fi.Size() >= min
		})
	}
	waitSize(4 << 20)

	f, err := New(cfg, handle)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	// Once the follower is held in its first batch, rotate by rename.
	<-entered
	w.cmd <- "rename"
	<-w.done
	waitSize(2 * headWindow)
	held.Store(false) // until the follower queues the new file
	select {
	case <-rotated:
	case <-ctx.Done():
		t.Fatalf("the follower never saw the rename: %v, stats %+v", ctx.Err(), f.Stats())
	}
	// The new file waits in the queue, the follower still in the first one.
	waitSize(64 << 10)
	w.cmd <- "copytruncate"
	<-w.done
	waitSize(64 << 10)
	w.cmd <- "stop"
	n := <-wn
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	held.Store(false)
	l.waitFor(t, n, 30*time.Second)
	cancel()
	<-runErr
	l.check(t, n, nil)
	if s := f.Stats(); s.PossibleLoss != 0 || s.Truncations != 1 {
		t.Errorf("stats %+v, want one truncation and no possible loss", s)
	}
}
