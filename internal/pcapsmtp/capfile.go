package pcapsmtp

// The capture file formats, the packet headers and TCP reassembly are
// written by hand here rather than taken from gopacket: its layers package
// (which its pcapgo and reassembly packages import) fills huge pointerful
// global tables at init, which cost every smtplog command, even serve, about
// 12 MB of memory. Tests still use gopacket to write captures, which
// cross-checks this code.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// Link types (LINKTYPE_* of the pcap and pcapng formats).
const (
	linkNull     = 0
	linkEthernet = 1
	linkRaw      = 101
	linkLoop     = 108
	linkLinuxSLL = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
)

func linkSupported(lt int) bool {
	switch lt {
	case linkNull, linkEthernet, linkRaw, linkLoop, linkLinuxSLL, linkIPv4, linkIPv6, linkSLL2:
		return true
	}
	return false
}

// maxPacket bounds the captured length of one packet (larger snap lengths
// than any link uses are garbage).
const maxPacket = 256 << 10

// packetReader reads the packets of one capture file.
type packetReader interface {
	// next returns the next packet, valid until the following call, its
	// capture time and its link type; io.EOF at a clean end,
	// io.ErrUnexpectedEOF when the file ends inside a record.
	next() (data []byte, ts time.Time, link int, err error)
	linkType() int
}

// readFull is io.ReadFull with an EOF after some bytes reported as
// io.ErrUnexpectedEOF and an EOF before any as io.EOF.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	return err
}

// ---- pcap

type pcapReader struct {
	r     *bufio.Reader
	bo    binary.ByteOrder
	nanos bool
	link  int
	snap  int
	hdr   [16]byte
	buf   []byte
}

