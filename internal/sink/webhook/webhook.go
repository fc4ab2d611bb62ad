// Package webhook notifies a URL of each newly captured message: a
// record.Handler that POSTs a JSON summary (ID, sender, recipients,
// subject, size, time, a link to the web UI) asynchronously.
//
// Delivery never blocks SMTP acceptance: Handle only enqueues into a
// bounded queue; when the queue is full the notification is dropped,
// counted, and logged at most once per interval. Workers owned by Run POST
// with a timeout and retry network errors, 429 and 5xx answers with
// exponential backoff. With a secret, each request carries
// X-Smtplog-Signature: sha256=<hex HMAC-SHA256 of the body>, which
// receivers check with Verify.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// Header names set on each request.
const (
	SignatureHeader = "X-Smtplog-Signature" // "sha256=" + hex HMAC-SHA256(secret, body)
	DeliveryHeader  = "X-Smtplog-Delivery"  // the same for every attempt of one notification
	EventHeader     = "X-Smtplog-Event"     // "message"
)

// Config configures a Sink. Zero values take the defaults shown.
type Config struct {
	URL    string // http or https; required
	Secret string // signs each body when set
	// Link is the web UI address of a message, with "{ID}" standing for
	// its ID, e.g. "http://127.0.0.1:8025/view/{ID}". Empty: no link.
	Link        string
	QueueSize   int           // 1000
	Workers     int           // 2
	Timeout     time.Duration // 10s per attempt
	MaxAttempts int           // 5
	Backoff     time.Duration // 500ms, doubling per attempt up to MaxBackoff
	MaxBackoff  time.Duration // 30s
	// DropLogInterval is how often, at most, drops are logged: 1m.
	DropLogInterval time.Duration
	// Accept chooses the records to notify; default: message records that
	// were accepted (a new captured message).
	Accept func(*record.Record) bool
	Client *http.Client // default: a client with no timeout of its own
	Logger *slog.Logger // default: slog.Default()
}

// Payload is the JSON body of a notification.
type Payload struct {
	Event     string    `json:"event"` // "message"
	ID        string    `json:"id"`    // the captured message's ID (its queue ID)
	MessageID string    `json:"message_id,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	From      string    `json:"from,omitempty"`
	To        []string  `json:"to,omitempty"`
	Cc        []string  `json:"cc,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	MailFrom  *string   `json:"mail_from,omitempty"`
	RcptTo    []string  `json:"rcpt_to,omitempty"`
	Size      int64     `json:"size"`
	Link      string    `json:"link,omitempty"`
}

// Stats count what happened to notifications.
type Stats struct {
	Queued    uint64 // accepted into the queue
	Delivered uint64 // answered 2xx
	Failed    uint64 // given up after MaxAttempts or a non-retryable answer
	Dropped   uint64 // not queued because the queue was full, or left when Run stopped
	Retries   uint64 // attempts after the first
}

type job struct {
	id   string
	body []byte
}

// Sink is the webhook notifier. Handle may be called before and while Run
// runs; notifications are sent only while Run runs.
type Sink struct {
	cfg   Config
	queue chan job

	queued, delivered, failed, dropped, retries atomic.Uint64

	mu            sync.Mutex
	lastDropLog   time.Time
	droppedLogged uint64
}

var _ record.Handler = (*Sink)(nil)

