package follow

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFollowBigFile reads a 64 MiB file of Postfix-like lines from the
// start, batch by batch, saving a checkpoint file after each batch or not.
func BenchmarkFollowBigFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "mail.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	n, size := 0, 0
	for ; size < 64<<20; n++ {
		l := line(n)
		size += len(l)
		w.WriteString(l)
	}
	w.Flush()
	f.Close()
	for _, tc := range []struct {
		name string
		ckpt bool
	}{{"no-checkpoint", false}, {"file-checkpoint", true}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				cfg := Config{Path: path, NoNotify: true, ReadSize: 256 << 10}
				if tc.ckpt {
					cfg.Checkpointer = FileCheckpointer{Path: filepath.Join(b.TempDir(), "ckpt")}
				}
				ctx, cancel := context.WithCancel(b.Context())
				got := 0
				fl, _ := New(cfg, func(_ context.Context, bt Batch) error {
					if got += len(bt.Lines); got >= n {
						cancel()
					}
					return nil
				})
				fl.Run(ctx)
				cancel()
				if got != n {
					b.Fatalf("got %d lines, want %d", got, n)
				}
			}
		})
	}
}
