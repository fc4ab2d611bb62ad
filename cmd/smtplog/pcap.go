package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/record"
)

func newPcapCmd(e *env) *cobra.Command {
	var (
		outPath  string
		format   string
		progress string
		idle     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pcap [flags] FILE...|-",
		Short: "Turn SMTP conversations in pcap/pcapng captures into session and message records",
		Long: `Read packet captures (pcap or pcapng, also gzip-compressed; "-" is standard
input), reassemble their TCP connections, find the SMTP conversations in them
by content (any port, IPv4 and IPv6) and write one session record per
connection and one message record per transaction, as JSON lines or text,
with source "pcap". Several files are read in the order given, as one
capture, so a connection may continue from one file into the next.

What a capture cannot show is said, never guessed: after STARTTLS (or on
port 465) the content is encrypted, and the session has tls.used and the
flag content_encrypted; segments missing from the capture make the records
they touch "incomplete" with the anomaly capture_gap; connections still
open when the capture ends, or silent for --idle-timeout, are flushed as
incomplete. AUTH user names are recorded, passwords and tokens never.
Other traffic is ignored and counted in the summary on standard error. A
file that is not a capture, or is cut short, is an error (exit status 1)
after the records of what could be read were written.`,
		Example: `  tcpdump -i eth0 -w smtp.pcap 'tcp port 25 or tcp port 587'
  smtplog pcap smtp.pcap --out -
  smtplog pcap --format text rotated.pcap0 rotated.pcap1
  tcpdump -i eth0 -w - port 25 | smtplog pcap -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := record.ParseFormat(format)
			if err != nil {
				return exitError{code: 2, msg: err.Error()}
			}
			if idle <= 0 {
				return exitError{code: 2, msg: "--idle-timeout must be positive"}
			}
			if err := checkInputs("pcap", args, false); err != nil {
				return err
			}
			return runPcap(cmd.Context(), e, pcapConfig{files: args, outPath: outPath, format: f, progress: progress, idle: idle})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&outPath, "out", "-", "write records to this file (- is standard output)")
	fs.StringVar(&format, "format", "json", "record format: json or text")
	fs.StringVar(&progress, "progress", "auto", "progress on standard error: auto (on a terminal), always, never")
	fs.DurationVar(&idle, "idle-timeout", 10*time.Minute, "flush a connection as incomplete after this long (capture time) without a packet")
	return cmd
}

type pcapConfig struct {
	files    []string
	outPath  string
	format   record.Format
	progress string
	idle     time.Duration
}

func runPcap(ctx context.Context, e *env, c pcapConfig) (err error) {
	out, done, err := openAppend(e, "pcap", c.outPath)
	if err != nil {
		return err
	}
	defer done(&err)
	bw := bufio.NewWriterSize(out, 256<<10)
	w := record.NewWriter(bw, c.format)
	d := pcapsmtp.NewDecoder(pcapsmtp.Options{
		IdleTimeout: c.idle,
		Handler:     record.HandlerFunc(func(_ context.Context, r *record.Record) error { return w.Write(r) }),
	})
	var total int64
	for _, path := range c.files {
		if path != "-" {
			if st, err := os.Stat(path); err == nil {
				total += st.Size()
			}
		}
	}
	stats := d.Stats()
	stop := startProgress(ctx, e, "pcap", c.progress, total, &stats.Bytes)
	start := time.Now()
	var errs []string
	for _, path := range c.files {
		var r io.Reader = e.stdin
		name := "standard input"
		if path != "-" {
			fh, err := os.Open(path)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			r, name = fh, path
			err = d.ReadFrom(ctx, fh)
			fh.Close()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
		} else if err := d.ReadFrom(ctx, r); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := d.Close(); err != nil {
		errs = append(errs, fmt.Sprintf("write records: %v", err))
	}
	stop()
	if err := bw.Flush(); err != nil {
		errs = append(errs, fmt.Sprintf("write records: %v", err))
	}
	el := time.Since(start)
	mb := float64(atomic.LoadInt64(&stats.Bytes)) / 1e6
	fmt.Fprintf(e.stderr, "smtplog pcap: %s; %.1f MB in %.2fs (%.0f MB/s)\n",
		stats.Summary(), mb, el.Seconds(), mb/max(el.Seconds(), 1e-9))
	if len(errs) > 0 {
		return exitError{code: 1, msg: "pcap: " + strings.Join(errs, "; ") + " (the records read before were written)"}
	}
	return nil
}
