// Package trace joins everything every vantage point saw about one message
// into one timeline: the relay's or capture server's transcript, the queue
// ID the upstream returned, the MTA log's delivery attempts for that queue
// ID and for the queue IDs it was re-injected as, and the bounces it caused.
// It is what no single log shows: a message followed from the application
// through the relay and the MTA's queue to the remote server's final answer.
package trace

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

// Source is what a trace reads; *store.Store satisfies it.
type Source interface {
	ByMessageID(ctx context.Context, msgid string) ([]store.Item, error)
	ByQueueID(ctx context.Context, queueID string) ([]store.Item, error)
	Session(ctx context.Context, sessionID string) ([]store.Item, error)
}

// ParentSource is implemented by sources that can find the notifications
// (bounces, delay warnings) a message caused.
type ParentSource interface {
	ByParentQueueID(ctx context.Context, queueID string) ([]store.Item, error)
}

var _ Source = (*store.Store)(nil)

// Limits bound a trace: a message ID shared by thousands of records (a
// newsletter with one ID) must not make a trace unbounded.
const (
	MaxRecords = 500
	MaxRounds  = 6
)

// ErrNotFound means no record matched the ID.
var ErrNotFound = errors.New("trace: nothing recorded for this ID")

// Step is one event of the timeline.
type Step struct {
	Time         time.Time `json:"time"`
	Source       string    `json:"source"`
	Host         string    `json:"host,omitempty"`
	Kind         string    `json:"kind"` // session, relay, capture, received, rejected, delivery, notification
	Summary      string    `json:"summary"`
	QueueID      string    `json:"queue_id,omitempty"`
	Rcpt         string    `json:"rcpt,omitempty"`
	Relay        string    `json:"relay,omitempty"`
	Status       string    `json:"status,omitempty"`
	SMTPResponse string    `json:"smtp_response,omitempty"`
	DSN          string    `json:"dsn,omitempty"`
	SessionID    string    `json:"session_id,omitempty"`
	RecordID     int64     `json:"record_id"`
}

// Trace is the whole story of one message.
type Trace struct {
	ID         string          `json:"id"`
	MessageIDs []string        `json:"message_ids,omitempty"`
	QueueIDs   []string        `json:"queue_ids,omitempty"`
	SessionIDs []string        `json:"session_ids,omitempty"`
	Steps      []Step          `json:"steps"`
	Records    []record.Record `json:"records"`
	RecordIDs  []int64         `json:"record_ids"`
	Truncated  bool            `json:"truncated,omitempty"`
}

// Build traces id: a Message-ID (angle brackets optional), a queue ID or a
// session ID.
func Build(ctx context.Context, src Source, id string) (Trace, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return Trace{}, errors.New("trace: give a Message-ID, a queue ID or a session ID")
	}
	b := &builder{ctx: ctx, src: src, items: map[int64]store.Item{},
		seenMsg: map[string]bool{}, seenQueue: map[string]bool{}, seenSess: map[string]bool{}, seenParent: map[string]bool{}}
	// Seeds: whatever the ID can be.
	if strings.Contains(id, "@") || strings.HasPrefix(id, "<") {
		b.msgIDs = append(b.msgIDs, id)
	} else {
		b.queues = append(b.queues, id)
		// A session ID given by the user brings every message of the
		// session; sessions reached from a message bring only themselves.
		b.seenSess[id] = true
		if err := b.add(src.Session(ctx, id)); err != nil {
			return Trace{}, err
		}
	}
	if err := b.expand(); err != nil {
		return Trace{}, err
	}
	if len(b.items) == 0 {
		return Trace{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return b.result(id), nil
}

type builder struct {
	ctx   context.Context
	src   Source
	items map[int64]store.Item

	msgIDs, queues, sessions, parents        []string
	seenMsg, seenQueue, seenSess, seenParent map[string]bool
	truncated                                bool
}

func (b *builder) add(items []store.Item, err error) error {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("trace: %w", err)
	}
	for _, it := range items {
		if len(b.items) >= MaxRecords {
			b.truncated = true
			return nil
		}
		if _, ok := b.items[it.ID]; ok {
			continue
		}
		b.items[it.ID] = it
		r := &it.Record
		if r.MessageID != "" {
			b.msgIDs = append(b.msgIDs, r.MessageID)
		}
		if r.QueueID != "" {
			b.queues = append(b.queues, r.QueueID)
			b.parents = append(b.parents, r.QueueID)
		}
		for _, d := range r.Deliveries {
			if d.QueueID != "" {
				b.queues = append(b.queues, d.QueueID)
			}
		}
		if r.ParentQueueID != "" {
			b.queues = append(b.queues, r.ParentQueueID)
		}
		if r.SessionID != "" && (r.Source == record.SourceProxy || r.Source == record.SourceCapture) {
			b.sessions = append(b.sessions, r.SessionID)
		}
	}
	return nil
}

