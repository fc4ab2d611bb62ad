package smtpd

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpwire"
)

// BenchmarkMessagePerConnection is capture mode's common load: a client
// that opens a connection, sends one 5 KiB message and quits, as
// smtp-source does. Records go to a handler that drops them, so what is
// measured is the session engine's own work per message.
func BenchmarkMessagePerConnection(b *testing.B) {
	srv := New(Config{
		Hostname:   "bench.example",
		DataPolicy: DataAccept,
		Source:     record.SourceCapture,
		Handler:    record.HandlerFunc(func(context.Context, *record.Record) error { return nil }),
	}, &benchBackend{fakeBackend{caps: Caps{Pipelining: true, EightBitMIME: true, Enhanced: true}}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	var body strings.Builder
	body.WriteString("From: <app@dev.example>\r\nTo: <user@example.com>\r\nSubject: benchmark\r\nMessage-ID: <1@dev.example>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\n")
	for body.Len() < 5120 {
		body.WriteString("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\n")
	}
	body.WriteString(".\r\n")
	steps := []struct {
		send []byte
		code string
	}{
		{[]byte("EHLO client.example\r\n"), "250"},
		{[]byte("MAIL FROM:<app@dev.example>\r\n"), "250"},
		{[]byte("RCPT TO:<user@example.com>\r\n"), "250"},
		{[]byte("DATA\r\n"), "354"},
		{[]byte(body.String()), "250"},
		{[]byte("QUIT\r\n"), "221"},
	}
	br := bufio.NewReader(nil)
	b.ReportAllocs()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(nc)
		expect := func(code string) {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					b.Fatal(err)
				}
				if !strings.HasPrefix(string(line), code) {
					b.Fatalf("got %q, want %s", line, code)
				}
				if len(line) < 4 || line[3] == ' ' {
					return
				}
			}
		}
		expect("220")
		for _, step := range steps {
			if _, err := nc.Write(step.send); err != nil {
				b.Fatal(err)
			}
			expect(step.code)
		}
		nc.Close()
	}
}

// benchBackend is fakeBackend without keeping the messages.
type benchBackend struct{ fakeBackend }

func (b *benchBackend) Open(context.Context, *Conn) (Session, error) {
	return benchSession{&fakeSession{b: &b.fakeBackend}}, nil
}

type benchSession struct{ *fakeSession }

func (benchSession) Data(context.Context, *Message) DataResult {
	return DataResult{Reply: replyQueued, QueueID: "ABC123"}
}

var replyQueued = smtpwire.NewReply(250, "2.0.0", "Ok: queued as ABC123")
