package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
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
