package pcapsmtp_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/record"
)

// FuzzConversation feeds a conversation arbitrary bytes in both
// directions, in arbitrary pieces, with gaps and ends: it must never
// panic, and must emit at most one session record and only records that
// encode, as one line each in the text format.
//
// The input is a sequence of frames: one control byte (bit 0 the
// direction, bits 1-2 the kind: data, gap, end, reset; bits 3-7 a length)
// then, for data, that many bytes.
func FuzzConversation(f *testing.F) {
	srv, cli := serverTLS(f)
	hs, _, _, _ := handshake(f, srv, cli)
	starttls := script{steps: append([]step{
		s("220 mx ESMTP\r\n"), c("EHLO c\r\n"), s("250-mx\r\n250 STARTTLS\r\n"),
		c("STARTTLS\r\n"), s("220 go ahead\r\n"),
	}, hs...)}
	for _, sc := range []script{plain(), bigSession(), starttls} {
		var b []byte
		for _, st := range sc.steps {
			for d := []byte(st.data); len(d) > 0; {
				n := min(len(d), 31)
				b = append(b, byte(st.side)|byte(n)<<3)
				b = append(b, d[:n]...)
				d = d[n:]
			}
		}
		f.Add(b)
	}
	f.Add([]byte("\x29220 x\n\x0a\x0c\x0f"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var sessions int
		h := record.HandlerFunc(func(_ context.Context, r *record.Record) error {
			if r.Type == record.TypeSession {
				sessions++
			}
			b, err := record.MarshalJSONLine(r)
			if err != nil {
				t.Fatalf("record does not encode: %v", err)
			}
			_ = b
			if strings.Count(string(record.MarshalText(r)), "\n") != 1 {
				t.Fatalf("text record is not one line: %q", record.MarshalText(r))
			}
			return nil
		})
		ep := pcapsmtp.Endpoints{Client: netip.MustParseAddrPort("192.0.2.1:40000"), Server: netip.MustParseAddrPort("192.0.2.2:25")}
		c := pcapsmtp.NewConversation(pcapsmtp.Options{Handler: h}, ep, true, t0)
		ts := t0
		for len(in) > 0 {
			ctl := in[0]
			in = in[1:]
			d := pcapsmtp.Dir(ctl & 1)
			n := int(ctl >> 3)
			ts = ts.Add(time.Millisecond)
			switch ctl >> 1 & 3 {
			case 0:
				n = min(n, len(in))
				c.Data(d, ts, in[:n])
				in = in[n:]
			case 1:
				c.Gap(d, ts, n+1)
			case 2:
				c.End(d, ts, false)
			case 3:
				c.End(d, ts, true)
			}
		}
		c.Finish()
		if sessions > 1 {
			t.Fatalf("%d session records", sessions)
		}
	})
}

// FuzzDecoder reads arbitrary bytes as a capture: an error or records,
// never a panic.
func FuzzDecoder(f *testing.F) {
	f.Add(pcapBytes(f, capture(f, plain())))
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := pcapsmtp.NewDecoder(pcapsmtp.Options{})
		_ = d.ReadFrom(context.Background(), bytes.NewReader(in))
		_ = d.Close()
	})
}
