// Package capture is the smtpd Backend of capture mode (smtplog serve
// without an upstream): it accepts every sender and recipient, or only
// configured domains, accepts AUTH with any credentials (development
// clients need it to work; the secret is never looked at or kept), and
// answers every message with "250 2.0.0 Ok: queued as <id>". Nothing
// leaves the machine.
//
// With Config.Chaos set, chosen commands get chosen errors instead (see
// package chaos): the greeting, EHLO/HELO, MAIL, RCPT, DATA and the end of
// data. A 421 closes the connection.
package capture

import (
	"context"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/smtpwire"
)

// Config configures the capture backend.
type Config struct {
	// Domains, when set, are the only recipient domains accepted; others
	// get 550 5.7.1 so a misconfigured app notices.
	Domains []string
	// Keep, when set, receives each accepted message's exact bytes with its
	// queue ID (the store keeps them for the web UI).
	Keep func(ctx context.Context, queueID string, m *smtpd.Message) error
	// Chaos, when set, answers chosen commands with chosen errors; its
	// rules may be changed while the server runs.
	Chaos *chaos.Chaos
}

// Backend accepts and keeps messages.
type Backend struct{ cfg Config }

var _ smtpd.Backend = (*Backend)(nil)

// New returns a capture backend.
func New(cfg Config) *Backend { return &Backend{cfg: cfg} }

// Open starts a session, or refuses the connection by a CONNECT chaos rule.
func (b *Backend) Open(_ context.Context, c *smtpd.Conn) (smtpd.Session, error) {
	client := ""
	if c != nil && c.Client.IsValid() {
		client = c.Client.Addr().Unmap().String()
	}
	if rep, ok := b.cfg.Chaos.Decide(chaos.Connect, client); ok {
		return nil, &smtpd.ReplyError{Reply: rep, Reason: "chaos: connection refused by rule"}
	}
	return &session{b: b}, nil
}

type session struct {
	b        *Backend
	authStep int
	// For chaos rules on DATA and at the end of data: the accepted
	// recipients, and whether the DATA rules were already applied.
	rcpts       []string
	dataDecided bool
}

// chaos applies the rules for t; ok says a rule answered.
func (s *session) chaos(t chaos.Trigger, subjects ...string) (smtpwire.Reply, bool) {
	return s.b.cfg.Chaos.Decide(t, subjects...)
}

// DataStart answers the DATA (or first BDAT) command: a DATA chaos rule's
// reply, or 354 to go on. The engine calls it through an optional
// interface where it has one; otherwise Data applies the DATA rules.
func (s *session) DataStart(context.Context) smtpwire.Reply {
	s.dataDecided = true
	if rep, ok := s.chaos(chaos.Data, s.rcpts...); ok {
		return rep
	}
	return smtpwire.NewReply(354, "", "End data with <CR><LF>.<CR><LF>")
}

var (
	_  smtpd.AuthSession = (*session)(nil)
	ok                   = smtpwire.NewReply(250, "2.0.0", "Ok")
)

func (s *session) Hello(_ context.Context, name string, _ bool) (smtpwire.Reply, smtpd.Caps) {
	s.rcpts, s.dataDecided = nil, false
	if rep, hit := s.chaos(chaos.Helo, name); hit {
		return rep, smtpd.Caps{}
	}
	return ok, smtpd.Caps{
		Pipelining: true, EightBitMIME: true, SMTPUTF8: true, Chunking: true, DSN: true, Enhanced: true,
		AuthMechs: []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"},
	}
}

func (s *session) Mail(_ context.Context, p smtpwire.Path) smtpwire.Reply {
	s.rcpts, s.dataDecided = nil, false
	if rep, ok := s.chaos(chaos.Mail, p.Addr); ok {
		return rep
	}
	return smtpwire.NewReply(250, "2.1.0", "Ok")
}

func (s *session) Rcpt(_ context.Context, p smtpwire.Path) smtpwire.Reply {
	if rep, ok := s.chaos(chaos.Rcpt, p.Addr); ok {
		return rep
	}
	if len(s.b.cfg.Domains) > 0 {
		_, dom, _ := strings.Cut(p.Addr, "@")
		accepted := false
		for _, d := range s.b.cfg.Domains {
			if strings.EqualFold(d, dom) {
				accepted = true
			}
		}
		if !accepted {
			return smtpwire.NewReply(550, "5.7.1", "Recipient domain not accepted by this capture server")
		}
	}
	s.rcpts = append(s.rcpts, p.Addr)
	return smtpwire.NewReply(250, "2.1.5", "Ok")
}

func (s *session) Data(ctx context.Context, m *smtpd.Message) smtpd.DataResult {
	decided := s.dataDecided
	s.dataDecided = false
	s.rcpts = nil
	rcpts := make([]string, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rcpts[i] = r.Addr
	}
	if !decided {
		if rep, ok := s.chaos(chaos.Data, rcpts...); ok {
			return smtpd.DataResult{Reply: rep, Reason: "chaos: DATA rule", Close: rep.Code == 421}
		}
	}
	if rep, ok := s.chaos(chaos.EndOfData, rcpts...); ok {
		return smtpd.DataResult{Reply: rep, Reason: "chaos: end-of-data rule", Close: rep.Code == 421}
	}
	id := record.NewID(time.Now())
	if s.b.cfg.Keep != nil {
		if err := s.b.cfg.Keep(ctx, id, m); err != nil {
			return smtpd.DataResult{Reply: smtpwire.NewReply(451, "4.3.0", "Error: could not store the message, try again later"), Reason: "store: " + err.Error()}
		}
	}
	return smtpd.DataResult{Reply: smtpwire.NewReply(250, "2.0.0", "Ok: queued as "+id), QueueID: id}
}

func (s *session) Reset(context.Context) smtpwire.Reply {
	s.rcpts, s.dataDecided = nil, false
	return ok
}
func (s *session) Noop(context.Context) smtpwire.Reply { return ok }
func (s *session) Close(context.Context, string)       {}

// AuthStep accepts any credentials: PLAIN and XOAUTH2 at once (or after an
// empty challenge), LOGIN after its user name and password prompts,
// CRAM-MD5 after its challenge. Nothing of the exchange is kept.
func (s *session) AuthStep(_ context.Context, mech, line string, first bool) smtpwire.Reply {
	if line == "*" {
		return smtpwire.NewReply(501, "5.7.0", "Authentication aborted")
	}
	if first {
		s.authStep = 0
	}
	hasInitial := first && strings.Count(line, " ") >= 2
	s.authStep++
	switch mech {
	case "PLAIN", "XOAUTH2":
		if first && !hasInitial {
			return smtpwire.NewReply(334, "", "")
		}
	case "LOGIN":
		// Responses needed: user name and password; an initial response
		// counts as the user name.
		given := s.authStep - 1
		if hasInitial {
			given++
		}
		switch given {
		case 0:
			return smtpwire.NewReply(334, "", "VXNlcm5hbWU6")
		case 1:
			return smtpwire.NewReply(334, "", "UGFzc3dvcmQ6")
		}
	case "CRAM-MD5":
		if first {
			return smtpwire.NewReply(334, "", "PDEyMzQ1LjE3MDAwMDAwMDBAc210cGxvZz4=")
		}
	}
	return smtpwire.NewReply(235, "2.7.0", "Authentication successful")
}
