package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/testenv"
)

// TestServeDefaultsStoreAndWeb runs serve as a user would (store file, web
// UI), sends mail with swaks, and finds it through the API, the trace and
// `smtplog search` on the same store.
func TestServeDefaultsStoreAndWeb(t *testing.T) {
	swaks := testenv.NeedBinary(t, "swaks")
	smtpAddr, httpAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	db := filepath.Join(t.TempDir(), "smtplog.db")
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, []string{"serve", "--smtp", smtpAddr, "--http", httpAddr, "--db", db, "--hostname", "capture.test",
			"--chaos", "RCPT:*@fail.example=550 5.1.1 No such user"})
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(stop)
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + httpAddr + "/api/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never became ready: %v\n%s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	host, port, _ := net.SplitHostPort(smtpAddr)
	res, err := exec.Command(swaks, "-s", host, "-p", port, "-f", "app@dev.example", "-t", "user@example.com",
		"--header", "Message-Id: <serve-1@dev.example>", "--header", "Subject: welcome <b>aboard</b>").CombinedOutput()
	if err != nil || !strings.Contains(string(res), "queued as") {
		t.Fatalf("swaks: %v\n%s", err, res)
	}
	res, _ = exec.Command(swaks, "-s", host, "-p", port, "-f", "app@dev.example", "-t", "x@fail.example").CombinedOutput()
	if !strings.Contains(string(res), "550 5.1.1 No such user") {
		t.Errorf("--chaos rule not applied:\n%s", res)
	}
	if out.String() != "" {
		t.Errorf("records on standard output without --log-file: %q", out.String())
	}
	var found struct {
		Records []struct {
			ID        string `json:"id"`
			MessageID string `json:"message_id"`
			Subject   string `json:"subject"`
			Status    string `json:"status"`
		} `json:"records"`
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(found.Records) == 0 && time.Now().Before(deadline) {
		resp, err := client.Get("http://" + httpAddr + "/api/search?q=" + url.QueryEscape("msgid:serve-1@dev.example"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &found); err != nil {
			t.Fatalf("search answer %q: %v", body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(found.Records) != 1 || found.Records[0].Subject != "welcome <b>aboard</b>" || found.Records[0].Status != "accepted" {
		t.Fatalf("search: %+v", found)
	}
	resp, err := client.Get("http://" + httpAddr + "/api/trace/" + url.PathEscape("<serve-1@dev.example>"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"kind":"capture"`) {
		t.Errorf("trace: %d %s", resp.StatusCode, body)
	}
	resp, err = client.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(string(page), "<html") {
		t.Errorf("UI: %d %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	// Mailpit's API sees the message, with its exact bytes.
	var mp struct {
		Total    int `json:"total"`
		Messages []struct {
			ID      string `json:"ID"`
			Subject string `json:"Subject"`
		} `json:"messages"`
	}
	resp, err = client.Get("http://" + httpAddr + "/api/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &mp); err != nil || mp.Total != 1 || mp.Messages[0].Subject != "welcome <b>aboard</b>" {
		t.Fatalf("/api/v1/messages: %v %s", err, body)
	}
	resp, err = client.Get("http://" + httpAddr + "/api/v1/message/" + mp.Messages[0].ID + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), "Message-Id: <serve-1@dev.example>") {
		t.Errorf("raw message: %q", raw)
	}
	// After a clean stop the same store answers smtplog search.
	stop()
	code, sout, serr := runCLI(t, nil, "search", "--db", db, "msgid:serve-1@dev.example")
	if code != 0 || !strings.Contains(sout, "<app@dev.example>") {
		t.Errorf("search after stop: %d %s %s", code, sout, serr)
	}
	// Both session records were stored, the last one without a message
	// to carry it.
	code, sout, serr = runCLI(t, nil, "search", "--db", db, "--format", "json", "type:session")
	if n := strings.Count(sout, `"type":"session"`); code != 0 || n != 2 {
		t.Errorf("%d session records after stop, want 2: %d %s %s", n, code, sout, serr)
	}
}

// Capture mode stores with synchronous=NORMAL unless told otherwise; the
// relay keeps FULL.
func TestServeStoreSyncDefault(t *testing.T) {
	for _, c := range []struct {
		flag    string
		capture bool
		want    store.Sync
	}{
		{"", true, store.SyncNormal},
		{"", false, store.SyncFull},
		{"FULL", true, store.SyncFull},
		{"normal", false, store.SyncNormal},
	} {
		f := storeFlags{sync: c.flag}
		if got := f.syncLevel(c.capture); got != c.want {
			t.Errorf("--store-sync %q, capture %v: %s, want %s", c.flag, c.capture, got, c.want)
		}
	}
}
