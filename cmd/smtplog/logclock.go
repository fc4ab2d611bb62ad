package main

import "time"

// logClock tells an idle flush what time it is in log time: the newest
// line's timestamp plus the wall-clock time since a line was last fed.
// While the MTA writes live, that is the wall clock; while a follower
// catches up on an older log, it is the log's own time, so messages whose
// next lines are about to be read are not emitted as incomplete because
// their first lines are old by the wall clock. Not safe for concurrent use:
// its owner feeds and flushes under one lock.
type logClock struct {
	log  time.Time // the newest line's timestamp
	wall time.Time // when a line was last fed
}

// fed notes a line with timestamp t fed at wall-clock time now.
func (c *logClock) fed(t, now time.Time) {
	if t.After(c.log) {
		c.log = t
	}
	c.wall = now
}

// idleBefore is the cutoff of an idle flush at wall-clock time now: the
// messages that have seen no line for after, in log time.
func (c *logClock) idleBefore(now time.Time, after time.Duration) time.Time {
	if c.log.IsZero() {
		return now.Add(-after)
	}
	return c.log.Add(now.Sub(c.wall)).Add(-after)
}
