package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

const fixtures = "../../testdata"

// runIngestCLI runs `smtplog ingest args...` in-process with stdin.
func runIngestCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code := run(context.Background(), e, append([]string{"ingest", "--progress", "never"}, args...))
	return code, out.String(), errb.String()
}

func fixture(parts ...string) string { return filepath.Join(append([]string{fixtures}, parts...)...) }

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return l
}

// TestIngestAutoMatchesExplicit: --mta auto finds the MTA of every committed
// fixture, Exim's own mainlog and rejectlog included, and gives the same
// records as naming it.
func TestIngestAutoMatchesExplicit(t *testing.T) {
	for _, tc := range []struct {
		mta     string
		files   []string
		records int
	}{
		{"postfix", []string{"postfix/real-3.7.log"}, 57},
		{"postfix", []string{"postfix/synthetic.log"}, 10},
		{"exim", []string{"exim/default/mainlog", "exim/default/rejectlog"}, 44},
		{"exim", []string{"exim/all/mainlog", "exim/all/rejectlog"}, 44},
		{"exim", []string{"exim/handwritten/mainlog"}, 11},
		{"exim", []string{"exim/handwritten/syslog"}, 3},
		{"sendmail", []string{"sendmail/maillog"}, 14},
		{"opensmtpd", []string{"opensmtpd/smtpd.log"}, 17},
		{"opensmtpd", []string{"opensmtpd/handwritten.log"}, 5},
	} {
		t.Run(strings.Join(tc.files, "+"), func(t *testing.T) {
			var paths []string
			for _, f := range tc.files {
				paths = append(paths, fixture(f))
			}
			code, auto, errA := runIngestCLI(t, "", append([]string{"--mta", "auto"}, paths...)...)
			if code != 0 {
				t.Fatalf("auto: exit %d: %s", code, errA)
			}
			code, explicit, errE := runIngestCLI(t, "", append([]string{"--mta", tc.mta}, paths...)...)
			if code != 0 {
				t.Fatalf("--mta %s: exit %d: %s", tc.mta, code, errE)
			}
			if auto != explicit {
				t.Errorf("auto and --mta %s differ:\nauto:\n%s\nexplicit:\n%s", tc.mta, auto, explicit)
			}
			if n := strings.Count(auto, "\n"); n != tc.records {
				t.Errorf("%d records, want %d", n, tc.records)
			}
			if !strings.Contains(auto, `"source":"`+tc.mta+`"`) {
				t.Errorf("no %s record", tc.mta)
			}
			// The summary counts the same unparsed lines either way.
			if summary(errA) != summary(errE) {
				t.Errorf("summaries differ:\n%s\n%s", errA, errE)
			}
		})
	}
}

// summary is the ingest summary line without its timing.
func summary(stderr string) string {
	s, _, _ := strings.Cut(stderr, ";")
	return s
}

