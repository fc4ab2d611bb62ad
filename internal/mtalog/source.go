package mtalog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Source yields Lines in order until it is exhausted, ctx is done, or
// yield returns false. It returns nil at the end of its input and when yield
// stopped it; ctx.Err() when cancelled. Files, stdin, followed files and the
// syslog receiver are Sources; they parse prefixes themselves (usually with a
// LineParser) and yield lines whose prefix did not parse with Program "" and
// the raw text in Raw, so the Pipeline counts and keeps them.
type Source interface {
	Lines(ctx context.Context, yield func(Line) bool) error
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, yield func(Line) bool) error

// Lines calls f.
func (f SourceFunc) Lines(ctx context.Context, yield func(Line) bool) error { return f(ctx, yield) }

// LineParser splits a raw line into a Line; ParseLine is one, and
// Parsers.Parse (the syslog shapes plus each MTA's own file formats) another.
type LineParser func(raw string, ref time.Time) (Line, error)

// DefaultMaxLine is the longest line kept whole; longer lines are cut there
// and flagged Truncated.
const DefaultMaxLine = 64 << 10

// ReaderOptions configures a ReaderSource.
type ReaderOptions struct {
	Origin string     // copied into every Line
	Parse  LineParser // nil means ParseLine
	// ParseTo, when set, is used instead of Parse: Parse into a Line the
	// reader keeps (Parser.ParseTo), which spares a copy of each Line.
	ParseTo func(l *Line, raw string, ref time.Time) error
	Ref     time.Time // reference time for year inference; zero means now
	MaxLine int       // 0 means DefaultMaxLine
	// Stats, when set, is added to as lines are read.
	Stats *ReadStats

	chunkSize int // tests: bytes per chunk instead of 256 KiB (SetTestChunking)
}

// ReadStats counts what a reader saw. Bytes is updated atomically, so a
// progress display may read it with atomic.LoadInt64 while the reader runs;
// read the others when it is done.
type ReadStats struct {
	Lines     int64
	Bytes     int64 // bytes of (decompressed) input consumed
	Truncated int64
}

// gzipMagic starts every gzip member (RFC 1952 section 2.3.1).
var gzipMagic = []byte{0x1f, 0x8b}

// MaybeGunzip returns a reader of r's content, decompressed when it starts
// with the gzip magic bytes.
func MaybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// lineReader splits an io.Reader into bounded lines. It turns its input
// into strings one chunk at a time, so a line costs no allocation of its own;
// consumers that keep parts of a line for long must copy them
// (strings.Clone) so a whole chunk is not kept alive.
//
// A chunk is not copied: each chunk is read into a buffer of its own, and
// once the chunk's string is made from the buffer (unsafe.String) the
// reader lets go of the buffer and never writes to it again (lr.buf = nil;
// the next fill takes another one, and the unterminated tail was copied to
// lr.pending first). The string's bytes therefore never change while
// anybody may look at them, as Go requires of a string. A buffer that no
// string shares is reused (after an over-long line, whose kept beginning is
// copied), and so is a chunk's buffer once its lines are released (see
// chunkReuse); otherwise the next buffer is a fresh allocation.
type lineReader struct {
	r       io.Reader
	opt     ReaderOptions
	parseTo func(*Line, string, time.Time) error // opt's parser
	size    int                                  // capacity of each chunk buffer
	buf     []byte                               // nil, or a buffer that no string shares
	chunk   string                               // not yet consumed lines of the current chunk
	err     error
	skip    bool // discarding the rest of an over-long line
	lastT   time.Time
	cut     string // the kept beginning of an over-long line
	pending []byte

	reuse *chunkReuse // nil: every chunk gets a fresh buffer
	seq   uint64      // the number of the current chunk, from 1
	held  []heldChunk // chunks handed out and not yet released, oldest first
	spare [][]byte    // released chunk buffers
}

// chunkReuse lets a lineReader read new input into the buffers of chunks
// whose lines every consumer is done with, instead of a fresh 256 KiB
// buffer for each chunk. A fresh buffer is memory the runtime must zero,
// that the cache has never seen and that the collector must later sweep:
// reading a large log into reused buffers costs about a tenth less CPU.
// The price is a promise: nobody keeps a string of a line (or of its
// parse) past the release of its chunk without copying it. The Pipeline
// releases a chunk once every line of it has been fed, and only when its
// options promise that (PipelineOptions.ReuseBuffers).
type chunkReuse struct {
	// done: every line of the chunks numbered below it has been consumed.
	done atomic.Uint64
	// poison overwrites a released buffer at once, so that a string kept
	// past its release shows as garbage in tests.
	poison bool
	reused atomic.Int64 // buffers taken again, for tests
}

