package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// stuckStore refuses Load with ErrBusy, as a store whose writer inserts
// nothing does, a number of times, then stores.
type stuckStore struct {
	refusals int
	calls    int
	stored   int
}

func (s *stuckStore) Load(_ context.Context, recs []*record.Record) error {
	s.calls++
	if s.calls <= s.refusals {
		return fmt.Errorf("%w (the writer inserted nothing for 1m0s)", store.ErrBusy)
	}
	s.stored += len(recs)
	return nil
}

// A log input waits for a stuck store until it stores again, saying so in
// the log, and gives up only once serve is stopping.
func TestStoreLoaderWaitsForStuckStore(t *testing.T) {
	st := &stuckStore{refusals: 3}
	l := &storeLoader{st: st, log: slog.New(slog.DiscardHandler), stopping: make(chan struct{})}
	if err := l.Handle(context.Background(), &record.Record{}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if st.calls != 4 || st.stored != 1 {
		t.Errorf("%d calls, %d stored; want 4 and 1", st.calls, st.stored)
	}

	stopping := make(chan struct{})
	close(stopping)
	st = &stuckStore{refusals: 1 << 30}
	l = &storeLoader{st: st, log: slog.New(slog.DiscardHandler), stopping: stopping}
	if err := l.Handle(context.Background(), &record.Record{}); !errors.Is(err, store.ErrBusy) {
		t.Errorf("Handle while serve stops, store stuck: %v, want ErrBusy", err)
	}
	if st.calls != 1 {
		t.Errorf("%d calls while stopping, want 1", st.calls)
	}

	// A cancelled ctx is not waited for either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st = &stuckStore{refusals: 1 << 30}
	l = &storeLoader{st: st, log: slog.New(slog.DiscardHandler), stopping: make(chan struct{})}
	if err := l.Handle(ctx, &record.Record{}); !errors.Is(err, store.ErrBusy) || st.calls != 1 {
		t.Errorf("Handle with a cancelled ctx: %v after %d calls", err, st.calls)
	}
}
