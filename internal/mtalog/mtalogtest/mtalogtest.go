// Package mtalogtest holds what the tests of the MTA parsers (and of what
// reads their records) share: a simple
// reader of syslog fixtures, a correlation driver and golden-file
// comparison (regenerated with each package's -update flag).
package mtalogtest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

// ReadSyslog reads the fixture dir/file of "Mon DD HH:MM:SS host
// prog[pid]: msg" lines (year 2026, UTC) without the real prefix parser, so
// a parser's tests do not depend on it. Origin is file.
func ReadSyslog(t testing.TB, dir, file string) []mtalog.Line {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	var out []mtalog.Line
	for _, raw := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		l := mtalog.Line{Raw: raw, Origin: file}
		if len(raw) > 16 {
			if ts, err := time.Parse("2006 Jan _2 15:04:05", "2026 "+raw[:15]); err == nil {
				l.Time = ts
			}
			host, rest, _ := strings.Cut(raw[16:], " ")
			l.Host = host
			tag, msg, _ := strings.Cut(rest, ": ")
			prog, pid, _ := strings.Cut(tag, "[")
			l.Program = prog
			l.PID, _ = strconv.Atoi(strings.TrimSuffix(pid, "]"))
			l.Message = msg
		}
		out = append(out, l)
	}
	return out
}

// Correlate feeds lines to c, flushes it and returns the records and the
// raw lines c did not understand.
func Correlate(c mtalog.Correlator, lines []mtalog.Line) ([]*record.Record, []string) {
	var recs []*record.Record
	var unparsed []string
	emit := func(r *record.Record) { recs = append(recs, r) }
	for _, l := range lines {
		if !c.Feed(l, emit) {
			unparsed = append(unparsed, l.Raw)
		}
	}
	c.Flush(time.Time{}, emit)
	return recs, unparsed
}

// Result is the golden form of a correlation: the records as their JSON
// lines, and the lines nobody understood.
type Result struct {
	Records  []json.RawMessage `json:"records"`
	Unparsed []string          `json:"unparsed"`
}

// NewResult encodes recs with the record package's JSON encoding.
func NewResult(t testing.TB, recs []*record.Record, unparsed []string) Result {
	t.Helper()
	res := Result{Unparsed: unparsed}
	for _, r := range recs {
		b, err := record.MarshalJSONLine(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Records = append(res.Records, json.RawMessage(bytes.TrimSpace(b)))
	}
	return res
}

// Event is the golden form of one parsed line.
type Event[E any] struct {
	Line  string `json:"line"`
	Event E      `json:"event"`
	Err   string `json:"err,omitempty"`
}

// Events parses each line's message with parse.
func Events[E any](lines []mtalog.Line, parse func(msg string) (E, error)) []Event[E] {
	var evs []Event[E]
	for _, l := range lines {
		ev, err := parse(l.Message)
		o := Event[E]{Line: l.Raw, Event: ev}
		if err != nil {
			o.Err = err.Error()
		}
		evs = append(evs, o)
	}
	return evs
}

// Golden compares v, as indented JSON, with the file at path; with update it
// rewrites the file instead.
func Golden(t testing.TB, path string, v any, update bool) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	GoldenBytes(t, path, append(got, '\n'), update)
}

// GoldenBytes compares got with the file at path; with update it rewrites
// the file (and its directory) instead.
func GoldenBytes(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test -update and review the diff\n%s", filepath.Base(path), FirstDiff(string(want), string(got)))
	}
}

// FirstDiff describes the first line where got differs from want.
func FirstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\nwant: " + a + "\ngot:  " + b
		}
	}
	return ""
}

// FuzzCorrelate seeds f with the messages of lines and fuzzes parse and a
// small correlator from newC (MaxOpen 4 or so, to exercise bounding) with
// each message, twice, then a flush.
func FuzzCorrelate[E any](f *testing.F, lines []mtalog.Line, parse func(msg string) (E, error), newC func() mtalog.Correlator) {
	for _, l := range lines {
		f.Add(l.Message)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		_, _ = parse(msg)
		c := newC()
		emit := func(*record.Record) {}
		c.Feed(mtalog.Line{Message: msg}, emit)
		c.Feed(mtalog.Line{Message: msg}, emit)
		c.Flush(time.Time{}, emit)
	})
}

// BenchmarkCorrelate feeds lines to c in each iteration of b, reporting
// bytes and lines a second.
func BenchmarkCorrelate(b *testing.B, lines []mtalog.Line, c mtalog.Correlator) {
	var n int64
	for _, l := range lines {
		n += int64(len(l.Raw) + 1)
	}
	b.SetBytes(n)
	b.ReportAllocs()
	emit := func(*record.Record) {}
	for b.Loop() {
		for _, l := range lines {
			c.Feed(l, emit)
		}
	}
	c.Flush(time.Time{}, emit)
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}