// mixedLog interleaves, by time, the syslog fixtures of all four MTAs and
// lines of other programs, as one host's mail.log would hold them.
func mixedLog(t *testing.T) (string, []string) {
	t.Helper()
	var all []string
	for _, f := range []string{"postfix/real-3.7.log", "sendmail/maillog", "opensmtpd/smtpd.log", "exim/handwritten/syslog"} {
		b, err := os.ReadFile(fixture(f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	others := []string{
		"Nov 29 10:00:00 mx CRON[900]: (root) CMD (run-parts /etc/cron.hourly)",
		"Nov 29 10:30:00 mx CRON[901]: (root) CMD (run-parts /etc/cron.hourly)",
		"Nov 30 01:45:00 mx kernel: [12345.678] eth0: link up",
	}
	all = append(all, others...)
	slices.SortStableFunc(all, func(a, b string) int {
		ta, _ := time.Parse(time.Stamp, a[:15])
		tb, _ := time.Parse(time.Stamp, b[:15])
		return ta.Compare(tb)
	})
	return strings.Join(all, "\n") + "\n", others
}

// TestIngestMixedPrograms: one file with Postfix, Sendmail, OpenSMTPD, Exim
// and other daemons; --mta auto gives each line to its MTA, so the records
// are those of each MTA's lines alone; other programs' lines are counted
// per program and kept with --unparsed.
func TestIngestMixedPrograms(t *testing.T) {
	dir := t.TempDir()
	mixed, others := mixedLog(t)
	path := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(path, []byte(mixed), 0o644); err != nil {
		t.Fatal(err)
	}
	unparsed := filepath.Join(dir, "unparsed.txt")
	code, got, errOut := runIngestCLI(t, "", "--unparsed", unparsed, path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var want []string
	for _, tc := range []struct{ mta, file string }{
		{"postfix", "postfix/real-3.7.log"}, {"sendmail", "sendmail/maillog"},
		{"opensmtpd", "opensmtpd/smtpd.log"}, {"exim", "exim/handwritten/syslog"},
	} {
		code, out, errOut := runIngestCLI(t, "", "--mta", tc.mta, fixture(tc.file))
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.mta, code, errOut)
		}
		want = append(want, sortedLines(out)...)
	}
	sort.Strings(want)
	if g := sortedLines(got); !slices.Equal(g, want) {
		t.Errorf("mixed log: %d records, want the %d of each MTA's lines alone:\n%s", len(g), len(want), got)
	}
	for _, s := range []string{"CRON: 2", "kernel: 1", "sm-mta: 1"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("summary lacks %q: %s", s, errOut)
		}
	}
	kept, err := os.ReadFile(unparsed)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range others {
		if !strings.Contains(string(kept), l+"\n") {
			t.Errorf("--unparsed lacks %q:\n%s", l, kept)
		}
	}
}

// TestIngestDetectsByShape: Sendmail logging under a syslog name no dialect
// claims is recognised by its message shape.
func TestIngestDetectsByShape(t *testing.T) {
	b, err := os.ReadFile(fixture("sendmail/maillog"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "maillog")
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(" sm-mta["), []byte(" mailer[")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, explicit, _ := runIngestCLI(t, "", "--mta", "sendmail", fixture("sendmail/maillog"))
	code, got, errOut := runIngestCLI(t, "", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The lines before the first from=/to= line are not recognised yet
	// (counted as unparsed); every message is.
	want := strings.Count(explicit, `"type":"message"`)
	if n := strings.Count(got, `"source":"sendmail"`); n < want {
		t.Errorf("auto found %d of %d sendmail message records under program mailer:\n%s\n%s", n, want, got, errOut)
	}
}

func TestIngestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.log")
	code, _, errOut := runIngestCLI(t, "", fixture("postfix/real-3.7.log"), missing)
	if code == 0 || !strings.Contains(errOut, missing) {
		t.Errorf("exit %d, stderr %q: want non-zero naming %s", code, errOut, missing)
	}
}

// TestIngestStdinAndGzip: "-" reads standard input and gzip input is
// recognised by content; both give the records of the plain file.
func TestIngestStdinAndGzip(t *testing.T) {
	plain := fixture("postfix/real-3.7.log")
	b, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	_, want, _ := runIngestCLI(t, "", plain)
	code, got, errOut := runIngestCLI(t, string(b), "-")
	if code != 0 || got != want {
		t.Errorf("stdin: exit %d (%s), records equal: %v", code, errOut, got == want)
	}
	gz := filepath.Join(t.TempDir(), "mail.log.1.gz")
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(gz, zb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, got, errOut = runIngestCLI(t, "", gz)
	if code != 0 || got != want {
		t.Errorf("gzip: exit %d (%s), records equal: %v", code, errOut, got == want)
	}
}

// followWriter writes real Postfix lines to a log file the way a busy
// syslog daemon and logrotate would: in chunks that split lines, rotating
// now by rename (and writing to the renamed file a little longer) and now
// by copytruncate. It returns every line it wrote, in order.
type followWriter struct {
	path   string
	lines  []string
	gens   int
	rotate int // lines between rotations
	// starting is held while a follower starts (lists the files to read
	// after its checkpoint) and guards down, true while no follower runs.
	// Package follow loses lines when a file it has queued but not begun
	// to read is truncated (copytruncate while it lags behind a rename);
	// so copytruncate happens while the follower is down, and rotation
	// never while one starts.
	starting sync.Mutex
	down     bool
}

func newFollowWriter(t *testing.T, path string, rounds int) *followWriter {
	t.Helper()
	b, err := os.ReadFile(fixture("postfix/real-3.7.log"))
	if err != nil {
		t.Fatal(err)
	}
	real := strings.Split(strings.TrimSpace(string(b)), "\n")
	w := &followWriter{path: path, rotate: 120}
	for r := 1; r <= rounds; r++ {
		host := " mx" + strconv.Itoa(r) + " "
		for i, l := range real {
			// Each round is another host, so queue IDs do not repeat.
			w.lines = append(w.lines, strings.Replace(l, " mx ", host, 1))
			if i%97 == 0 {
				w.lines = append(w.lines, "garbage "+strconv.Itoa(r)+"-"+strconv.Itoa(i)+" that no parser knows")
			}
		}
	}
	return w
}

// shift renames path.N to path.N+1, newest last, keeping every generation.
func (w *followWriter) shift() error {
	for k := w.gens; k >= 1; k-- {
		if err := os.Rename(w.path+"."+strconv.Itoa(k), w.path+"."+strconv.Itoa(k+1)); err != nil {
			return err
		}
	}
	w.gens++
	return nil
}

func (w *followWriter) run(ctx context.Context, pause time.Duration) error {
	rng := rand.New(rand.NewPCG(1, 2))
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	next, rotations := w.rotate, 0
	for i := 0; i < len(w.lines); {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := 1 + rng.IntN(12)
		chunk := strings.Join(w.lines[i:min(i+n, len(w.lines))], "\n") + "\n"
		i = min(i+n, len(w.lines))
		// Split the chunk in two writes, so the follower sees partial lines.
		cut := rng.IntN(len(chunk))
		if _, err := f.WriteString(chunk[:cut]); err != nil {
			return err
		}
		time.Sleep(pause)
		if _, err := f.WriteString(chunk[cut:]); err != nil {
			return err
		}
		time.Sleep(pause)
		if i < next || i == len(w.lines) {
			continue
		}
		next += w.rotate
		rotations++
		if f, i, err = w.rotateOnce(f, i, rotations%2 == 1); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // slower than the poll interval, as logrotate is
	}
	return nil
}

// rotateOnce rotates by rename (the daemon writing a few more lines,
// from i on, to the renamed file before it reopens the path) or by
// copytruncate; it returns the file to write to and the next line.
func (w *followWriter) rotateOnce(f *os.File, i int, rename bool) (*os.File, int, error) {
	w.starting.Lock()
	for deadline := time.Now().Add(10 * time.Second); !rename && !w.down && time.Now().Before(deadline); {
		w.starting.Unlock()
		time.Sleep(2 * time.Millisecond)
		w.starting.Lock()
	}
	defer w.starting.Unlock()
	if err := w.shift(); err != nil {
		return f, i, err
	}
	if rename {
		if err := os.Rename(w.path, w.path+".1"); err != nil {
			return f, i, err
		}
		m := min(i+3, len(w.lines))
		if _, err := f.WriteString(strings.Join(w.lines[i:m], "\n") + "\n"); err != nil {
			return f, i, err
		}
		f.Close()
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		return f, m, err
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return f, i, err
	}
	if err := os.WriteFile(w.path+".1", b, 0o644); err != nil {
		return f, i, err
	}
	return f, i, f.Truncate(0)
}

// expected runs the lines through one uninterrupted pipeline, without the
// final flush (open messages stay open in a follower too), and returns the
// records and unparsed lines.
func (w *followWriter) expected(t *testing.T) ([]string, []string) {
	t.Helper()
	var recs []string
	var un bytes.Buffer
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: ingestDialects(), MTA: "auto", Unparsed: &un,
		Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			b, err := record.MarshalJSONLine(r)
			recs = append(recs, string(bytes.TrimSpace(b)))
			return err
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	parse := mtalog.Parsers(ingestDialects())
	now := time.Now()
	for _, raw := range w.lines {
		l, err := parse(raw, now)
		if err != nil {
			l = mtalog.Line{Raw: raw}
		}
		if err := p.Feed(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	return normalise(strings.Join(recs, "\n")), sortedLines(un.String())
}

// seqID drops the per-process counter from Postfix session IDs: a
// restarted follower numbers sessions afresh.
var seqID = regexp.MustCompile(`("session_id":"pf-[^"]*)-[0-9]+"`)

// reportCountDiffs names up to five records that got holds more or fewer
// times than want.
func reportCountDiffs(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, r := range want {
		seen[r]--
	}
	n := 0
	for r, c := range seen {
		if c != 0 && n < 5 {
			t.Errorf("count off by %+d: %s", c, r)
			n++
		}
	}
}

func normalise(jsonl string) []string {
	return sortedLines(seqID.ReplaceAllString(jsonl, `$1"`))
}

// checkFollowOutput compares the follower's output with one uninterrupted
// pass: every record and every unparsed line exactly once.
func checkFollowOutput(t *testing.T, w *followWriter, out, un string) {
	t.Helper()
	wantRecs, wantUn := w.expected(t)
	gotB, _ := os.ReadFile(out)
	unB, _ := os.ReadFile(un)
	got, gotUn := normalise(string(gotB)), sortedLines(string(unB))
	if !slices.Equal(got, wantRecs) {
		t.Errorf("%d records, want %d (each once)", len(got), len(wantRecs))
		reportCountDiffs(t, got, wantRecs)
	}
	if !slices.Equal(gotUn, wantUn) {
		t.Errorf("unparsed lines: got %d, want %d:\n%s", len(gotUn), len(wantUn), unB)
	}
	if len(wantRecs) < 30 || len(wantUn) < 3 {
		t.Errorf("weak fixture: %d records, %d unparsed", len(wantRecs), len(wantUn))
	}
}

// waitOpened waits (a while) until a follower's standard error says it
// opened path itself, past the rotated files it had to finish first.
func waitOpened(stderr func() string, path string) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(stderr(), ": opened "+path+"\n") || strings.Contains(stderr(), ": opened "+path+": ") {
			return
		}
	}
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

func followArgs(dir string) []string {
	return []string{"ingest", "--follow", "--progress", "never", "--checkpoint-dir", filepath.Join(dir, "state"),
		"--out", filepath.Join(dir, "out.jsonl"), "--unparsed", filepath.Join(dir, "unparsed.txt"),
		"--poll-interval", "20ms", "--flush-every", "50ms",
		// The fixture's lines are from late November 2026: no wall-clock
		// idle flush, whatever the date, so that the output is that of
		// one pass without flushes.
		"--flush-after", "100000h", filepath.Join(dir, "mail.log")}
}

// follower is one run of `smtplog ingest --follow`, in-process or a child
// process.
type follower interface {
	stderr() string
	// stop ends it: abruptly (kill) or with a clean stop; it returns the
	// exit status.
	stop(kill bool) int
}

// followChaos writes, rotates and restarts: it starts followers one after
// the other, stopping each (abruptly when kill) after a random while, until
// the writer is done; the last one runs until every record is out. Then
// the output must be that of one uninterrupted pass.
func followChaos(t *testing.T, kill bool, start func(dir string) follower) {
	dir := t.TempDir()
	w := newFollowWriter(t, filepath.Join(dir, "mail.log"), 3)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- w.run(ctx, 2*time.Millisecond) }()
	defer func() { cancel(); <-werr }()
	wantN := len(w.mustExpected(t))
	rng := rand.New(rand.NewPCG(3, 4))
	restarts := 0
	writerDone := false
	var runs []string // each follower's standard error, shown on failure
	defer func() {
		if t.Failed() {
			for i, r := range runs {
				t.Logf("run %d:\n%s", i, r)
			}
		}
	}()
	for deadline := time.Now().Add(80 * time.Second); time.Now().Before(deadline); restarts++ {
		w.starting.Lock()
		w.down = false
		f := start(dir)
		// No rotation until the follower reads the path itself.
		waitOpened(f.stderr, filepath.Join(dir, "mail.log"))
		w.starting.Unlock()
		if writerDone {
			// The last run: until everything is out, then a clean stop.
			for countLines(filepath.Join(dir, "out.jsonl")) < wantN && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if code := f.stop(false); code != 0 {
				t.Fatalf("follower exited %d: %s", code, f.stderr())
			}
			t.Logf("last run: %s", f.stderr())
			break
		}
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		if code := f.stop(kill); code != 0 && !kill {
			t.Fatalf("follower exited %d: %s", code, f.stderr())
		}
		runs = append(runs, f.stderr())
		w.starting.Lock()
		w.down = true
		w.starting.Unlock()
		time.Sleep(20 * time.Millisecond) // a chance to rotate while down
		select {
		case err := <-werr:
			if err != nil {
				t.Fatal(err)
			}
			werr <- nil // for the deferred wait
			writerDone = true
		default:
		}
	}
	t.Logf("%d restarts, %d rotations", restarts, w.gens)
	checkFollowOutput(t, w, filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "unparsed.txt"))
}

// inProcess runs the follower in this process; stopping it cancels its
// context at whatever point it is, in the middle of a batch too.
type inProcess struct {
	errb   syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func (p *inProcess) stderr() string { return p.errb.String() }

func (p *inProcess) stop(bool) int {
	p.cancel()
	return <-p.done
}

// TestIngestFollowRestarts follows a file that is written, rotated by
// rename and by copytruncate, while the follower is stopped (context
// cancelled at random moments) and restarted again and again.
func TestIngestFollowRestarts(t *testing.T) {
	followChaos(t, false, func(dir string) follower {
		p := &inProcess{done: make(chan int, 1)}
		e := &env{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: &p.errb, getenv: func(string) string { return "" }}
		ctx, cancel := context.WithCancel(t.Context())
		p.cancel = cancel
		go func() { p.done <- run(ctx, e, followArgs(dir)) }()
		return p
	})
}

// child is the follower as a process of its own: this test binary run as
// `smtplog ingest --follow` (TestIngestFollowChild).
type child struct {
	cmd  *exec.Cmd
	errb syncBuffer
}

func (c *child) stderr() string { return c.errb.String() }

func (c *child) stop(kill bool) int {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	c.cmd.Process.Signal(sig) // this child only
	c.cmd.Wait()
	return c.cmd.ProcessState.ExitCode()
}

// TestIngestFollowChild is `smtplog ingest --follow` for
// TestIngestFollowKill9; it runs only when re-executed by it.
func TestIngestFollowChild(t *testing.T) {
	runChild(t, "SMTPLOG_TEST_FOLLOW_DIR", "TestIngestFollowKill9", followArgs)
}

// startChild re-executes the test binary to run the test named test (one
// that calls runChild) with dirVar set to dir.
func startChild(t *testing.T, test, dirVar, dir string) *child {
	t.Helper()
	c := &child{}
	c.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), dirVar+"="+dir)
	c.cmd.Stderr = &c.errb
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// runChild runs smtplog with args(dir) when the test binary was re-executed
// by parent with dir in the environment variable dirVar; SIGTERM stops it
// as it stops the command.
func runChild(t *testing.T, dirVar, parent string, args func(dir string) []string) {
	dir := os.Getenv(dirVar)
	if dir == "" {
		t.Skip("helper process for " + parent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	e := &env{stdin: strings.NewReader(""), stdout: os.Stdout, stderr: os.Stderr, getenv: func(string) string { return "" }}
	if code := run(ctx, e, args(dir)); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestIngestFollowKill9 is TestIngestFollowRestarts with a real process
// killed with SIGKILL at random moments: no clean stop, whatever it was
// writing is cut where it was.
func TestIngestFollowKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	followChaos(t, true, func(dir string) follower {
		return startChild(t, "TestIngestFollowChild", "SMTPLOG_TEST_FOLLOW_DIR", dir)
	})
}

func (w *followWriter) mustExpected(t *testing.T) []string {
	recs, _ := w.expected(t)
	return recs
}

// startServeMTA runs `smtplog serve` in-process with MTA inputs until the
// test ends (or stop is called) and returns its record output and
// standard error.
func startServeMTA(t *testing.T, args ...string) (out, errb *syncBuffer, stop func()) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	out, errb = &syncBuffer{}, &syncBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: out, stderr: errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, append([]string{"serve", "--smtp", addr, "--hostname", "capture.test", "--flush-every", "100ms", "--log-file", "-", "--db", ":memory:", "--http", "off"}, args...))
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("serve exited %d: %s", code, errb.String())
				}
			case <-time.After(15 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return out, errb, stop
}

// waitStderr waits for a pattern in serve's operator log and returns its
// first submatch.
func waitStderr(t *testing.T, errb *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			return m[len(m)-1]
		}
	}
	t.Fatalf("serve never logged %s:\n%s", re, errb.String())
	return ""
}

