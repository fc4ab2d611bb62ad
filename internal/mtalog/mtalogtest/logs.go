package mtalogtest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtplog/smtplog/internal/mtalog/postfix"
)

// Logs reads every MTA log under the testdata directory root (Postfix and
// OpenSMTPD *.log, Sendmail maillog*, Exim mainlog* and rejectlog*), keyed
// by path; golden JSON files are left out. It fails t when it finds fewer
// than 8, so that a moved directory does not leave a test with nothing to
// check.
func Logs(t testing.TB, root string) map[string][]byte {
	t.Helper()
	logs := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(path)
		if strings.HasSuffix(base, ".json") {
			return nil
		}
		if strings.HasSuffix(base, ".log") || strings.HasPrefix(base, "maillog") || strings.HasPrefix(base, "mainlog") ||
			strings.HasPrefix(base, "rejectlog") {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			logs[path] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) < 8 {
		t.Fatalf("only %d MTA logs under %s", len(logs), root)
	}
	return logs
}

// Replayed is the real Postfix log under testdata (postfix/real-3.7.log)
// replayed n times with fresh queue IDs and pids (postfix.Replay), the
// copies following one another in time when advance is set.
func Replayed(tb testing.TB, testdata string, n int, advance bool) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "postfix", "real-3.7.log"))
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	if err := postfix.Replay(&out, data, n, advance); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}
