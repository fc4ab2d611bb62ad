package trace_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/mtalog"
	"github.com/smtplog/smtplog/internal/mtalog/postfix"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/relay"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/testenv"
	"github.com/smtplog/smtplog/internal/trace"
)

// TestTraceEndToEnd: swaks → smtplog relay → a real Postfix that delivers
// one recipient to an smtp-sink and defers the other; Postfix's log is
// ingested into the same store; the trace of the Message-ID shows the
// relay's transcript, the queue ID, the delivery to the sink and the
// deferral.
func TestTraceEndToEnd(t *testing.T) {
	swaks := testenv.NeedBinary(t, "swaks")
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "smtplog.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)

	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayHost: sink.Addr(), DeferDomains: []string{"later.example"}})
	rc := relay.Config{Upstream: pf.Addr(), TLSMode: relay.TLSNone}
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := smtpd.New(smtpd.Config{Hostname: "relay.test", Source: record.SourceProxy, Handler: st, Upstream: pf.Addr()}, relay.New(rc))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	host, port, _ := net.SplitHostPort(l.Addr().String())
	out, _ := exec.Command(swaks, "-s", host, "-p", port, "-f", "app@shop.example", "-t", "now@dest.example,wait@later.example",
		"--header", "Message-Id: <trace-1@shop.example>", "--header", "Subject: order 42").CombinedOutput()
	if !strings.Contains(string(out), "queued as") {
		t.Fatalf("swaks:\n%s", out)
	}
	qid := pf.QueueIDFor(t, "<trace-1@shop.example>", 20*time.Second)
	pf.WaitDelivery(t, qid, "sent", 30*time.Second)
	pf.WaitDelivery(t, qid, "deferred", 30*time.Second)

	// Ingest Postfix's own log into the same store.
	pipe, err := mtalog.NewPipeline(mtalog.PipelineOptions{Dialects: []mtalog.Dialect{postfix.Dialect()}, MTA: "postfix", Handler: st})
	if err != nil {
		t.Fatal(err)
	}
	src := mtalog.Merge(mtalog.FileSource{Path: pf.LogPath(), Parse: mtalog.Parsers([]mtalog.Dialect{postfix.Dialect()})})
	if err := pipe.Run(ctx, src); err != nil {
		t.Fatal(err)
	}

	tr, err := trace.Build(ctx, st, "trace-1@shop.example")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var relayStep, sent, deferred bool
	for _, s := range tr.Steps {
		kinds = append(kinds, s.Kind+"/"+s.Source+"/"+s.Status)
		switch {
		case s.Kind == "relay" && s.QueueID == qid && strings.Contains(s.SMTPResponse, "queued as "+qid):
			relayStep = true
		case s.Kind == "delivery" && s.Rcpt == "now@dest.example" && s.Status == "sent" && strings.Contains(s.Relay, sink.Addr()[len("127.0.0.1:"):]):
			sent = true
		case s.Kind == "delivery" && s.Rcpt == "wait@later.example" && s.Status == "deferred":
			deferred = true
		}
	}
	if !relayStep || !sent || !deferred {
		t.Errorf("trace steps %q: relay %v, sent %v, deferred %v", kinds, relayStep, sent, deferred)
	}
	if len(tr.QueueIDs) == 0 || tr.QueueIDs[0] != qid {
		t.Errorf("queue ids %q, want %s first", tr.QueueIDs, qid)
	}
	// The relay's transcript is part of the story, on both legs.
	var transcript []string
	for _, r := range tr.Records {
		if r.Source == record.SourceProxy && r.Type == record.TypeMessage {
			for _, l := range r.Transcript {
				transcript = append(transcript, l.Dir+l.Leg+" "+l.Line)
			}
		}
	}
	joined := strings.Join(transcript, "\n")
	for _, want := range []string{"C MAIL FROM:<app@shop.example>", "Cupstream MAIL FROM:<app@shop.example>", "Supstream 250 2.0.0 Ok: queued as " + qid} {
		if !strings.Contains(joined, want) {
			t.Errorf("transcript lacks %q:\n%s", want, joined)
		}
	}
	// The same story from the queue ID and from the relay's session ID.
	for _, id := range []string{qid, tr.SessionIDs[0]} {
		other, err := trace.Build(ctx, st, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(other.Steps) < len(tr.Steps)-1 || !regexp.MustCompile(`trace-1@shop\.example`).MatchString(strings.Join(other.MessageIDs, " ")) {
			t.Errorf("trace of %s: %d steps, ids %q", id, len(other.Steps), other.MessageIDs)
		}
	}
	if _, err := trace.Build(ctx, st, "<nothing@nowhere>"); !errors.Is(err, trace.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}