type heldChunk struct {
	seq uint64
	buf []byte
}

// newBuffer returns an empty buffer for the next chunk: a released one
// when there is one, else a fresh one.
func (lr *lineReader) newBuffer() []byte {
	if r := lr.reuse; r != nil {
		done := r.done.Load()
		n := 0
		for n < len(lr.held) && lr.held[n].seq < done {
			b := lr.held[n].buf[:cap(lr.held[n].buf)]
			if r.poison {
				for i := range b {
					b[i] = 0xff
				}
			}
			lr.spare = append(lr.spare, b[:0])
			lr.held[n] = heldChunk{}
			n++
		}
		lr.held = append(lr.held[:0], lr.held[n:]...)
		if k := len(lr.spare); k > 0 {
			b := lr.spare[k-1]
			lr.spare = lr.spare[:k-1]
			r.reused.Add(1)
			return b
		}
	}
	return make([]byte, 0, lr.size)
}

// publish makes buf[:n] the current chunk; the reader never writes to buf
// again until the chunk is released.
func (lr *lineReader) publish(buf []byte, n int) {
	lr.chunk = unsafe.String(&buf[0], n)
	lr.buf = nil // now shared by lr.chunk; see lineReader
	lr.seq++
	if lr.reuse != nil {
		lr.held = append(lr.held, heldChunk{lr.seq, buf})
	}
}

func newLineReader(r io.Reader, opt ReaderOptions) *lineReader {
	var parseTo func(*Line, string, time.Time) error
	switch {
	case opt.ParseTo != nil:
		parseTo = opt.ParseTo
	case opt.Parse == nil:
		c := new(stampCache) // this reader's own timestamp cache
		parseTo = func(l *Line, raw string, ref time.Time) error { return parseLineTo(l, raw, ref, c) }
	default:
		parseTo = parseInto(opt.Parse)
	}
	if opt.MaxLine <= 0 {
		opt.MaxLine = DefaultMaxLine
	}
	if opt.Ref.IsZero() {
		opt.Ref = time.Now()
	}
	size := 256 << 10
	if opt.chunkSize > 0 {
		size = opt.chunkSize
	}
	if opt.MaxLine+1 > size {
		size = opt.MaxLine + 1
	}
	return &lineReader{r: r, opt: opt, parseTo: parseTo, size: size}
}

// appendBatch appends to b, up to its capacity, the lines read so far, or
// when there are none the lines of the next read. It never waits for more
// input once b holds a line, so a batch holds back no line a slow writer
// (a pipe on standard input) has already written. It returns false at the
// end of input when it appended nothing.
func (lr *lineReader) appendBatch(b []Line) ([]Line, bool) {
	for len(b) < cap(b) {
		if len(b) > 0 && lr.cut == "" && lr.chunk == "" {
			break
		}
		raw, truncated, ok := lr.nextRaw()
		if !ok {
			return b, len(b) > 0
		}
		// The line is parsed into its place in b: a Line is large, and
		// returned from call to call it would be copied several times.
		b = b[:len(b)+1]
		lr.make(&b[len(b)-1], raw, truncated)
	}
	return b, true
}

// next returns the next line, or false at the end of input (see err).
func (lr *lineReader) next() (Line, bool) {
	var l Line
	raw, truncated, ok := lr.nextRaw()
	if ok {
		lr.make(&l, raw, truncated)
	}
	return l, ok
}

// nextRaw returns the text of the next line and whether it was cut, or
// false at the end of input (see err).
func (lr *lineReader) nextRaw() (raw string, truncated, ok bool) {
	for {
		if lr.cut != "" {
			raw := lr.cut
			lr.cut = ""
			return raw, true, true
		}
		if lr.chunk != "" {
			var raw string
			nl := strings.IndexByte(lr.chunk, '\n')
			if nl < 0 { // only at the final, unterminated line
				raw, lr.chunk = lr.chunk, ""
			} else {
				raw, lr.chunk = lr.chunk[:nl], lr.chunk[nl+1:]
			}
			return raw, false, true
		}
		if !lr.fill() {
			return "", false, false
		}
	}
}

