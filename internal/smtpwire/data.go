package smtpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DataLimits bound what ReadData keeps.
type DataLimits struct {
	MaxSize int64 // bytes of message kept; beyond, the rest is read and dropped and TooLarge set
	MaxLine int   // longest text line (without CRLF) before LongLines counts it
}

// DataResult is a message read from DATA: the exact bytes between the 354
// and the end-of-data "CRLF.CRLF", with one leading dot removed from each
// line that began with one (RFC 5321 §4.5.2), and what was odd about them.
type DataResult struct {
	Body      []byte
	Size      int64 // bytes the client sent after unstuffing, also when TooLarge
	TooLarge  bool
	BareLF    int // LF not preceded by CR
	BareCR    int // CR not followed by LF
	NUL       int
	LongLines int
	EightBit  bool
}

// Clean reports whether the message has no bare CR, bare LF or NUL.
func (d *DataResult) Clean() bool { return d.BareLF == 0 && d.BareCR == 0 && d.NUL == 0 }

// ErrDataEOF means the connection ended before the end-of-data line.
var ErrDataEOF = errors.New("connection closed during DATA")

// ReadData reads a DATA payload up to and including the end-of-data line.
// Only "<CRLF>.<CRLF>" ends it: a dot between bare LFs or CRs, the
// SMTP-smuggling sequences, is content and is counted, never a terminator,
// so nothing after it can be executed as a command. A line starts only after
// CRLF, for ending and for unstuffing alike.
func ReadData(r *bufio.Reader, lim DataLimits) (DataResult, error) {
	return ReadDataInto(r, lim, &bytes.Buffer{})
}

// ReadDataInto is ReadData filling body, which it resets first, so a
// session can reuse one buffer for all its messages. The result's Body
// aliases body's storage.
func ReadDataInto(r *bufio.Reader, lim DataLimits, body *bytes.Buffer) (DataResult, error) {
	var res DataResult
	body.Reset()
	lineStart := true // just after CRLF (or at the start)
	lineLen := 0
	var prev, prev2 byte // last two bytes seen, across fragments
	for {
		frag, err := r.ReadSlice('\n')
		full := err == bufio.ErrBufferFull
		if err != nil && !full {
			if err == io.EOF {
				return res, ErrDataEOF
			}
			return res, err
		}
		if len(frag) == 0 {
			continue
		}
		if lineStart && !full && len(frag) == 3 && frag[0] == '.' && frag[1] == '\r' && frag[2] == '\n' {
			res.Body = body.Bytes()
			return res, nil
		}
		if lineStart && frag[0] == '.' {
			frag = frag[1:]
			prev2, prev = prev, '.'
		}
		for _, c := range frag {
			if prev == '\r' && c != '\n' {
				res.BareCR++
			}
			switch {
			case c == '\n':
				if prev != '\r' {
					res.BareLF++
				}
			case c == 0:
				res.NUL++
			case c >= 0x80:
				res.EightBit = true
			}
			prev2, prev = prev, c
		}
		res.Size += int64(len(frag))
		if lim.MaxSize > 0 && int64(body.Len())+int64(len(frag)) > lim.MaxSize {
			res.TooLarge = true
		}
		if !res.TooLarge {
			body.Write(frag)
		}
		lineLen += len(frag)
		if full {
			lineStart = false
			continue
		}
		crlf := prev == '\n' && prev2 == '\r'
		n := lineLen - 1
		if crlf {
			n--
		}
		if lim.MaxLine > 0 && n > lim.MaxLine {
			res.LongLines++
		}
		lineLen = 0
		lineStart = crlf
	}
}

// ScanChunk counts bare LF, bare CR and NUL in a BDAT chunk. prevCR says
// whether the previous chunk ended in CR; the result says whether this one
// does (its CR is then counted by the next call, or by Finish).
type ChunkScanner struct {
	BareLF, BareCR, NUL int
	EightBit            bool
	prevCR              bool
	any                 bool
}

// Scan inspects the next chunk.
func (s *ChunkScanner) Scan(b []byte) {
	for i, c := range b {
		if s.prevCR && c != '\n' {
			s.BareCR++
		}
		switch {
		case c == '\n':
			if !s.prevCR {
				s.BareLF++
			}
		case c == 0:
			s.NUL++
		case c >= 0x80:
			s.EightBit = true
		}
		s.prevCR = c == '\r'
		_ = i
	}
	if len(b) > 0 {
		s.any = true
	}
}

// Finish accounts for a trailing CR at the end of the last chunk.
func (s *ChunkScanner) Finish() {
	if s.prevCR {
		s.BareCR++
		s.prevCR = false
	}
}

// Normalize turns every bare CR and bare LF into CRLF, so that the result
// has only CRLF line ends. Used when the relay is configured to repair
// rather than refuse; DotStuff then makes a new end-of-data impossible.
func Normalize(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r':
			out.WriteString("\r\n")
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case c == '\n':
			out.WriteString("\r\n")
		default:
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

// DotStuff writes body for DATA: a dot is added before every line that
// starts with one, a final CRLF is added when the body does not end in one,
// and the end-of-data line ".\r\n" follows. Line starts are after CRLF only,
// the same rule ReadData uses, so what is read is written back unchanged.
func DotStuff(w io.Writer, body []byte) error {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 32*1024)
	}
	lineStart := true
	start := 0
	for i := 0; i < len(body); i++ {
		if lineStart && body[i] == '.' {
			if _, err := bw.Write(body[start:i]); err != nil {
				return err
			}
			if err := bw.WriteByte('.'); err != nil {
				return err
			}
			start = i
		}
		lineStart = body[i] == '\n' && i > 0 && body[i-1] == '\r'
	}
	if _, err := bw.Write(body[start:]); err != nil {
		return err
	}
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		if _, err := bw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	if _, err := bw.WriteString(".\r\n"); err != nil {
		return err
	}
	if ok {
		return nil // the caller's buffer; the caller flushes
	}
	return bw.Flush()
}

// ContentAnomalies names, as records list them, what a DATA or BDAT
// content held that SMTP forbids: bare LF, bare CR, NUL (counts from the
// data reader).
func ContentAnomalies(lf, cr, nul int) []string {
	var a []string
	if lf > 0 {
		a = append(a, "bare_lf_in_data")
	}
	if cr > 0 {
		a = append(a, "bare_cr_in_data")
	}
	if nul > 0 {
		a = append(a, "nul_in_data")
	}
	return a
}
