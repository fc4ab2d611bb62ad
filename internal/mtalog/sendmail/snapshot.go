package sendmail

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

// snapshot is what a Correlator holds open: messages by queue ID and the
// TLS and AUTH state of processes by pid.
type snapshot struct {
	V        int           `json:"v"`
	Messages []snapMessage `json:"messages,omitempty"`
	Conns    []snapConn    `json:"conns,omitempty"`
}

type snapMessage struct {
	QID    string          `json:"qid"`
	Rec    record.Record   `json:"rec"`
	Last   time.Time       `json:"last"`
	Final  map[string]bool `json:"final,omitempty"`
	Nrcpts int             `json:"nrcpts,omitempty"`
	From   bool            `json:"from,omitempty"`
}

type snapConn struct {
	PID      int         `json:"pid"`
	Last     time.Time   `json:"last"`
	TLS      *record.TLS `json:"tls,omitempty"`
	UpTLS    *record.TLS `json:"up_tls,omitempty"`
	Username string      `json:"username,omitempty"`
	Mech     string      `json:"mech,omitempty"`
}

// Snapshot implements mtalog.Snapshotter: the open messages and the
// processes' connection state, as JSON. Its size grows with what is open,
// which Options.MaxOpen bounds.
func (c *Correlator) Snapshot() ([]byte, error) {
	s := snapshot{V: snapshotVersion}
	for _, id := range slices.Sorted(maps.Keys(c.msgs)) {
		m := c.msgs[id]
		s.Messages = append(s.Messages, snapMessage{QID: id, Rec: *m.rec, Last: m.idle.Last(), Final: m.final, Nrcpts: m.nrcpts, From: m.from})
	}
	for _, pid := range slices.Sorted(maps.Keys(c.conns)) {
		k := c.conns[pid]
		s.Conns = append(s.Conns, snapConn{PID: pid, Last: k.idle.Last(), TLS: k.tls, UpTLS: k.upTLS, Username: k.username, Mech: k.mech})
	}
	return json.Marshal(s)
}

// Restore implements mtalog.Snapshotter; c must be fresh.
func (c *Correlator) Restore(b []byte) error {
	var s snapshot
	if err := mtalog.DecodeSnapshot("sendmail", b, &s, snapshotVersion, func() int { return s.V }); err != nil {
		return err
	}
	if len(c.msgs) > 0 || len(c.conns) > 0 {
		return fmt.Errorf("sendmail snapshot: restore into a correlator in use")
	}
	msgs := make(map[string]*message, len(s.Messages))
	for _, sm := range s.Messages {
		if _, dup := msgs[sm.QID]; dup {
			return fmt.Errorf("sendmail snapshot: message %q twice", sm.QID)
		}
		final := sm.Final
		if final == nil {
			final = map[string]bool{}
		}
		rec := sm.Rec
		m := &message{rec: &rec, final: final, nrcpts: sm.Nrcpts, from: sm.From}
		m.idle.Value = sm.QID
		msgs[sm.QID] = m
	}
	conns := make(map[int]*conn, len(s.Conns))
	for _, sc := range s.Conns {
		if _, dup := conns[sc.PID]; dup {
			return fmt.Errorf("sendmail snapshot: process %d twice", sc.PID)
		}
		k := &conn{tls: sc.TLS, upTLS: sc.UpTLS, username: sc.Username, mech: sc.Mech}
		k.idle.Value = sc.PID
		conns[sc.PID] = k
	}
	c.msgs, c.conns = msgs, conns
	// The queues least recently seen first, as Feed would have left them.
	mtalog.TouchInOrder(&c.idleMsgs, s.Messages, func(sm snapMessage) time.Time { return sm.Last },
		func(sm snapMessage) *mtalog.IdleEntry[string] { return &msgs[sm.QID].idle })
	mtalog.TouchInOrder(&c.idleConns, s.Conns, func(sc snapConn) time.Time { return sc.Last },
		func(sc snapConn) *mtalog.IdleEntry[int] { return &conns[sc.PID].idle })
	return nil
}