func (b *builder) expand() error {
	for round := 0; round < MaxRounds; round++ {
		progress := false
		drained, err := drain(&b.msgIDs, b.seenMsg, func(id string) error {
			return b.add(b.src.ByMessageID(b.ctx, id))
		})
		progress = progress || drained
		if err != nil {
			return err
		}
		drained, err = drain(&b.queues, b.seenQueue, func(q string) error {
			return b.add(b.src.ByQueueID(b.ctx, q))
		})
		progress = progress || drained
		if err != nil {
			return err
		}
		if ps, ok := b.src.(ParentSource); ok {
			drained, err = drain(&b.parents, b.seenParent, func(q string) error {
				return b.add(ps.ByParentQueueID(b.ctx, q))
			})
			progress = progress || drained
			if err != nil {
				return err
			}
		}
		drained, err = drain(&b.sessions, b.seenSess, func(s string) error {
			items, err := b.src.Session(b.ctx, s)
			// Only the session record itself: the session's other
			// messages are other stories.
			var keep []store.Item
			for _, it := range items {
				if it.Record.Type == record.TypeSession {
					keep = append(keep, it)
				}
			}
			return b.add(keep, err)
		})
		progress = progress || drained
		if err != nil {
			return err
		}
		if !progress || b.truncated {
			break
		}
	}
	return nil
}

// drain takes each key off the front of *queue (which fetch may append
// to) and, unless seen has it, marks it seen and passes it to fetch; it
// reports whether any key was new, and stops at fetch's first error.
func drain(queue *[]string, seen map[string]bool, fetch func(string) error) (bool, error) {
	progress := false
	for len(*queue) > 0 {
		k := (*queue)[0]
		*queue = (*queue)[1:]
		if seen[k] {
			continue
		}
		seen[k] = true
		progress = true
		if err := fetch(k); err != nil {
			return progress, err
		}
	}
	return progress, nil
}

func (b *builder) result(id string) Trace {
	t := Trace{ID: id, Truncated: b.truncated}
	ids := make([]int64, 0, len(b.items))
	for k := range b.items {
		ids = append(ids, k)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, c := b.items[ids[i]].Record.Timestamp, b.items[ids[j]].Record.Timestamp
		if !a.Equal(c) {
			return a.Before(c)
		}
		return ids[i] < ids[j]
	})
	msg, queue, sess := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, k := range ids {
		it := b.items[k]
		r := it.Record
		t.Records = append(t.Records, r)
		t.RecordIDs = append(t.RecordIDs, it.ID)
		if r.MessageID != "" && !msg[r.MessageID] {
			msg[r.MessageID] = true
			t.MessageIDs = append(t.MessageIDs, r.MessageID)
		}
		for _, q := range append([]string{r.QueueID}, deliveryQueues(r)...) {
			if q != "" && !queue[q] {
				queue[q] = true
				t.QueueIDs = append(t.QueueIDs, q)
			}
		}
		if r.SessionID != "" && !sess[r.SessionID] && (r.Source == record.SourceProxy || r.Source == record.SourceCapture) {
			sess[r.SessionID] = true
			t.SessionIDs = append(t.SessionIDs, r.SessionID)
		}
		t.Steps = append(t.Steps, steps(it.ID, &r)...)
	}
	sort.SliceStable(t.Steps, func(i, j int) bool { return t.Steps[i].Time.Before(t.Steps[j].Time) })
	return t
}