func newPcapReader(r *bufio.Reader) (*pcapReader, error) {
	var h [24]byte
	if err := readFull(r, h[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("file header: %w", err)
	}
	p := &pcapReader{r: r}
	switch m := binary.LittleEndian.Uint32(h[:4]); m {
	case 0xa1b2c3d4:
		p.bo = binary.LittleEndian
	case 0xa1b23c4d:
		p.bo, p.nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		p.bo = binary.BigEndian
	case 0x4d3cb2a1:
		p.bo, p.nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("unknown magic %08x", m)
	}
	p.snap = int(p.bo.Uint32(h[16:20]))
	p.link = int(p.bo.Uint32(h[20:24]) & 0xffff)
	return p, nil
}

func (p *pcapReader) linkType() int { return p.link }

func (p *pcapReader) next() ([]byte, time.Time, int, error) {
	if err := readFull(p.r, p.hdr[:]); err != nil {
		return nil, time.Time{}, 0, err
	}
	sec := int64(p.bo.Uint32(p.hdr[0:4]))
	frac := int64(p.bo.Uint32(p.hdr[4:8]))
	n := int(p.bo.Uint32(p.hdr[8:12]))
	if n > max(p.snap, maxPacket) || n < 0 {
		return nil, time.Time{}, 0, fmt.Errorf("capture length %d exceeds the snap length %d", n, p.snap)
	}
	if !p.nanos {
		frac *= 1000
	}
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	p.buf = p.buf[:n]
	if err := readFull(p.r, p.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, time.Time{}, 0, err
	}
	return p.buf, time.Unix(sec, frac).UTC(), p.link, nil
}

// ---- pcapng

const (
	ngSHB = 0x0a0d0d0a
	ngIDB = 1
	ngSPB = 3
	ngEPB = 6
)

// maxBlock bounds a pcapng block.
const maxBlock = 16 << 20

type ngIface struct {
	link   int
	snap   int
	pow10  int // timestamps in 10^-pow10 s, or -1 for 2^-pow2
	pow2   uint
	offset int64 // if_tsoffset, seconds
}

func (i *ngIface) time(t uint64) time.Time {
	var sec, nsec uint64
	if i.pow10 >= 0 {
		u := uint64(1)
		for k := 0; k < i.pow10; k++ {
			u *= 10
		}
		sec, nsec = t/u, t%u
		switch {
		case i.pow10 <= 9:
			for k := i.pow10; k < 9; k++ {
				nsec *= 10
			}
		default:
			for k := 9; k < i.pow10; k++ {
				nsec /= 10
			}
		}
	} else {
		sec = t >> i.pow2
		rem := t & (1<<i.pow2 - 1)
		hi, lo := bits.Mul64(rem, 1e9)
		if i.pow2 == 0 {
			nsec = 0
		} else {
			nsec = lo>>i.pow2 | hi<<(64-i.pow2)
		}
	}
	return time.Unix(int64(sec)+i.offset, int64(nsec)).UTC()
}

type ngReader struct {
	r      *bufio.Reader
	bo     binary.ByteOrder
	ifaces []ngIface
	buf    []byte
	first  int // link type of the first interface
}

var errNgFormat = errors.New("malformed pcapng block")

func newNgReader(r *bufio.Reader) (*ngReader, error) {
	n := &ngReader{r: r}
	// The section header and the blocks up to the first interface.
	for len(n.ifaces) == 0 {
		typ, body, err := n.block()
		if err != nil {
			if err == io.EOF {
				err = errors.New("no interface description block")
			}
			return nil, err
		}
		switch typ {
		case ngEPB, ngSPB:
			return nil, errors.New("packet before any interface description block")
		}
		_ = body
	}
	n.first = n.ifaces[0].link
	return n, nil
}

func (n *ngReader) linkType() int { return n.first }

// block reads one block; it handles section headers and interface
// descriptions itself.
func (n *ngReader) block() (uint32, []byte, error) {
	var h [8]byte
	if err := readFull(n.r, h[:]); err != nil {
		return 0, nil, err
	}
	if binary.LittleEndian.Uint32(h[:4]) == ngSHB {
		var bom [4]byte
		if err := readFull(n.r, bom[:]); err != nil {
			return 0, nil, io.ErrUnexpectedEOF
		}
		switch binary.LittleEndian.Uint32(bom[:]) {
		case 0x1a2b3c4d:
			n.bo = binary.LittleEndian
		case 0x4d3c2b1a:
			n.bo = binary.BigEndian
		default:
			return 0, nil, fmt.Errorf("%w: unknown byte-order magic", errNgFormat)
		}
		n.ifaces = n.ifaces[:0]
		l := n.bo.Uint32(h[4:8])
		if l < 28 || l%4 != 0 || l > maxBlock {
			return 0, nil, fmt.Errorf("%w: section header length %d", errNgFormat, l)
		}
		if _, err := n.body(int(l) - 16); err != nil {
			return 0, nil, err
		}
		return ngSHB, nil, n.trailer(l)
	}
	if n.bo == nil {
		return 0, nil, fmt.Errorf("%w: no section header", errNgFormat)
	}
	typ, l := n.bo.Uint32(h[:4]), n.bo.Uint32(h[4:8])
	if l < 12 || l%4 != 0 || l > maxBlock {
		return 0, nil, fmt.Errorf("%w: block length %d", errNgFormat, l)
	}
	body, err := n.body(int(l) - 12)
	if err != nil {
		return 0, nil, err
	}
	if err := n.trailer(l); err != nil {
		return 0, nil, err
	}
	if typ == ngIDB {
		if err := n.iface(body); err != nil {
			return 0, nil, err
		}
	}
	return typ, body, nil
}

func (n *ngReader) body(l int) ([]byte, error) {
	if cap(n.buf) < l {
		n.buf = make([]byte, l)
	}
	n.buf = n.buf[:l]
	if err := readFull(n.r, n.buf); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return n.buf, nil
}

func (n *ngReader) trailer(l uint32) error {
	var t [4]byte
	if err := readFull(n.r, t[:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	if n.bo.Uint32(t[:]) != l {
		return fmt.Errorf("%w: block lengths differ", errNgFormat)
	}
	return nil
}

func (n *ngReader) iface(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: short interface description", errNgFormat)
	}
	i := ngIface{link: int(n.bo.Uint16(b[0:2])), snap: int(n.bo.Uint32(b[4:8])), pow10: 6}
	opts := b[8:]
	for len(opts) >= 4 {
		code, l := n.bo.Uint16(opts[0:2]), int(n.bo.Uint16(opts[2:4]))
		opts = opts[4:]
		if code == 0 || l > len(opts) {
			break
		}
		v := opts[:l]
		switch {
		case code == 9 && l >= 1: // if_tsresol
			if v[0]&0x80 == 0 {
				if v[0] > 19 {
					return fmt.Errorf("%w: timestamp resolution 10^-%d", errNgFormat, v[0])
				}
				i.pow10 = int(v[0])
			} else {
				if v[0]&0x7f > 63 {
					return fmt.Errorf("%w: timestamp resolution 2^-%d", errNgFormat, v[0]&0x7f)
				}
				i.pow10, i.pow2 = -1, uint(v[0]&0x7f)
			}
		case code == 14 && l >= 8: // if_tsoffset
			i.offset = int64(n.bo.Uint64(v))
		}
		opts = opts[(l+3)&^3:]
	}
	n.ifaces = append(n.ifaces, i)
	return nil
}

func (n *ngReader) next() ([]byte, time.Time, int, error) {
	for {
		typ, b, err := n.block()
		if err != nil {
			return nil, time.Time{}, 0, err
		}
		switch typ {
		case ngEPB:
			if len(b) < 20 {
				return nil, time.Time{}, 0, fmt.Errorf("%w: short enhanced packet block", errNgFormat)
			}
			id := n.bo.Uint32(b[0:4])
			if int64(id) >= int64(len(n.ifaces)) {
				return nil, time.Time{}, 0, fmt.Errorf("%w: packet of unknown interface %d", errNgFormat, id)
			}
			ts := uint64(n.bo.Uint32(b[4:8]))<<32 | uint64(n.bo.Uint32(b[8:12]))
			cl := n.bo.Uint32(b[12:16])
			if uint64(cl) > uint64(len(b)-20) {
				return nil, time.Time{}, 0, fmt.Errorf("%w: captured length %d exceeds the block", errNgFormat, cl)
			}
			i := &n.ifaces[id]
			return b[20 : 20+cl], i.time(ts), i.link, nil
		case ngSPB:
			if len(b) < 4 {
				return nil, time.Time{}, 0, fmt.Errorf("%w: short simple packet block", errNgFormat)
			}
			if len(n.ifaces) == 0 {
				return nil, time.Time{}, 0, fmt.Errorf("%w: packet of unknown interface 0", errNgFormat)
			}
			l := min(uint64(n.bo.Uint32(b[0:4])), uint64(len(b)-4))
			if s := n.ifaces[0].snap; s > 0 {
				l = min(l, uint64(s))
			}
			return b[4 : 4+l], time.Time{}, n.ifaces[0].link, nil
		}
	}
}
