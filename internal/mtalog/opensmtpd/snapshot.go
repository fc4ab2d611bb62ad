package opensmtpd

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

// snapshot is what a Correlator holds open: sessions by session ID and
// messages by message ID.
type snapshot struct {
	V        int           `json:"v"`
	Sessions []snapSession `json:"sessions,omitempty"`
	Messages []snapMessage `json:"messages,omitempty"`
}

type snapSession struct {
	ID   string        `json:"id"`
	Rec  record.Record `json:"rec"`
	Last time.Time     `json:"last"`
}

type snapMessage struct {
	ID    string            `json:"id"`
	Rec   record.Record     `json:"rec"`
	Last  time.Time         `json:"last"`
	Final map[string]string `json:"final,omitempty"` // evpid → final status
	Envs  []string          `json:"envs,omitempty"`  // evpids seen, sorted
	Seen  bool              `json:"seen,omitempty"`
}

// Snapshot implements mtalog.Snapshotter: the open sessions and messages
// (with their envelopes), as JSON. Its size grows with what is open, which
// Options.MaxOpen bounds.
func (c *Correlator) Snapshot() ([]byte, error) {
	s := snapshot{V: snapshotVersion}
	for _, id := range slices.Sorted(maps.Keys(c.sessions)) {
		ss := c.sessions[id]
		s.Sessions = append(s.Sessions, snapSession{ID: id, Rec: *ss.rec, Last: ss.idle.Last()})
	}
	for _, id := range slices.Sorted(maps.Keys(c.msgs)) {
		m := c.msgs[id]
		sm := snapMessage{ID: id, Rec: *m.rec, Last: m.idle.Last(), Final: m.final, Seen: m.seen}
		for evp, ok := range m.envs {
			if ok {
				sm.Envs = append(sm.Envs, evp)
			}
		}
		slices.Sort(sm.Envs)
		s.Messages = append(s.Messages, sm)
	}
	return json.Marshal(s)
}

// Restore implements mtalog.Snapshotter; c must be fresh.
func (c *Correlator) Restore(b []byte) error {
	var s snapshot
	if err := mtalog.DecodeSnapshot("opensmtpd", b, &s, snapshotVersion, func() int { return s.V }); err != nil {
		return err
	}
	if len(c.sessions) > 0 || len(c.msgs) > 0 {
		return fmt.Errorf("opensmtpd snapshot: restore into a correlator in use")
	}
	sessions := make(map[string]*session, len(s.Sessions))
	for _, ss := range s.Sessions {
		if _, dup := sessions[ss.ID]; dup {
			return fmt.Errorf("opensmtpd snapshot: session %q twice", ss.ID)
		}
		rec := ss.Rec
		x := &session{rec: &rec}
		x.idle.Value = ss.ID
		sessions[ss.ID] = x
	}
	msgs := make(map[string]*message, len(s.Messages))
	for _, sm := range s.Messages {
		if _, dup := msgs[sm.ID]; dup {
			return fmt.Errorf("opensmtpd snapshot: message %q twice", sm.ID)
		}
		m := &message{final: sm.Final, envs: make(map[string]bool, len(sm.Envs)), seen: sm.Seen}
		if m.final == nil {
			m.final = map[string]string{}
		}
		for _, evp := range sm.Envs {
			m.envs[evp] = true
		}
		// Every envelope with an outcome was seen (delivery marks it).
		for evp := range m.final {
			if !m.envs[evp] {
				return fmt.Errorf("opensmtpd snapshot: message %q: outcome of envelope %q not seen", sm.ID, evp)
			}
		}
		rec := sm.Rec
		m.rec = &rec
		m.idle.Value = sm.ID
		msgs[sm.ID] = m
	}
	c.sessions, c.msgs = sessions, msgs
	// The queues least recently seen first, as Feed would have left them.
	mtalog.TouchInOrder(&c.idleSess, s.Sessions, func(ss snapSession) time.Time { return ss.Last },
		func(ss snapSession) *mtalog.IdleEntry[string] { return &sessions[ss.ID].idle })
	mtalog.TouchInOrder(&c.idleMsgs, s.Messages, func(sm snapMessage) time.Time { return sm.Last },
		func(sm snapMessage) *mtalog.IdleEntry[string] { return &msgs[sm.ID].idle })
	return nil
}