func deliveryQueues(r record.Record) []string {
	var out []string
	for _, d := range r.Deliveries {
		out = append(out, d.QueueID)
	}
	return out
}

// steps turns one record into timeline steps.
func steps(id int64, r *record.Record) []Step {
	base := Step{Time: r.Timestamp, Source: string(r.Source), Host: r.Host, QueueID: r.QueueID, SessionID: r.SessionID, RecordID: id}
	from := "<>"
	if r.MailFrom != nil && *r.MailFrom != "" {
		from = *r.MailFrom
	}
	switch {
	case r.Type == record.TypeSession:
		s := base
		s.Kind = "session"
		s.Summary = fmt.Sprintf("connection from %s", r.ClientIP)
		if r.Helo != "" {
			s.Summary += " (" + r.Helo + ")"
		}
		if r.TLS != nil && r.TLS.Used {
			s.Summary += ", " + r.TLS.Version
		}
		if r.Auth != nil {
			s.Summary += fmt.Sprintf(", AUTH %s %s %s", r.Auth.Mechanism, r.Auth.Username, r.Auth.Result)
		}
		if r.CloseReason != "" {
			s.Summary += ", closed: " + r.CloseReason
		}
		if r.Reason != "" {
			s.Summary += " (" + r.Reason + ")"
		}
		return []Step{s}
	case r.Source == record.SourceProxy || r.Source == record.SourceCapture:
		s := base
		s.Kind = string(r.Source)
		if r.Source == record.SourceProxy {
			s.Kind = "relay"
		}
		s.Status = r.Status
		s.SMTPResponse = r.SMTPResponse
		to := r.Upstream
		if to == "" {
			to = "smtplog"
		}
		s.Summary = fmt.Sprintf("%s → %s: from %s to %s: %s", clientOf(r), to, from, strings.Join(r.RcptTo, ", "), r.SMTPResponse)
		out := []Step{s}
		for _, rj := range r.RejectedRcpt {
			x := base
			x.Kind = "rejected"
			x.Rcpt = rj.Address
			x.Status = record.StatusRejected
			x.SMTPResponse = rj.SMTPResponse
			x.Summary = fmt.Sprintf("recipient %s refused: %s", rj.Address, rj.SMTPResponse)
			out = append(out, x)
		}
		return out
	default:
		s := base
		s.Kind = "received"
		if r.ParentQueueID != "" {
			s.Kind = "notification"
		}
		if r.Status == record.StatusRejected && r.QueueID == "" {
			s.Kind = "rejected"
		}
		s.Status = r.Status
		s.Summary = fmt.Sprintf("%s queue %s: from %s (%s), %d recipient(s), %d bytes", r.Source, r.QueueID, from, clientOf(r), max(r.Nrcpt, len(r.RcptTo)), r.Size)
		if r.ParentQueueID != "" {
			s.Summary = fmt.Sprintf("%s queue %s: delivery status notification for %s to %s", r.Source, r.QueueID, r.ParentQueueID, strings.Join(r.RcptTo, ", "))
		}
		if s.Kind == "rejected" {
			s.SMTPResponse = r.SMTPResponse
			s.Summary = fmt.Sprintf("%s refused from %s: %s", r.Source, clientOf(r), r.SMTPResponse)
		}
		out := []Step{s}
		for _, d := range r.Deliveries {
			x := base
			x.Time = d.Timestamp
			x.Kind = "delivery"
			x.Rcpt = d.Rcpt
			x.Relay = d.Relay
			x.Status = d.Status
			x.DSN = d.DSN
			x.SMTPResponse = d.SMTPResponse
			if d.QueueID != "" {
				x.QueueID = d.QueueID
			}
			x.Summary = fmt.Sprintf("%s to %s via %s: %s", d.Status, d.Rcpt, orDash(d.Relay), d.SMTPResponse)
			if d.DSN != "" {
				x.Summary += " (dsn " + d.DSN + ")"
			}
			out = append(out, x)
		}
		return out
	}
}

func clientOf(r *record.Record) string {
	c := r.ClientIP
	if c == "" {
		c = "local"
	}
	if r.Helo != "" {
		c += " (" + r.Helo + ")"
	}
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
