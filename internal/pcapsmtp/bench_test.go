package pcapsmtp_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/pcapsmtp/pcaptest"
	"github.com/smtplog/smtplog/internal/record"
)

// benchCapture writes sessions SMTP sessions of perSession messages each
// (about 3 KB of content, pipelined envelopes, QUIT), 50 connections
// interleaved at a time, as a real MTA's traffic would be.
func benchCapture(tb testing.TB, sessions, perSession int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := pcaptest.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	body := "Received: from app.example by mx.example\r\nSubject: benchmark\r\nFrom: app@shop.example\r\nTo: rcpt@dest.example\r\n\r\n" +
		strings.Repeat("a line of a message body of the benchmark capture, 72 bytes long.....\r\n", 40)
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const parallel = 50
	type live struct {
		c    *pcaptest.Conn
		step int
		n    int
	}
	var open []*live
	next := 0
	server := netip.MustParseAddrPort("198.51.100.25:25")
	for next < sessions || len(open) > 0 {
		for len(open) < parallel && next < sessions {
			client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(next >> 16), byte(next >> 8)}), uint16(1024+next%60000))
			open = append(open, &live{c: w.Conn(ts, client, server), n: next})
			next++
		}
		kept := open[:0]
		for _, l := range open {
			ts = ts.Add(50 * time.Microsecond)
			msg := l.step / 4
			switch {
			case l.step == 0:
				l.c.Send(ts, 1, []byte("220 mx.example ESMTP\r\n"))
				l.c.Send(ts, 0, []byte("EHLO app.example\r\n"))
				l.c.Send(ts, 1, []byte("250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
				l.step++
			case msg < perSession && l.step%4 == 1:
				l.c.Send(ts, 0, []byte("MAIL FROM:<app@shop.example>\r\nRCPT TO:<rcpt@dest.example>\r\nDATA\r\n"))
				l.c.Send(ts, 1, []byte("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"))
				l.step += 2
			case msg < perSession && l.step%4 == 3:
				l.c.Send(ts, 0, []byte(fmt.Sprintf("Message-ID: <%d.%d@shop.example>\r\n%s.\r\n", l.n, msg, body)))
				l.c.Send(ts, 1, []byte(fmt.Sprintf("250 2.0.0 Ok: queued as Q%dX%d\r\n", l.n, msg)))
				l.step += 2
			default:
				l.c.Send(ts, 0, []byte("QUIT\r\n"))
				l.c.Send(ts, 1, []byte("221 2.0.0 Bye\r\n"))
				l.c.Close(ts, 0)
				l.c.Close(ts, 1)
				continue
			}
			kept = append(kept, l)
		}
		open = kept
	}
	if err := w.Err(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var (
	benchOnce sync.Once
	benchData []byte
)

func benchFile(tb testing.TB) []byte {
	benchOnce.Do(func() { benchData = benchCapture(tb, 2000, 5) })
	return benchData
}

// BenchmarkDecode: records per second and MB/s over a capture of 10,000
// messages in 2,000 sessions.
func BenchmarkDecode(b *testing.B) {
	file := benchFile(b)
	b.SetBytes(int64(len(file)))
	b.ResetTimer()
	var records int
	for b.Loop() {
		records = 0
		d := pcapsmtp.NewDecoder(pcapsmtp.Options{Handler: record.HandlerFunc(func(context.Context, *record.Record) error {
			records++
			return nil
		})})
		if err := d.ReadFrom(context.Background(), bytes.NewReader(file)); err != nil {
			b.Fatal(err)
		}
		d.Close()
		if st := d.Stats(); st.Messages != 10000 || st.Sessions != 2000 || st.Incomplete != 0 {
			b.Fatalf("stats %+v", st)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestBenchCapture checks the benchmark's capture decodes whole, and with
// PCAP_BENCH_OUT=FILE writes it for bench/pcap.sh.
func TestBenchCapture(t *testing.T) {
	sessions, per := 20, 5
	out := os.Getenv("PCAP_BENCH_OUT")
	if out != "" {
		sessions = 2000
	}
	file := benchCapture(t, sessions, per)
	recs, st, err := decode(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != int64(sessions*per) || st.Sessions != int64(sessions) || st.Incomplete != 0 || len(recs) != sessions*(per+1) {
		t.Fatalf("stats %+v", st)
	}
	if out != "" {
		if err := os.WriteFile(out, file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
