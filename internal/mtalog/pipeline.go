package mtalog

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Dialect describes one MTA's logs to the Pipeline. Each MTA subpackage
// offers one (postfix.Dialect()); cmd/smtplog lists them, one line each.
type Dialect struct {
	// Name is the --mta value: "postfix", "exim", "sendmail", "opensmtpd".
	Name string
	// Claims reports whether a syslog program name belongs to this MTA
	// ("postfix/smtpd", "exim4", "sm-mta"); used by --mta auto.
	Claims func(program string) bool
	// Detect, optional, scores a line no dialect claims by its program
	// name: 0 (not this MTA's), 1 (could be) or 2 (certainly: an MTA
	// message shape such as a queue ID with from=/to=). --mta auto gives
	// such a line to the dialect that scores 2, and from then on every
	// line of its program (a custom syslog name such as "mail-out").
	Detect func(Line) int
	// ParseRaw, optional, parses the MTA's own log file lines that carry no
	// syslog prefix (Exim's mainlog); it is tried after ParseLine fails and
	// must set Program to a name Claims accepts.
	ParseRaw LineParser
	// New returns a fresh correlator.
	New func(CorrelatorOptions) Correlator
	// NewPrepared, optional, returns room for the parses of n lines: the
	// Pipeline then parses the lines this dialect claims (or all, when
	// --mta names it) on the goroutine that reads them, and feeds them to
	// its correlators, which must be PreparedFeeders, with FeedPrepared.
	NewPrepared func(n int) Prepared
	// CopiesLines says that this dialect's correlators keep no string of a
	// line (or of its parse) past Feed without copying it, which the
	// buffer-reuse test (TestReuseBuffersSameReport) holds them to. The
	// Pipeline hands the correlators of other dialects each line in memory
	// of its own (Line.detach), so that what they keep of it holds neither
	// a whole read chunk alive nor a buffer the reader writes over.
	CopiesLines bool
}

// CorrelatorOptions is what every correlator is configured with.
type CorrelatorOptions struct {
	// MaxOpen bounds the messages (or sessions) kept open; when it is
	// reached the least recently seen is flushed as incomplete. 0 means
	// DefaultMaxOpen.
	MaxOpen int
	// Recycle: a Recycler may reuse the memory of handled records (set
	// by the Pipeline from PipelineOptions.Recycle).
	Recycle bool
	// Host is the observing host for lines that name none (Exim's own
	// mainlog and rejectlog, RFC 5424's "-", syslog messages relayed
	// without a hostname): their records' host. "" leaves it empty.
	Host string
}

// DefaultMaxOpen is the default bound on open messages per correlator.
const DefaultMaxOpen = 200000

// Parsers returns a LineParser that tries ParseLine and then each dialect's
// ParseRaw. It remembers the last traditional timestamp it parsed; it is
// safe for concurrent use.
func Parsers(ds []Dialect) LineParser { return NewParser(ds).Parse }

// Parser is Parsers' parser as a value, which can also parse into a Line
// its caller keeps (ParseTo): a Line is large, and a LineParser returns
// a copy of it.
type Parser struct {
	raws []LineParser
	c    *stampCache // its own (see stampCache)
}

// NewParser returns a Parser that tries ParseLine and then each
// dialect's ParseRaw; it is safe for concurrent use.
func NewParser(ds []Dialect) *Parser {
	p := &Parser{c: new(stampCache)}
	for _, d := range ds {
		if d.ParseRaw != nil {
			p.raws = append(p.raws, d.ParseRaw)
		}
	}
	return p
}

// Parse is a LineParser.
func (p *Parser) Parse(raw string, ref time.Time) (Line, error) {
	var l Line
	err := p.ParseTo(&l, raw, ref)
	return l, err
}

// ParseTo is Parse into *l, which it overwrites.
func (p *Parser) ParseTo(l *Line, raw string, ref time.Time) error {
	err := parseLineTo(l, raw, ref, p.c)
	if err == nil {
		return nil
	}
	for _, parse := range p.raws {
		if l2, err2 := parse(raw, ref); err2 == nil {
			*l = l2
			return nil
		}
	}
	return err
}

// ParserFor returns the LineParser for --mta: the prefix shapes and the
// own file formats of every dialect for "auto" (or ""), of the named one
// alone otherwise.
func ParserFor(ds []Dialect, mta string) LineParser {
	for _, d := range ds {
		if d.Name == mta {
			return Parsers([]Dialect{d})
		}
	}
	return Parsers(ds)
}

