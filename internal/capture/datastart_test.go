package capture

import (
	"context"
	"testing"

	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/smtpwire"
)

// TestDataStart: at the DATA command a DATA rule answers (and is not
// applied again at the end of data); without one the answer is 354.
func TestDataStart(t *testing.T) {
	rs, _ := chaos.ParseRules("DATA:*@big.example=552 5.3.4 Message too big")
	c, _ := chaos.New(rs, nil)
	b := New(Config{Chaos: c})
	ctx := context.Background()
	s := &session{b: b}
	s.Mail(ctx, smtpwire.Path{Addr: "a@x.example"})
	s.Rcpt(ctx, smtpwire.Path{Addr: "u@big.example"})
	if got := s.DataStart(ctx).String(); got != "552 5.3.4 Message too big" {
		t.Errorf("DataStart %q", got)
	}
	s.Mail(ctx, smtpwire.Path{Addr: "a@x.example"})
	s.Rcpt(ctx, smtpwire.Path{Addr: "u@small.example"})
	if got := s.DataStart(ctx); got.Code != 354 {
		t.Errorf("DataStart %v", got)
	}
	if dr := s.Data(ctx, &smtpd.Message{Rcpts: []smtpwire.Path{{Addr: "u@small.example"}}, Body: []byte("x\r\n")}); dr.Reply.Code != 250 {
		t.Errorf("Data %v", dr.Reply)
	}
}
