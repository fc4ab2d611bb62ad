package postfix

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
)

// Replay writes n copies of a Postfix log to w, each with fresh queue IDs
// and process IDs, so that every copy is its own set of messages and
// sessions: a large log made from real Postfix output, for benchmarks.
// Queue IDs are the 11-hex-digit IDs of Debian's Postfix; copy i keeps
// their first six digits and replaces the last five with i (mod 2^20), and
// prefixes every pid with i. Times are kept.
func Replay(w io.Writer, log []byte, n int) error {
	qid := regexp.MustCompile(`\b[0-9A-F]{11}\b`)
	pid := regexp.MustCompile(`\[(\d+)\]: `)
	var buf bytes.Buffer
	for i := range n {
		buf.Reset()
		c := qid.ReplaceAllFunc(log, func(b []byte) []byte { return fmt.Appendf(nil, "%s%05X", b[:6], i&0xFFFFF) })
		c = pid.ReplaceAllFunc(c, func(b []byte) []byte { return fmt.Appendf(nil, "[%d%s", i, b[1:]) })
		buf.Write(c)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	return nil
}
