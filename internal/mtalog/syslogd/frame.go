package syslogd

import (
	"bufio"
	"errors"
	"io"
)

// ErrFrameTooLarge reports an octet count beyond what the framer will skip:
// the stream cannot be resynchronised, so the connection must be closed.
var ErrFrameTooLarge = errors.New("syslog: octet count too large")

// Framer splits a TCP or TLS syslog stream into messages. Each frame is
// recognised by its first byte, as rsyslog's imtcp does: a digit starts
// octet counting (RFC 6587 §3.4.1, RFC 5425 §4.3: "MSG-LEN SP SYSLOG-MSG"),
// anything else a newline-terminated message (RFC 6587 §3.4.2, "non-
// transparent framing"; a CR before the LF is dropped).
//
// Memory is bounded by max: an octet count is checked before anything is
// allocated; a longer frame yields its first max bytes, flagged truncated,
// and the rest is skipped so the stream stays in step. A count above
// maxSkip (or of more than 12 digits) ends the stream with
// ErrFrameTooLarge, as skipping it would mean reading it.
type Framer struct {
	r       *bufio.Reader
	max     int
	maxSkip int64
	buf     []byte
}

// NewFramer returns a Framer reading r.
func NewFramer(r io.Reader, max int, maxSkip int64) *Framer {
	return &Framer{r: bufio.NewReaderSize(r, 16<<10), max: max, maxSkip: maxSkip}
}

// Next returns the next frame's payload, valid until the next call, and
// whether it was truncated. It returns io.EOF at the end of the stream.
func (f *Framer) Next() ([]byte, bool, error) {
	for {
		// Peek one byte at a time: a short frame must not wait for bytes that
		// the sender has no reason to send.
		n, octet := int64(0), false
		for i := 0; ; i++ {
			b, err := f.r.Peek(i + 1)
			if err != nil {
				if i > 0 && errors.Is(err, io.EOF) {
					break // digits then EOF: a newline frame without newline
				}
				return nil, false, err
			}
			c := b[i]
			if c >= '0' && c <= '9' && !(i == 0 && c == '0') {
				if i >= 12 {
					return nil, false, ErrFrameTooLarge
				}
				n = n*10 + int64(c-'0')
				continue
			}
			octet = c == ' ' && i > 0
			if octet {
				f.r.Discard(i + 1)
			}
			break
		}
		if octet {
			return f.octets(n)
		}
		data, trunc, err := f.line()
		if err != nil {
			return nil, false, err
		}
		if len(data) > 0 {
			return data, trunc, nil
		}
		// An empty line (e.g. a LF after an octet-counted frame): skip.
	}
}

func (f *Framer) grow(n int) []byte {
	if cap(f.buf) < n {
		f.buf = make([]byte, n, max(n, min(2*cap(f.buf), f.max)))
	}
	return f.buf[:n]
}

func (f *Framer) octets(n int64) ([]byte, bool, error) {
	if n > f.maxSkip {
		return nil, false, ErrFrameTooLarge
	}
	keep := int(min(n, int64(f.max)))
	buf := f.grow(keep)
	if _, err := io.ReadFull(f.r, buf); err != nil {
		return nil, false, unexpected(err)
	}
	if rest := n - int64(keep); rest > 0 {
		for rest > 0 {
			d, err := f.r.Discard(int(min(rest, 1<<20)))
			rest -= int64(d)
			if err != nil {
				return nil, false, unexpected(err)
			}
		}
		return buf, true, nil
	}
	return buf, false, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (f *Framer) line() ([]byte, bool, error) {
	buf := f.buf[:0]
	trunc := false
	for {
		chunk, err := f.r.ReadSlice('\n')
		if room := f.max - len(buf); room > 0 {
			take := min(room, len(chunk))
			if need := len(buf) + take; need > cap(buf) {
				nb := make([]byte, len(buf), min(max(need, 2*cap(buf)), f.max))
				copy(nb, buf)
				buf = nb
			}
			buf = append(buf, chunk[:take]...)
			if take < len(chunk) && !(take == len(chunk)-1 && err == nil) {
				trunc = true
			}
		} else if len(chunk) > 1 || (len(chunk) == 1 && err != nil) {
			trunc = true
		}
		switch {
		case err == nil:
			f.buf = buf
			buf = trimEOL(buf)
			return buf, trunc, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			f.buf = buf
			return trimEOL(buf), trunc, nil
		default:
			return nil, false, err
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}
