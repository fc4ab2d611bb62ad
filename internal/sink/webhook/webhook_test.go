package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

type received struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
}

func (r *received) add(b []byte, h http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, b)
	r.heads = append(r.heads, h.Clone())
}

func (r *received) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func msg(id, subject string) *record.Record {
	return &record.Record{Type: record.TypeMessage, Status: record.StatusAccepted, QueueID: id, SessionID: "S" + id,
		Timestamp: time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC), From: "App <app@x.example>", To: []string{"u@y.example"},
		Subject: subject, MailFrom: record.Ptr("app@x.example"), RcptTo: []string{"u@y.example"}, Size: 1234, MessageID: id + "@x.example"}
}

func run(t *testing.T, s *Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliveredOncePerMessage(t *testing.T) {
	got := &received{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.add(b, r.Header)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL + "/hook", Link: "http://127.0.0.1:8025/view/{ID}"})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, s)
	for _, id := range []string{"A1", "B2", "C3"} {
		s.Handle(context.Background(), msg(id, "subject "+id))
	}
	// Not notified: session records and refused messages.
	s.Handle(context.Background(), &record.Record{Type: record.TypeSession})
	s.Handle(context.Background(), &record.Record{Type: record.TypeMessage, Status: record.StatusRejected})
	waitFor(t, func() bool { return s.Stats().Delivered == 3 })
	stop()
	if got.n() != 3 {
		t.Fatalf("%d posts", got.n())
	}
	seen := map[string]Payload{}
	for i, b := range got.bodies {
		var p Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		seen[p.ID] = p
		if h := got.heads[i]; h.Get("Content-Type") != "application/json" || h.Get(DeliveryHeader) == "" || h.Get(SignatureHeader) != "" {
			t.Errorf("headers %v", h)
		}
	}
	p := seen["B2"]
	if len(seen) != 3 || p.Event != "message" || p.Subject != "subject B2" || p.From != "App <app@x.example>" || p.To[0] != "u@y.example" ||
		p.Size != 1234 || p.Link != "http://127.0.0.1:8025/view/B2" || !p.Timestamp.Equal(msg("", "").Timestamp) || *p.MailFrom != "app@x.example" {
		t.Errorf("payloads %+v", seen)
	}
	if st := s.Stats(); st.Queued != 3 || st.Delivered != 3 || st.Failed != 0 || st.Dropped != 0 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRetriedOn500(t *testing.T) {
	got := &received{}
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.add(b, r.Header)
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	s, _ := New(Config{URL: srv.URL, Backoff: 10 * time.Millisecond, Workers: 1})
	run(t, s)
	s.Handle(context.Background(), msg("R1", "retry"))
	waitFor(t, func() bool { return s.Stats().Delivered == 1 })
	if got.n() != 3 {
		t.Errorf("%d attempts", got.n())
	}
	if id := got.heads[0].Get(DeliveryHeader); id == "" || got.heads[2].Get(DeliveryHeader) != id || got.heads[2].Get("X-Smtplog-Attempt") != "3" {
		t.Errorf("delivery ids %q %q", id, got.heads[2].Get(DeliveryHeader))
	}
	if st := s.Stats(); st.Retries != 2 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGivesUp(t *testing.T) {
	logs := &syncWriter{w: &bytes.Buffer{}}
	var mu sync.Mutex
	calls := 0
	nCalls := func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		if r.Header.Get(EventHeader) == "message" && strings.Contains(r.URL.Path, "gone") {
			http.Error(w, "gone", http.StatusGone)
			return
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	s, _ := New(Config{URL: srv.URL + "/x?token=SECRET-TOKEN", Backoff: time.Millisecond, MaxAttempts: 3, Workers: 1,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	run(t, s)
	s.Handle(context.Background(), msg("F1", "fail"))
	waitFor(t, func() bool { return s.Stats().Failed == 1 })
	if n := nCalls(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	// A 4xx answer other than 408/429 is not retried.
	s2, _ := New(Config{URL: srv.URL + "/gone", Backoff: time.Millisecond, Workers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	run(t, s2)
	mu.Lock()
	calls = 0
	mu.Unlock()
	s2.Handle(context.Background(), msg("G1", "gone"))
	waitFor(t, func() bool { return s2.Stats().Failed == 1 })
	if n := nCalls(); n != 1 {
		t.Errorf("%d attempts on 410", n)
	}
	if strings.Contains(logs.String(), "SECRET-TOKEN") || !strings.Contains(logs.String(), "webhook notification failed") {
		t.Errorf("log %s", logs.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*bytes.Buffer).String()
}

func TestDroppedWhenQueueFull(t *testing.T) {
	release := make(chan struct{})
	got := &received{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.add(b, r.Header)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	logs := &syncWriter{w: &bytes.Buffer{}}
	s, _ := New(Config{URL: srv.URL, QueueSize: 2, Workers: 1, DropLogInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	run(t, s)
	s.Handle(context.Background(), msg("M0", "in flight"))
	waitFor(t, func() bool { return got.n() == 1 }) // the worker is blocked on it
	start := time.Now()
	for i := 1; i <= 12; i++ {
		s.Handle(context.Background(), msg("M"+string(rune('a'+i)), "queued or dropped"))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Handle blocked for %v", took)
	}
	if st := s.Stats(); st.Queued != 3 || st.Dropped != 10 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "webhook notifications dropped"); n != 1 {
		t.Errorf("%d drop log lines in one interval:\n%s", n, logs.String())
	}
}

func TestSignature(t *testing.T) {
	secret := []byte("shared-secret")
	var verified, tampered bool
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sig := r.Header.Get(SignatureHeader)
		verified = Verify(secret, b, sig)
		tampered = Verify(secret, append(b, ' '), sig) || Verify([]byte("other"), b, sig)
		close(done)
	}))
	defer srv.Close()
	s, _ := New(Config{URL: srv.URL, Secret: string(secret)})
	run(t, s)
	s.Handle(context.Background(), msg("S1", "signed"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	if !verified || tampered {
		t.Errorf("verified %v tampered %v", verified, tampered)
	}
}

func TestStopCountsLeftovers(t *testing.T) {
	s, _ := New(Config{URL: "http://127.0.0.1:1/unused", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for i := 0; i < 3; i++ {
		s.Handle(context.Background(), msg("L", "left"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx) // returns at once; nothing was sent
	if st := s.Stats(); st.Queued+0 != 3 || st.Dropped+st.Failed+st.Delivered != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x.example/", "http://", "::"} {
		if _, err := New(Config{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
