// Package file is the record sink for JSON-lines or text files and for
// standard output. Each record is written with one write call under a lock,
// in append mode, so concurrent sessions never interleave and a record the
// call returned for is in the kernel's hands (it survives the process being
// killed).
package file

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/smtplog/smtplog/internal/record"
)

// Sink writes records to one file or writer.
type Sink struct {
	mu     sync.Mutex
	w      io.Writer
	f      *os.File // nil for a writer not owned by the sink
	format record.Format
	sync   bool
}

var _ record.Handler = (*Sink)(nil)

// Open opens path for appending ("-" is w, usually standard output).
// With syncEach, every record is fsynced before Handle returns.
func Open(path string, format record.Format, stdout io.Writer, syncEach bool) (*Sink, error) {
	if path == "-" || path == "" {
		return &Sink{w: stdout, format: format}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &Sink{w: f, f: f, format: format, sync: syncEach}, nil
}

// Handle encodes and writes one record.
func (s *Sink) Handle(_ context.Context, r *record.Record) error {
	var line []byte
	if s.format == record.FormatText {
		line = record.MarshalText(r)
	} else {
		var err error
		if line, err = record.MarshalJSONLine(r); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if s.sync && s.f != nil {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("sync record: %w", err)
		}
	}
	return nil
}

// Close flushes and closes the file (not a borrowed writer).
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
