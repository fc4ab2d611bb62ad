package relay_test

import (
	"io"
	"log/slog"
)

// newDebugLogger logs everything, at debug level, to w, so the secret scan
// covers the operator log too.
func newDebugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
