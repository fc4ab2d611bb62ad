package follow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Sizes of the windows hashed to recognise a file.
const (
	headWindow = 1024 // bytes at the start of the file
	tailWindow = 256  // bytes of the last line; bytes before the read offset
)

// Checkpoint is the position just after the last line a consumer
// acknowledged. It names the file by device and inode and by content (the
// hashes), so it still finds the file after a rename and refuses a file that
// was replaced or truncated.
type Checkpoint struct {
	Path     string `json:"path"`      // the followed path (informational)
	Dev      uint64 `json:"dev"`       // device of the file read
	Ino      uint64 `json:"ino"`       // inode of the file read
	Offset   int64  `json:"offset"`    // byte offset just after the last acknowledged line
	HeadHash string `json:"head_hash"` // SHA-256 of bytes [0, min(Offset, 1024))
	LastLine int64  `json:"last_line"` // offset of the last acknowledged line's first byte
	LastLen  int    `json:"last_len"`  // bytes of that line hashed: min(its length, 256)
	LastHash string `json:"last_hash"` // SHA-256 of bytes [LastLine, LastLine+LastLen)
}

// Checkpointer persists checkpoints. The follower calls Save only after the
// handler acknowledged every line up to c.Offset, and Load once at start.
//
// A consumer that wants exactly-once delivery across crashes stores
// Batch.Checkpoint in the same transaction as its own effects, returns it
// from Load, and makes Save a no-op (see NopSave).
type Checkpointer interface {
	// Load returns the last saved checkpoint; ok is false when there is none.
	Load(ctx context.Context) (c Checkpoint, ok bool, err error)
	Save(ctx context.Context, c Checkpoint) error
}

// FileCheckpointer keeps the checkpoint in a small JSON file, replaced
// atomically: written to a temporary file in the same directory, fsynced,
// renamed over the old one, and the directory fsynced. A crash leaves either
// the old or the new checkpoint, never a torn one.
type FileCheckpointer struct {
	Path string
}

var _ Checkpointer = FileCheckpointer{}

// Load implements Checkpointer.
func (fc FileCheckpointer) Load(ctx context.Context) (Checkpoint, bool, error) {
	b, err := os.ReadFile(fc.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, false, fmt.Errorf("decode checkpoint %s: %w", fc.Path, err)
	}
	return c, true, nil
}

// Save implements Checkpointer.
func (fc FileCheckpointer) Save(ctx context.Context, c Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(fc.Path)
	tmp, err := os.CreateTemp(dir, ".ckpt-*")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), fc.Path); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save checkpoint: sync dir: %w", err)
	}
	return nil
}

// NopSave wraps a Load function into a Checkpointer whose Save does nothing:
// for consumers that store Batch.Checkpoint themselves, atomically with
// their output.
type NopSave func(ctx context.Context) (Checkpoint, bool, error)

// Load implements Checkpointer.
func (f NopSave) Load(ctx context.Context) (Checkpoint, bool, error) { return f(ctx) }

// Save implements Checkpointer; it does nothing.
func (NopSave) Save(context.Context, Checkpoint) error { return nil }

// hashRange returns the hex SHA-256 of f's bytes [from, to), or ok=false when
// they cannot all be read.
func hashRange(f io.ReaderAt, from, to int64) (string, bool) {
	if from < 0 || to < from {
		return "", false
	}
	buf := make([]byte, to-from)
	if _, err := f.ReadAt(buf, from); err != nil && !(errors.Is(err, io.EOF) && len(buf) == 0) {
		return "", false
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), true
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// matches reports whether f holds, before c.Offset, the bytes c was made from.
func (c Checkpoint) matches(f io.ReaderAt) bool {
	if c.Offset == 0 {
		return true
	}
	head, ok1 := hashRange(f, 0, min(c.Offset, headWindow))
	last, ok2 := hashRange(f, c.LastLine, c.LastLine+int64(c.LastLen))
	return ok1 && ok2 && head == c.HeadHash && last == c.LastHash && c.LastLine < c.Offset
}

// sameBytes reports whether f holds want at off.
func sameBytes(f io.ReaderAt, off int64, want []byte) bool {
	if off < 0 {
		return false
	}
	got := make([]byte, len(want))
	n, _ := f.ReadAt(got, off)
	return n == len(want) && bytes.Equal(got, want)
}
