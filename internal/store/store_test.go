package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

var t0 = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

func openTest(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "smtplog.db")
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
	})
	return s
}

// handmade are records that exercise the corners: null sender, no MAIL,
// IPv6 and mapped addresses, refused recipients, re-injected queue IDs,
// sessions with AUTH, odd cases, Unicode.
func handmade() []*record.Record {
	ts := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	return []*record.Record{
		{Type: record.TypeMessage, Timestamp: ts(1), Source: record.SourceProxy, SessionID: "SESS1",
			ClientIP: "192.0.2.10", Helo: "Mail.Shop.Example", Username: "Alice",
			MessageID: "<m1@shop.example>", Subject: "Your Invoice 42", MailFrom: record.Ptr("Alice@Shop.Example"),
			RcptTo: []string{"bob@dest.example"}, Status: record.StatusAccepted, SMTPResponse: "250 2.0.0 Ok: queued as ABC123",
			ReplyCode: 250, EnhancedCode: "2.0.0", QueueID: "ABC123", TLS: &record.TLS{Used: true, Version: "TLS1.3"},
			Transcript: []record.TranscriptLine{{TMS: 0, Dir: "S", Line: "220 hi"}, {TMS: 1.5, Dir: "C", Line: "AUTH PLAIN [redacted]"}}},
		{Type: record.TypeMessage, Timestamp: ts(2), Source: record.SourcePostfix, QueueID: "ABC123",
			MessageID: "m1@shop.example", MailFrom: record.Ptr("alice@shop.example"), RcptTo: []string{"bob@dest.example", "carol@other.example"},
			Status: record.StatusDeferred, Deliveries: []record.Delivery{
				{Timestamp: ts(2), Rcpt: "bob@dest.example", Status: "sent", DSN: "2.0.0", SMTPResponse: "250 ok"},
				{Timestamp: ts(3), Rcpt: "carol@other.example", Status: "deferred", DSN: "4.2.2", SMTPResponse: "452 4.2.2 Mailbox full", QueueID: "DEF456"},
			}},
		{Type: record.TypeMessage, Timestamp: ts(3), Source: record.SourceProxy, ClientIP: "2001:db8::5",
			MailFrom: record.Ptr(""), RejectedRcpt: []record.Rejection{{Address: "x@Spam.Example", SMTPResponse: "550 5.7.1 Relaying denied"}},
			Status: record.StatusRejected, SMTPResponse: "554 5.5.1 No valid recipients"},
		{Type: record.TypeSession, Timestamp: ts(4), SessionID: "SESS1", ClientIP: "::ffff:192.0.2.10",
			Auth: &record.Auth{Mechanism: "PLAIN", Username: "alice", Result: "failure"}, TLS: &record.TLS{Used: false}},
		{Type: record.TypeMessage, Timestamp: ts(5), Source: record.SourceCapture, Subject: "Über 100% _done_ [x]? Ünïcode",
			MailFrom: record.Ptr("weird?[x]@odd.example"), RcptTo: []string{"<Upper@Case.Example>", "nodomain"},
			Status: record.StatusAccepted, ClientIP: "fe80::1%eth0"},
		{Type: record.TypeMessage, Timestamp: ts(6), Source: record.SourceExim, Status: record.StatusBounced,
			Deliveries: []record.Delivery{{Timestamp: ts(6), Rcpt: "gone@dest.example", Status: "bounced", DSN: "5.1.1", SMTPResponse: "host said: 550 5.1.1 unknown"}}},
	}
}

func corpus() []*record.Record {
	recs := handmade()
	g := gen.New(gen.Config{Seed: 7, Start: t0.Add(time.Hour), Span: 48 * time.Hour, N: 3000, Domains: 40, Senders: 200, Recipients: 600, TranscriptEvery: 10})
	for i := 0; i < 3000; i++ {
		recs = append(recs, g.Next())
	}
	return recs
}

