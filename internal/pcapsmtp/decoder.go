package pcapsmtp

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Stats count what a [Decoder] saw. Bytes is updated atomically while a
// file is read (for progress displays); read the rest after ReadFrom.
type Stats struct {
	Bytes       int64 // file bytes read
	Packets     int64
	OtherFrames int64 // packets that are not TCP over IPv4 or IPv6 (ARP, UDP, IP fragments, …)
	Undecodable int64 // packets whose headers could not be decoded
	Connections int64 // TCP connections that carried data
	Sessions    int64 // of those, SMTP sessions
	OtherTCP    int64 // of those, not SMTP (ignored)
	Messages    int64 // message records
	Encrypted   int64 // SMTP sessions whose content was encrypted (STARTTLS or implicit TLS)
	Incomplete  int64 // SMTP sessions the capture did not hold whole (gaps, cut by the capture)
}

// Summary is a one-line account for people, like smtplog ingest's.
func (s *Stats) Summary() string {
	return fmt.Sprintf("%d SMTP sessions (%d encrypted after STARTTLS or on an implicit-TLS port, %d incomplete), %d messages; ignored: %d other TCP connections, %d non-TCP and %d undecodable packets; %d packets",
		s.Sessions, s.Encrypted, s.Incomplete, s.Messages, s.OtherTCP, s.OtherFrames, s.Undecodable, s.Packets)
}

// ErrNotCapture means the input is neither a pcap nor a pcapng file.
var ErrNotCapture = errors.New("not a pcap or pcapng capture")

// Decoder reads captures and emits the records of the SMTP conversations
// in them. Connections may span files read one after another (a rotated
// capture); Close flushes those still open. It is not safe for concurrent
// use.
type Decoder struct {
	o     *Options
	stats Stats
	err   error // the first handler error

	asm       *assembler
	now       time.Time // capture time of the newest packet
	lastFlush time.Time
	ending    endKind
	seg       tcpSegment
}

// NewDecoder returns a Decoder; opts.Handler receives the records.
func NewDecoder(opts Options) *Decoder {
	d := &Decoder{o: opts.withDefaults(), ending: endIdle}
	d.asm = newAssembler(d)
	return d
}

// Stats returns the counts so far.
func (d *Decoder) Stats() *Stats { return &d.stats }

// countingReader counts the bytes read for progress.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	atomic.AddInt64(c.n, int64(n))
	return n, err
}

// open recognises pcap, pcapng and their gzip-compressed forms.
func open(r io.Reader) (packetReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%w (%d bytes)", ErrNotCapture, len(magic))
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
		if magic, err = br.Peek(4); err != nil {
			return nil, fmt.Errorf("%w (gzip of %d bytes)", ErrNotCapture, len(magic))
		}
	}
	switch {
	case magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a:
		r, err := newNgReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcapng: %w", err)
		}
		return r, nil
	case isPcapMagic(magic):
		r, err := newPcapReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcap: %w", err)
		}
		return r, nil
	}
	return nil, ErrNotCapture
}

func isPcapMagic(m []byte) bool {
	le := uint32(m[0]) | uint32(m[1])<<8 | uint32(m[2])<<16 | uint32(m[3])<<24
	be := uint32(m[3]) | uint32(m[2])<<8 | uint32(m[1])<<16 | uint32(m[0])<<24
	for _, v := range []uint32{0xa1b2c3d4, 0xa1b23c4d} {
		if le == v || be == v {
			return true
		}
	}
	return false
}

// ReadFrom reads one capture to its end. A capture that is not one, or
// ends in the middle of a packet, is an error; the records of what was
// read before are emitted all the same (Close flushes the connections
// still open). It stops early when ctx is cancelled or the handler fails.
func (d *Decoder) ReadFrom(ctx context.Context, r io.Reader) error {
	pr, err := open(countingReader{r, &d.stats.Bytes})
	if err != nil {
		return err
	}
	if lt := pr.linkType(); !linkSupported(lt) {
		return fmt.Errorf("link type %d is not supported (Ethernet, Linux cooked, loopback and raw IP are)", lt)
	}
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if d.err != nil {
			return d.err
		}
		data, ts, link, err := pr.next()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("truncated capture: it ends inside packet %d", d.stats.Packets+1)
			}
			return fmt.Errorf("after packet %d: %w", d.stats.Packets, err)
		}
		d.stats.Packets++
		d.packet(data, ts, link)
	}
}

func (d *Decoder) packet(data []byte, ts time.Time, link int) {
	if ts.After(d.now) {
		d.now = ts
	}
	switch decodePacket(link, data, &d.seg) {
	case pktTCP:
		d.asm.assemble(&d.seg, ts)
	case pktUndecodable:
		d.stats.Undecodable++
	default:
		d.stats.OtherFrames++
	}
	if d.now.Sub(d.lastFlush) >= time.Second {
		d.lastFlush = d.now
		d.asm.flush(d.now.Add(-d.o.GapWait), d.now.Add(-d.o.IdleTimeout))
	}
}

