package postfix

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/record"
)

var _ mtalog.Snapshotter = (*Correlator)(nil)

// snapshotVersion is the version of the Correlator's snapshot; Restore
// refuses any other.
const snapshotVersion = 1

// snapshot is what a Correlator holds open. A message of several queue IDs
// (a content filter's re-injected copies) is one entry under all of its
// keys, so Restore rebuilds the sharing.
type snapshot struct {
	V         int           `json:"v"`
	Now       time.Time     `json:"now,omitzero"`
	Seq       uint64        `json:"seq,omitempty"`
	Messages  []snapMessage `json:"messages,omitempty"`
	Lingering []int         `json:"lingering,omitempty"` // indexes into Messages, in order
	Sessions  []snapSession `json:"sessions,omitempty"`
	OutTLS    []snapTLS     `json:"out_tls,omitempty"`
}

type snapMessage struct {
	Rec      record.Record `json:"rec"`
	Keys     []snapKey     `json:"keys,omitempty"` // the keys under which msgs holds it
	Open     int           `json:"open"`
	Last     time.Time     `json:"last"`
	DoneAt   time.Time     `json:"done_at,omitzero"`
	Members  []string      `json:"members,omitempty"`
	Loopback bool          `json:"loopback,omitempty"`
	Hops     []int         `json:"hops,omitempty"`
}

type snapKey struct {
	Host string `json:"host"`
	QID  string `json:"qid"`
}

type snapSession struct {
	Host     string        `json:"host"`
	PID      int           `json:"pid"`
	Rec      record.Record `json:"rec"`
	Last     time.Time     `json:"last"`
	Warnings []string      `json:"warnings,omitempty"`
}

type snapTLS struct {
	Host string     `json:"host"`
	PID  int        `json:"pid"`
	TLS  record.TLS `json:"tls"`
	Peer string     `json:"peer,omitempty"`
	Seen time.Time  `json:"seen"`
}

// Snapshot implements mtalog.Snapshotter: the open messages (with the
// lingering ones waiting for a content filter link), sessions and outbound
// TLS connections, as JSON. Its size grows with what is open, which
// CorrelatorOptions.MaxOpen bounds.
func (c *Correlator) Snapshot() ([]byte, error) {
	s := snapshot{V: snapshotVersion, Now: c.now, Seq: c.seq}
	idx := map[*message]int{}
	add := func(m *message) int {
		if i, ok := idx[m]; ok {
			return i
		}
		sm := snapMessage{
			Rec: m.rec, Open: m.open, Last: m.last, DoneAt: m.doneAt,
			Members: m.members, Loopback: m.loopback,
		}
		for h, ok := range m.hops {
			if ok {
				sm.Hops = append(sm.Hops, h)
			}
		}
		sort.Ints(sm.Hops)
		idx[m] = len(s.Messages)
		s.Messages = append(s.Messages, sm)
		return len(s.Messages) - 1
	}
	// In a stable order, so that equal states make equal snapshots.
	keys := make([]key, 0, c.msgs.len())
	c.msgs.all(func(host, qid string, _ *message) bool {
		keys = append(keys, key{host, qid})
		return true
	})
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].host != keys[j].host {
			return keys[i].host < keys[j].host
		}
		return keys[i].qid < keys[j].qid
	})
	for _, k := range keys {
		m, _ := c.msgs.get(k.host, k.qid)
		i := add(m)
		s.Messages[i].Keys = append(s.Messages[i].Keys, snapKey{k.host, k.qid})
	}
	for _, m := range c.lingering {
		// Emitted ones wait only to be dropped.
		if m != nil && !m.emitted {
			s.Lingering = append(s.Lingering, add(m))
		}
	}
	c.sessions.all(func(host string, pid int, ss *session) bool {
		s.Sessions = append(s.Sessions, snapSession{Host: host, PID: pid, Rec: ss.rec, Last: ss.last, Warnings: ss.warnings})
		return true
	})
	sort.Slice(s.Sessions, func(i, j int) bool {
		a, b := s.Sessions[i], s.Sessions[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.PID < b.PID
	})
	c.outTLS.all(func(host string, pid int, t *smtpTLS) bool {
		s.OutTLS = append(s.OutTLS, snapTLS{Host: host, PID: pid, TLS: *t.tls, Peer: t.peer, Seen: t.idle.Last()})
		return true
	})
	sort.Slice(s.OutTLS, func(i, j int) bool {
		a, b := s.OutTLS[i], s.OutTLS[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.PID < b.PID
	})
	return json.Marshal(s)
}

// Restore implements mtalog.Snapshotter; c must be fresh.
func (c *Correlator) Restore(b []byte) error {
	var s snapshot
	if err := mtalog.DecodeSnapshot("postfix", b, &s, snapshotVersion, func() int { return s.V }); err != nil {
		return err
	}
	if c.msgs.len() > 0 || c.sessions.len() > 0 || c.outTLS.len() > 0 || len(c.lingering) > 0 {
		return fmt.Errorf("postfix snapshot: restore into a correlator in use")
	}
	c.now, c.seq = s.Now, s.Seq
	ms := make([]*message, len(s.Messages))
	for i := range s.Messages {
		sm := &s.Messages[i]
		m := &message{
			rec: sm.Rec, open: sm.Open, last: sm.Last, doneAt: sm.DoneAt,
			members: sm.Members, loopback: sm.Loopback,
		}
		c.intern(&m.rec)
		if len(sm.Hops) > 0 {
			m.hops = make(map[int]bool, len(sm.Hops))
			for _, h := range sm.Hops {
				m.hops[h] = true
			}
		}
		ms[i] = m
		for _, k := range sm.Keys {
			c.msgs.set(c.strs.get(k.Host), k.QID, m)
		}
	}
	// The queues of what is open, least recently seen first.
	open := make([]*message, 0, len(ms))
	for i, m := range ms {
		if len(s.Messages[i].Keys) > 0 {
			m.idle.Value = m
			open = append(open, m)
		}
	}
	sort.SliceStable(open, func(i, j int) bool { return open[i].last.Before(open[j].last) })
	for _, m := range open {
		c.idleMsgs.Touch(&m.idle, m.last)
	}
	for _, i := range s.Lingering {
		if i < 0 || i >= len(ms) {
			return fmt.Errorf("postfix snapshot: lingering message %d of %d", i, len(ms))
		}
		c.lingering = append(c.lingering, ms[i])
	}
	sort.SliceStable(s.Sessions, func(i, j int) bool { return s.Sessions[i].Last.Before(s.Sessions[j].Last) })
	for _, ss := range s.Sessions {
		k := sessKey{c.strs.get(ss.Host), ss.PID}
		c.intern(&ss.Rec)
		x := &session{rec: ss.Rec, warnings: ss.Warnings}
		x.idle.Value = k
		c.sessions.set(k.host, k.pid, x)
		c.touchSession(x, ss.Last)
	}
	sort.SliceStable(s.OutTLS, func(i, j int) bool { return s.OutTLS[i].Seen.Before(s.OutTLS[j].Seen) })
	for _, t := range s.OutTLS {
		k := sessKey{c.strs.get(t.Host), t.PID}
		tls := t.TLS
		x := &smtpTLS{tls: &tls, peer: c.strs.get(t.Peer)}
		x.idle.Value = k
		c.outTLS.set(k.host, k.pid, x)
		c.idleTLS.Touch(&x.idle, t.Seen)
	}
	return nil
}

// intern shares the host of a restored record with the interner, as Feed
// would have.
func (c *Correlator) intern(r *record.Record) {
	r.Host = c.strs.get(r.Host)
}
