package mtalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/exim"
	"github.com/smtplog/smtplog/internal/mtalog/mtalogtest"
	"github.com/smtplog/smtplog/internal/mtalog/opensmtpd"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/mtalog/sendmail"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/report/postfixnotes"
)

// reuseReport is `smtplog report --format json --top 0` of data with every
// MTA and --mta auto, as the command runs it (records recycled), and every
// record as JSON as the Aggregator got it. With
// reuse, the pipeline reads into released chunk buffers, in chunks of 1 KiB
// and batches of 7 lines, and overwrites each chunk as it is released: a
// string of a line that a correlator or the Aggregator kept without
// copying turns to garbage before the report is made.
func reuseReport(t *testing.T, data []byte, reuse bool) (s, recs string, reused int64) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v", r)
		}
	}()
	t.Helper()
	agg := report.New(report.Options{Top: -1})
	var js bytes.Buffer
	w := record.NewWriter(&js, record.FormatJSON)
	ds := []mtalog.Dialect{postfix.Dialect(), exim.Dialect(), sendmail.Dialect(), opensmtpd.Dialect()}
	p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
		Dialects: postfixnotes.Dialects(ds, agg),
		Handler: record.HandlerFunc(func(ctx context.Context, r *record.Record) error {
			if err := w.Write(r); err != nil {
				return err
			}
			return agg.Handle(ctx, r)
		}),
		Recycle:      true,
		ReuseBuffers: reuse,
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	opt := mtalog.ReaderOptions{Ref: ref, Parse: mtalog.Parsers(ds), MaxLine: 1023}
	if reuse {
		mtalog.SetTestChunking(p, &opt, 7, 1024, true)
	}
	if err := p.Run(context.Background(), mtalog.ReaderSource(bytes.NewReader(data), opt)); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(agg.Report(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out), js.String(), mtalog.ReusedChunks(p)
}

// TestReuseBuffersSameReport: reading into reused buffers changes nothing
// in the report, nor in any record (even in fields the report does not
// read), over every MTA log under testdata and a replay of the
// real Postfix log long enough for messages to stay open across many
// released chunks. Postfix's correlator copies what it keeps itself
// (Dialect.CopiesLines); the others get detached lines.
func TestReuseBuffersSameReport(t *testing.T) {
	inputs := mtalogtest.Logs(t, "../../testdata")
	inputs["replay"] = mtalogtest.Replayed(t, "../../testdata", 20, true)
	inputs["lost-far"] = lostFar()
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			want, wantRecs, _ := reuseReport(t, data, false)
			got, gotRecs, reused := reuseReport(t, data, true)
			if len(data) > 4<<10 && reused == 0 || name == "replay" && reused < 100 {
				t.Fatalf("only %d chunk buffers reused", reused)
			}
			sameLines(t, "report line", got, want)
			sameLines(t, "record", gotRecs, wantRecs)
			if !strings.Contains(want, `"received"`) {
				t.Fatalf("no totals in the report:\n%.500s", want)
			}
		})
	}
}

// sameLines fails t at the first line (of the report, or record) of got
// that differs from want when chunk buffers are reused.
func sameLines(t *testing.T, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			t.Fatalf("%s %d differs when chunk buffers are reused:\n got %s\nwant %s", what, i+1, g[i], w[i])
		}
	}
	t.Fatalf("%d %s(s) when chunk buffers are reused, want %d", len(g), what, len(w))
}

// lostFar is a Postfix log whose session loses its client and then
// disconnects several chunks later: what the session keeps of the lost
// line must outlive the line's chunk.
func lostFar() []byte {
	var b strings.Builder
	b.WriteString("Nov 29 10:00:00 mx postfix/smtpd[100]: connect from unknown[192.0.2.1]\n")
	b.WriteString("Nov 29 10:00:01 mx postfix/smtpd[100]: lost connection after CONNECT from unknown[192.0.2.1]\n")
	for i := range 40 {
		fmt.Fprintf(&b, "Nov 29 10:00:02 mx postfix/smtpd[%d]: connect from other%d.example[198.51.100.%d]\n", 200+i, i, i)
		fmt.Fprintf(&b, "Nov 29 10:00:03 mx postfix/smtpd[%d]: disconnect from other%d.example[198.51.100.%d] ehlo=1 quit=1 commands=2\n", 200+i, i, i)
	}
	b.WriteString("Nov 29 10:00:04 mx postfix/smtpd[100]: disconnect from unknown[192.0.2.1] commands=0/0\n")
	return []byte(b.String())
}