// New checks cfg and returns a Sink.
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook: url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: url %q: use an http:// or https:// URL with a host", cfg.URL)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.DropLogInterval <= 0 {
		cfg.DropLogInterval = time.Minute
	}
	if cfg.Accept == nil {
		cfg.Accept = func(r *record.Record) bool {
			return r.Type == record.TypeMessage && r.Status == record.StatusAccepted
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sink{cfg: cfg, queue: make(chan job, cfg.QueueSize)}, nil
}

// Stats returns the counters so far.
func (s *Sink) Stats() Stats {
	return Stats{Queued: s.queued.Load(), Delivered: s.delivered.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(), Retries: s.retries.Load()}
}

// PayloadOf builds the notification for r.
func (s *Sink) PayloadOf(r *record.Record) Payload {
	id := r.QueueID
	if id == "" {
		id = r.SessionID
	}
	p := Payload{Event: "message", ID: id, MessageID: r.MessageID, SessionID: r.SessionID, Timestamp: r.Timestamp.UTC(),
		From: r.From, To: r.To, Cc: r.Cc, Subject: r.Subject, MailFrom: r.MailFrom, RcptTo: r.RcptTo, Size: r.Size}
	if s.cfg.Link != "" && id != "" {
		p.Link = strings.ReplaceAll(s.cfg.Link, "{ID}", url.PathEscape(id))
	}
	return p
}

// Handle enqueues a notification for r without blocking; it never fails
// the record (a full queue is counted as a drop and logged).
func (s *Sink) Handle(_ context.Context, r *record.Record) error {
	if !s.cfg.Accept(r) {
		return nil
	}
	p := s.PayloadOf(r)
	body, err := json.Marshal(p)
	if err != nil { // cannot happen for these field types
		s.drop(1, "encode: "+err.Error())
		return nil
	}
	select {
	case s.queue <- job{id: record.NewID(time.Now()), body: body}:
		s.queued.Add(1)
	default:
		s.drop(1, "queue full")
	}
	return nil
}

// drop counts n dropped notifications and logs at most once per interval.
func (s *Sink) drop(n uint64, why string) {
	total := s.dropped.Add(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.lastDropLog) >= s.cfg.DropLogInterval {
		s.cfg.Logger.Warn("webhook notifications dropped", "reason", why, "dropped", total-s.droppedLogged, "dropped_total", total, "url", redactURL(s.cfg.URL))
		s.lastDropLog, s.droppedLogged = now, total
	}
}

// flushDropLog logs drops not yet logged.
func (s *Sink) flushDropLog() {
	total := s.dropped.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if total > s.droppedLogged {
		s.cfg.Logger.Warn("webhook notifications dropped", "dropped", total-s.droppedLogged, "dropped_total", total, "url", redactURL(s.cfg.URL))
		s.lastDropLog, s.droppedLogged = time.Now(), total
	}
}

// Run sends queued notifications until ctx ends. It owns the workers and
// returns after they stopped; notifications still queued then are
// counted as dropped and logged.
func (s *Sink) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	t := time.NewTicker(s.cfg.DropLogInterval)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			s.flushDropLog()
		}
	}
	wg.Wait()
	left := uint64(0)
	for {
		select {
		case <-s.queue:
			left++
			continue
		default:
		}
		break
	}
	if left > 0 {
		s.dropped.Add(left)
	}
	s.flushDropLog()
	return nil
}

func (s *Sink) work(ctx context.Context) {
	defer func() {
		// A panic must not take the process down with it (it would be a
		// bug here); the notification is counted as failed.
		if v := recover(); v != nil {
			s.failed.Add(1)
			s.cfg.Logger.Error("webhook worker panic", "panic", fmt.Sprint(v))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			s.deliver(ctx, j)
		}
	}
}

// errPermanent marks an answer not worth retrying.
var errPermanent = errors.New("permanent failure")

func (s *Sink) deliver(ctx context.Context, j job) {
	var err error
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			s.retries.Add(1)
			d := s.cfg.Backoff << (attempt - 2)
			if d > s.cfg.MaxBackoff || d <= 0 {
				d = s.cfg.MaxBackoff
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				s.dropped.Add(1) // shutting down mid-retry: not delivered
				return
			case <-t.C:
			}
		}
		if err = s.post(ctx, j, attempt); err == nil {
			s.delivered.Add(1)
			return
		}
		if errors.Is(err, errPermanent) || ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		s.dropped.Add(1)
		return
	}
	s.failed.Add(1)
	s.cfg.Logger.Warn("webhook notification failed", "delivery", j.id, "url", redactURL(s.cfg.URL), "err", err)
}

func (s *Sink) post(ctx context.Context, j job, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(j.body))
	if err != nil {
		return fmt.Errorf("webhook request: %w: %w", err, errPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "smtplog-webhook")
	req.Header.Set(EventHeader, "message")
	req.Header.Set(DeliveryHeader, j.id)
	req.Header.Set("X-Smtplog-Attempt", strconv.Itoa(attempt))
	if s.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign([]byte(s.cfg.Secret), j.body))
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook post: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return fmt.Errorf("webhook post: %s", resp.Status)
	default:
		return fmt.Errorf("webhook post: %s: %w", resp.Status, errPermanent)
	}
}

// Sign returns the signature header value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header (the X-Smtplog-Signature value) signs body
// with secret, in constant time.
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// redactURL drops user info and the query (tokens live there) for logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "[unparseable url]"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "[redacted]"
	}
	return u.String()
}
