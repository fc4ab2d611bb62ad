package report_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/report"
	"github.com/smtplog/smtplog/internal/testenv"
)

// pflogsumm's figures, parsed from its text output.
type pfSummary struct {
	totals  map[string]int64 // "received", "delivered", "deferred", "bounced", "rejected", …
	senders map[string]int64 // "Senders by message count"
}

var pfLine = regexp.MustCompile(`^\s*(\d+)([ km])\s+(.+)$`)

func pfValue(n, unit string) int64 {
	v, _ := strconv.ParseInt(n, 10, 64)
	switch unit {
	case "k":
		return v << 10 // pflogsumm rounds these; only small logs are compared
	case "m":
		return v << 20
	}
	return v
}

// runPflogsumm runs Debian's pflogsumm on a whole file (no -d) and parses
// its Grand Totals and its senders by message count.
func runPflogsumm(t *testing.T, path string, args ...string) pfSummary {
	t.Helper()
	bin := testenv.NeedBinary(t, "pflogsumm")
	out, err := exec.Command(bin, append(args, path)...).Output()
	if err != nil {
		t.Fatalf("pflogsumm: %v", err)
	}
	s := pfSummary{totals: map[string]int64{}, senders: map[string]int64{}}
	section := ""
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "Grand Totals"), strings.HasPrefix(l, "Senders by message count"):
			section = l
			continue
		case l == "" && section != "Grand Totals", strings.HasPrefix(l, "Per-"):
			section = ""
		}
		m := pfLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := pfValue(m[1], m[2])
		switch section {
		case "Grand Totals":
			label := m[3]
			for _, k := range []string{"received", "delivered", "forwarded", "deferred", "bounced", "rejected", "reject warnings", "held", "discarded"} {
				if label == k || strings.HasPrefix(label, k+" ") {
					s.totals[k] = v
				}
			}
			if label == "bytes received" || label == "bytes delivered" || label == "senders" || label == "recipients" {
				s.totals[label] = v
			}
		case "Senders by message count":
			s.senders[m[3]] = v
		}
	}
	if len(s.totals) == 0 {
		t.Fatalf("no Grand Totals in pflogsumm's output:\n%s", out)
	}
	return s
}

// reinjections finds the messages a content filter re-injected: the queue
// IDs named in "queued as Q" of a sent delivery that were also received
// over SMTP ("Q: client="). pflogsumm counts each such copy as a second
// received message from the same sender; smtplog keeps one story per
// message (the copy is linked to the original), so its received count and
// its per-sender counts are lower by exactly these.
func reinjections(log string) (n int64, bySender map[string]int64) {
	queuedAs := regexp.MustCompile(`status=sent \(.*queued as ([0-9A-Za-z]+)\)`)
	bySender = map[string]int64{}
	ids := map[string]bool{}
	for _, m := range queuedAs.FindAllStringSubmatch(log, -1) {
		ids[m[1]] = true
	}
	for id := range ids {
		if !strings.Contains(log, ": "+id+": client=") {
			continue
		}
		n++
		from := regexp.MustCompile(`: ` + id + `: from=<([^>]*)>, size=`).FindStringSubmatch(log)
		if from == nil {
			continue
		}
		addr := "from=<>"
		if from[1] != "" {
			addr = from[1]
			if i := strings.IndexByte(addr, '@'); i >= 0 {
				addr = addr[:i] + strings.ToLower(addr[i:])
			}
		}
		bySender[addr]++
	}
	return n, bySender
}

// comparePflogsumm checks smtplog's report of a log against pflogsumm's:
// received, delivered, deferred, bounced, rejected and the per-sender
// counts must agree, after the re-injection difference explained at
// reinjections. Differences by design that this comparison leaves out:
//   - pflogsumm's per-hour "rejected" column also counts reject warnings,
//     holds and discards; smtplog's counts rejections only.
//   - bytes received/delivered: pflogsumm adds the size of the re-injected
//     copy (which the filter made larger) for its deliveries; smtplog uses
//     the original message's size for every delivery of the story.
//   - sending hosts: for a null or local sender pflogsumm names the
//     client's host name, which smtplog's records do not keep (they keep
//     the client IP).
func comparePflogsumm(t *testing.T, data []byte, ref time.Time, pfArgs ...string) {
	t.Helper()
	data = pflogsummReadable(data)
	path := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rep := summarise(t, data, ref, report.Options{Top: -1})
	pf := runPflogsumm(t, path, pfArgs...)
	re, reSenders := reinjections(string(data))
	got := map[string]int64{
		"received":  rep.Totals.Received,
		"delivered": rep.Totals.Delivered,
		"deferred":  rep.Totals.Deferred,
		"bounced":   rep.Totals.Bounced,
		"rejected":  rep.Totals.Rejected,
	}
	want := map[string]int64{
		"received":  pf.totals["received"] - re,
		"delivered": pf.totals["delivered"],
		"deferred":  pf.totals["deferred"],
		"bounced":   pf.totals["bounced"],
		"rejected":  pf.totals["rejected"],
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: smtplog %d, pflogsumm %d (adjusted by %d re-injections: %d)", k, got[k], pf.totals[k], re, w)
		}
	}
	senders := map[string]int64{}
	for _, s := range rep.SendersByCount {
		senders[s.Name] = s.Messages
	}
	for addr, n := range pf.senders {
		if w := n - reSenders[addr]; senders[addr] != w {
			t.Errorf("sender %s: smtplog %d, pflogsumm %d (%d after re-injections)", addr, senders[addr], n, w)
		}
	}
	for addr, n := range senders {
		if _, ok := pf.senders[addr]; !ok {
			t.Errorf("sender %s: smtplog %d, pflogsumm has none", addr, n)
		}
	}
	t.Logf("pflogsumm %v; re-injections %d; smtplog %+v", pf.totals, re, rep.Totals)
}

