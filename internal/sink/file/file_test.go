package file

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

func TestConcurrentWritersNeverInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := Open(path, record.FormatJSON, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				r := &record.Record{Type: record.TypeMessage, Timestamp: time.Now(), Subject: strings.Repeat("x", 3000), QueueID: strconv.Itoa(w*1000 + i)}
				if err := s.Handle(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	seen := map[string]bool{}
	for _, l := range lines {
		var r record.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("broken line: %v", err)
		}
		seen[r.QueueID] = true
	}
	if len(lines) != 4000 || len(seen) != 4000 {
		t.Errorf("%d lines, %d distinct records; want 4000", len(lines), len(seen))
	}
}

func TestAppendsAndReportsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.log")
	os.WriteFile(path, []byte("earlier line\n"), 0o600)
	s, err := Open(path, record.FormatText, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(context.Background(), &record.Record{Type: record.TypeSession, Timestamp: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "earlier line\n1970-01-01T00:00:00.000Z session") {
		t.Errorf("file: %q", data)
	}
	// A write that fails is an error to the caller, never silent.
	if err := s.Handle(context.Background(), &record.Record{Type: record.TypeSession}); err == nil {
		t.Error("write after close reported no error")
	}
	if _, err := Open(filepath.Join(dir, "no", "such", "dir.log"), record.FormatJSON, nil, false); err == nil {
		t.Error("opening in a missing directory succeeded")
	}
}
