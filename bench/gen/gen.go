// Package gen makes synthetic but realistic records for benchmarks and
// tests: senders, recipients and domains drawn with Zipf-like popularity, a
// mix of vantage points (relay, capture, Postfix logs with per-recipient
// deliveries), statuses and reply codes in realistic proportions, message
// sizes, TLS, AUTH, sessions with several messages, and transcripts for
// some relay records. The same Config gives the same records.
package gen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Config says what to generate.
type Config struct {
	Seed       uint64
	Start      time.Time     // first timestamp
	Span       time.Duration // timestamps spread evenly over [Start, Start+Span) across N records
	N          int           // how many records will be drawn (for spacing); default 1,000,000
	Domains    int           // distinct domains; default 5,000
	Senders    int           // distinct senders; default 50,000
	Recipients int           // distinct recipients; default 500,000
	// TranscriptEvery gives every n-th relay record a transcript; 0: none.
	TranscriptEvery int
}

// Generator draws records. It is not safe for concurrent use.
type Generator struct {
	cfg        Config
	rng        *rand.Rand
	domain     *rand.Zipf
	sender     *rand.Zipf
	rcpt       *rand.Zipf
	i          int
	session    string
	sessionIP  string
	sessionTLS bool
	sessionN   int
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	if cfg.N <= 0 {
		cfg.N = 1_000_000
	}
	if cfg.Domains <= 0 {
		cfg.Domains = 5000
	}
	if cfg.Senders <= 0 {
		cfg.Senders = 50_000
	}
	if cfg.Recipients <= 0 {
		cfg.Recipients = 500_000
	}
	if cfg.Span <= 0 {
		cfg.Span = 24 * time.Hour
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	return &Generator{
		cfg:    cfg,
		rng:    rng,
		domain: rand.NewZipf(rng, 1.2, 1, uint64(cfg.Domains-1)),
		sender: rand.NewZipf(rng, 1.1, 1, uint64(cfg.Senders-1)),
		rcpt:   rand.NewZipf(rng, 1.05, 1, uint64(cfg.Recipients-1)),
	}
}

var (
	tlds     = []string{"example", "example.com", "example.net", "example.org", "test"}
	words    = []string{"invoice", "order", "shipped", "password", "reset", "welcome", "newsletter", "weekly", "report", "meeting", "update", "your", "account", "receipt", "alert", "security", "notice", "delivery", "failed", "reminder"}
	ciphers  = []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}
	relays   = []string{"mx1", "mx2", "mail", "smtp", "in"}
	deferred = []string{
		"450 4.2.0 Mailbox full",
		"451 4.7.1 Greylisted, please try again later",
		"421 4.4.2 Connection timed out",
		"452 4.2.2 Over quota",
	}
	bounced = []string{
		"550 5.1.1 User unknown",
		"550 5.7.1 Message rejected as spam",
		"554 5.7.1 Relay access denied",
		"552 5.2.2 Mailbox full",
	}
)

// Domain returns the name of domain number i.
func Domain(i uint64) string {
	return "d" + strconv.FormatUint(i, 10) + "." + tlds[i%uint64(len(tlds))]
}

func (g *Generator) address(z *rand.Zipf, prefix string) string {
	n := z.Uint64()
	// A user's domain is fixed by its number, popular domains get more users.
	d := (n * 2654435761) % uint64(g.cfg.Domains)
	if g.rng.IntN(3) == 0 {
		d = g.domain.Uint64()
	}
	return prefix + strconv.FormatUint(n, 10) + "@" + Domain(d)
}

func (g *Generator) subject() string {
	n := 2 + g.rng.IntN(5)
	b := make([]byte, 0, 48)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[g.rng.IntN(len(words))]...)
	}
	if g.rng.IntN(4) == 0 {
		b = append(b, " #"...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(100000)), 10)
	}
	return string(b)
}

func (g *Generator) ip() string {
	if g.rng.IntN(10) == 0 {
		return fmt.Sprintf("2001:db8:%x::%x", g.rng.IntN(4096), g.rng.IntN(65536))
	}
	return fmt.Sprintf("198.51.%d.%d", g.rng.IntN(256), 1+g.rng.IntN(254))
}

func queueID(r *rand.Rand) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 10)
	for i := range b {
		b[i] = hex[r.IntN(16)]
	}
	return string(b)
}

