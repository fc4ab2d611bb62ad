package exim

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

var _ mtalog.Snapshotter = (*Correlator)(nil)

// snapshotVersion is the version of the Correlator's snapshot; Restore
// refuses any other.
const snapshotVersion = 1

// snapshot is what a Correlator holds open: messages by ID, sessions by
// client address, the rejections held for their copy from the other log
// file (with the one continuation lines go to), and the keys of recent
// rejections, oldest first.
type snapshot struct {
	V        int           `json:"v"`
	Messages []snapMessage `json:"messages,omitempty"`
	Sessions []snapSession `json:"sessions,omitempty"`
	Held     []snapHeld    `json:"held,omitempty"`
	// Target is 1 + the index in Held of the rejection that continuation
	// lines belong to; 0 for none.
	Target int      `json:"target,omitempty"`
	LastOK bool     `json:"last_ok,omitempty"`
	Seen   []string `json:"seen,omitempty"`
}

type snapMessage struct {
	ID      string        `json:"id"`
	Rec     record.Record `json:"rec"`
	Last    time.Time     `json:"last"`
	Arrival bool          `json:"arrival,omitempty"`
}

type snapSession struct {
	Key    string        `json:"key"`
	Rec    record.Record `json:"rec"`
	Last   time.Time     `json:"last"`
	Closed bool          `json:"closed,omitempty"`
}

type snapHeld struct {
	Key string        `json:"key"`
	T   time.Time     `json:"t"`
	Rec record.Record `json:"rec"`
}

// Snapshot implements mtalog.Snapshotter: the open messages and sessions,
// the held rejections and the recent rejections' keys, as JSON. Its size
// grows with what is open, which Options.MaxOpen bounds, plus at most
// maxHeld held rejections and seenSize keys.
func (c *Correlator) Snapshot() ([]byte, error) {
	s := snapshot{V: snapshotVersion, LastOK: c.lastOK}
	for _, id := range slices.Sorted(maps.Keys(c.msgs)) {
		m := c.msgs[id]
		s.Messages = append(s.Messages, snapMessage{ID: id, Rec: *m.rec, Last: m.idle.Last(), Arrival: m.arrival})
	}
	for _, k := range slices.Sorted(maps.Keys(c.sessions)) {
		ss := c.sessions[k]
		s.Sessions = append(s.Sessions, snapSession{Key: k, Rec: *ss.rec, Last: ss.idle.Last(), Closed: ss.closed})
	}
	for i, h := range c.held {
		s.Held = append(s.Held, snapHeld{Key: h.key, T: h.t, Rec: *h.rec})
		if h.rec == c.target {
			s.Target = i + 1
		}
	}
	// The ring from its oldest entry; it fills from slot 0 and never
	// empties a slot, so the empty ones are its unused end.
	for i := range seenSize {
		if k := c.seenRing[(c.seenNext+i)%seenSize]; k != "" {
			s.Seen = append(s.Seen, k)
		}
	}
	return json.Marshal(s)
}

// Restore implements mtalog.Snapshotter; c must be fresh, made with the
// options of the snapshotted one.
func (c *Correlator) Restore(b []byte) error {
	var s snapshot
	if err := mtalog.DecodeSnapshot("exim", b, &s, snapshotVersion, func() int { return s.V }); err != nil {
		return err
	}
	if len(c.msgs) > 0 || len(c.sessions) > 0 || len(c.held) > 0 || len(c.seen) > 0 || c.lastOK {
		return fmt.Errorf("exim snapshot: restore into a correlator in use")
	}
	if s.Target < 0 || s.Target > len(s.Held) {
		return fmt.Errorf("exim snapshot: target %d of %d held rejections", s.Target, len(s.Held))
	}
	if len(s.Held) > maxHeld || len(s.Seen) > seenSize {
		return fmt.Errorf("exim snapshot: %d held rejections and %d seen, want at most %d and %d", len(s.Held), len(s.Seen), maxHeld, seenSize)
	}
	msgs := make(map[string]*message, len(s.Messages))
	for _, sm := range s.Messages {
		if _, dup := msgs[sm.ID]; dup {
			return fmt.Errorf("exim snapshot: message %q twice", sm.ID)
		}
		rec := sm.Rec
		m := &message{rec: &rec, arrival: sm.Arrival}
		m.idle.Value = sm.ID
		msgs[sm.ID] = m
	}
	sessions := make(map[string]*session, len(s.Sessions))
	for _, ss := range s.Sessions {
		if _, dup := sessions[ss.Key]; dup {
			return fmt.Errorf("exim snapshot: session %q twice", ss.Key)
		}
		rec := ss.Rec
		x := &session{rec: &rec, closed: ss.Closed}
		x.idle.Value = ss.Key
		sessions[ss.Key] = x
	}
	seen := make(map[string]struct{}, len(s.Seen))
	for _, k := range s.Seen {
		if _, dup := seen[k]; dup || k == "" {
			return fmt.Errorf("exim snapshot: seen key %q empty or twice", k)
		}
		seen[k] = struct{}{}
	}
	c.msgs, c.sessions, c.seen = msgs, sessions, seen
	// The queues least recently seen first, as Feed would have left them.
	mtalog.TouchInOrder(&c.idleMsgs, s.Messages, func(sm snapMessage) time.Time { return sm.Last },
		func(sm snapMessage) *mtalog.IdleEntry[string] { return &msgs[sm.ID].idle })
	mtalog.TouchInOrder(&c.idleSess, s.Sessions, func(ss snapSession) time.Time { return ss.Last },
		func(ss snapSession) *mtalog.IdleEntry[string] { return &sessions[ss.Key].idle })
	for _, h := range s.Held {
		rec := h.Rec
		c.held = append(c.held, heldReject{key: h.Key, t: h.T, rec: &rec})
	}
	if s.Target > 0 {
		c.target = c.held[s.Target-1].rec
	}
	c.lastOK = s.LastOK
	copy(c.seenRing, s.Seen)
	c.seenNext = len(s.Seen) % seenSize
	return nil
}
