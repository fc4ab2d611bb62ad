package web

import (
	"context"
	"testing"
)

// Browser gives tests outside the package (capture_browser_test.go, which
// needs package capture/api, which imports this one) the browser harness of
// browser_test.go: the same launcher, flags and tripwire.
type Browser struct{ b *browser }

// StartBrowser is startBrowser.
func StartBrowser(t *testing.T, base string) *Browser { return &Browser{startBrowser(t, base)} }

// SetT points failures at the running subtest.
func (b *Browser) SetT(t *testing.T) { b.b.t = t }

// Ctx is the browser's first tab.
func (b *Browser) Ctx() context.Context { return b.b.ctx }

// Open is browser.open.
func (b *Browser) Open(path, ready string) { b.b.t.Helper(); b.b.open(path, ready) }

// WaitFor is browser.waitFor.
func (b *Browser) WaitFor(cond string) { b.b.t.Helper(); b.b.waitFor(cond) }

// Screenshot is browser.screenshot.
func (b *Browser) Screenshot(name string) { b.b.t.Helper(); b.b.screenshot(name) }

// Dialogs counts the JavaScript dialogs opened so far.
func (b *Browser) Dialogs() int64 { return b.b.dialogs.Load() }

// Eval is eval.
func Eval[T any](b *Browser, expr string) T { b.b.t.Helper(); return eval[T](b.b, expr) }
