package mtalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