// completeQueueIDs returns the queue IDs of the message records one batch
// ingest of data gives without its final flush: those complete by the
// end of data.
func completeQueueIDs(t *testing.T, data string) []string {
	t.Helper()
	var ids []string
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{Dialects: ingestDialects(),
		Handler: record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			if r.Type == record.TypeMessage && r.QueueID != "" {
				ids = append(ids, r.QueueID)
			}
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range strings.Split(strings.TrimSpace(data), "\n") {
		l, _ := mtalog.ParseLine(raw, time.Now())
		p.Feed(context.Background(), l)
	}
	return ids
}

// sendWithLogger sends syslog lines with util-linux logger, one logger run
// per run of lines from the same program and process, keeping Postfix's
// program names and PIDs.
func sendWithLogger(t *testing.T, logger string, lines []string, args ...string) {
	t.Helper()
	for i := 0; i < len(lines); {
		l, err := mtalog.ParseLine(lines[i], time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for ; i < len(lines); i++ {
			m, _ := mtalog.ParseLine(lines[i], time.Now())
			if m.Program != l.Program || m.PID != l.PID {
				break
			}
			msgs = append(msgs, m.Message)
		}
		cmd := exec.Command(logger, append(args, "-t", l.Program, "--id="+strconv.Itoa(l.PID))...)
		cmd.Stdin = strings.NewReader(strings.Join(msgs, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("logger: %v\n%s", err, out)
		}
	}
}

// TestServeSyslogLogger: serve receives real Postfix lines from util-linux
// logger over UDP (RFC 3164) and TCP (RFC 5424, octet counting) and
// writes their message records with the SMTP records.
func TestServeSyslogLogger(t *testing.T) {
	logger := testenv.NeedBinary(t, "logger")
	b, err := os.ReadFile(fixture("postfix/real-3.7.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	ids := completeQueueIDs(t, strings.Join(lines, "\n"))
	if len(ids) < 5 {
		t.Fatalf("only %d complete messages in the lines", len(ids))
	}
	for _, tc := range []struct {
		url  string
		args []string
	}{
		{"udp://127.0.0.1:0", []string{"--udp", "--rfc3164"}},
		{"tcp://127.0.0.1:0", []string{"--tcp", "--rfc5424", "--octet-count"}},
	} {
		t.Run(tc.url[:3], func(t *testing.T) {
			out, errb, stop := startServeMTA(t, "--syslog", tc.url)
			addr := waitStderr(t, errb, regexp.MustCompile(`syslog listening" syslog=`+tc.url[:3]+`://(127\.0\.0\.1:[0-9]+)`))
			host, port, _ := strings.Cut(addr, ":")
			sendWithLogger(t, logger, lines, append(tc.args, "-n", host, "-P", port)...)
			for _, id := range ids {
				waitFor(t, out, `"queue_id":"`+id+`"`)
			}
			stop()
			got := out.String()
			if !strings.Contains(got, `"type":"message","timestamp"`) || !strings.Contains(got, `"source":"postfix"`) {
				t.Errorf("no postfix message records:\n%s", got)
			}
			if !strings.Contains(errb.String(), "mta input stopped") {
				t.Errorf("no input summary at stop:\n%s", errb.String())
			}
		})
	}
}

// TestServeIngestGrowingFile: serve --ingest follows a file that is being
// written; its records come out while serve runs, and the messages still
// open come out (flagged incomplete) when it stops.
func TestServeIngestGrowingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errb, stop := startServeMTA(t, "--ingest", path)
	waitStderr(t, errb, regexp.MustCompile(`(ingest opened)`))
	b, err := os.ReadFile(fixture("postfix/real-3.7.log"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := strings.SplitAfter(string(b), "\n")
	for i := 0; i < len(lines); i += 25 {
		if _, err := f.WriteString(strings.Join(lines[i:min(i+25, len(lines))], "")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range completeQueueIDs(t, string(b)) {
		waitFor(t, out, `"queue_id":"`+id+`"`)
	}
	stop()
	_, want, _ := runIngestCLI(t, "", path)
	if got := normalise(out.String()); !slices.Equal(got, normalise(want)) {
		t.Errorf("serve --ingest gave %d records, smtplog ingest %d", len(got), len(normalise(want)))
	}
}

func TestMTAInputBadInvocations(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"ingest", "--follow", "-"}, 2, "standard input (-) cannot be followed"},
		{[]string{"ingest", "--checkpoint-dir", t.TempDir(), fixture("postfix/real-3.7.log")}, 2, "--checkpoint-dir needs --follow"},
		{[]string{"ingest", "--mta", "qmail", fixture("postfix/real-3.7.log")}, 2, "use auto or one of"},
		{[]string{"serve", "--syslog", "ftp://127.0.0.1:1"}, 2, "scheme must be udp, tcp or tls"},
		{[]string{"serve", "--syslog", "tls://127.0.0.1:0"}, 2, "tls needs cert= and key="},
		{[]string{"serve", "--ingest", "x.log", "--mta", "qmail"}, 2, "use auto or one of"},
	} {
		code, _, errOut := runCLI(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

// TestIngestFollowCorruptState: a state file that cannot be read stops the
// follower with an error naming it, rather than starting over silently.
func TestIngestFollowCorruptState(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mail.log"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	bad := filepath.Join(dir, "state", stateName(filepath.Join(dir, "mail.log")))
	os.WriteFile(bad, []byte("{not json"), 0o644)
	code, _, errOut := runCLI(t, nil, followArgs(dir)...)
	if code != 1 || !strings.Contains(errOut, bad) {
		t.Errorf("exit %d, stderr %q; want 1 naming %s", code, errOut, bad)
	}
}

// TestServeSyslogTLS: serve's tls:// receiver takes real Postfix lines as
// octet-counted RFC 5424 frames (RFC 5425) from a verifying TLS client.
func TestServeSyslogTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	cert, key, _ := ca.Leaf(t, "127.0.0.1")
	out, errb, stop := startServeMTA(t, "--syslog", "tls://127.0.0.1:0?cert="+cert+"&key="+key)
	addr := waitStderr(t, errb, regexp.MustCompile(`syslog listening" syslog=tls://(127\.0\.0\.1:[0-9]+)`))
	c, err := tls.Dial("tcp", addr, ca.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fixture("postfix/real-3.7.log"))
	if err != nil {
		t.Fatal(err)
	}
	var frames bytes.Buffer
	for _, raw := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l, err := mtalog.ParseLine(raw, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		msg := "<22>1 " + l.Time.Format(time.RFC3339) + " " + l.Host + " " + l.Program + " " + strconv.Itoa(l.PID) + " - - " + l.Message
		frames.WriteString(strconv.Itoa(len(msg)) + " " + msg)
	}
	if _, err := c.Write(frames.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, id := range completeQueueIDs(t, string(b)) {
		waitFor(t, out, `"queue_id":"`+id+`"`)
	}
	stop()
	_, want, _ := runIngestCLI(t, "", fixture("postfix/real-3.7.log"))
	if got := normalise(out.String()); !slices.Equal(got, normalise(want)) {
		t.Errorf("over TLS: %d records, smtplog ingest of the file %d", len(got), len(normalise(want)))
	}
}

// TestIngestFollowCopytruncateWhileStopped: the file is rotated by
// copytruncate while the follower is stopped, before its messages were
// ever all complete (so the state still resumes from the file's start):
// the restart must read the copy, not the truncated file, first.
func TestIngestFollowCopytruncateWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	w := newFollowWriter(t, path, 1)
	half := len(w.lines) / 2
	if err := os.WriteFile(path, []byte(strings.Join(w.lines[:half], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runUntil := func(want int) string {
		p := &inProcess{done: make(chan int, 1)}
		e := &env{stdin: strings.NewReader(""), stdout: &syncBuffer{}, stderr: &p.errb, getenv: func(string) string { return "" }}
		ctx, cancel := context.WithCancel(t.Context())
		p.cancel = cancel
		go func() { p.done <- run(ctx, e, followArgs(dir)) }()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			b, _ := os.ReadFile(filepath.Join(dir, "state", stateName(path)))
			var st followState
			if json.Unmarshal(b, &st) == nil && st.Resume.Lines >= int64(want) && !strings.Contains(string(b), `"lines":0`) {
				break
			}
		}
		if code := p.stop(false); code != 0 {
			t.Fatalf("follower exited %d: %s", code, p.stderr())
		}
		return p.stderr()
	}
	runUntil(half)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(w.lines[half:], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr := runUntil(len(w.lines))
	if !strings.Contains(stderr, "opened "+path+".1") {
		t.Errorf("the restart did not resume in the copy:\n%s", stderr)
	}
	checkFollowOutput(t, w, filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "unparsed.txt"))
}

// TestIngestDB: records ingested into a store are found by search and
// trace; --db and --out together are refused.
func TestIngestDB(t *testing.T) {
	db := filepath.Join(t.TempDir(), "smtplog.db")
	code, _, errOut := runCLI(t, nil, "ingest", "--progress", "never", "--db", db, fixture("postfix/real-3.7.log"))
	if code != 0 {
		t.Fatalf("ingest --db: exit %d: %s", code, errOut)
	}
	golden, err := os.ReadFile(fixture("postfix/real-3.7.golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Type      string `json:"type"`
		QueueID   string `json:"queue_id"`
		MessageID string `json:"message_id"`
	}
	for _, l := range strings.Split(string(golden), "\n") {
		if json.Unmarshal([]byte(l), &msg) == nil && msg.Type == "message" && msg.QueueID != "" && msg.MessageID != "" {
			break
		}
	}
	if msg.QueueID == "" || msg.MessageID == "" {
		t.Fatal("no message with a queue ID and a Message-ID in the fixture")
	}
	code, out, errOut := runCLI(t, nil, "search", "--db", db, "msgid:"+strings.Trim(msg.MessageID, "<>"))
	if code != 0 || !strings.Contains(out, msg.QueueID) {
		t.Errorf("search: exit %d, %q lacks %s: %s", code, out, msg.QueueID, errOut)
	}
	code, out, errOut = runCLI(t, nil, "trace", "--db", db, msg.QueueID)
	if code != 0 || !strings.Contains(out, msg.QueueID) {
		t.Errorf("trace: exit %d, %q lacks %s: %s", code, out, msg.QueueID, errOut)
	}
	code, _, errOut = runCLI(t, nil, "ingest", "--db", db, "--out", "-", fixture("postfix/real-3.7.log"))
	if code != 2 || !strings.Contains(errOut, "mutually exclusive") {
		t.Errorf("--db with --out: exit %d: %s", code, errOut)
	}
}

// TestIngestHost: --host names the host of the records of Exim's own
// mainlog and rejectlog, which name none; syslog lines keep the host their
// prefix names.
func TestIngestHost(t *testing.T) {
	hosts := func(out string) map[string]int {
		t.Helper()
		n := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Host string `json:"host"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			n[r.Host]++
		}
		return n
	}
	own := []string{fixture("exim/all/mainlog"), fixture("exim/all/rejectlog")}
	code, out, errOut := runIngestCLI(t, "", own...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := hosts(out); len(got) != 1 || got[""] == 0 {
		t.Fatalf("without --host, hosts %v, want none", got)
	}
	records := hosts(out)[""]
	code, out, errOut = runIngestCLI(t, "", append([]string{"--host", "mx1.example"}, own...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := hosts(out); len(got) != 1 || got["mx1.example"] != records {
		t.Errorf("with --host mx1.example, hosts %v, want all %d records on mx1.example", got, records)
	}
	code, out, errOut = runIngestCLI(t, "", "--host", "mx1.example", fixture("exim/handwritten/syslog"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := hosts(out); len(got) != 1 || got["mx"] == 0 {
		t.Errorf("syslog lines with --host: hosts %v, want theirs, mx", got)
	}
}
