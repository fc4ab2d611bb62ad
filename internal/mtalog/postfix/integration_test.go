package postfix_test

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/testenv"
)

// TestRealPostfix sends real traffic through Debian's Postfix (delivered,
// deferred by a 4xx destination, bounced by a 5xx destination, rejected at
// RCPT, and a batch from smtp-source), ingests Postfix's own log and checks
// every message's record against what was sent.
func TestRealPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	swaks := testenv.NeedBinary(t, "swaks")
	source := testenv.NeedBinary(t, "smtp-source")
	ok := testenv.StartSink(t)
	soft := testenv.StartSink(t, "-r", "RCPT")
	hard := testenv.StartSink(t, "-f", "RCPT")
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		RelayHost: ok.Addr(),
		Transports: map[string]string{
			"defer.test":  "smtp:[127.0.0.1]:" + strconv.Itoa(soft.Port()),
			"bounce.test": "smtp:[127.0.0.1]:" + strconv.Itoa(hard.Port()),
		},
		RejectRecipients: []string{"nobody@ok.test"},
	})

	send := func(from, to, msgid string) {
		t.Helper()
		args := []string{"--silent", "2", "--server", pf.Addr(), "--ehlo", "client.test", "--from", from, "--to", to}
		if msgid != "" {
			args = append(args, "--header", "Message-Id: <"+msgid+">")
		}
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if err != nil && !strings.Contains(to, "nobody") {
			t.Fatalf("swaks to %s: %v\n%s", to, err, out)
		}
	}
	send("alice@src.test", "bob@ok.test", "sent@t")
	send("alice@src.test", "dave@defer.test", "deferred@t")
	send("alice@src.test", "erin@bounce.test", "bounced@t")
	send("alice@src.test", "nobody@ok.test", "")
	if out, err := exec.Command(source, "-c", "-m", "2", "-r", "2", "-f", "batch@src.test", "-t", "many@ok.test", "-M", "client.test", pf.Addr()).CombinedOutput(); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	const wait = 30 * time.Second
	qSent := pf.QueueIDFor(t, "sent@t", wait)
	qDefer := pf.QueueIDFor(t, "deferred@t", wait)
	qBounce := pf.QueueIDFor(t, "bounced@t", wait)
	pf.WaitDelivery(t, qSent, "sent", wait)
	pf.WaitDelivery(t, qDefer, "deferred", wait)
	pf.WaitDelivery(t, qBounce, "bounced", wait)
	pf.WaitLog(t, regexp.MustCompile(`: `+qBounce+`: removed`), wait)
	pf.WaitLog(t, regexp.MustCompile(`NOQUEUE: reject: RCPT .*nobody@ok\.test`), wait)
	pf.WaitLogN(t, regexp.MustCompile(`to=<many@ok\.test>.*status=sent`), 2, wait)

	log := pf.Log(t)
	recs, _, unparsed, _ := ingest(t, []byte(log), time.Now())
	if unparsed != "" {
		t.Logf("unparsed lines:\n%s", unparsed)
	}
	byQID := map[string]record.Record{}
	var rejected []record.Record
	batch := 0
	for _, r := range recs {
		if r.Type != record.TypeMessage {
			continue
		}
		if r.QueueID != "" {
			byQID[r.QueueID] = r
		}
		if r.Status == record.StatusRejected && r.QueueID == "" {
			rejected = append(rejected, r)
		}
		if r.MailFrom != nil && *r.MailFrom == "batch@src.test" && r.Status == record.StatusSent {
			batch++
		}
	}
	check := func(qid, msgid, status, dsnPrefix, relayPort string) record.Record {
		t.Helper()
		r, ok := byQID[qid]
		if !ok {
			t.Fatalf("no record for queue ID %s", qid)
		}
		if r.MessageID != "<"+msgid+">" || r.MailFrom == nil || *r.MailFrom != "alice@src.test" || r.ClientIP != "127.0.0.1" {
			t.Errorf("%s: envelope/header wrong: %+v", qid, r)
		}
		if r.Status != status || len(r.Deliveries) == 0 {
			t.Fatalf("%s: status %q, deliveries %+v; want %s", qid, r.Status, r.Deliveries, status)
		}
		d := r.Deliveries[len(r.Deliveries)-1]
		if d.Status != status || !strings.HasPrefix(d.DSN, dsnPrefix) || !strings.HasSuffix(d.Relay, ":"+relayPort) || d.Delays == "" {
			t.Errorf("%s: delivery %+v", qid, d)
		}
		return r
	}
	check(qSent, "sent@t", "sent", "2.", strconv.Itoa(ok.Port()))
	check(qDefer, "deferred@t", "deferred", "4.", strconv.Itoa(soft.Port()))
	b := check(qBounce, "bounced@t", "bounced", "5.", strconv.Itoa(hard.Port()))
	if b.ReplyCode < 500 {
		t.Errorf("bounce reply code %d", b.ReplyCode)
	}
	// The bounce notice is linked to the message it reports on.
	linked := false
	for _, r := range byQID {
		if r.ParentQueueID == qBounce && r.MailFrom != nil && *r.MailFrom == "" {
			linked = true
		}
	}
	if !linked {
		t.Errorf("no notification record linked to %s", qBounce)
	}
	if len(rejected) != 1 || len(rejected[0].RejectedRcpt) != 1 || rejected[0].RejectedRcpt[0].Address != "nobody@ok.test" ||
		rejected[0].ReplyCode != 550 || rejected[0].Helo != "client.test" {
		t.Errorf("rejected records: %+v", rejected)
	}
	if batch != 2 {
		t.Errorf("smtp-source messages sent: %d, want 2", batch)
	}
}
