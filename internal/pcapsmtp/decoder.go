package pcapsmtp

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/gopacket/gopacket/reassembly"
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

	pool      *reassembly.StreamPool
	asm       *reassembly.Assembler
	now       time.Time // capture time of the newest packet
	lastFlush time.Time
	ending    endKind

	eth    layers.Ethernet
	dot1q  layers.Dot1Q
	sll    layers.LinuxSLL
	sll2   layers.LinuxSLL2
	loop   layers.Loopback
	ip4    layers.IPv4
	ip6    layers.IPv6
	tcp    layers.TCP
	parser *gopacket.DecodingLayerParser
	types  []gopacket.LayerType
}

// NewDecoder returns a Decoder; opts.Handler receives the records.
func NewDecoder(opts Options) *Decoder {
	d := &Decoder{o: opts.withDefaults(), ending: endIdle}
	d.pool = reassembly.NewStreamPool(factory{d})
	d.asm = reassembly.NewAssembler(d.pool)
	// Bounded memory for out-of-order segments (pages of 1900 bytes).
	d.asm.MaxBufferedPagesPerConnection = 4096
	d.asm.MaxBufferedPagesTotal = 64 << 10
	return d
}

// Stats returns the counts so far.
func (d *Decoder) Stats() *Stats { return &d.stats }

type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

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
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{})
		if err != nil {
			return nil, fmt.Errorf("pcapng: %w", err)
		}
		return r, nil
	case isPcapMagic(magic):
		r, err := pcapgo.NewReader(br)
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

func (d *Decoder) firstLayer(lt layers.LinkType) (gopacket.LayerType, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, true
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, true
	case layers.LinkTypeLinuxSLL2:
		return layers.LayerTypeLinuxSLL2, true
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, true
	case layers.LinkTypeRaw, layers.LinkTypeIPv4:
		return layers.LayerTypeIPv4, true
	case layers.LinkTypeIPv6:
		return layers.LayerTypeIPv6, true
	}
	return 0, false
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
	lt := pr.LinkType()
	first, ok := d.firstLayer(lt)
	if !ok {
		return fmt.Errorf("link type %v is not supported (Ethernet, Linux cooked, loopback and raw IP are)", lt)
	}
	d.parser = gopacket.NewDecodingLayerParser(first,
		&d.eth, &d.dot1q, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6, &d.tcp)
	d.parser.IgnoreUnsupported = true
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if d.err != nil {
			return d.err
		}
		data, ci, err := pr.ZeroCopyReadPacketData()
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
		d.packet(data, ci)
	}
}

func (d *Decoder) packet(data []byte, ci gopacket.CaptureInfo) {
	if ci.Timestamp.After(d.now) {
		d.now = ci.Timestamp
	}
	err := d.parser.DecodeLayers(data, &d.types)
	var netFlow gopacket.Flow
	hasTCP, hasIP := false, false
	for _, t := range d.types {
		switch t {
		case layers.LayerTypeIPv4:
			netFlow, hasIP = d.ip4.NetworkFlow(), true
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				hasIP = false // fragments are not reassembled
			}
		case layers.LayerTypeIPv6:
			netFlow, hasIP = d.ip6.NetworkFlow(), true
		case layers.LayerTypeTCP:
			hasTCP = true
		}
	}
	switch {
	case hasTCP && hasIP:
		ctx := assemblerContext(ci)
		d.asm.AssembleWithContext(netFlow, &d.tcp, &ctx)
	case err != nil && !hasIP:
		d.stats.Undecodable++
	default:
		d.stats.OtherFrames++
	}
	if d.now.Sub(d.lastFlush) >= time.Second {
		d.lastFlush = d.now
		d.asm.FlushWithOptions(reassembly.FlushOptions{T: d.now.Add(-d.o.GapWait), TC: d.now.Add(-d.o.IdleTimeout)})
	}
}

