package pcapsmtp

import (
	"crypto/tls"
	"encoding/binary"
	"strings"

	"github.com/smtplog/smtplog/internal/record"
)

// The cleartext start of a TLS handshake, read from the two byte streams
// of a capture: the ClientHello (server name, versions offered), the
// ServerHello (version and cipher suite chosen) and any alert sent before
// the records are encrypted.
//
// No library parses a ClientHello or ServerHello from raw bytes without a
// live connection (crypto/tls shows them only to the two ends of a
// handshake in progress), so the record layer (RFC 8446 §5.1, RFC 5246
// §6.2) and the two hello messages (RFC 8446 §4.1.2-4.1.3, RFC 5246
// §7.4.1) are parsed here, every length checked against what is there.
// Handshake messages may span records and records may span segments;
// what one direction may make the parser hold is bounded by
// maxHandshakeBuf. Nothing is guessed: a gap, a capture that started
// mid-connection or bytes that are not TLS end the reading of that
// direction, and what it did not show stays empty.

const (
	// maxHandshakeBuf bounds the bytes one direction may make the parser
	// hold: a record waiting for its end plus handshake messages waiting
	// for theirs.
	maxHandshakeBuf = 64 << 10
	// maxTLSRecord is the largest record RFC 5246 §6.2.3 allows
	// (ciphertext: 2^14 + 2048).
	maxTLSRecord = 1<<14 + 2048

	recChangeCipherSpec = 20
	recAlert            = 21
	recHandshake        = 22
	recApplicationData  = 23

	hsClientHello = 1
	hsServerHello = 2

	extServerName        = 0
	extSupportedVersions = 43
)

// helloRetryRequest is the random of a ServerHello that is a
// HelloRetryRequest (RFC 8446 §4.1.3).
var helloRetryRequest = [32]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// tlsHandshake follows the cleartext part of one connection's handshake.
type tlsHandshake struct {
	half [2]tlsDir

	sni         string
	offered     []uint16
	clientHello bool
	serverHello bool // a ServerHello that is not a HelloRetryRequest
	retry       bool // a HelloRetryRequest was seen
	version     uint16
	cipher      uint16
	alert       string
}

// tlsDir is one direction's parsing state.
type tlsDir struct {
	rec  []byte // record-layer bytes not parsed yet
	hs   []byte // handshake bytes of a message not complete yet
	done bool   // nothing more can be read from this direction
}

// feed parses bytes sent in direction d.
func (t *tlsHandshake) feed(d Dir, b []byte) {
	h := &t.half[d]
	for len(b) > 0 && !h.done {
		n := min(len(b), maxHandshakeBuf-len(h.rec)-len(h.hs))
		if n <= 0 {
			t.stop(d) // over the limit: give up rather than hold more
			return
		}
		h.rec = append(h.rec, b[:n]...)
		b = b[n:]
		t.records(d)
	}
	if h.done {
		h.rec, h.hs = nil, nil
	}
}

// stop ends the reading of direction d (a gap, a limit, bytes that are
// not TLS, or encryption from here on).
func (t *tlsHandshake) stop(d Dir) {
	t.half[d] = tlsDir{done: true}
}

// records parses the complete records buffered for direction d.
func (t *tlsHandshake) records(d Dir) {
	h := &t.half[d]
	off := 0
	for !h.done {
		r := h.rec[off:]
		if len(r) < 5 {
			break
		}
		typ, major := r[0], r[1]
		n := int(binary.BigEndian.Uint16(r[3:5]))
		if major != 3 || typ < recChangeCipherSpec || typ > recApplicationData || n > maxTLSRecord {
			t.stop(d) // not TLS (or no longer in step)
			return
		}
		if len(r) < 5+n {
			break
		}
		off += 5 + n
		t.record(d, typ, r[5:5+n])
	}
	if h.done {
		return
	}
	h.rec = h.rec[:copy(h.rec, h.rec[off:])]
}

// record handles one record of direction d.
func (t *tlsHandshake) record(d Dir, typ byte, frag []byte) {
	h := &t.half[d]
	switch typ {
	case recApplicationData:
		// Encrypted (TLS 1.3 disguises every protected record so).
		t.stop(d)
	case recChangeCipherSpec:
		// From here this direction is encrypted (TLS 1.2), except for the
		// dummy ChangeCipherSpec of TLS 1.3's middlebox compatibility mode
		// (RFC 8446 §D.4), which a server sends after a HelloRetryRequest
		// and a client before its second ClientHello.
		if !(t.retry && !t.serverHello) {
			t.stop(d)
		}
	case recAlert:
		// Only a cleartext alert has this type and two bytes: level and
		// description (RFC 8446 §6).
		if len(frag) == 2 && t.alert == "" {
			who := "client"
			if d == FromServer {
				who = "server"
			}
			desc := strings.TrimPrefix(tls.AlertError(frag[1]).Error(), "tls: ")
			t.alert = who + " sent alert: " + desc
		}
	case recHandshake:
		if (d == FromClient && t.clientHello) || (d == FromServer && t.serverHello) {
			// Past the hello: nothing more is needed from these messages;
			// only an alert or the change to encryption is watched for.
			return
		}
		h.hs = append(h.hs, frag...)
		t.messages(d)
	}
}