// TestDetach: a detached line's strings are copies, at the same places of
// the copied Raw when they were parts of Raw, and equal to what they were.
func TestDetach(t *testing.T) {
	buf := []byte("Nov 29 10:12:34 mx1 exim[42]: 1tAbCd-000123-Ef <= a@b.example")
	raw := string(buf)
	l, err := mtalog.ParseLine(raw, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	l.Origin = "mainlog"
	other := strings.Repeat("x", 3)
	l2 := l
	l2.Message = other // not a part of Raw
	d, d2 := mtalog.Detach(l), mtalog.Detach(l2)
	if d.Raw != l.Raw || d.Host != "mx1" || d.Program != "exim" || d.Message != l.Message || d.PID != 42 || d.Origin != "mainlog" {
		t.Fatalf("detached line differs: %+v", d)
	}
	if unsafe.StringData(d.Raw) == unsafe.StringData(l.Raw) {
		t.Fatal("Raw was not copied")
	}
	if got, want := uintptr(unsafe.Pointer(unsafe.StringData(d.Message)))-uintptr(unsafe.Pointer(unsafe.StringData(d.Raw))), uintptr(len(raw)-len(l.Message)); got != want {
		t.Errorf("Message at %d of the copy, want %d", got, want)
	}
	if d2.Message != other || unsafe.StringData(d2.Message) == unsafe.StringData(other) {
		t.Errorf("a Message outside Raw was not copied: %q", d2.Message)
	}
}

// TestReuseBuffersClaimant: the reading goroutine remembers the program of
// a batch's last line and the dialect that claims it; a batch used again
// must not trust that memory, whose bytes lie in a chunk released and read
// over since. Here lines of two programs of the same length, claimed by
// two dialects (Postfix's queue manager and Sendmail's queue runner),
// alternate in blocks at fixed offsets of fixed-size chunks, so a
// remembered program's bytes are soon those of the other: trusted, they
// would hand Sendmail's lines to Postfix. Every line must go to the same
// dialect as without reuse.
func TestReuseBuffersClaimant(t *testing.T) {
	var data bytes.Buffer
	for block := range 200 {
		prog := "postfix/qmgr"
		if block%2 == 1 {
			prog = "sm-msp-queue" // as long as "postfix/qmgr"
		}
		for i := range 50 {
			// 64 bytes a line: sixteen to a 1 KiB chunk, always at the
			// same offsets.
			fmt.Fprintf(&data, "Dec  1 00:%02d:%02d mx %s[%05d]: 0123456789ABCD: removed\n", block%60, i%60, prog, 10000+i)
		}
	}
	run := func(reuse bool) mtalog.Stats {
		ds := []mtalog.Dialect{postfix.Dialect(), sendmail.Dialect()}
		p, err := mtalog.NewPipeline(mtalog.PipelineOptions{
			Dialects:     ds,
			Handler:      record.HandlerFunc(func(context.Context, *record.Record) error { return nil }),
			Recycle:      true,
			ReuseBuffers: reuse,
		})
		if err != nil {
			t.Fatal(err)
		}
		opt := mtalog.ReaderOptions{Ref: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Parse: mtalog.Parsers(ds)}
		if reuse {
			mtalog.SetTestChunking(p, &opt, 7, 1024, false)
		}
		if err := p.Run(context.Background(), mtalog.ReaderSource(bytes.NewReader(data.Bytes()), opt)); err != nil {
			t.Fatal(err)
		}
		if reuse && mtalog.ReusedChunks(p) == 0 {
			t.Fatal("no chunk buffer was reused")
		}
		return p.Stats()
	}
	want, got := run(false), run(true)
	if fmt.Sprint(got.PerMTA, got.Unparsed, got.Records) != fmt.Sprint(want.PerMTA, want.Unparsed, want.Records) {
		t.Errorf("with reused buffers: per MTA %v, unparsed %v, %d records; without: %v, %v, %d",
			got.PerMTA, got.Unparsed, got.Records, want.PerMTA, want.Unparsed, want.Records)
	}
}
