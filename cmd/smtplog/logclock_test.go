package main

import (
	"testing"
	"time"
)

func TestLogClock(t *testing.T) {
	wall := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var c logClock
	if got := c.idleBefore(wall, time.Hour); !got.Equal(wall.Add(-time.Hour)) {
		t.Errorf("nothing fed: cutoff %v", got)
	}
	// Catching up on a log a week old: the cutoff follows the log's time,
	// not the wall clock, so nothing read a moment ago counts as idle.
	old := wall.Add(-7 * 24 * time.Hour)
	c.fed(old, wall)
	c.fed(old.Add(-time.Minute), wall.Add(time.Second)) // out of order: the newest stays
	if got, want := c.idleBefore(wall.Add(11*time.Second), 5*time.Minute), old.Add(10*time.Second-5*time.Minute); !got.Equal(want) {
		t.Errorf("catching up: cutoff %v, want %v", got, want)
	}
	// The log goes quiet: log time moves on with the wall clock.
	if got, want := c.idleBefore(wall.Add(time.Hour+time.Second), 5*time.Minute), old.Add(time.Hour-5*time.Minute); !got.Equal(want) {
		t.Errorf("quiet: cutoff %v, want %v", got, want)
	}
	// Live: lines stamped as they are fed give the wall clock.
	c.fed(wall.Add(2*time.Hour), wall.Add(2*time.Hour))
	if got, want := c.idleBefore(wall.Add(3*time.Hour), time.Minute), wall.Add(3*time.Hour-time.Minute); !got.Equal(want) {
		t.Errorf("live: cutoff %v, want %v", got, want)
	}
}