// ParseKept parses raw with parse (nil: ParseLine). A line of no known
// shape is kept whole in Raw with Program "", so the Pipeline counts it;
// a line without a time of its own (a continuation) and a kept one take
// *last, the time of the line before, which a line with a time updates.
func ParseKept(parse LineParser, raw string, ref time.Time, last *time.Time) Line {
	if parse == nil {
		parse = ParseLine
	}
	var l Line
	parseKept(&l, parseInto(parse), raw, ref, last)
	return l
}

// parseInto makes parse a parser into a Line the caller keeps.
func parseInto(parse LineParser) func(*Line, string, time.Time) error {
	return func(l *Line, raw string, ref time.Time) error {
		var err error
		*l, err = parse(raw, ref)
		return err
	}
}

// parseKept is ParseKept into *l, with a parser into *l.
func parseKept(l *Line, parseTo func(*Line, string, time.Time) error, raw string, ref time.Time, last *time.Time) {
	err := parseTo(l, raw, ref)
	switch {
	case err != nil:
		*l = Line{Raw: raw, Time: *last}
	case l.Time.IsZero():
		l.Time = *last
	default:
		*last = l.Time
	}
}

// PipelineOptions configures a Pipeline.
type PipelineOptions struct {
	// Dialects are the MTAs known; MTA selects one by name, or "auto" (or
	// "") lets each line go to the dialect that claims its program.
	Dialects []Dialect
	MTA      string
	// Handler receives every record.
	Handler record.Handler
	// Unparsed, when set, receives each line no correlator understood, as
	// read, one per line.
	Unparsed io.Writer
	// FlushAfter: a message with no line for this long (in log time) is
	// flushed as incomplete. 0 means DefaultFlushAfter.
	FlushAfter time.Duration
	// Correlator options passed to every dialect.
	Correlator CorrelatorOptions
	// Recycle promises that the Handler keeps nothing of a record after
	// Handle returns but its strings: no pointer to it, its slices or
	// what it points to. Correlators that are Recyclers then reuse the
	// memory of handled records.
	Recycle bool
	// ReuseBuffers promises that the Handler keeps no string of a record
	// past Handle without copying it. Run then reads new input into the
	// buffers of lines every correlator is done with (see chunkReuse):
	// correlators copy what they keep of a line, as the package requires.
	ReuseBuffers bool
}

// DefaultFlushAfter is how long an idle message is kept open by default;
// Postfix's default maximal_queue_lifetime is five days.
const DefaultFlushAfter = 5 * 24 * time.Hour

// Stats counts what a Pipeline did.
type Stats struct {
	Lines     int64            // lines fed
	Records   int64            // records emitted
	Truncated int64            // lines longer than the limit
	Unparsed  map[string]int64 // per program ("" when the prefix did not parse)
	PerMTA    map[string]int64 // lines understood per dialect
}

// UnparsedTotal sums Unparsed.
func (s Stats) UnparsedTotal() int64 {
	var n int64
	for _, v := range s.Unparsed {
		n += v
	}
	return n
}

// Summary is a one-line description for operators.
func (s Stats) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d lines, %d records, %d unparsed", s.Lines, s.Records, s.UnparsedTotal())
	if s.Truncated > 0 {
		fmt.Fprintf(&b, ", %d truncated", s.Truncated)
	}
	progs := make([]string, 0, len(s.Unparsed))
	for p := range s.Unparsed {
		progs = append(progs, p)
	}
	sort.Slice(progs, func(i, j int) bool {
		if s.Unparsed[progs[i]] != s.Unparsed[progs[j]] {
			return s.Unparsed[progs[i]] > s.Unparsed[progs[j]]
		}
		return progs[i] < progs[j]
	})
	for i, p := range progs {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		name := p
		if name == "" {
			name = "no prefix"
		}
		fmt.Fprintf(&b, "%s: %d", name, s.Unparsed[p])
	}
	if len(progs) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

