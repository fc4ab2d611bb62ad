package pcapsmtp

import (
	"encoding/binary"
	"net/netip"
)

// tcpSegment is what the reassembler needs of one TCP packet.
type tcpSegment struct {
	src, dst           netip.AddrPort
	seq                uint32
	syn, ack, fin, rst bool
	payload            []byte
}

// What a packet is.
const (
	pktTCP = iota
	pktOther
	pktUndecodable
)

// decodePacket decodes the link, IP and TCP headers of a packet into t.
// A packet whose link or IP header cannot be decoded is undecodable; one
// that is not TCP over IP (ARP, UDP, IP fragments, IPv6 fragments…) or
// whose TCP header is broken is other.
func decodePacket(link int, b []byte, t *tcpSegment) int {
	var et uint16
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return pktUndecodable
		}
		et, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
	case linkLinuxSLL:
		if len(b) < 16 {
			return pktUndecodable
		}
		et, b = binary.BigEndian.Uint16(b[14:16]), b[16:]
	case linkSLL2:
		if len(b) < 20 {
			return pktUndecodable
		}
		et, b = binary.BigEndian.Uint16(b[0:2]), b[20:]
	case linkNull, linkLoop:
		if len(b) < 4 {
			return pktUndecodable
		}
		fam := binary.BigEndian.Uint32(b[:4])
		if fam > 0xff {
			fam = binary.LittleEndian.Uint32(b[:4])
		}
		b = b[4:]
		switch fam {
		case 2:
			et = 0x0800
		case 24, 28, 30:
			et = 0x86dd
		default:
			if fam > 0xff {
				return pktUndecodable
			}
			return pktOther
		}
	case linkRaw:
		if len(b) < 1 {
			return pktUndecodable
		}
		et = 0x0800
		if b[0]>>4 == 6 {
			et = 0x86dd
		}
	case linkIPv4:
		et = 0x0800
	case linkIPv6:
		et = 0x86dd
	default:
		return pktUndecodable
	}
	// VLAN tags (802.1Q, 802.1ad and the older QinQ type).
	for et == 0x8100 || et == 0x88a8 || et == 0x9100 {
		if len(b) < 4 {
			return pktUndecodable
		}
		et, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
	}
	var proto byte
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return pktUndecodable
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if total == 0 { // segmentation offload
			total = len(b)
		}
		if ihl < 20 || total < ihl || ihl > len(b) {
			return pktUndecodable
		}
		if total < len(b) {
			b = b[:total] // link padding
		}
		if b[6]&0x20 != 0 || binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return pktOther // fragments are not reassembled
		}
		proto = b[9]
		src, _ := netip.AddrFromSlice(b[12:16])
		dst, _ := netip.AddrFromSlice(b[16:20])
		t.src, t.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		b = b[ihl:]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return pktUndecodable
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		proto = b[6]
		src, _ := netip.AddrFromSlice(b[8:24])
		dst, _ := netip.AddrFromSlice(b[24:40])
		t.src, t.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		b = b[40:]
		if plen != 0 && plen < len(b) {
			b = b[:plen]
		}
		// Extension headers.
		for {
			var l int
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < 2 {
					return pktOther
				}
				l = (int(b[1]) + 1) * 8
			case 51: // authentication header
				if len(b) < 2 {
					return pktOther
				}
				l = (int(b[1]) + 2) * 4
			default:
				l = -1
			}
			if l < 0 {
				break
			}
			if l > len(b) {
				return pktOther
			}
			proto, b = b[0], b[l:]
		}
	default:
		return pktOther
	}
	if proto != 6 || len(b) < 20 {
		return pktOther // not TCP (a fragment header, UDP, …) or a broken header
	}
	off := int(b[12]>>4) * 4
	if off < 20 || off > len(b) {
		return pktOther
	}
	t.src = netip.AddrPortFrom(t.src.Addr(), binary.BigEndian.Uint16(b[0:2]))
	t.dst = netip.AddrPortFrom(t.dst.Addr(), binary.BigEndian.Uint16(b[2:4]))
	t.seq = binary.BigEndian.Uint32(b[4:8])
	f := b[13]
	t.fin, t.syn, t.rst, t.ack = f&0x01 != 0, f&0x02 != 0, f&0x04 != 0, f&0x10 != 0
	t.payload = b[off:]
	return pktTCP
}