// Close flushes the connections still open, as cut by the end of the
// capture, and returns the first handler error.
func (d *Decoder) Close() error {
	d.ending = endCaptureEnded
	d.asm.FlushAll()
	return d.err
}

type assemblerContext gopacket.CaptureInfo

func (a *assemblerContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*a) }

// ---- reassembly glue

type factory struct{ d *Decoder }

// New starts a stream for a connection's first packet. A packet without
// SYN and without data (the last ACK of a closed connection, which the
// reassembler would otherwise open an empty stream for) starts none.
func (f factory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	if !tcp.SYN && len(tcp.Payload) == 0 {
		return nil
	}
	src := endpoint(netFlow.Src(), tcpFlow.Src())
	dst := endpoint(netFlow.Dst(), tcpFlow.Dst())
	s := &stream{d: f.d}
	ep := Endpoints{Client: src, Server: dst}
	known := tcp.SYN
	switch {
	case tcp.SYN && tcp.ACK: // the server's SYN-ACK
		ep = Endpoints{Client: dst, Server: src}
		s.firstIsServer = true
	case !tcp.SYN && likelyServerPort(src.Port(), dst.Port()):
		ep = Endpoints{Client: dst, Server: src}
		s.firstIsServer = true
	}
	s.conv = newConversation(f.d.o, ep, known, ac.GetCaptureInfo().Timestamp)
	return s
}

func endpoint(n, t gopacket.Endpoint) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Raw())
	var port uint16
	if r := t.Raw(); len(r) == 2 {
		port = uint16(r[0])<<8 | uint16(r[1])
	}
	return netip.AddrPortFrom(a, port)
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
	firstIsServer bool    // the reassembler's client-to-server direction is our server's
	rst           [2]bool // indexed by the conversation's Dir
	done          bool
	counted       bool
}

func (s *stream) dir(rd reassembly.TCPFlowDirection) Dir {
	d := FromClient
	if rd != reassembly.TCPDirClientToServer {
		d = FromServer
	}
	if s.firstIsServer {
		d = 1 - d
	}
	// The conversation may have swapped the roles on content.
	return d
}

func (s *stream) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	if s.done {
		return false
	}
	if nextSeq == -1 && !tcp.SYN && !*start {
		// The capture missed this direction's SYN: start where it starts.
		if len(tcp.Payload) > 0 || tcp.FIN || tcp.RST {
			*start = true
			s.conv.MarkMidStream(s.convDir(dir))
		}
	}
	if tcp.RST {
		d := s.convDir(dir)
		s.rst[d] = true
		if s.conv.halves[d].ended {
			// The reassembler ignores a RST after this side's FIN, yet it
			// ends the connection (a client that closed and was then sent
			// more, as after a TLS close_notify).
			s.conv.End(d, ci.Timestamp, true)
			s.finish(endClosed)
			return false
		}
	}
	return true
}

// convDir maps a reassembly direction to the conversation's, following a
// swap of roles the conversation made on content.
func (s *stream) convDir(rd reassembly.TCPFlowDirection) Dir {
	d := s.dir(rd)
	if s.conv.swapped() {
		d = 1 - d
	}
	return d
}

func (s *stream) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if s.done {
		return
	}
	rd, _, end, skip := sg.Info()
	n, _ := sg.Lengths()
	var ts time.Time
	if ac != nil {
		ts = ac.GetCaptureInfo().Timestamp
	} else {
		ts = sg.CaptureInfo(0).Timestamp
	}
	c := s.conv
	d := s.convDir(rd)
	if skip > 0 {
		c.Gap(d, ts, skip)
	}
	if n > 0 {
		if !s.counted {
			s.counted = true
			s.d.stats.Connections++
		}
		c.Data(s.convDir(rd), ts, sg.Fetch(n))
	}
	if end {
		c.End(s.convDir(rd), ts, s.rst[s.convDir(rd)])
	}
	if c.Done() {
		s.finish(endClosed)
	}
}

func (s *stream) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	s.finish(s.d.ending)
	return true
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