// Pipeline dispatches lines to correlators by program, counts and keeps
// what nobody understood, flushes idle messages and passes records to a
// Handler. It is not safe for concurrent use: one goroutine drives it,
// through Run or through Feed and Flush.
type Pipeline struct {
	opt       PipelineOptions
	fixed     int // index into dialects when MTA names one, else -1
	corrs     []Correlator
	byProg    map[string]int    // program -> dialect index, -1 for none (claims and learnt detections)
	misses    map[string]int    // program -> lines Detect found no dialect for
	stats     Stats             // but Unparsed, which Stats makes of unparsedN
	unparsedN map[string]*int64 // lines not understood, per program
	perMTA    []int64           // lines understood per dialect, by index; Stats builds the map
	lastTime  time.Time
	lastScan  time.Time
	err       error
	pending   []*record.Record // emitted by a correlator, not yet handled
	emit      func(*record.Record)

	batchLines int  // lines per batch of Run's reading goroutine
	poison     bool // tests: overwrite released chunks (chunkReuse.poison)
	reuse      *chunkReuse
}

// NewPipeline checks opt and returns a Pipeline.
func NewPipeline(opt PipelineOptions) (*Pipeline, error) {
	if opt.Handler == nil {
		return nil, fmt.Errorf("mtalog: pipeline needs a record handler")
	}
	if opt.FlushAfter <= 0 {
		opt.FlushAfter = DefaultFlushAfter
	}
	p := &Pipeline{
		opt:       opt,
		fixed:     -1,
		byProg:    map[string]int{},
		misses:    map[string]int{},
		unparsedN: map[string]*int64{},
		perMTA:    make([]int64, len(opt.Dialects)),
		corrs:     make([]Correlator, len(opt.Dialects)),

		batchLines: runBatchLines,
	}
	if opt.MTA != "" && opt.MTA != "auto" {
		for i, d := range opt.Dialects {
			if d.Name == opt.MTA {
				p.fixed = i
			}
		}
		if p.fixed < 0 {
			return nil, fmt.Errorf("unknown MTA %q: use auto or one of %s", opt.MTA, strings.Join(DialectNames(opt.Dialects), ", "))
		}
	}
	p.emit = func(r *record.Record) { p.pending = append(p.pending, r) }
	return p, nil
}

// DialectNames lists the names of ds.
func DialectNames(ds []Dialect) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name
	}
	return out
}

func (p *Pipeline) correlator(i int) Correlator {
	if p.corrs[i] == nil {
		o := p.opt.Correlator
		o.Recycle = p.opt.Recycle
		p.corrs[i] = p.opt.Dialects[i].New(o)
	}
	return p.corrs[i]
}

// Bounds of --mta auto's memory of program names.
const (
	maxPrograms = 4096 // program names remembered; real logs have few
	// detectTries is how many lines of an unclaimed program Detect looks
	// at before the program is taken for no MTA's (cron, kernel, ...).
	detectTries = 1000
)

// dialectFor returns the index of the dialect for a line, or -1: the one
// --mta names; else the one that claims the line's program; else the one
// whose Detect is certain about the line (and then about its program).
func (p *Pipeline) dialectFor(l *Line) int {
	if p.fixed >= 0 {
		return p.fixed
	}
	if i, ok := p.byProg[l.Program]; ok {
		return i
	}
	for i, d := range p.opt.Dialects {
		if d.Claims != nil && d.Claims(l.Program) {
			p.remember(l.Program, i)
			return i
		}
	}
	for i, d := range p.opt.Dialects {
		if d.Detect != nil && d.Detect(*l) >= 2 {
			p.remember(l.Program, i)
			return i
		}
	}
	n, ok := p.misses[l.Program]
	if !ok && len(p.misses) >= maxPrograms {
		return -1
	}
	if n++; n >= detectTries {
		p.remember(l.Program, -1)
		delete(p.misses, l.Program)
	} else {
		p.misses[strings.Clone(l.Program)] = n
	}
	return -1
}

func (p *Pipeline) remember(program string, i int) {
	if len(p.byProg) < maxPrograms {
		p.byProg[strings.Clone(program)] = i
	}
}

// Feed passes one line to its correlator. It returns the Handler's error,
// after which the Pipeline should not be used.
func (p *Pipeline) Feed(ctx context.Context, l Line) error {
	return p.feed(ctx, &l)
}

// feed is Feed of a line the caller keeps.
func (p *Pipeline) feed(ctx context.Context, l *Line) error {
	return p.feedPrepared(ctx, l, nil, 0)
}