// make parses raw into *l.
func (lr *lineReader) make(l *Line, raw string, truncated bool) {
	if n := len(raw); n > 0 && raw[n-1] == '\r' {
		raw = raw[:n-1]
	}
	if len(raw) > lr.opt.MaxLine {
		raw, truncated = raw[:lr.opt.MaxLine], true
	}
	parseKept(l, lr.parseTo, raw, lr.opt.Ref, &lr.lastT)
	l.Origin = lr.opt.Origin
	l.Truncated = truncated
	if s := lr.opt.Stats; s != nil {
		s.Lines++
		if truncated {
			s.Truncated++
		}
	}
}

// fill reads the next chunk of whole lines into lr.chunk. Bytes of a line
// beyond MaxLine are dropped and the line is flagged Truncated.
func (lr *lineReader) fill() bool {
	if lr.err != nil {
		return false
	}
	buf := lr.buf
	if buf == nil { // the last one is shared by a chunk: never write to it again
		buf = lr.newBuffer()
	}
	buf = append(buf[:0], lr.pending...)
	lr.pending = lr.pending[:0]
	for {
		if len(buf) == cap(buf) {
			// A full buffer without a newline: keep MaxLine bytes of the line.
			if lr.skip {
				buf = buf[:0]
			} else {
				lr.emitCut(buf)
				buf = buf[:0]
				lr.skip = true
				lr.buf = buf
				return true
			}
		}
		n, err := lr.r.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			if s := lr.opt.Stats; s != nil {
				atomic.AddInt64(&s.Bytes, int64(n))
			}
		}
		data := buf[len(buf) : len(buf)+n]
		buf = buf[:len(buf)+n]
		if lr.skip {
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				buf = buf[:0]
			} else {
				lr.skip = false
				buf = append(buf[:0], data[nl+1:]...)
			}
		}
		if err != nil {
			lr.err = err
			if len(buf) > 0 && !lr.skip {
				lr.publish(buf, len(buf))
				return true
			}
			lr.buf = buf[:0]
			return false
		}
		if last := bytes.LastIndexByte(buf, '\n'); last >= 0 {
			lr.pending = append(lr.pending, buf[last+1:]...) // a copy
			lr.publish(buf, last+1)
			return true
		}
	}
}

func (lr *lineReader) emitCut(buf []byte) {
	n := len(buf)
	if n > lr.opt.MaxLine {
		n = lr.opt.MaxLine
	}
	lr.cut = string(buf[:n])
}

// batchSource is a Source that can also hand over its lines in batches, so
// that the Pipeline reads, splits and parses them on a goroutine of its own
// while it correlates the batch before. A batch never holds a line back
// waiting for more input (see lineReader.appendBatch).
type batchSource interface {
	Source
	// batches fills b (empty, with room for lines) and calls yield with it,
	// in order, until the end of input; yield returns the next empty slice
	// to fill, or false to stop. With reuse, the source may read into the
	// buffers of released chunks, and yield's chunk is the number of the
	// chunk the batch's last line is in (chunks numbered below it are the
	// batch's or earlier batches'); 0 when the source does not number them.
	batches(ctx context.Context, b []Line, reuse *chunkReuse, yield func(lines []Line, chunk uint64) ([]Line, bool)) error
}

// ReaderSource reads lines from r, gunzipping it when it is gzip data.
func ReaderSource(r io.Reader, opt ReaderOptions) Source {
	return readerSource{r: r, opt: opt}
}

type readerSource struct {
	r   io.Reader
	opt ReaderOptions
}

var _ batchSource = readerSource{}

func (s readerSource) open() (*lineReader, error) {
	zr, err := MaybeGunzip(s.r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.opt.Origin, err)
	}
	return newLineReader(zr, s.opt), nil
}

func (s readerSource) end(lr *lineReader) error {
	if lr.err != nil && lr.err != io.EOF {
		return fmt.Errorf("%s: %w", s.opt.Origin, lr.err)
	}
	return nil
}

// Lines reads r.
func (s readerSource) Lines(ctx context.Context, yield func(Line) bool) error {
	lr, err := s.open()
	if err != nil {
		return err
	}
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		l, ok := lr.next()
		if !ok {
			break
		}
		if !yield(l) {
			return nil
		}
	}
	return s.end(lr)
}

func (s readerSource) batches(ctx context.Context, b []Line, reuse *chunkReuse, yield func([]Line, uint64) ([]Line, bool)) error {
	lr, err := s.open()
	if err != nil {
		return err
	}
	lr.reuse = reuse
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ok bool
		if b, ok = lr.appendBatch(b[:0]); !ok {
			break
		}
		if b, ok = yield(b, lr.seq); !ok {
			return nil
		}
	}
	return s.end(lr)
}

