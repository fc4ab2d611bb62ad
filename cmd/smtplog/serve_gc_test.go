package main

import (
	"runtime/debug"
	"testing"
)

// TestCaptureGC: capture mode lowers GOGC only when the user set neither
// GOGC nor GOMEMLIMIT, and puts the old value back afterwards.
func TestCaptureGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	restore := captureGC(env(nil))
	if got := debug.SetGCPercent(captureGCPercent); got != captureGCPercent {
		t.Errorf("GOGC in capture mode = %d, want %d", got, captureGCPercent)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC after serve = %d, want 100 back", got)
	}
	for _, kv := range []map[string]string{{"GOGC": "200"}, {"GOMEMLIMIT": "1GiB"}} {
		restore := captureGC(env(kv))
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("with %v: GOGC = %d, want the user's setting left alone", kv, got)
		}
		restore()
	}
}