// feedPrepared is feed of the k-th line of b, when b is not nil.
func (p *Pipeline) feedPrepared(ctx context.Context, l *Line, b *lineBatch, k int) error {
	if p.err != nil {
		return p.err
	}
	p.stats.Lines++
	if l.Truncated {
		p.stats.Truncated++
	}
	ok := false
	if l.Program != "" {
		i := -1
		if b != nil && k < len(b.by) && b.by[k] >= 0 {
			i = int(b.by[k]) // the claimant, which dialectFor would pick
		} else {
			i = p.dialectFor(l)
		}
		if i >= 0 {
			if b != nil && k < len(b.by) && int(b.by[k]) == i {
				ok = p.correlator(i).(PreparedFeeder).FeedPrepared(l, b.prep[i], k, p.emit)
			} else {
				line := *l
				if !p.opt.Dialects[i].CopiesLines {
					line = line.detach()
				}
				ok = p.correlator(i).Feed(line, p.emit)
			}
			if ok {
				p.perMTA[i]++
			}
		}
	}
	if !ok {
		p.unparsed(l)
	}
	if l.Time.After(p.lastTime) {
		p.lastTime = l.Time
		// Flush idle messages once a minute of log time, on the minute,
		// so that where the scans fall does not depend on where reading
		// began (a Resumer replays from a later line than the first).
		if m := p.lastTime.Truncate(time.Minute); m.After(p.lastScan) {
			p.lastScan = m
			p.flush(p.lastTime.Add(-p.opt.FlushAfter))
		}
	}
	p.drain(ctx)
	return p.err
}

// drain hands the records emitted so far to the Handler.
func (p *Pipeline) drain(ctx context.Context) {
	if len(p.pending) == 0 {
		return
	}
	for i, r := range p.pending {
		if p.err == nil {
			p.stats.Records++
			if err := p.opt.Handler.Handle(ctx, r); err != nil {
				p.err = err
			}
		}
		p.pending[i] = nil
	}
	p.pending = p.pending[:0]
	if p.opt.Recycle && p.err == nil {
		for _, c := range p.corrs {
			if r, ok := c.(Recycler); ok {
				r.Handled()
			}
		}
	}
}

func (p *Pipeline) unparsed(l *Line) {
	// m[k]++ would store k, a string of the line, as the key anew, and
	// keep the line's chunk alive.
	if n, ok := p.unparsedN[l.Program]; ok {
		*n++
	} else {
		p.unparsedN[strings.Clone(l.Program)] = &[]int64{1}[0]
	}
	if p.opt.Unparsed != nil && p.err == nil {
		if _, err := io.WriteString(p.opt.Unparsed, l.Raw+"\n"); err != nil {
			p.err = fmt.Errorf("write unparsed lines: %w", err)
		}
	}
}

func (p *Pipeline) flush(before time.Time) {
	for _, c := range p.corrs {
		if c != nil {
			c.Flush(before, p.emit)
		}
	}
}

// Flush emits every open message that has seen no line since before (all
// of them when before is zero).
func (p *Pipeline) Flush(ctx context.Context, before time.Time) error {
	if p.err != nil {
		return p.err
	}
	p.flush(before)
	p.drain(ctx)
	return p.err
}

// Run feeds every line of src, then flushes everything still open. When
// src reads files (FileSource, Merge, ReaderSource), reading, splitting and
// prefix parsing run on a goroutine of their own, a batch of lines ahead
// of the correlators.
func (p *Pipeline) Run(ctx context.Context, src Source) error {
	var err error
	if bs, ok := src.(batchSource); ok {
		err = p.runBatches(ctx, bs)
	} else {
		var ferr error
		err = src.Lines(ctx, func(l Line) bool {
			ferr = p.Feed(ctx, l)
			return ferr == nil
		})
		if ferr != nil {
			return ferr
		}
	}
	if err != nil {
		return err
	}
	return p.Flush(context.WithoutCancel(ctx), time.Time{})
}

// Batches in flight between the reading goroutine and Run: one being
// filled, runBatchQueue waiting, one being fed.
const (
	runBatchLines = 1024
	runBatchQueue = 2
)

// lineBatch is a batch of lines with the parses made ahead of the
// correlators.
type lineBatch struct {
	lines   []Line
	by      []int8     // per line: the dialect that prepared it, or -1
	prep    []Prepared // per dialect, nil for one without NewPrepared
	lastP   string     // the program claimant last looked up, and its
	lastIdx int        // dialect (a cache of the reading goroutine's)
	chunk   uint64     // the reader's chunk of the last line (batchSource.batches)
}

