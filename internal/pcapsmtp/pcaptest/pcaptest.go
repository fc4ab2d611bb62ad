// Package pcaptest writes captures for tests without privileges: synthetic
// Ethernet/IPv4/IPv6/TCP packets with correct sequence and acknowledgement
// numbers, SYN and FIN, around bytes that really crossed a connection
// ([Forwarder]) or that a test scripts ([Conn]). It also reads a capture
// back into packets so tests can drop, reorder or duplicate them.
package pcaptest

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// MSS is the largest payload of one synthetic segment.
const MSS = 1460

// Packet is one captured frame.
type Packet struct {
	CI   gopacket.CaptureInfo
	Data []byte
}

// Writer writes packets to a pcap file. It is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	w   *pcapgo.Writer
	err error
	// Packets, when not nil, also receives every packet written.
	Packets *[]Packet
}

// NewWriter writes a pcap file header (Ethernet, nanosecond timestamps) to w.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	return &Writer{w: pw}, nil
}

// Err is the first write error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) write(ts time.Time, data []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}
	w.err = w.w.WritePacket(ci, data)
	if w.Packets != nil {
		*w.Packets = append(*w.Packets, Packet{CI: ci, Data: data})
	}
}

// Conn is one synthetic TCP connection.
type Conn struct {
	w      *Writer
	ep     [2]netip.AddrPort // client, server
	seq    [2]uint32         // next sequence number of each side
	mu     sync.Mutex
	closed [2]bool
}

// Conn starts a connection from client to server: SYN, SYN-ACK, ACK at ts.
func (w *Writer) Conn(ts time.Time, client, server netip.AddrPort) *Conn {
	c := &Conn{w: w, ep: [2]netip.AddrPort{client, server}, seq: [2]uint32{1000, 5000000}}
	c.segment(ts, 0, flags{syn: true}, nil)
	c.seq[0]++
	c.segment(ts, 1, flags{syn: true, ack: true}, nil)
	c.seq[1]++
	c.segment(ts, 0, flags{ack: true}, nil)
	return c
}

type flags struct{ syn, ack, fin, rst, psh bool }

// Send writes data from side (0 client, 1 server) in segments of at most
// MSS bytes, each acknowledged by the other side.
func (c *Conn) Send(ts time.Time, side int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(data) > 0 {
		n := min(len(data), MSS)
		c.segment(ts, side, flags{ack: true, psh: true}, data[:n])
		c.seq[side] += uint32(n)
		c.segment(ts, 1-side, flags{ack: true}, nil)
		data = data[n:]
	}
}

// Close sends FIN from side, once.
func (c *Conn) Close(ts time.Time, side int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed[side] {
		return
	}
	c.closed[side] = true
	c.segment(ts, side, flags{fin: true, ack: true}, nil)
	c.seq[side]++
	c.segment(ts, 1-side, flags{ack: true}, nil)
}

// Reset sends RST from side.
func (c *Conn) Reset(ts time.Time, side int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = [2]bool{true, true}
	c.segment(ts, side, flags{rst: true, ack: true}, nil)
}

var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macServer = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func (c *Conn) segment(ts time.Time, side int, f flags, payload []byte) {
	src, dst := c.ep[side], c.ep[1-side]
	eth := &layers.Ethernet{SrcMAC: macClient, DstMAC: macServer, EthernetType: layers.EthernetTypeIPv4}
	if side == 1 {
		eth.SrcMAC, eth.DstMAC = macServer, macClient
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: c.seq[side], SYN: f.syn, FIN: f.fin, RST: f.rst, PSH: f.psh, ACK: f.ack,
		Window: 65535,
	}
	if f.ack {
		tcp.Ack = c.seq[1-side]
	}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if src.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v6, v6
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ipl, tcp, gopacket.Payload(payload))
	if err != nil {
		c.w.mu.Lock()
		if c.w.err == nil {
			c.w.err = err
		}
		c.w.mu.Unlock()
		return
	}
	c.w.write(ts, append([]byte(nil), buf.Bytes()...))
}

// Forwarder accepts TCP connections and forwards each to Target,
// recording what crosses it into a Writer as if captured between the
// client and the target.
type Forwarder struct {
	Target string
	w      *Writer
	ln     net.Listener
	wg     sync.WaitGroup
}

// NewForwarder listens on 127.0.0.1 at a free port.
func NewForwarder(w *Writer, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Forwarder{Target: target, w: w, ln: ln}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr is the address clients connect to.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Close stops accepting and waits until every forwarded connection ended.
func (f *Forwarder) Close() error {
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		cc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.forward(cc)
		}()
	}
}

func (f *Forwarder) forward(cc net.Conn) {
	defer cc.Close()
	sc, err := net.DialTimeout("tcp", f.Target, 10*time.Second)
	if err != nil {
		return
	}
	defer sc.Close()
	client := cc.RemoteAddr().(*net.TCPAddr).AddrPort()
	server := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
	conn := f.w.Conn(time.Now(), client, server)
	var wg sync.WaitGroup
	pump := func(dst, src net.Conn, side int) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				// Record before forwarding, so the capture orders a
				// request before its answer.
				conn.Send(time.Now(), side, buf[:n])
				if _, werr := dst.Write(buf[:n]); werr != nil {
					conn.Reset(time.Now(), 1-side)
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					conn.Close(time.Now(), side)
				} else {
					conn.Reset(time.Now(), side)
				}
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				return
			}
		}
	}
	wg.Add(2)
	go pump(sc, cc, 0)
	go pump(cc, sc, 1)
	wg.Wait()
}

// ReadAll reads every packet of a pcap file.
func ReadAll(r io.Reader) ([]Packet, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, err
	}
	var out []Packet
	for {
		data, ci, err := pr.ReadPacketData()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, Packet{CI: ci, Data: data})
	}
}

// WriteAll writes packets as a pcap file (Ethernet).
func WriteAll(w io.Writer, ps []Packet) error {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, p := range ps {
		if err := pw.WritePacket(p.CI, p.Data); err != nil {
			return err
		}
	}
	return nil
}

// Payload returns the TCP payload of an Ethernet frame, or nil.
func Payload(p Packet) []byte {
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.NoCopy)
	if t, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		return t.Payload
	}
	return nil
}
