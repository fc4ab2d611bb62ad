package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/pcapsmtp/pcaptest"
	"github.com/smtplog/smtplog/internal/record"
)

func runPcapCLI(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: bytes.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(context.Background(), e, append([]string{"pcap", "--progress", "never"}, args...))
	return code, out.String(), errb.String()
}

// pcapSession writes one SMTP session (and one HTTP exchange) as a capture.
func pcapSession(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcaptest.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	conn := w.Conn(ts, netip.MustParseAddrPort("192.0.2.7:41000"), netip.MustParseAddrPort("198.51.100.1:587"))
	for i, st := range []string{
		"220 mx ESMTP\r\n", "EHLO app.example\r\n", "250-mx\r\n250 PIPELINING\r\n",
		"MAIL FROM:<app@shop.example>\r\n", "250 2.1.0 Ok\r\n", "RCPT TO:<a@dest.example>\r\n", "250 2.1.5 Ok\r\n",
		"DATA\r\n", "354 go ahead\r\n", "Message-ID: <cli@shop.example>\r\nSubject: hi\r\n\r\nbody\r\n.\r\n",
		"250 2.0.0 Ok: queued as 4CLI1\r\n", "QUIT\r\n", "221 2.0.0 Bye\r\n",
	} {
		ts = ts.Add(time.Millisecond)
		conn.Send(ts, 1-i%2, []byte(st))
	}
	conn.Close(ts, 0)
	conn.Close(ts, 1)
	web := w.Conn(ts, netip.MustParseAddrPort("192.0.2.7:41001"), netip.MustParseAddrPort("198.51.100.1:80"))
	web.Send(ts, 0, []byte("GET / HTTP/1.1\r\n\r\n"))
	web.Close(ts, 0)
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPcapCLI(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "smtp.pcap")
	capture := pcapSession(t)
	if err := os.WriteFile(file, capture, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runPcapCLI(t, nil, file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d records:\n%s", len(lines), out)
	}
	var m, s record.Record
	json.Unmarshal([]byte(lines[0]), &m)
	json.Unmarshal([]byte(lines[1]), &s)
	if m.Type != record.TypeMessage || m.Source != record.SourcePcap || m.QueueID != "4CLI1" || m.MessageID != "<cli@shop.example>" || s.Type != record.TypeSession || s.CloseReason != "quit" {
		t.Errorf("records:\n%s", out)
	}
	if !strings.Contains(errs, "1 SMTP sessions") || !strings.Contains(errs, "1 messages") || !strings.Contains(errs, "1 other TCP connections") {
		t.Errorf("summary: %s", errs)
	}

	// Text, from standard input, into a file.
	outFile := filepath.Join(dir, "records.txt")
	if code, _, errs := runPcapCLI(t, capture, "--format", "text", "--out", outFile, "-"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	txt, _ := os.ReadFile(outFile)
	if n := strings.Count(string(txt), "\n"); n != 2 || !strings.Contains(string(txt), "4CLI1") {
		t.Errorf("text output:\n%s", txt)
	}
}

func TestPcapCLIErrors(t *testing.T) {
	dir := t.TempDir()
	capture := pcapSession(t)
	cut := filepath.Join(dir, "cut.pcap")
	// Cut inside the last packets: the SMTP session is whole before it.
	os.WriteFile(cut, capture[:len(capture)-30], 0o600)
	code, out, errs := runPcapCLI(t, nil, cut)
	if code != 1 || !strings.Contains(errs, "truncated") || !strings.Contains(out, `"queue_id":"4CLI1"`) {
		t.Errorf("truncated: exit %d\n%s\n%s", code, errs, out)
	}
	junk := filepath.Join(dir, "junk.pcap")
	os.WriteFile(junk, []byte("220 this is a mail log, not a capture\n"), 0o600)
	if code, out, errs := runPcapCLI(t, nil, junk); code != 1 || !strings.Contains(errs, "not a pcap or pcapng capture") || out != "" {
		t.Errorf("garbage: exit %d\n%s\n%s", code, errs, out)
	}
	if code, _, errs := runPcapCLI(t, nil, filepath.Join(dir, "missing.pcap")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing: exit %d %s", code, errs)
	}
	if code, _, _ := runPcapCLI(t, nil, "--format", "xml", cut); code != 2 {
		t.Errorf("bad format: exit %d", code)
	}
	if code, _, _ := runPcapCLI(t, nil, "-", "-"); code != 2 {
		t.Errorf("stdin twice: exit %d", code)
	}
}
