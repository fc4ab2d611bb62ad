package capture_test

import (
	"context"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/capture"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/testenv"
)

func start(t *testing.T, cfg capture.Config) (string, *record.Collector) {
	recs := &record.Collector{}
	srv := smtpd.New(smtpd.Config{Hostname: "capture.test", Source: record.SourceCapture, Handler: recs, AllowInsecureAuth: true, DataPolicy: smtpd.DataAccept}, capture.New(cfg))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return l.Addr().String(), recs
}

// TestGoClientAuthMechanisms sends with Go's net/smtp using each AUTH
// mechanism it has; capture mode accepts any credentials and keeps none.
func TestGoClientAuthMechanisms(t *testing.T) {
	var kept []string
	addr, recs := start(t, capture.Config{Keep: func(_ context.Context, id string, m *smtpd.Message) error {
		kept = append(kept, id+":"+string(m.Body))
		return nil
	}})
	host, _, _ := net.SplitHostPort(addr)
	for _, auth := range []smtp.Auth{
		smtp.PlainAuth("", "dev-user", "pw-CANARY-7f3a9d", host),
		smtp.CRAMMD5Auth("dev-user", "pw-CANARY-7f3a9d"),
	} {
		msg := "Subject: hi\r\n\r\nbare LF is fine here\nend\r\n"
		if err := smtp.SendMail(addr, auth, "app@dev.example", []string{"u@example.com"}, []byte(msg)); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(recs.Records()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var blob strings.Builder
	users := 0
	for _, r := range recs.Records() {
		b, _ := record.MarshalJSONLine(&r)
		blob.Write(b)
		if r.Type == record.TypeMessage {
			if r.Status != "accepted" || r.Username != "dev-user" || r.QueueID == "" || r.Source != "capture" {
				t.Errorf("message record %+v", r)
			}
			users++
		}
	}
	if users != 2 || len(kept) != 2 || !strings.HasSuffix(kept[0], ":Subject: hi\r\n\r\nbare LF is fine here\r\nend\r\n") {
		t.Errorf("kept %q", kept)
	}
	testenv.AssertNoSecret(t, "pw-CANARY-7f3a9d", []byte(blob.String()))
}

func TestAcceptDomains(t *testing.T) {
	addr, _ := start(t, capture.Config{Domains: []string{"dev.example"}})
	err := smtp.SendMail(addr, nil, "a@x.example", []string{"u@elsewhere.example"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("recipient outside the accepted domains: %v", err)
	}
	if err := smtp.SendMail(addr, nil, "a@x.example", []string{"u@DEV.example"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Errorf("accepted domain refused: %v", err)
	}
}

// TestBareLFKeptAndFlagged: development tools send bare LF; capture mode
// keeps the exact bytes and flags them.
func TestBareLFKeptAndFlagged(t *testing.T) {
	var kept []byte
	addr, recs := start(t, capture.Config{Keep: func(_ context.Context, _ string, m *smtpd.Message) error {
		kept = append([]byte(nil), m.Body...)
		return nil
	}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for _, line := range []string{"", "EHLO x.example\r\n", "MAIL FROM:<a@x.example>\r\n", "RCPT TO:<b@y.example>\r\n", "DATA\r\n", "Subject: lf\n\nline one\nline two\r\n.\r\n"} {
		if line != "" {
			c.Write([]byte(line))
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if string(kept) != "Subject: lf\n\nline one\nline two\r\n" {
		t.Errorf("kept %q", kept)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(recs.Records()) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := recs.Records()[0]; r.Status != "accepted" || !strings.Contains(strings.Join(r.Anomalies, ","), "bare_lf_in_data") {
		t.Errorf("record %s %q", r.Status, r.Anomalies)
	}
}
