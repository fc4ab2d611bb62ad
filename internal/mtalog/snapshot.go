package mtalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Snapshotter is the optional ability of a Correlator to save what it holds
// open (messages, sessions, links) and to take it up again: a Resumer that
// can snapshot every correlator in use resumes a followed file right after
// the last line it consumed instead of replaying the lines of every message
// still open.
//
// Snapshot returns the state as JSON, versioned by the correlator itself;
// it must not change the correlator. Restore is called on a fresh
// correlator (made by its Dialect's New with the same options) and makes it
// behave, line for line, as the one that was snapshotted: the same records
// from the same lines and flushes. A correlator that cannot promise that
// does not implement Snapshotter, and its source is replayed instead.
type Snapshotter interface {
	Snapshot() ([]byte, error)
	Restore([]byte) error
}

// pipelineSnapshotVersion is the version of the Pipeline's own envelope.
const pipelineSnapshotVersion = 1

// pipelineSnapshot is a Pipeline's state: its own (when idle flushes are
// due, which programs --mta auto has assigned) and its correlators', by
// dialect name.
type pipelineSnapshot struct {
	V        int                        `json:"v"`
	LastTime time.Time                  `json:"last_time,omitzero"`
	LastScan time.Time                  `json:"last_scan,omitzero"`
	Programs map[string]string          `json:"programs,omitempty"` // program -> dialect name, "" for none
	Misses   map[string]int             `json:"misses,omitempty"`
	Corr     map[string]json.RawMessage `json:"corr,omitempty"`
}

// errNoSnapshot means a correlator in use cannot be snapshotted.
var errNoSnapshot = errors.New("mtalog: a correlator in use cannot be snapshotted")

// snapshot encodes p's state, or returns errNoSnapshot.
func (p *Pipeline) snapshot() ([]byte, error) {
	s := pipelineSnapshot{V: pipelineSnapshotVersion, LastTime: p.lastTime, LastScan: p.lastScan}
	if len(p.byProg) > 0 {
		s.Programs = make(map[string]string, len(p.byProg))
		for prog, i := range p.byProg {
			name := ""
			if i >= 0 {
				name = p.opt.Dialects[i].Name
			}
			s.Programs[prog] = name
		}
	}
	if len(p.misses) > 0 {
		s.Misses = p.misses
	}
	for i, c := range p.corrs {
		if c == nil {
			continue
		}
		sn, ok := c.(Snapshotter)
		if !ok {
			return nil, errNoSnapshot
		}
		b, err := sn.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", p.opt.Dialects[i].Name, err)
		}
		if s.Corr == nil {
			s.Corr = map[string]json.RawMessage{}
		}
		s.Corr[p.opt.Dialects[i].Name] = b
	}
	return json.Marshal(s)
}

// canSnapshot reports whether every correlator in use is a Snapshotter.
func (p *Pipeline) canSnapshot() bool {
	for _, c := range p.corrs {
		if c == nil {
			continue
		}
		if _, ok := c.(Snapshotter); !ok {
			return false
		}
	}
	return true
}

// restore sets a fresh p's state from a snapshot.
func (p *Pipeline) restore(b []byte) error {
	var s pipelineSnapshot
	if err := DecodeSnapshot("mtalog: pipeline", b, &s, pipelineSnapshotVersion, func() int { return s.V }); err != nil {
		return err
	}
	index := func(name string) (int, error) {
		for i, d := range p.opt.Dialects {
			if d.Name == name {
				return i, nil
			}
		}
		return -1, fmt.Errorf("mtalog: snapshot names an unknown MTA %q", name)
	}
	p.lastTime, p.lastScan = s.LastTime, s.LastScan
	for prog, name := range s.Programs {
		i := -1
		if name != "" {
			var err error
			if i, err = index(name); err != nil {
				return err
			}
		}
		p.byProg[prog] = i
	}
	for prog, n := range s.Misses {
		p.misses[prog] = n
	}
	for name, raw := range s.Corr {
		i, err := index(name)
		if err != nil {
			return err
		}
		c := p.opt.Dialects[i].New(p.opt.Correlator)
		sn, ok := c.(Snapshotter)
		if !ok {
			return fmt.Errorf("mtalog: the %s correlator cannot restore a snapshot", name)
		}
		if err := sn.Restore(raw); err != nil {
			return fmt.Errorf("mtalog: restore %s: %w", name, err)
		}
		p.corrs[i] = c
	}
	return nil
}

// DecodeSnapshot unmarshals a JSON snapshot into s and checks that the
// version it holds (version reads it after decoding) is want. name, e.g.
// "postfix", begins every error.
func DecodeSnapshot(name string, b []byte, s any, want int, version func() int) error {
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("%s snapshot: %w", name, err)
	}
	if v := version(); v != want {
		return fmt.Errorf("%s snapshot: version %d, want %d", name, v, want)
	}
	return nil
}
