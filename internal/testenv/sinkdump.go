package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SinkDump is one transaction as smtp-sink's -d option wrote it.
type SinkDump struct {
	ClientAddr string   // X-Client-Addr
	Helo       string   // X-Helo-Args
	MailFrom   string   // the sender of X-Mail-Args, without angle brackets
	RcptTo     []string // each X-Rcpt-Args, without angle brackets
	// Received is the Received header smtp-sink put before the message
	// (LF line ends, continuation lines included).
	Received string
	// Message is the message as the sink received it, dot-unstuffed, with
	// LF line ends (smtp-sink writes LF for each CRLF).
	Message []byte
}

// ReadSinkDump reads a file written by smtp-sink -d (see [Sink.WaitDumps]):
// the sink's envelope headers (X-Client-Addr, X-Client-Proto, X-Helo-Args,
// X-Mail-Args, one X-Rcpt-Args per recipient), its own Received header, the
// message, and one empty line that smtp-sink appends after it.
func ReadSinkDump(path string) (SinkDump, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SinkDump{}, err
	}
	return ParseSinkDump(b)
}

// ParseSinkDump parses the content of an smtp-sink -d file; see
// [ReadSinkDump].
func ParseSinkDump(b []byte) (SinkDump, error) {
	var d SinkDump
	envelope := func(v string) string {
		f := strings.Fields(v) // "<a@b> SIZE=12 BODY=8BITMIME"
		if len(f) == 0 {
			return ""
		}
		return strings.TrimSuffix(strings.TrimPrefix(f[0], "<"), ">")
	}
	for {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return d, errors.New("smtp-sink dump: no Received header after the envelope")
		}
		name, value, _ := strings.Cut(string(line), ": ")
		switch name {
		case "X-Client-Addr":
			d.ClientAddr = value
		case "X-Client-Proto":
		case "X-Helo-Args":
			d.Helo = value
		case "X-Mail-Args":
			d.MailFrom = envelope(value)
		case "X-Rcpt-Args":
			d.RcptTo = append(d.RcptTo, envelope(value))
		case "Received":
			recv := string(line) + "\n"
			for len(rest) > 0 && (rest[0] == '\t' || rest[0] == ' ') {
				line, rest, _ = bytes.Cut(rest, []byte("\n"))
				recv += string(line) + "\n"
			}
			d.Received = recv
			msg, ok := bytes.CutSuffix(rest, []byte("\n"))
			if !ok {
				return d, errors.New("smtp-sink dump: no empty line after the message")
			}
			d.Message = msg
			return d, nil
		default:
			return d, fmt.Errorf("smtp-sink dump: unexpected line %q before the sink's Received header", clipLine(line))
		}
		b = rest
	}
}

func clipLine(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}
