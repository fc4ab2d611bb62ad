package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
)

const killChildEnv = "SMTPLOG_STORE_KILL_CHILD"

// TestKillChild is the child of TestKillDuringWrites: it writes records
// from many goroutines until it is killed, printing the Message-ID of each
// record whose Handle returned nil.
func TestKillChild(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		t.Skip("run by TestKillDuringWrites")
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	writeAcked(s, 32, 0, "kill.test", false)
	os.Exit(3)
}

// writeAcked is the body of a kill test's child: workers goroutines each
// Handle records (perWorker each, or without end when 0) until a minute
// has passed, printing "ack <Message-ID>" for every record whose Handle
// returned nil. Message-IDs end in @domain; with subject, each record also
// gets a subject as unique as its Message-ID, for the full-text index.
func writeAcked(s *Store, workers, perWorker int, domain string, subject bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second) // the parent kills long before
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gen.New(gen.Config{Seed: uint64(os.Getpid()*100 + w), Start: t0, Span: time.Hour, TranscriptEvery: 3})
			for i := 0; time.Now().Before(deadline) && (perWorker == 0 || i < perWorker); i++ {
				r := g.Next()
				r.MessageID = fmt.Sprintf("<%d.%d.%d@%s>", os.Getpid(), w, i, domain)
				if subject {
					r.Subject = fmt.Sprintf("zq%dn%dn%d", os.Getpid(), w, i)
				}
				if err := s.Handle(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %s\n", r.MessageID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKillDuringWrites kills a writing process with SIGKILL at a random
// moment, several times over the same database, and checks after each
// that every acknowledged record is there and the database is consistent.
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	total := 0
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"="+path)
		acked := map[string]bool{}
		// Kill after a random number of acknowledgements, mid-burst.
		killAt := 500 + rand.IntN(3000)
		killChild(t, cmd, acked, func(_ string, n int) bool { return n >= killAt })

		s, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatalf("reopen after kill: %v", err)
		}
		var ok string
		if err := s.r.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check after kill: %v %q", err, ok)
		}
		rows, err := s.r.Query(`SELECT message_id FROM records WHERE message_id LIKE '%@kill.test'`)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			have["<"+id+">"] = true
		}
		rows.Close()
		lost := 0
		for id := range acked {
			if !have[id] {
				lost++
				if lost <= 5 {
					t.Errorf("round %d: acknowledged record %s lost", round, id)
				}
			}
		}
		// Every record's children are consistent with it: a full-text and
		// a recipient search work on the reopened database.
		if _, err := s.Search(context.Background(), nil, Page{Limit: 10}); err != nil {
			t.Errorf("search after kill: %v", err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if lost > 0 {
			t.Fatalf("round %d: %d of %d acknowledged records lost", round, lost, len(acked))
		}
		t.Logf("round %d: killed after %d acknowledgements; %d records from this round on disk (the rest were in flight)",
			round, len(acked), len(have)-total)
		total = len(have)
	}
}

// killChild starts cmd, a kill test's child, adds the Message-ID of every
// "ack <Message-ID>" line it prints to acked, and kills it with SIGKILL at
// the first line for which kill(line, n) holds, n being the
// acknowledgements it printed so far. It returns n at the end. It fails t
// when the child is not killed within a minute, or exits by itself.
func killChild(t *testing.T, cmd *exec.Cmd, acked map[string]bool, kill func(line string, n int) bool) int {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	n := 0
	timeout := time.After(60 * time.Second)
	killed := false
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break read
			}
			if id, found := strings.CutPrefix(l, "ack "); found {
				acked[id] = true
				n++
			}
			if !killed && kill(l, n) {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("the child was not killed within a minute (%d acknowledged); stderr: %s", n, stderr.String())
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the child exited by itself; stderr: %s", stderr.String())
	}
	return n
}
