package mtalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

func collect(t *testing.T, src Source) []Line {
	t.Helper()
	var out []Line
	if err := src.Lines(context.Background(), func(l Line) bool {
		out = append(out, l)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMergeRotatedSet(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, gz bool) string {
		p := filepath.Join(dir, name)
		data := []byte(body)
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			data = b.Bytes()
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local)
		os.Chtimes(p, ref, ref)
		return p
	}
	old := write("mail.log.2.gz", "Nov 28 00:00:01 mx a[1]: one\nNov 28 00:00:03 mx a[1]: three\n", true)
	mid := write("mail.log.1", "Nov 29 00:00:01 mx a[1]: four\r\nnot a syslog line\n", false)
	cur := write("mail.log", "Nov 28 00:00:02 mx b[1]: two\nNov 30 00:00:01 mx a[1]: five", false)
	var st ReadStats
	got := collect(t, Merge(FileSource{Path: cur, Stats: &st}, FileSource{Path: mid, Stats: &st}, FileSource{Path: old, Stats: &st}))
	var msgs []string
	for _, l := range got {
		if l.Program == "" {
			msgs = append(msgs, "raw:"+l.Raw)
		} else {
			msgs = append(msgs, l.Message)
		}
	}
	want := "one two three four raw:not a syslog line five"
	if strings.Join(msgs, " ") != want {
		t.Fatalf("merged order: %q, want %q", strings.Join(msgs, " "), want)
	}
	if st.Lines != 6 {
		t.Errorf("lines = %d, want 6", st.Lines)
	}
}

func TestLongLinesAreCutAndFlagged(t *testing.T) {
	long := "Nov 28 00:00:01 mx a[1]: " + strings.Repeat("x", 1<<20)
	in := "Nov 28 00:00:00 mx a[1]: before\n" + long + "\nNov 28 00:00:02 mx a[1]: after\n" + long[:300] + "\n"
	var st ReadStats
	got := collect(t, ReaderSource(strings.NewReader(in), ReaderOptions{MaxLine: 200, Stats: &st}))
	if len(got) != 4 {
		t.Fatalf("got %d lines, want 4", len(got))
	}
	if got[0].Message != "before" || got[2].Message != "after" {
		t.Errorf("neighbours damaged: %q %q", got[0].Message, got[2].Message)
	}
	for _, i := range []int{1, 3} {
		if !got[i].Truncated || len(got[i].Raw) != 200 {
			t.Errorf("line %d: truncated=%v len=%d", i, got[i].Truncated, len(got[i].Raw))
		}
	}
	if st.Truncated != 2 {
		t.Errorf("truncated = %d", st.Truncated)
	}
}

func TestMissingFile(t *testing.T) {
	err := Merge(FileSource{Path: "/nonexistent/a"}, FileSource{Path: "/nonexistent/b"}).Lines(context.Background(), func(Line) bool { return true })
	if !os.IsNotExist(err) {
		t.Fatalf("err = %v", err)
	}
}

// TestRunBatchesStopsOnHandlerError: when the Handler fails, Run (reading
// on a goroutine of its own) returns its error and stops reading.
func TestRunBatchesStopsOnHandlerError(t *testing.T) {
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "Nov 28 00:00:%02d mx x[%d]: line\n", i%60, i)
	}
	path := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	handled := 0
	d := Dialect{
		Name:   "x",
		Claims: func(p string) bool { return p == "x" },
		New: func(CorrelatorOptions) Correlator {
			return correlatorFunc(func(l Line, emit func(*record.Record)) bool {
				emit(&record.Record{Type: record.TypeMessage})
				return true
			})
		},
	}
	p, err := NewPipeline(PipelineOptions{Dialects: []Dialect{d}, Handler: record.HandlerFunc(func(context.Context, *record.Record) error {
		if handled++; handled == 3000 {
			return boom
		}
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	var st ReadStats
	if err := p.Run(context.Background(), Merge(FileSource{Path: path, Stats: &st})); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the Handler's error", err)
	}
	if handled != 3000 || p.Stats().Lines != 3000 {
		t.Errorf("handled %d records of %d lines after the error, want 3000", handled, p.Stats().Lines)
	}
	if st.Lines >= 20000 {
		t.Errorf("read all %d lines after the Handler failed", st.Lines)
	}
}

type correlatorFunc func(l Line, emit func(*record.Record)) bool

func (f correlatorFunc) Feed(l Line, emit func(*record.Record)) bool { return f(l, emit) }
func (f correlatorFunc) Flush(time.Time, func(*record.Record))       {}

// runLines runs a Pipeline over src with a correlator that records every
// line it is fed, copied.
func runLines(t *testing.T, src Source) ([]Line, string, error) {
	t.Helper()
	var got []Line
	var unparsed strings.Builder
	d := Dialect{
		Name: "x",
		New: func(CorrelatorOptions) Correlator {
			return correlatorFunc(func(l Line, emit func(*record.Record)) bool {
				got = append(got, Line{Time: l.Time, Host: strings.Clone(l.Host), Program: strings.Clone(l.Program), PID: l.PID,
					Message: strings.Clone(l.Message), Raw: strings.Clone(l.Raw), Origin: l.Origin, Truncated: l.Truncated})
				return true
			})
		},
	}
	p, err := NewPipeline(PipelineOptions{Dialects: []Dialect{d}, MTA: "x", Unparsed: &unparsed,
		Handler: record.HandlerFunc(func(context.Context, *record.Record) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), src)
	return got, unparsed.String(), err
}

// TestRunFileReadsAsStream: Run of a file (read a batch ahead on a
// goroutine of its own) gives the lines and counts that reading it as a
// stream gives, plain, gzip or empty.
func TestRunFileReadsAsStream(t *testing.T) {
	var big strings.Builder
	for i := 0; big.Len() < 3<<20; i++ {
		fmt.Fprintf(&big, "Nov 28 00:%02d:%02d mx prog[%d]: line %d %s\n", i/60%60, i%60, i, i, strings.Repeat("y", i%300))
	}
	long := "Nov 28 00:00:01 mx a[1]: " + strings.Repeat("x", 300<<10)
	cases := map[string]string{
		"plain":      "Nov 28 00:00:00 mx a[1]: one\nNov 28 00:00:01 mx a[1]: two\n",
		"crlf, last": "Nov 28 00:00:00 mx a[1]: one\r\nnot a syslog line\r\nNov 28 00:00:01 mx a[1]: last",
		"long lines": "Nov 28 00:00:00 mx a[1]: before\n" + long + "\nNov 28 00:00:02 mx a[1]: after\n" + long[:300] + "\n" + long,
		"blank":      "\n\n\nNov 28 00:00:00 mx a[1]: one\n\n",
		"big":        big.String(),
		"empty":      "",
		"gzip":       "gzip",
	}
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			data := []byte(body)
			if name == "gzip" {
				body = cases["plain"]
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				zw.Write([]byte(body))
				zw.Close()
				data = b.Bytes()
			}
			path := filepath.Join(t.TempDir(), "mail.log")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(path, ref, ref)
			var fst, rst ReadStats
			got, gotUnparsed, err := runLines(t, FileSource{Path: path, MaxLine: 1000, Stats: &fst})
			if err != nil {
				t.Fatal(err)
			}
			var want []Line
			var wantUnparsed strings.Builder
			for _, l := range collect(t, ReaderSource(strings.NewReader(body), ReaderOptions{Origin: path, Ref: ref, MaxLine: 1000, Stats: &rst})) {
				if l.Program == "" {
					wantUnparsed.WriteString(l.Raw + "\n")
				} else {
					want = append(want, l)
				}
			}
			if gotUnparsed != wantUnparsed.String() {
				t.Errorf("unparsed %q, want %q", gotUnparsed, wantUnparsed.String())
			}
			if len(got) != len(want) {
				t.Fatalf("%d lines, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if !g.Time.Equal(w.Time) {
					t.Fatalf("line %d: time %v, want %v", i, g.Time, w.Time)
				}
				g.Time, w.Time = time.Time{}, time.Time{}
				if g != w {
					t.Fatalf("line %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
			if fst.Lines != rst.Lines || fst.Truncated != rst.Truncated || fst.Bytes != rst.Bytes {
				t.Errorf("stats %+v, want %+v", fst, rst)
			}
		})
	}
}
