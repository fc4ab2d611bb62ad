package testenv

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// fakeTB records what harness code reports instead of failing or skipping
// the real test. Run the code under test with run, since Fatalf and Skipf
// end the calling goroutine as the testing package does.
type fakeTB struct {
	*testing.T
	mu      sync.Mutex
	errors  []string
	fatal   string
	skipped string
}

func newFakeTB(t *testing.T) *fakeTB { return &fakeTB{T: t} }

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn(f) in its own goroutine and waits for it.
func (f *fakeTB) run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}
