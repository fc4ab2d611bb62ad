package pcapsmtp

import (
	"crypto/tls"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/smtplog/smtplog/internal/record"
)

// hsMessage wraps a handshake message body in its header and one record.
func hsMessage(typ byte, body []byte) []byte {
	n := len(body)
	msg := append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	rec := []byte{recHandshake, 3, 1}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(msg)))
	return append(rec, msg...)
}

func vec16(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }

func ext(typ uint16, data []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, typ), vec16(data)...)
}

// clientHello builds a ClientHello offering versions (none: no
// supported_versions) with a server name (none: no server_name).
func clientHello(name string, versions ...uint16) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...)
	b = append(b, 0)                            // session id
	b = append(b, vec16([]byte{0x13, 0x01})...) // cipher suites
	b = append(b, 1, 0)                         // compression
	var exts []byte
	if name != "" {
		entry := append([]byte{0}, vec16([]byte(name))...)
		exts = append(exts, ext(extServerName, vec16(entry))...)
	}
	if len(versions) > 0 {
		var l []byte
		for _, v := range versions {
			l = binary.BigEndian.AppendUint16(l, v)
		}
		exts = append(exts, ext(extSupportedVersions, append([]byte{byte(len(l))}, l...))...)
	}
	if exts != nil {
		b = append(b, vec16(exts)...)
	}
	return hsMessage(hsClientHello, b)
}

// serverHello builds a ServerHello choosing cipher and version (in
// supported_versions when above TLS 1.2); retry makes it a
// HelloRetryRequest.
func serverHello(version, cipher uint16, retry bool) []byte {
	b := []byte{3, 3}
	random := make([]byte, 32)
	if retry {
		random = helloRetryRequest[:]
	}
	b = append(b, random...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, cipher)
	b = append(b, 0)
	if version > tls.VersionTLS12 {
		b = append(b, vec16(ext(extSupportedVersions, binary.BigEndian.AppendUint16(nil, version)))...)
	}
	return hsMessage(hsServerHello, b)
}

var ccs = []byte{recChangeCipherSpec, 3, 3, 0, 1, 1}

func TestTLSHelloSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server []byte
		want           record.TLS
	}{
		{"GREASE and SNI", clientHello("mx.example", 0x7a7a, tls.VersionTLS13, tls.VersionTLS12), serverHello(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false),
			record.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", SNI: "mx.example", OfferedVersions: []string{"TLS 1.3", "TLS 1.2"}}},
		{"no extensions", clientHello(""), serverHello(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, false),
			record.TLS{Version: "TLS 1.2", Cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", OfferedVersions: []string{"TLS 1.2"}}},
		{"hello retry", clientHello("a\nb", tls.VersionTLS13),
			slices.Concat(serverHello(tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, true), ccs, serverHello(tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, false)),
			record.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_256_GCM_SHA384", SNI: `a\nb`, OfferedVersions: []string{"TLS 1.3"}}},
		{"only a retry", clientHello("", tls.VersionTLS13), serverHello(tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, true),
			record.TLS{OfferedVersions: []string{"TLS 1.3"}}},
		{"alert before the ServerHello", clientHello("", tls.VersionTLS13), []byte{recAlert, 3, 3, 0, 2, 2, 40},
			record.TLS{OfferedVersions: []string{"TLS 1.3"}, Error: "server sent alert: handshake failure"}},
		{"encrypted alert after ChangeCipherSpec", slices.Concat(clientHello(""), ccs, []byte{recAlert, 3, 3, 0, 2, 2, 40}), serverHello(tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_CBC_SHA, false),
			record.TLS{Version: "TLS 1.2", Cipher: "TLS_RSA_WITH_AES_128_CBC_SHA", OfferedVersions: []string{"TLS 1.2"}}},
		{"truncated hellos", clientHello("mx.example")[:20], serverHello(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false)[:30],
			record.TLS{}},
		{"not TLS", []byte("GET / HTTP/1.1\r\n"), []byte("HTTP/1.1 200 OK\r\n"), record.TLS{}},
	} {
		var h tlsHandshake
		h.feed(FromClient, tc.client)
		h.feed(FromServer, tc.server)
		var got record.TLS
		h.fill(&got)
		if got.Version != tc.want.Version || got.Cipher != tc.want.Cipher || got.SNI != tc.want.SNI || got.Error != tc.want.Error || !slices.Equal(got.OfferedVersions, tc.want.OfferedVersions) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestTLSHelloBounded: a handshake message that never ends is not held
// beyond maxHandshakeBuf.
func TestTLSHelloBounded(t *testing.T) {
	var h tlsHandshake
	h.feed(FromClient, []byte{recHandshake, 3, 1, 0x40, 0, hsClientHello, 0x00, 0xff, 0xff})
	rec := []byte{recHandshake, 3, 1, 0x40, 0}
	for i := 0; i < 100; i++ {
		h.feed(FromClient, append(rec, make([]byte, 0x4000)...))
		if n := len(h.half[FromClient].rec) + len(h.half[FromClient].hs); n > maxHandshakeBuf {
			t.Fatalf("holds %d bytes", n)
		}
	}
	if !h.half[FromClient].done {
		t.Error("still reading")
	}
}

// FuzzTLSHello feeds the handshake parser arbitrary bytes in both
// directions, in arbitrary pieces: it must never panic nor hold more than
// maxHandshakeBuf bytes per direction, and what it fills must encode.
// The first byte of the input is the piece size; every piece goes to the
// other direction.
func FuzzTLSHello(f *testing.F) {
	f.Add(append([]byte{7}, slices.Concat(clientHello("mx.example", 0x7a7a, tls.VersionTLS13), serverHello(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false))...))
	f.Add(append([]byte{255}, slices.Concat(clientHello(""), serverHello(tls.VersionTLS12, 0xc02f, true), ccs, []byte{recAlert, 3, 3, 0, 2, 2, 40})...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		piece := max(int(in[0]), 1)
		in = in[1:]
		var h tlsHandshake
		for d := FromClient; len(in) > 0; d = 1 - d {
			k := min(piece, len(in))
			h.feed(d, in[:k])
			in = in[k:]
			if n := len(h.half[d].rec) + len(h.half[d].hs); n > maxHandshakeBuf {
				t.Fatalf("holds %d bytes", n)
			}
		}
		r := &record.Record{Type: record.TypeSession, TLS: &record.TLS{Used: true}}
		h.fill(r.TLS)
		if _, err := record.MarshalJSONLine(r); err != nil {
			t.Fatal(err)
		}
	})
}