// Next returns the next record.
func (g *Generator) Next() *record.Record {
	g.i++
	ts := g.cfg.Start.Add(time.Duration(float64(g.cfg.Span) * float64(g.i-1) / float64(g.cfg.N)))
	ts = ts.Add(time.Duration(g.rng.IntN(1000)) * time.Microsecond).UTC()

	// Session records close a run of 1-5 relay messages.
	if g.session != "" && g.sessionN == 0 {
		r := &record.Record{
			Type: record.TypeSession, Timestamp: ts, End: ts.Add(time.Duration(50+g.rng.IntN(2000)) * time.Millisecond),
			Source: record.SourceProxy, Host: "relay1", SessionID: g.session, ClientIP: g.sessionIP,
			ClientPort: 1024 + g.rng.IntN(60000), Helo: "client" + strconv.Itoa(g.rng.IntN(500)) + ".example",
			CloseReason: record.CloseQuit, DurationMS: float64(50 + g.rng.IntN(2000)),
			TLS: &record.TLS{Used: g.sessionTLS},
		}
		if g.rng.IntN(5) == 0 {
			res := "success"
			if g.rng.IntN(10) == 0 {
				res = "failure"
			}
			r.Auth = &record.Auth{Mechanism: "PLAIN", Username: "user" + strconv.Itoa(g.rng.IntN(200)), Result: res}
		}
		g.session = ""
		return r
	}

	from := g.address(g.sender, "s")
	if g.rng.IntN(50) == 0 {
		from = "" // bounces have the null sender
	}
	n := 1
	if g.rng.IntN(5) == 0 {
		n += g.rng.IntN(4)
	}
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = g.address(g.rcpt, "r")
	}
	r := &record.Record{
		Type:      record.TypeMessage,
		Timestamp: ts,
		Host:      "mx.smtplog.test",
		MessageID: fmt.Sprintf("<%d.%08x@%s>", g.i, g.rng.Uint32(), Domain(g.domain.Uint64())),
		Subject:   g.subject(),
		MailFrom:  record.Ptr(from),
		RcptTo:    rcpts,
		Size:      int64(500 + g.rng.ExpFloat64()*20000),
		LatencyMS: float64(int(g.rng.ExpFloat64()*150*1000)) / 1000,
		QueueID:   queueID(g.rng),
	}
	if from != "" {
		r.From = from
	}
	switch p := g.rng.IntN(100); {
	case p < 45: // the relay
		if g.session == "" {
			g.session = record.NewID(ts)
			g.sessionIP = g.ip()
			g.sessionTLS = g.rng.IntN(10) < 8
			g.sessionN = 1 + g.rng.IntN(5)
		}
		g.sessionN--
		r.Source = record.SourceProxy
		r.SessionID = g.session
		r.ClientIP = g.sessionIP
		r.TLS = &record.TLS{Used: g.sessionTLS}
		if g.sessionTLS {
			r.TLS.Version = "TLS1.3"
			r.TLS.Cipher = ciphers[g.rng.IntN(len(ciphers))]
		}
		switch q := g.rng.IntN(100); {
		case q < 90:
			r.Status, r.SMTPResponse = record.StatusAccepted, "250 2.0.0 Ok: queued as "+r.QueueID
		case q < 95:
			r.Status, r.SMTPResponse, r.QueueID = record.StatusRejected, bounced[g.rng.IntN(len(bounced))], ""
			r.RejectedRcpt = []record.Rejection{{Address: rcpts[0], SMTPResponse: r.SMTPResponse}}
			r.RcptTo = rcpts[1:]
		case q < 98:
			r.Status, r.SMTPResponse, r.QueueID = record.StatusDeferred, deferred[g.rng.IntN(len(deferred))], ""
		default:
			r.Status, r.QueueID = record.StatusAborted, ""
		}
		if g.cfg.TranscriptEvery > 0 && g.i%g.cfg.TranscriptEvery == 0 {
			r.Transcript = []record.TranscriptLine{
				{TMS: 0, Dir: "S", Line: "220 mx.smtplog.test ESMTP"},
				{TMS: 1.2, Dir: "C", Line: "EHLO client.example"},
				{TMS: 1.5, Dir: "S", Line: "250-mx.smtplog.test"},
				{TMS: 2.1, Dir: "C", Line: "MAIL FROM:<" + from + ">"},
				{TMS: 2.4, Dir: "S", Line: "250 2.1.0 Ok"},
				{TMS: 3.0, Dir: "C", Line: "RCPT TO:<" + rcpts[0] + ">"},
				{TMS: 3.3, Dir: "S", Line: "250 2.1.5 Ok"},
				{TMS: 4.0, Dir: "C", Line: "DATA"},
				{TMS: 4.2, Dir: "S", Line: "354 End data with <CR><LF>.<CR><LF>"},
				{TMS: 9.8, Dir: "C", Line: "[" + strconv.FormatInt(r.Size, 10) + " bytes]"},
				{TMS: 12.5, Dir: "S", Line: r.SMTPResponse},
			}
		}
	case p < 50: // the capture server
		r.Source = record.SourceCapture
		r.Status, r.SMTPResponse = record.StatusAccepted, "250 2.0.0 Ok"
		r.ClientIP = "127.0.0.1"
		r.QueueID = ""
	default: // Postfix logs, with a delivery per recipient
		r.Source = record.SourcePostfix
		r.ClientIP = g.ip()
		r.Nrcpt = n
		worst := record.StatusSent
		for _, a := range rcpts {
			d := record.Delivery{Timestamp: ts.Add(time.Duration(g.rng.IntN(5000)) * time.Millisecond), Rcpt: a,
				Relay:  relays[g.rng.IntN(len(relays))] + "." + Domain(g.domain.Uint64()) + "[203.0.113." + strconv.Itoa(1+g.rng.IntN(254)) + "]:25",
				DelayS: float64(g.rng.IntN(5000)) / 1000}
			switch q := g.rng.IntN(100); {
			case q < 88:
				d.Status, d.DSN, d.SMTPResponse = record.StatusSent, "2.0.0", "250 2.0.0 OK "+queueID(g.rng)
			case q < 96:
				d.Status, d.SMTPResponse = record.StatusDeferred, deferred[g.rng.IntN(len(deferred))]
				d.DSN = d.SMTPResponse[4:9]
				if worst == record.StatusSent {
					worst = record.StatusDeferred
				}
			default:
				d.Status, d.SMTPResponse = record.StatusBounced, bounced[g.rng.IntN(len(bounced))]
				d.DSN = d.SMTPResponse[4:9]
				worst = record.StatusBounced
			}
			r.Deliveries = append(r.Deliveries, d)
		}
		r.Status = worst
		last := r.Deliveries[len(r.Deliveries)-1]
		r.SMTPResponse = last.SMTPResponse
		r.EnhancedCode = last.DSN
	}
	if c := ParseCode(r.SMTPResponse); c != 0 {
		r.ReplyCode = c
	}
	return r
}

// ParseCode returns the reply code at the start of a response, or 0.
func ParseCode(s string) int {
	if len(s) < 3 {
		return 0
	}
	n, err := strconv.Atoi(s[:3])
	if err != nil {
		return 0
	}
	return n
}