func fill(t testing.TB, s *Store, recs []*record.Record) {
	t.Helper()
	if err := s.Insert(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// conformanceQueries covers every field, negation, OR, grouping, wildcards.
func conformanceQueries(recs []*record.Record) []string {
	var g *record.Record
	for _, r := range recs[len(handmade()):] {
		if r.Type == record.TypeMessage && r.Source == record.SourcePostfix && len(r.Deliveries) > 1 {
			g = r
			break
		}
	}
	sender := *g.MailFrom
	dom := query.Domain(sender)
	rcpt := g.RcptTo[0]
	qs := []string{
		"", "from:alice@shop.example", "from:@shop.example", "from:ali", "from:*@shop.*", "from:<>", "from:*", "-from:<>",
		"from:" + sender, "from:@" + dom, "-from:@" + dom, "from:s1*", "from:weird?[x]@odd.example", "from:*?[x]*",
		"to:bob@dest.example", "to:carol@other.example", "rcpt:x@spam.example", "to:upper@case.example", "to:nodomain",
		"to:" + rcpt, "to:@" + query.Domain(rcpt), "to:r1*", "-to:@" + query.Domain(rcpt), "to:gone@dest.example",
		"domain:spam.example", "domain:" + dom, "domain:*.example", "domain:d1*", "-domain:*.test",
		"status:deferred", "status:sent", "status:bounced OR status:rejected", "-status:accepted",
		"code:4xx", "code:5xx", "code:550", "code:250", "code:5.7.1", "code:5.x.x", "code:4.2.*", "code:2.0.0", "-code:2xx",
		"msgid:m1@shop.example", "msgid:<m1@shop.example>", "msgid:" + g.MessageID, "queue:ABC123", "queue:DEF456", "queue:" + g.QueueID,
		"session:SESS1", "ip:192.0.2.0/24", "ip:192.0.2.10", "ip:2001:db8::/32", "ip:198.51.0.0/16", "ip:::ffff:198.51.0.0/112",
		"ip:fe80::1", "-ip:198.51.0.0/16", "user:alice", "user:ALI*", "user:user1*", "helo:mail.shop.example", "helo:client1*",
		"tls:yes", "tls:no", "source:postfix", "source:proxy", "source:exim", "type:session", "type:message",
		`subject:"invoice 4"`, "subject:INVOICE", "-subject:invoice", `subject:"100%"`, "subject:_done_", "subject:[x]?", "subject:über",
		"after:2026-11-28T00:03:00Z", "before:2026-11-28T00:03:00Z", "after:2026-11-29 before:2026-11-29T12:00:00Z",
		"invoice", `"mailbox full"`, `"full mailbox"`, "mailb*", "relaying denied", "queued", "ünïcode", "unknown", "greylisted OR spam", "-invoice", "greylisted -queued",
		"-(type:session OR from:<>)", "(status:sent OR status:deferred) domain:" + dom + " -tls:yes",
		"from:@" + dom + " after:2026-11-29 before:2026-11-30", "-(-status:sent)", "code:4xx -status:deferred",
	}
	return qs
}

func TestConformance(t *testing.T) {
	recs := corpus()
	for _, path := range []string{"", ":memory:", "probe", "scan", "days"} {
		name := "file"
		switch path {
		case ":memory:":
			name = "memory"
		case "probe":
			// Free text checked record by record, as on a large store
			// for common words (textPlans).
			name, path = "text-probed", ""
			forceTextProbe = true
			t.Cleanup(func() { forceTextProbe = false })
		case "scan":
			// Keys checked record by record, as on a large store for
			// common values (termPlans).
			name, path = "terms-scanned", ""
			forceTermScan = true
			t.Cleanup(func() { forceTermScan = false })
		case "days":
			name, path = "day-buckets", ""
		}
		t.Run(name, func(t *testing.T) {
			s := openTest(t, path, Options{})
			fill(t, s, recs)
			if name == "day-buckets" {
				// Terms in day buckets (compact.go), and those of the
				// newest bucket in its 4-hour one, as probes see them.
				forceTextProbe, forceTermScan = false, false
				if moved := compactAll(t, s, 0); moved == 0 {
					t.Fatal("no terms moved to day buckets")
				}
			}
			now := t0.Add(72 * time.Hour)
			for _, qs := range conformanceQueries(recs) {
				q, err := query.Parse(qs, now)
				if err != nil {
					t.Fatalf("Parse(%q): %v", qs, err)
				}
				var want []int64
				for i, r := range recs {
					if query.Match(q, r) {
						want = append(want, int64(i+1)) // ids follow insertion order
					}
				}
				got := searchAll(t, s, q, 700)
				t.Logf("%-40q %d", qs, len(want))
				sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
				if !reflect.DeepEqual(got, want) {
					t.Errorf("query %q: store returned %d records, Match %d; first differences: %v",
						qs, len(got), len(want), diff(got, want))
				}
			}
		})
	}
}

func diff(a, b []int64) string {
	in := func(x int64, s []int64) bool {
		i := sort.Search(len(s), func(i int) bool { return s[i] >= x })
		return i < len(s) && s[i] == x
	}
	var out []string
	for _, x := range a {
		if !in(x, b) && len(out) < 5 {
			out = append(out, fmt.Sprintf("+%d", x))
		}
	}
	for _, x := range b {
		if !in(x, a) && len(out) < 10 {
			out = append(out, fmt.Sprintf("-%d", x))
		}
	}
	return strings.Join(out, " ")
}

// searchAll pages through every result, checking the order on the way.
func searchAll(t testing.TB, s *Store, q *query.Query, limit int) []int64 {
	t.Helper()
	var ids []int64
	page := Page{Limit: limit}
	var prev *Item
	for {
		res, err := s.Search(context.Background(), q, page)
		if err != nil {
			t.Fatalf("Search(%q): %v", q, err)
		}
		for i := range res.Items {
			it := &res.Items[i]
			if prev != nil && (it.Record.Timestamp.After(prev.Record.Timestamp) ||
				it.Record.Timestamp.Equal(prev.Record.Timestamp) && it.ID >= prev.ID) {
				t.Fatalf("Search(%q): item %d out of order after %d", q, it.ID, prev.ID)
			}
			prev = it
			ids = append(ids, it.ID)
		}
		if res.Next == "" {
			return ids
		}
		page.Cursor = res.Next
	}
}

func TestRoundTrip(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := handmade()
	for _, r := range recs {
		if err := s.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range recs {
		it, err := s.Message(context.Background(), int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := record.MarshalJSONLine(r)
		got, _ := record.MarshalJSONLine(&it.Record)
		if string(got) != string(want) {
			t.Errorf("record %d:\n got %s\nwant %s", i+1, got, want)
		}
	}
	if _, err := s.Message(context.Background(), 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("Message(999) err = %v, want ErrNotFound", err)
	}
	// Search leaves transcripts out.
	res, err := s.Search(context.Background(), query.MustParse("msgid:m1@shop.example source:proxy", t0), Page{})
	if err != nil || len(res.Items) != 1 || res.Items[0].Record.Transcript != nil {
		t.Errorf("Search: %v %+v", err, res)
	}
}

func TestLookups(t *testing.T) {
	s := openTest(t, "", Options{})
	fill(t, s, handmade())
	ctx := context.Background()
	ids := func(items []Item, err error) string {
		if err != nil {
			return err.Error()
		}
		var b strings.Builder
		for _, it := range items {
			fmt.Fprintf(&b, "%d,", it.ID)
		}
		return b.String()
	}
	for _, tt := range []struct {
		name string
		got  string
		want string
	}{
		{"msgid", ids(s.ByMessageID(ctx, "<m1@shop.example>")), "1,2,"},
		{"msgid bare", ids(s.ByMessageID(ctx, "m1@shop.example")), "1,2,"},
		{"queue", ids(s.ByQueueID(ctx, "ABC123")), "1,2,"},
		{"re-injected queue", ids(s.ByQueueID(ctx, "DEF456")), "2,"},
		{"session", ids(s.Session(ctx, "SESS1")), "1,4,"},
		{"unknown msgid", ids(s.ByMessageID(ctx, "nope")), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	items, _ := s.Session(ctx, "SESS1")
	if len(items) == 0 || len(items[0].Record.Transcript) != 2 {
		t.Errorf("Session lost the transcript: %+v", items)
	}
	if _, err := s.Session(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session(nope) err = %v", err)
	}
}

func TestPagingCursor(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := corpus()
	fill(t, s, recs)
	// Equal timestamps must not be skipped or repeated across pages.
	same := make([]*record.Record, 25)
	for i := range same {
		same[i] = &record.Record{Type: record.TypeMessage, Timestamp: t0, Status: record.StatusSent}
	}
	fill(t, s, same)
	got := searchAll(t, s, &query.Query{}, 7)
	if len(got) != len(recs)+len(same) {
		t.Fatalf("paged through %d records, want %d", len(got), len(recs)+len(same))
	}
	if _, err := s.Search(context.Background(), nil, Page{Cursor: "garbage!"}); err == nil {
		t.Error("bad cursor accepted")
	}
}

func TestStats(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := corpus()
	fill(t, s, recs)
	from, to := t0.Add(2*time.Hour), t0.Add(26*time.Hour)
	st, err := s.Stats(context.Background(), from, to, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The same aggregates, computed from the records in memory.
	var msgs, sessions, temp, perm, tlsYes, authFail int64
	var lats []float64
	byStatus := map[string]int64{}
	senders := map[string]int64{}
	rcpts := map[string]int64{}
	series := make([]int64, 24)
	for _, r := range recs {
		if r.Timestamp.Before(from) || !r.Timestamp.Before(to) {
			continue
		}
		for _, a := range query.Recipients(r) {
			rcpts[a]++
		}
		if r.Type == record.TypeSession {
			sessions++
			if r.Auth != nil && r.Auth.Result == "failure" {
				authFail++
			}
			continue
		}
		msgs++
		byStatus[r.Status]++
		series[r.Timestamp.Sub(from)/time.Hour]++
		switch r.ReplyCode / 100 {
		case 4:
			temp++
		case 5:
			perm++
		}
		if query.TLSUsed(r) {
			tlsYes++
		}
		if r.LatencyMS > 0 {
			lats = append(lats, r.LatencyMS)
		}
		if a, ok := query.Sender(r); ok {
			senders[a]++
		}
	}
	if st.Messages != msgs || st.Sessions != sessions || st.Temporary != temp || st.Permanent != perm ||
		st.TLS.Yes != tlsYes || st.TLS.No != msgs-tlsYes || st.AuthFailures != authFail {
		t.Errorf("stats %+v; want messages %d sessions %d 4xx %d 5xx %d tls %d auth failures %d", st, msgs, sessions, temp, perm, tlsYes, authFail)
	}
	if !reflect.DeepEqual(st.ByStatus, byStatus) {
		t.Errorf("by status %v, want %v", st.ByStatus, byStatus)
	}
	for i, b := range st.Series {
		if b.Total != series[i] {
			t.Errorf("bucket %d: %d, want %d", i, b.Total, series[i])
		}
	}
	wantTop, _ := top(senders)
	if !reflect.DeepEqual(st.TopSenders, wantTop) || len(wantTop) != TopN {
		t.Errorf("top senders %v, want %v", st.TopSenders, wantTop)
	}
	wantTop, _ = top(rcpts)
	if !reflect.DeepEqual(st.TopRecipients, wantTop) {
		t.Errorf("top recipients %v, want %v", st.TopRecipients, wantTop)
	}
	sort.Float64s(lats)
	exact := func(q float64) float64 { return lats[int(math.Ceil(q*float64(len(lats))))-1] }
	near := func(got, want float64) bool { return got <= want && want-got <= max(0.01, want/100) }
	if st.Latency.Count != int64(len(lats)) || !near(st.Latency.P50, exact(0.5)) || !near(st.Latency.P90, exact(0.9)) ||
		!near(st.Latency.P99, exact(0.99)) || !near(st.Latency.Max, lats[len(lats)-1]) {
		t.Errorf("latency %+v; want count %d p50 %v p90 %v p99 %v max %v", st.Latency, len(lats), exact(0.5), exact(0.9), exact(0.99), lats[len(lats)-1])
	}
	if _, wantDom := top(senders); !reflect.DeepEqual(st.TopSenderDomains, wantDom) {
		t.Errorf("top sender domains %v, want %v", st.TopSenderDomains, wantDom)
	}
	if _, wantDom := top(rcpts); !reflect.DeepEqual(st.TopRecipientDomains, wantDom) {
		t.Errorf("top recipient domains %v, want %v", st.TopRecipientDomains, wantDom)
	}
	if _, err := s.Stats(context.Background(), to, from, time.Hour); err == nil {
		t.Error("empty range accepted")
	}
	if _, err := s.Stats(context.Background(), from, to, time.Nanosecond); err == nil {
		t.Error("a billion buckets accepted")
	}
}

func TestPruneByAge(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := corpus()
	fill(t, s, recs)
	cut := t0.Add(25 * time.Hour)
	var keep int64
	for _, r := range recs {
		if !r.Timestamp.Before(cut) {
			keep++
		}
	}
	res, err := s.Prune(context.Background(), cut, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.Count(context.Background())
	if n != keep || res.Deleted != int64(len(recs))-keep {
		t.Fatalf("after prune: %d records (deleted %d), want %d", n, res.Deleted, keep)
	}
	// Nothing before the cut is findable by any path, child tables included.
	q := query.MustParse("before:2026-11-29T01:00:00Z", t0)
	if got := searchAll(t, s, q, 100); len(got) != 0 {
		t.Errorf("%d records before the cut remain", len(got))
	}
	for _, table := range []string{"rcpts", "codes", "deliveries", "rejected", "transcripts"} {
		var orphans int
		col := "record_id"
		if err := s.r.QueryRow(`SELECT count(*) FROM ` + table + ` WHERE ` + col + ` NOT IN (SELECT id FROM records)`).Scan(&orphans); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Errorf("%s: %d orphans", table, orphans)
		}
	}
	if got := searchAll(t, s, query.MustParse("invoice OR mailbox", t0), 1000); len(got) == 0 {
		t.Error("full-text search finds nothing after prune")
	}
	var ok string
	if err := s.r.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity_check: %v %q", err, ok)
	}
}

func TestPruneBySize(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := corpus()
	fill(t, s, recs)
	fill(t, s, corpus())
	ctx := context.Background()
	before, _ := s.Size(ctx)
	limit := before / 3
	res, err := s.Prune(ctx, time.Time{}, limit)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := s.Size(ctx)
	if after > limit || res.Deleted == 0 {
		t.Fatalf("size %d -> %d, limit %d, deleted %d", before, after, limit, res.Deleted)
	}
	// The newest records stay.
	res2, err := s.Search(ctx, nil, Page{Limit: 1})
	if err != nil || len(res2.Items) != 1 || res2.Items[0].ID != int64(2*len(recs)) {
		t.Errorf("newest record gone: %v %+v", err, res2.Items)
	}
}

func TestRetentionTimer(t *testing.T) {
	s := openTest(t, "", Options{Retention: Retention{MaxAge: time.Hour, Every: 20 * time.Millisecond},
		Now: func() time.Time { return t0.Add(49 * time.Hour) }})
	fill(t, s, corpus())
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := searchAll(t, s, query.MustParse("before:2026-11-30T00:00:00Z", t0), 1000)
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention left %d old records", len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := s.Count(context.Background()); n == 0 {
		t.Error("retention deleted everything")
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	s := openTest(t, "", Options{})
	const writers, each = 8, 300
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers+4)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gen.New(gen.Config{Seed: uint64(w), Start: t0, Span: time.Hour, N: each})
			for i := 0; i < each; i++ {
				r := g.Next()
				r.MessageID = fmt.Sprintf("<w%d.%d@test>", w, i)
				if err := s.Handle(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	for i := 0; i < 4; i++ {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			q := query.MustParse("status:sent OR tls:yes", t0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Search(ctx, q, Page{Limit: 20}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Stats(ctx, t0, t0.Add(time.Hour), time.Minute); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, _ := s.Count(ctx); n != writers*each {
		t.Errorf("%d records, want %d", n, writers*each)
	}
	for w := 0; w < writers; w++ {
		items, err := s.ByMessageID(ctx, fmt.Sprintf("<w%d.%d@test>", w, each-1))
		if err != nil || len(items) != 1 {
			t.Errorf("writer %d's last record: %v %d", w, err, len(items))
		}
	}
}

func TestBackpressure(t *testing.T) {
	s := openTest(t, "", Options{QueueSize: 2, BusyTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	// Hold the writer in a job so the queue fills.
	release := holdWriter(t, s)
	rec := &record.Record{Type: record.TypeMessage, Timestamp: t0, Status: record.StatusAccepted}
	results := make(chan error, 2)
	for i := 0; i < 2; i++ { // fill the queue (or the acknowledgement log)
		go func() { results <- s.Handle(ctx, rec) }()
	}
	for len(s.queue)+int(s.ack.count()) < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := s.Handle(ctx, rec)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Handle on a full queue: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ErrBusy took %v", d)
	}
	// A ctx deadline shorter than BusyTimeout wins.
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if err := s.Handle(short, rec); !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Handle with a short ctx: %v", err)
	}
	release()
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Errorf("queued Handle: %v", err)
		}
	}
	if n, _ := s.Count(ctx); n != 2 {
		t.Errorf("%d records, want 2", n)
	}
}

func TestCloseFlushesAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(context.Background(), path, Options{MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Handle(context.Background(), &record.Record{Type: record.TypeMessage, Timestamp: t0, MessageID: fmt.Sprint(i)}) == nil {
				mu.Lock()
				acked++
				mu.Unlock()
			}
		}()
	}
	cancel() // a cancelled ctx does not stop the final flush
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Handle(context.Background(), &record.Record{Type: record.TypeMessage}); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close: %v", err)
	}
	if err := s.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	s2 := openTest(t, path, Options{})
	n, _ := s2.Count(context.Background())
	if int(n) < acked {
		t.Errorf("reopened store has %d records, %d were acknowledged", n, acked)
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := openTest(t, path, Options{})
	var v int
	if err := s.r.QueryRow(`SELECT max(version) FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion() || v < 1 {
		t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion())
	}
	if _, err := s.w.Exec(`INSERT INTO schema_version VALUES (999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("opening a newer schema: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if _, err := Open(context.Background(), ":memory:", Options{Sync: "OFF"}); err == nil {
		t.Error("sync OFF accepted")
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "dir", "db"), Options{}); err == nil {
		t.Error("opening in a missing directory succeeded")
	}
}

// Scan gives every record in a range once, oldest first, across pages.
func TestScan(t *testing.T) {
	s := openTest(t, "", Options{})
	recs := corpus()
	fill(t, s, recs)
	ctx := context.Background()
	from, to := t0.Add(5*time.Hour), t0.Add(30*time.Hour)
	want := 0
	for _, r := range recs {
		if !r.Timestamp.Before(from) && r.Timestamp.Before(to) {
			want++
		}
	}
	var got []*record.Record
	if err := s.Scan(ctx, from, to, func(r *record.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != want || want < 1000 {
		t.Fatalf("scanned %d records, want %d (more than a page)", len(got), want)
	}
	seen := map[string]bool{}
	for i, r := range got {
		if r.Timestamp.Before(from) || !r.Timestamp.Before(to) {
			t.Fatalf("record at %v outside [%v, %v)", r.Timestamp, from, to)
		}
		if i > 0 && r.Timestamp.Before(got[i-1].Timestamp) {
			t.Fatalf("record %d at %v before its predecessor at %v", i, r.Timestamp, got[i-1].Timestamp)
		}
		k := r.Timestamp.String() + "|" + r.MessageID + "|" + r.SessionID + "|" + r.QueueID + "|" + string(r.Type)
		if seen[k] && r.MessageID != "" {
			t.Fatalf("record %s scanned twice", k)
		}
		seen[k] = true
	}
	var all int
	if err := s.Scan(ctx, time.Time{}, time.Time{}, func(*record.Record) error { all++; return nil }); err != nil || all != len(recs) {
		t.Fatalf("open range: %d records, %v; want %d", all, err, len(recs))
	}
	stop := errors.New("enough")
	n := 0
	if err := s.Scan(ctx, time.Time{}, time.Time{}, func(*record.Record) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || n != 3 {
		t.Errorf("fn's error: got %v after %d records", err, n)
	}
}

// holdWriter keeps the writer busy in a job until the returned release is
// called, so that its queue (or the acknowledgement log) fills.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	rel := make(chan struct{})
	held := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.do(context.Background(), func(context.Context, *sql.Tx) error {
			close(held)
			<-rel
			return nil
		})
	}()
	<-held
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(rel)
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

func loadRecords(n, from int) []*record.Record {
	recs := make([]*record.Record, n)
	for i := range recs {
		recs[i] = &record.Record{Type: record.TypeMessage, Timestamp: t0.Add(time.Duration(from+i) * time.Second),
			MessageID: fmt.Sprintf("<load%d@store.test>", from+i), Status: record.StatusAccepted}
	}
	return recs
}

// distinctMessageIDs counts the records and the distinct Message-IDs among
// them.
func distinctMessageIDs(t *testing.T, s *Store) (records, distinct int) {
	t.Helper()
	ctx := context.Background()
	// Count waits for the writer to insert what it acknowledged.
	if _, err := s.Count(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT message_id) FROM records`).Scan(&records, &distinct); err != nil {
		t.Fatal(err)
	}
	return records, distinct
}

// Load is for inputs that can wait: where Insert refuses a full queue
// after BusyTimeout, Load waits while the writer makes room, and stores
// every record once.
func TestLoadWaitsForRoom(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			path := ""
			if disk {
				path = filepath.Join(t.TempDir(), "load.db")
			}
			s := openTest(t, path, Options{QueueSize: 300, BusyTimeout: 20 * time.Millisecond})
			ctx := context.Background()
			release := holdWriter(t, s)
			if err := s.Insert(ctx, loadRecords(2000, 0)); !errors.Is(err, ErrBusy) {
				t.Fatalf("Insert of more than the queue holds, writer held: %v, want ErrBusy", err)
			}
			loaded := make(chan error, 1)
			go func() { loaded <- s.Load(ctx, loadRecords(2000, 10000)) }()
			// Held for ten BusyTimeouts: Insert would have given up long
			// before; Load is still waiting.
			time.Sleep(200 * time.Millisecond)
			select {
			case err := <-loaded:
				t.Fatalf("Load returned %v while the writer was held", err)
			default:
			}
			release()
			if err := <-loaded; err != nil {
				t.Fatalf("Load: %v", err)
			}
			recs, distinct := distinctMessageIDs(t, s)
			if recs != distinct {
				t.Errorf("%d records, %d distinct: Load stored some twice", recs, distinct)
			}
			var got int
			if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM records WHERE message_id LIKE 'load1____@store.test'`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != 2000 {
				t.Errorf("%d of the 2000 loaded records stored", got)
			}
		})
	}
}

// A writer that makes no room at all for loadStall makes Load give up with
// ErrBusy, saying why, and nothing it stored before is lost or doubled.
func TestLoadGivesUpOnStalledWriter(t *testing.T) {
	old := loadStall
	loadStall = 100 * time.Millisecond
	t.Cleanup(func() { loadStall = old })
	s := openTest(t, filepath.Join(t.TempDir(), "stall.db"), Options{QueueSize: 300, BusyTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	release := holdWriter(t, s)
	start := time.Now()
	err := s.Load(ctx, loadRecords(2000, 0))
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "inserted nothing") {
		t.Fatalf("Load with the writer held past loadStall: %v, want ErrBusy saying the writer inserted nothing", err)
	}
	if d := time.Since(start); d < loadStall {
		t.Errorf("Load gave up after %v, before loadStall (%v)", d, loadStall)
	}
	// A cancelled ctx ends a wait at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Load(cctx, loadRecords(2000, 5000)); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled ctx: %v", err)
	}
	release()
	recs, distinct := distinctMessageIDs(t, s)
	if recs != distinct {
		t.Errorf("%d records, %d distinct", recs, distinct)
	}
}

// A store written before schema version 6 has no recipient-domain terms,
// and one written before version 7 no terms of records' own queue IDs and
// session IDs: the next open adds them (backfill.go), so that searches
// and lookups find its earlier records, and drops the progress tables.
func TestBackfills(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bf.db")
	recs := corpus()
	s := openTest(t, path, Options{})
	fill(t, s, recs)
	var queries []string
	seen := map[string]bool{}
	add := func(q string) {
		if !seen[q] {
			seen[q] = true
			queries = append(queries, q)
		}
	}
	for _, r := range recs {
		for _, a := range query.Recipients(r) {
			if d := query.Domain(a); d != "" {
				add("to:@" + d)
			}
		}
		if r.QueueID != "" {
			add("queue:" + r.QueueID)
		}
		if r.SessionID != "" {
			add("session:" + r.SessionID)
		}
	}
	want := map[string]int{}
	for _, q := range queries {
		want[q] = len(searchAll(t, s, query.MustParse(q, t0), 500))
		if want[q] == 0 {
			t.Fatalf("%s: nothing found before the backfill", q)
		}
	}
	ctx := context.Background()
	sessions := map[string]int{}
	for _, r := range recs {
		if r.SessionID != "" && sessions[r.SessionID] == 0 {
			items, err := s.Session(ctx, r.SessionID)
			if err != nil {
				t.Fatal(err)
			}
			sessions[r.SessionID] = len(items)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Back to how earlier versions left it: no 'd' terms, no 's' terms,
	// 'q' terms for deliveries' queue IDs only, and the progress tables
	// migrations 0006 and 0007 make.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var gone []term
	collect := func(q string, tag byte) {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, ts int64
			var v string
			if err := rows.Scan(&id, &ts, &v); err != nil {
				t.Fatal(err)
			}
			gone = append(gone, term{bucketOf(ts), termHash(tag, v), id})
		}
	}
	collect(`SELECT record_id, ts, domain FROM rcpts WHERE domain IS NOT NULL`, tagRcptDom)
	collect(`SELECT id, ts, session_id FROM records WHERE session_id IS NOT NULL`, tagSession)
	collect(`SELECT id, ts, queue_id FROM records r WHERE queue_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.id AND d.queue_id = r.queue_id)`, tagQueueID)
	for _, g := range gone {
		if _, err := db.Exec(`DELETE FROM terms WHERE bucket = ? AND h = ? AND rid = ?`, g.bucket, g.h, g.rid); err != nil {
			t.Fatal(err)
		}
	}
	for _, tb := range []string{"rcpt_domain_backfill", "key_terms_backfill"} {
		if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + tb + ` (one INTEGER PRIMARY KEY CHECK (one = 1), done INTEGER NOT NULL);
			INSERT OR REPLACE INTO ` + tb + ` VALUES (1, 0)`); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if len(gone) == 0 {
		t.Fatal("no terms to take away in the corpus")
	}

	s = openTest(t, path, Options{})
	for _, q := range queries {
		if got := len(searchAll(t, s, query.MustParse(q, t0), 500)); got != want[q] {
			t.Errorf("%s after the backfill: %d records, want %d", q, got, want[q])
		}
	}
	for id, n := range sessions {
		if items, err := s.Session(ctx, id); err != nil || len(items) != n {
			t.Errorf("Session(%q) after the backfill: %d records (%v), want %d", id, len(items), err, n)
		}
	}
	var tables int
	if err := s.r.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name LIKE '%_backfill'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("progress tables still there (%d, %v)", tables, err)
	}
}

// A new database gets pageSize pages; one made with SQLite's default
// (by an earlier version) keeps its page size and works as before.
func TestPageSize(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.db")
	db, err := sql.Open("sqlite", "file:"+old+"?_auto_vacuum=INCREMENTAL&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE early (x)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, c := range []struct {
		path string
		want int
	}{{filepath.Join(dir, "new.db"), pageSize}, {old, 4096}} {
		s := openTest(t, c.path, Options{})
		recs := corpus()
		fill(t, s, recs)
		var ps, av int
		if err := s.r.QueryRow(`SELECT page_size, auto_vacuum FROM pragma_page_size, pragma_auto_vacuum`).Scan(&ps, &av); err != nil {
			t.Fatal(err)
		}
		if ps != c.want || av != 2 {
			t.Errorf("%s: page size %d, auto_vacuum %d; want %d and 2 (incremental)", filepath.Base(c.path), ps, av, c.want)
		}
		if got := searchAll(t, s, query.MustParse("", t0), 1000); len(got) != len(recs) {
			t.Errorf("%s: %d records found, want %d", filepath.Base(c.path), len(got), len(recs))
		}
	}
}

// compactAll moves the terms of every day due, with days due once the
// oldest bucket is behind the newest by after buckets, into day buckets;
// it returns how many slices it moved.
func compactAll(t *testing.T, s *Store, after int64) int {
	t.Helper()
	old := compactAfter
	compactAfter = after
	defer func() { compactAfter = old }()
	var c compaction
	return repeatInWriter(t, s, c.step)
}

// repeatInWriter runs step in one transaction of the writer until it
// reports that it did nothing, and returns how many times it did something.
func repeatInWriter(t *testing.T, s *Store, step func(context.Context, *sql.Tx) (bool, error)) int {
	t.Helper()
	n := 0
	err := s.do(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
		for {
			did, err := step(ctx, tx)
			if err != nil || !did {
				return err
			}
			n++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Days of terms moved to day buckets are found as before, with or without
// a time range; a record added later to a moved day is found too, and
// moved at the next round; retention drops the day buckets of the days it
// empties.
func TestDayBuckets(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "days.db"), Options{})
	ctx := context.Background()
	recs := corpus()
	fill(t, s, recs)
	compactAll(t, s, 0)
	var days, hours int
	if err := s.r.QueryRow(`SELECT count(*) FILTER (WHERE b >= ?), count(*) FILTER (WHERE b < ?) FROM buckets`, dayBase, dayBase).Scan(&days, &hours); err != nil {
		t.Fatal(err)
	}
	if days < 2 || hours != 1 {
		t.Errorf("after the move: %d day buckets and %d 4-hour ones; want 2 or more, and the newest alone", days, hours)
	}
	var r *record.Record
	for _, x := range recs {
		if x.MessageID != "" && x.QueueID != "" && x.Timestamp.Before(recs[len(recs)/3].Timestamp) {
			r = x
			break
		}
	}
	for _, q := range []string{"msgid:" + query.NormMessageID(r.MessageID), "queue:" + r.QueueID,
		"msgid:" + query.NormMessageID(r.MessageID) + " after:" + r.Timestamp.Add(-time.Minute).Format(time.RFC3339) +
			" before:" + r.Timestamp.Add(time.Minute).Format(time.RFC3339)} {
		if got := searchAll(t, s, query.MustParse(q, t0), 100); len(got) == 0 {
			t.Errorf("%s: not found after the move", q)
		}
	}

	// A late record in a moved day.
	late := *r
	late.MessageID = "<late-arrival@example.test>"
	late.QueueID = "LATE1"
	late.Timestamp = r.Timestamp.Add(time.Second)
	fill(t, s, []*record.Record{&late})
	items, err := s.ByMessageID(ctx, late.MessageID)
	if err != nil || len(items) != 1 {
		t.Fatalf("late record: %d found (%v), want 1", len(items), err)
	}
	if n := compactAll(t, s, 0); n != compactSlices {
		t.Errorf("second round moved %d slices, want one day's %d", n, compactSlices)
	}
	if items, err := s.ByMessageID(ctx, late.MessageID); err != nil || len(items) != 1 {
		t.Errorf("late record after the second round: %d found (%v), want 1", len(items), err)
	}
	if items, err := s.ByQueueID(ctx, late.QueueID); err != nil || len(items) != 1 {
		t.Errorf("late record by queue ID: %d found (%v), want 1", len(items), err)
	}

	// Retention that deletes everything before the newest day drops the
	// day buckets of the days before it.
	newest := recs[len(recs)-1].Timestamp
	for _, x := range recs {
		if x.Timestamp.After(newest) {
			newest = x.Timestamp
		}
	}
	cut := newest.Truncate(24 * time.Hour)
	if _, err := s.Prune(ctx, cut, 0); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.r.QueryRow(`SELECT count(*) FROM buckets WHERE b >= ? AND b < ?`, dayBase, dayBucket(bucketOf(cut.UnixNano()))).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d day buckets before the oldest record's day left after pruning", left)
	}
}

// Once a load stops, the writer goes on by itself until every day due has
// its terms in a day bucket and its roll-ups summed.
func TestCompactionWhenQuiet(t *testing.T) {
	oldEvery, oldAfter, oldRoll := compactEvery, compactAfter, rollDayAfter
	compactEvery, compactAfter, rollDayAfter = 10*time.Millisecond, 0, 0
	t.Cleanup(func() { compactEvery, compactAfter, rollDayAfter = oldEvery, oldAfter, oldRoll })
	s := openTest(t, filepath.Join(t.TempDir(), "quiet.db"), Options{})
	fill(t, s, corpus())
	var hours, days, rolled int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := s.r.QueryRow(`SELECT (SELECT count(*) FROM buckets WHERE b < ?), (SELECT count(*) FROM buckets WHERE b >= ?),
			(SELECT count(*) FROM rollup_days)`, dayBase, dayBase).Scan(&hours, &days, &rolled); err != nil {
			t.Fatal(err)
		}
		if hours == 1 && days >= 2 && rolled >= 2 {
			return
		}
	}
	t.Errorf("after a quiet while: %d 4-hour buckets (want the newest alone), %d day buckets and %d daily roll-ups (want 2 or more)", hours, days, rolled)
}