// messages parses the complete handshake messages buffered for direction d.
func (t *tlsHandshake) messages(d Dir) {
	h := &t.half[d]
	for len(h.hs) >= 4 && !h.done {
		typ := h.hs[0]
		n := int(h.hs[1])<<16 | int(h.hs[2])<<8 | int(h.hs[3])
		if n > maxHandshakeBuf {
			t.stop(d)
			return
		}
		if len(h.hs) < 4+n {
			return
		}
		body := h.hs[4 : 4+n]
		switch {
		case d == FromClient && typ == hsClientHello && !t.clientHello:
			t.parseClientHello(body)
			t.clientHello = true
		case d == FromServer && typ == hsServerHello:
			t.parseServerHello(body)
		}
		h.hs = h.hs[4+n:]
		if (d == FromClient && t.clientHello) || (d == FromServer && t.serverHello) {
			h.hs = nil
			if d == FromServer && t.version >= tls.VersionTLS13 {
				// Everything after a TLS 1.3 ServerHello is encrypted.
				t.stop(d)
			}
			return
		}
	}
	if len(h.hs) == 0 {
		h.hs = nil
	}
}

// reader reads big-endian fields with bounds checks; after a short read
// ok is false and every later read returns zeros.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) bytes(n int) []byte {
	if !r.ok || n < 0 || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

// vec reads a vector with a length prefix of lenBytes (1 or 2) bytes.
func (r *reader) vec(lenBytes int) reader {
	var n int
	if lenBytes == 1 {
		n = r.u8()
	} else {
		n = r.u16()
	}
	return reader{b: r.bytes(n), ok: r.ok}
}

// extensions calls f with each extension of a hello's extension block,
// which may be absent (RFC 5246 §7.4.1.2).
func extensions(r *reader, f func(typ int, data reader)) {
	if !r.ok || len(r.b) == 0 {
		return
	}
	exts := r.vec(2)
	for exts.ok && len(exts.b) >= 4 {
		typ := exts.u16()
		data := exts.vec(2)
		if !data.ok {
			return
		}
		f(typ, data)
	}
}

// parseClientHello takes the server name and the versions offered from a
// ClientHello body (RFC 8446 §4.1.2).
func (t *tlsHandshake) parseClientHello(body []byte) {
	r := reader{b: body, ok: true}
	legacy := r.u16()
	r.bytes(32) // random
	r.vec(1)    // legacy_session_id
	r.vec(2)    // cipher_suites
	r.vec(1)    // legacy_compression_methods
	if !r.ok {
		return
	}
	var supported []uint16
	extensions(&r, func(typ int, data reader) {
		switch typ {
		case extServerName: // RFC 6066 §3
			list := data.vec(2)
			for list.ok && len(list.b) > 0 {
				nameType := list.u8()
				name := list.vec(2)
				if name.ok && nameType == 0 && t.sni == "" {
					t.sni = record.Escape(string(name.b))
				}
			}
		case extSupportedVersions: // RFC 8446 §4.2.1
			list := data.vec(1)
			for list.ok && len(list.b) >= 2 {
				if v := uint16(list.u16()); !isGREASE(v) {
					supported = append(supported, v)
				}
			}
		}
	})
	if supported != nil {
		t.offered = supported
	} else if legacy != 0 {
		// Without supported_versions a client offers every version up to
		// legacy_version: the highest is what the capture shows.
		t.offered = []uint16{uint16(legacy)}
	}
}

// parseServerHello takes the version and cipher suite a ServerHello
// chose (RFC 8446 §4.1.3; TLS 1.3 puts the version in supported_versions).
func (t *tlsHandshake) parseServerHello(body []byte) {
	r := reader{b: body, ok: true}
	legacy := r.u16()
	random := r.bytes(32)
	r.vec(1) // legacy_session_id_echo
	cipher := r.u16()
	r.u8() // legacy_compression_method
	if !r.ok {
		return
	}
	version := uint16(legacy)
	extensions(&r, func(typ int, data reader) {
		if typ == extSupportedVersions {
			if v := data.u16(); data.ok {
				version = uint16(v)
			}
		}
	})
	if [32]byte(random) == helloRetryRequest {
		// Not the choice yet: a second ClientHello and the real
		// ServerHello follow in cleartext.
		t.retry = true
		return
	}
	t.serverHello = true
	t.version, t.cipher = version, uint16(cipher)
}

// isGREASE reports whether v is a GREASE value (RFC 8701 §2).
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// gap says that bytes of direction d are missing: what follows cannot be
// parsed.
func (t *tlsHandshake) gap(d Dir) { t.stop(d) }

// fill writes what the handshake showed into a record's TLS object, named
// as crypto/tls names them (as for live connections).
func (t *tlsHandshake) fill(r *record.TLS) {
	r.SNI = t.sni
	for _, v := range t.offered {
		r.OfferedVersions = append(r.OfferedVersions, tls.VersionName(v))
	}
	if t.serverHello {
		r.Version = tls.VersionName(t.version)
		r.Cipher = tls.CipherSuiteName(t.cipher)
	}
	r.Error = t.alert
}