// Close flushes the connections still open, as cut by the end of the
// capture, and returns the first handler error.
func (d *Decoder) Close() error {
	d.ending = endCaptureEnded
	d.asm.flushAll()
	return d.err
}

// ---- reassembly glue

// newStream starts a stream for a connection's first packet. A packet
// without SYN and without data (the last ACK of a closed connection) starts
// none.
func (d *Decoder) newStream(tcp *tcpSegment, ts time.Time) *stream {
	if !tcp.syn && len(tcp.payload) == 0 {
		return nil
	}
	src, dst := tcp.src, tcp.dst
	s := &stream{d: d}
	ep := Endpoints{Client: src, Server: dst}
	known := tcp.syn
	switch {
	case tcp.syn && tcp.ack: // the server's SYN-ACK
		ep = Endpoints{Client: dst, Server: src}
		s.firstIsServer = true
	case !tcp.syn && likelyServerPort(src.Port(), dst.Port()):
		ep = Endpoints{Client: dst, Server: src}
		s.firstIsServer = true
	}
	s.conv = newConversation(d.o, ep, known, ts)
	return s
}

// likelyServerPort guesses, for a connection whose SYN is not in the
// capture, whether the first packet's sender (port a) is the server;
// the content corrects the guess.
func likelyServerPort(a, b uint16) bool {
	well := func(p uint16) bool { return p == 25 || p == 587 || p == 465 || p == 2525 || p == 24 }
	switch {
	case well(a) && !well(b):
		return true
	case well(b) && !well(a):
		return false
	}
	return a < b
}

type stream struct {
	d             *Decoder
	conv          *Conversation
	firstIsServer bool    // the reassembler's direction 0 (the first packet's) is our server's
	rst           [2]bool // indexed by the conversation's Dir
	done          bool
	counted       bool
}

func (s *stream) dir(rd int) Dir {
	d := FromClient
	if rd != 0 {
		d = FromServer
	}
	if s.firstIsServer {
		d = 1 - d
	}
	// The conversation may have swapped the roles on content.
	return d
}

// Accept sees every packet of the connection first; valid says whether
// the direction's next byte is known.
func (s *stream) Accept(tcp *tcpSegment, ts time.Time, dir int, valid bool, start *bool) bool {
	if s.done {
		return false
	}
	if !valid && !tcp.syn && !*start {
		// The capture missed this direction's SYN: start where it starts.
		if len(tcp.payload) > 0 || tcp.fin || tcp.rst {
			*start = true
			s.conv.MarkMidStream(s.convDir(dir))
		}
	}
	if tcp.rst {
		d := s.convDir(dir)
		s.rst[d] = true
		if s.conv.halves[d].ended {
			// The reassembler ignores a RST after this side's FIN, yet it
			// ends the connection (a client that closed and was then sent
			// more, as after a TLS close_notify).
			s.conv.End(d, ts, true)
			s.finish(endClosed)
			return false
		}
	}
	return true
}

// convDir maps a reassembly direction to the conversation's, following a
// swap of roles the conversation made on content.
func (s *stream) convDir(rd int) Dir {
	d := s.dir(rd)
	if s.conv.swapped() {
		d = 1 - d
	}
	return d
}

// ReassembledSG receives the next bytes of direction rd in order, after
// skip missing bytes (-1: unknown), captured at ts; end when the direction
// ended.
func (s *stream) ReassembledSG(rd int, skip int, data []byte, end bool, ts time.Time) {
	if s.done {
		return
	}
	c := s.conv
	d := s.convDir(rd)
	if skip > 0 {
		c.Gap(d, ts, skip)
	}
	if n := len(data); n > 0 {
		if !s.counted {
			s.counted = true
			s.d.stats.Connections++
		}
		c.Data(s.convDir(rd), ts, data)
	}
	if end {
		c.End(s.convDir(rd), ts, s.rst[s.convDir(rd)])
	}
	if c.Done() {
		s.finish(endClosed)
	}
}

// ReassemblyComplete is called when both directions ended or the
// connection was flushed.
func (s *stream) ReassemblyComplete() {
	s.finish(s.d.ending)
}

func (s *stream) finish(how endKind) {
	if s.done {
		return
	}
	s.done = true
	c := s.conv
	c.finish(how)
	st := &s.d.stats
	switch {
	case c.verdict > 0:
		st.Sessions++
		st.Messages += int64(c.messages)
		if c.tlsUsed {
			st.Encrypted++
		}
		if slicesContains(c.flags, FlagIncomplete) {
			st.Incomplete++
		}
	case s.counted:
		st.OtherTCP++
	}
	if err := c.Err(); err != nil && s.d.err == nil {
		s.d.err = err
	}
	s.conv = nil
}

func slicesContains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