func (p *Pipeline) newBatch() *lineBatch {
	b := &lineBatch{
		lines: make([]Line, 0, p.batchLines),
		prep:  make([]Prepared, len(p.opt.Dialects)),
	}
	for i, d := range p.opt.Dialects {
		if d.NewPrepared != nil && i < 127 {
			b.prep[i] = d.NewPrepared(p.batchLines)
			b.by = make([]int8, p.batchLines)
		}
	}
	return b
}

// claimant is the dialect that Pipeline.dialectFor picks for a program
// by name alone: the one --mta names, else the first that claims it; -1
// for none. It is pure, for the reading goroutine.
func (p *Pipeline) claimant(program string) int {
	if p.fixed >= 0 {
		return p.fixed
	}
	if program == "" {
		return -1
	}
	for i, d := range p.opt.Dialects {
		if d.Claims != nil && d.Claims(program) {
			return i
		}
	}
	return -1
}

// prepare parses b's lines with their dialects' pure parsers; it runs on
// the reading goroutine.
func (p *Pipeline) prepare(b *lineBatch) {
	// The program remembered from the batch's last use may lie in a chunk
	// released and read over since: compare with this batch's lines only.
	b.lastP = ""
	for k := range b.lines {
		l := &b.lines[k]
		b.by[k] = -1
		if l.Program == "" {
			continue
		}
		if l.Program != b.lastP {
			b.lastP, b.lastIdx = l.Program, p.claimant(l.Program)
		}
		if i := b.lastIdx; i >= 0 && b.prep[i] != nil {
			b.prep[i].Prepare(k, l)
			b.by[k] = int8(i)
		}
	}
}

// runBatches reads src on a goroutine of its own and feeds its batches in
// order. It returns the first error: the Handler's, else src's.
func (p *Pipeline) runBatches(ctx context.Context, src batchSource) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const n = runBatchQueue + 2
	full := make(chan *lineBatch, runBatchQueue)
	free := make(chan *lineBatch, n)
	for range n - 1 {
		free <- p.newBatch()
	}
	preparing := false
	for i, d := range p.opt.Dialects {
		preparing = preparing || d.NewPrepared != nil && i < 127
	}
	var reuse *chunkReuse
	if p.opt.ReuseBuffers {
		reuse = &chunkReuse{poison: p.poison}
	}
	p.reuse = reuse
	var srcErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		defer func() {
			if r := recover(); r != nil {
				srcErr = fmt.Errorf("mtalog: reading lines: panic: %v", r)
			}
		}()
		cur := p.newBatch()
		srcErr = src.batches(rctx, cur.lines, reuse, func(lines []Line, chunk uint64) ([]Line, bool) {
			cur.lines, cur.chunk = lines, chunk
			if preparing {
				p.prepare(cur)
			}
			select {
			case full <- cur:
			case <-rctx.Done():
				return nil, false
			}
			select {
			case cur = <-free:
				return cur.lines[:0], true
			case <-rctx.Done():
				return nil, false
			}
		})
	}()
	var ferr error
	for b := range full {
		for k := 0; k < len(b.lines) && ferr == nil; k++ {
			ferr = p.feedPrepared(ctx, &b.lines[k], b, k)
		}
		if ferr != nil {
			cancel() // the reader stops; drain what it sent
		}
		if reuse != nil && b.chunk > 0 {
			// Every line of the chunks before the batch's last one has
			// been fed: their buffers may take new input.
			reuse.done.Store(b.chunk)
		}
		free <- b
	}
	<-done
	if ferr != nil {
		return ferr
	}
	return srcErr
}

// Stats returns a copy of the counters.
func (p *Pipeline) Stats() Stats {
	s := p.stats
	s.Unparsed = make(map[string]int64, len(p.unparsedN))
	for k, n := range p.unparsedN {
		s.Unparsed[k] = *n
	}
	s.PerMTA = make(map[string]int64, len(p.perMTA))
	for i, n := range p.perMTA {
		if n > 0 { // a dialect appears once it has understood a line
			s.PerMTA[p.opt.Dialects[i].Name] += n
		}
	}
	return s
}