// FileSource reads the file at path (plain or gzip, detected by content);
// "-" reads stdin. Its reference time for year inference is the file's
// modification time, so rotated files keep their year.
type FileSource struct {
	Path    string
	Stdin   io.Reader // read when Path is "-"
	Parse   LineParser
	ParseTo func(l *Line, raw string, ref time.Time) error // see ReaderOptions
	MaxLine int
	Stats   *ReadStats
}

// open opens the file and returns its reader and reference time.
func (f FileSource) open() (io.ReadCloser, time.Time, error) {
	if f.Path == "-" {
		in := f.Stdin
		if in == nil {
			in = os.Stdin
		}
		return io.NopCloser(in), time.Now(), nil
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, time.Time{}, err
	}
	ref := time.Now()
	if st, err := fh.Stat(); err == nil && !st.ModTime().IsZero() {
		ref = st.ModTime()
	}
	return fh, ref, nil
}

func (f FileSource) opts(ref time.Time) ReaderOptions {
	return ReaderOptions{Origin: f.Path, Parse: f.Parse, ParseTo: f.ParseTo, Ref: ref, MaxLine: f.MaxLine, Stats: f.Stats}
}

// Lines reads the file.
func (f FileSource) Lines(ctx context.Context, yield func(Line) bool) error {
	rc, ref, err := f.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return ReaderSource(rc, f.opts(ref)).Lines(ctx, yield)
}

var _ batchSource = FileSource{}

func (f FileSource) batches(ctx context.Context, b []Line, reuse *chunkReuse, yield func([]Line, uint64) ([]Line, bool)) error {
	rc, ref, err := f.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return readerSource{r: rc, opt: f.opts(ref)}.batches(ctx, b, reuse, yield)
}

// Merge yields the lines of several files in time order: at each step the
// earliest next line of any file, the first-named file winning ties. Lines
// of one file keep their order. A rotated set (mail.log.2.gz mail.log.1
// mail.log) comes out as one log, whatever order the files are named in.
// Every file is opened before any line is yielded, so a missing file is
// reported at once.
func Merge(files ...FileSource) Source {
	if len(files) == 1 {
		return files[0]
	}
	for _, f := range files {
		if f.Path == "-" {
			// Standard input may be a live pipe: a batch of merged lines
			// would hold lines back, so no batches.
			return SourceFunc(mergeSource(files).Lines)
		}
	}
	return mergeSource(files)
}

// mergeSource is Merge of several files.
type mergeSource []FileSource

var _ batchSource = mergeSource(nil)

// batches collects the merged lines into batches; the files are all
// regular files, read to their end, so a batch holds back no live line.
// Their chunks are not numbered, so never reused.
func (files mergeSource) batches(ctx context.Context, b []Line, _ *chunkReuse, yield func([]Line, uint64) ([]Line, bool)) error {
	more := true
	err := files.Lines(ctx, func(l Line) bool {
		b = append(b, l)
		if len(b) == cap(b) {
			b, more = yield(b, 0)
		}
		return more
	})
	if err == nil && more && len(b) > 0 {
		yield(b, 0)
	}
	return err
}

// Lines yields the files' lines in time order.
func (files mergeSource) Lines(ctx context.Context, yield func(Line) bool) error {
	type head struct {
		lr   *lineReader
		l    Line
		ok   bool
		name string
	}
	heads := make([]*head, 0, len(files))
	for _, f := range files {
		rc, ref, err := f.open()
		if err != nil {
			return err
		}
		defer rc.Close()
		zr, err := MaybeGunzip(rc)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		h := &head{lr: newLineReader(zr, f.opts(ref)), name: f.Path}
		h.l, h.ok = h.lr.next()
		heads = append(heads, h)
	}
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var best *head
		for _, h := range heads {
			if h.ok && (best == nil || h.l.Time.Before(best.l.Time)) {
				best = h
			}
		}
		if best == nil {
			break
		}
		l := best.l
		best.l, best.ok = best.lr.next()
		if !yield(l) {
			return nil
		}
	}
	for _, h := range heads {
		if h.lr.err != nil && h.lr.err != io.EOF {
			return fmt.Errorf("%s: %w", h.name, h.lr.err)
		}
	}
	return nil
}
