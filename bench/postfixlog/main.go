// Command postfixlog writes a large Postfix log made from real Postfix
// output: testdata/postfix/real-3.7.log (written by Debian's Postfix 3.7)
// replayed with fresh queue IDs and pids per copy (postfix.Replay, the
// generator the ingest benchmarks use), until at least -lines lines. The
// copies follow one another in time like a continuous log, ending at the
// original's times; -advance=false keeps every copy's times as they are.
//
//	go run ./bench/postfixlog -lines 1000000 > big.log
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/smtplog/smtplog/internal/mtalog/postfix"
)

func main() {
	in := flag.String("in", "testdata/postfix/real-3.7.log", "the real Postfix log to replay")
	lines := flag.Int("lines", 1000000, "write at least this many lines")
	advance := flag.Bool("advance", true, "move each copy's times to follow the previous copy's")
	flag.Parse()
	if err := run(*in, *lines, *advance); err != nil {
		fmt.Fprintln(os.Stderr, "postfixlog:", err)
		os.Exit(1)
	}
}

func run(in string, lines int, advance bool) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	per := bytes.Count(data, []byte("\n"))
	if per == 0 {
		return fmt.Errorf("%s: no lines", in)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := postfix.Replay(w, data, (lines+per-1)/per, advance); err != nil {
		return err
	}
	return w.Flush()
}
