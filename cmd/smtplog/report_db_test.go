package main

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestReportDB: `smtplog report --db` over a store filled by `smtplog
// ingest --db` gives the report that reading the log gives, but for what
// only log lines carry (warnings, line counts, the first line's time) and
// which reply is quoted as a code's example.
func TestReportDB(t *testing.T) {
	db := filepath.Join(t.TempDir(), "smtplog.db")
	log := fixture("postfix", "real-3.7.log")
	if code, _, errb := runIngestCLI(t, "", "--db", db, log); code != 0 {
		t.Fatalf("ingest --db: exit %d: %s", code, errb)
	}
	reportJSON := func(args ...string) map[string]any {
		t.Helper()
		code, out, errb := runCLI(t, nil, append([]string{"report", "--progress", "never", "--format", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("report %v: exit %d: %s", args, code, errb)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("report %v: %v", args, err)
		}
		return m
	}
	fromLog, fromDB := reportJSON(log), reportJSON("--db", db)

	totals, _ := fromDB["totals"].(map[string]any)
	if totals["received"] == nil || totals["received"].(float64) == 0 || totals["delivered"].(float64) == 0 {
		t.Fatalf("report --db totals are empty: %v", totals)
	}
	for _, k := range []string{"diagnostics", "input", "from"} {
		delete(fromLog, k)
		delete(fromDB, k)
	}
	for _, m := range []map[string]any{fromLog, fromDB} {
		codes, _ := m["status_codes"].([]any)
		for _, c := range codes {
			delete(c.(map[string]any), "example")
		}
	}
	for k := range fromLog {
		if !reflect.DeepEqual(fromLog[k], fromDB[k]) {
			a, _ := json.Marshal(fromLog[k])
			b, _ := json.Marshal(fromDB[k])
			t.Errorf("%s differs:\n log %.400s\n db  %.400s", k, a, b)
		}
	}
	if len(fromDB) != len(fromLog) {
		t.Errorf("sections: log %d, db %d", len(fromLog), len(fromDB))
	}

	// --since leaves out what is older: the fixture is older than a day.
	recent := reportJSON("--db", db, "--since", "1h")
	if in := recent["input"].(map[string]any); in["records"].(float64) != 0 {
		t.Errorf("--since 1h over an old store read %v records", in["records"])
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"report", "--db", db, log}, "not both"},
		{[]string{"report"}, "--db PATH"},
		{[]string{"report", "--db", filepath.Join(t.TempDir(), "none.db")}, "no store at"},
	} {
		code, _, errb := runCLI(t, nil, tc.args...)
		if code == 0 || !strings.Contains(errb, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want an error saying %q", tc.args, code, errb, tc.msg)
		}
	}
}