// pflogsummReadable keeps the lines whose timestamp pflogsumm can read:
// the traditional "Mon DD HH:MM:SS host " and RFC 3339 with a colon in the
// zone offset. pflogsumm silently skips the others — RFC 5424 syslog lines
// and ISO 8601 offsets such as "+0100", which rsyslog and journald write —
// so it undercounts such logs; smtplog reads them (see the golden
// reports). Both programs are given the readable lines only.
func pflogsummReadable(data []byte) []byte {
	trad := regexp.MustCompile(`^... {1,2}\d{1,2} \d{2}:\d{2}:\d{2} \S+ .+$`)
	rfc := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z) \S+ .+$`)
	var out []byte
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if line := strings.TrimSuffix(l, "\n"); trad.MatchString(line) || rfc.MatchString(line) {
			out = append(out, l...)
		}
	}
	return out
}

// TestPflogsummFixtures compares with pflogsumm on the committed logs.
func TestPflogsummFixtures(t *testing.T) {
	for _, path := range fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The synthetic log was written by two instances, one with
			// syslog_name = postfix-lab.
			comparePflogsumm(t, data, fixtureRef, "--syslog-name=postfix-lab")
		})
	}
}

// TestPflogsummRealPostfix makes a log with Debian's Postfix — delivered,
// deferred, bounced, rejected at RCPT, several senders and a null sender —
// and compares smtplog's report with pflogsumm's on it.
func TestPflogsummRealPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	testenv.NeedBinary(t, "pflogsumm")
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		RelayHost:        sink.Addr(),
		DeferDomains:     []string{"defer.test"},
		BounceDomains:    []string{"bounce.test"},
		RejectRecipients: []string{"nobody@ok.test", "gone.test"},
		NoTLS:            true,
	})
	type msg struct {
		from string
		to   []string
	}
	msgs := []msg{
		{"alice@src.test", []string{"bob@ok.test"}},
		{"alice@src.test", []string{"carol@ok.test", "dave@defer.test"}},
		{"alice@src.test", []string{"erin@bounce.test"}},
		{"Bob@SRC.test", []string{"bob@ok.test", "nobody@ok.test"}},
		{"bob@src.test", []string{"x@gone.test", "frank@ok.test"}},
		{"", []string{"postmaster@ok.test"}},
		{"carol@other.test", []string{"a@ok.test", "b@ok.test", "c@defer.test"}},
	}
	for i, m := range msgs {
		body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: test %d\r\nMessage-Id: <cmp-%d@test>\r\n\r\nhello\r\n", m.from, m.to[0], i, i)
		if _, _, err := testenv.SendMail(pf.Addr(), nil, m.from, m.to, body); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// One connection rejected outright: every recipient refused.
	if _, _, err := testenv.SendMail(pf.Addr(), nil, "mallory@src.test", []string{"nobody@ok.test"}, "Subject: x\r\n\r\nx\r\n"); err == nil {
		t.Fatal("a message to a refused recipient only was accepted")
	}
	const wait = 30 * time.Second
	pf.WaitLogN(t, regexp.MustCompile(`status=sent`), 7, wait)
	pf.WaitLogN(t, regexp.MustCompile(`status=deferred`), 2, wait)
	pf.WaitLogN(t, regexp.MustCompile(`status=bounced`), 1, wait)
	// The bounce notice to alice goes out too.
	pf.WaitLogN(t, regexp.MustCompile(`to=<alice@src\.test>.*status=sent`), 1, wait)
	// Seven messages and one bounce notice; two stay deferred.
	pf.WaitLogN(t, regexp.MustCompile(`: removed`), 6, wait)

	log := []byte(pf.Log(t))
	rep := summarise(t, log, time.Now(), report.Options{Top: -1})
	if rep.Totals.Received != int64(len(msgs)) || rep.Totals.Rejected != 3 || rep.Totals.Bounced != 1 || rep.Totals.Deferred != 2 {
		t.Errorf("totals %+v", rep.Totals)
	}
	comparePflogsumm(t, log, time.Now())
}
