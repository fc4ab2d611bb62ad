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
}

// CorrelatorOptions is what every correlator is configured with.
type CorrelatorOptions struct {
	// MaxOpen bounds the messages (or sessions) kept open; when it is
	// reached the least recently seen is flushed as incomplete. 0 means
	// DefaultMaxOpen.
	MaxOpen int
}

// DefaultMaxOpen is the default bound on open messages per correlator.
const DefaultMaxOpen = 200000

// Parsers returns a LineParser that tries ParseLine and then each dialect's
// ParseRaw. It remembers the last traditional timestamp it parsed; it is
// safe for concurrent use.
func Parsers(ds []Dialect) LineParser {
	var raws []LineParser
	for _, d := range ds {
		if d.ParseRaw != nil {
			raws = append(raws, d.ParseRaw)
		}
	}
	// Each parser value has its own timestamp cache (see stampCache).
	c := new(stampCache)
	return func(raw string, ref time.Time) (Line, error) {
		l, err := parseLine(raw, ref, c)
		if err == nil {
			return l, nil
		}
		for _, p := range raws {
			if l2, err2 := p(raw, ref); err2 == nil {
				return l2, nil
			}
		}
		return l, err
	}
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
	l, err := parse(raw, ref)
	switch {
	case err != nil:
		l = Line{Raw: raw, Time: *last}
	case l.Time.IsZero():
		l.Time = *last
	default:
		*last = l.Time
	}
	return l
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
	opt      PipelineOptions
	fixed    int // index into dialects when MTA names one, else -1
	corrs    []Correlator
	byProg   map[string]int // program -> dialect index, -1 for none (claims and learnt detections)
	misses   map[string]int // program -> lines Detect found no dialect for
	stats    Stats
	perMTA   []int64 // lines understood per dialect, by index; Stats builds the map
	lastTime time.Time
	lastScan time.Time
	err      error
	pending  []*record.Record // emitted by a correlator, not yet handled
	emit     func(*record.Record)
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
		opt:    opt,
		fixed:  -1,
		byProg: map[string]int{},
		misses: map[string]int{},
		stats:  Stats{Unparsed: map[string]int64{}},
		perMTA: make([]int64, len(opt.Dialects)),
		corrs:  make([]Correlator, len(opt.Dialects)),
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
		p.corrs[i] = p.opt.Dialects[i].New(p.opt.Correlator)
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
func (p *Pipeline) dialectFor(l Line) int {
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
		if d.Detect != nil && d.Detect(l) >= 2 {
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
	if p.err != nil {
		return p.err
	}
	p.stats.Lines++
	if l.Truncated {
		p.stats.Truncated++
	}
	ok := false
	if l.Program != "" {
		if i := p.dialectFor(l); i >= 0 {
			ok = p.correlator(i).Feed(l, p.emit)
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
	}
	// Flush idle messages once a minute of log time, on the minute, so
	// that where the scans fall does not depend on where reading began (a
	// Resumer replays from a later line than the first).
	if m := p.lastTime.Truncate(time.Minute); m.After(p.lastScan) {
		p.lastScan = m
		p.flush(p.lastTime.Add(-p.opt.FlushAfter))
	}
	p.drain(ctx)
	return p.err
}

// drain hands the records emitted so far to the Handler.
func (p *Pipeline) drain(ctx context.Context) {
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
}

func (p *Pipeline) unparsed(l Line) {
	prog := l.Program
	if _, ok := p.stats.Unparsed[prog]; !ok {
		prog = strings.Clone(prog)
	}
	p.stats.Unparsed[prog]++
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

// Run feeds every line of src, then flushes everything still open.
func (p *Pipeline) Run(ctx context.Context, src Source) error {
	var ferr error
	err := src.Lines(ctx, func(l Line) bool {
		ferr = p.Feed(ctx, l)
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return err
	}
	return p.Flush(context.WithoutCancel(ctx), time.Time{})
}

// Stats returns a copy of the counters.
func (p *Pipeline) Stats() Stats {
	s := p.stats
	s.Unparsed = make(map[string]int64, len(p.stats.Unparsed))
	for k, v := range p.stats.Unparsed {
		s.Unparsed[k] = v
	}
	s.PerMTA = make(map[string]int64, len(p.perMTA))
	for i, n := range p.perMTA {
		if n > 0 { // a dialect appears once it has understood a line
			s.PerMTA[p.opt.Dialects[i].Name] += n
		}
	}
	return s
}
