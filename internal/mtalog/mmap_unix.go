//go:build unix

package mtalog

import (
	"os"
	"syscall"
)

// mapFile maps the whole of f, a regular file of size bytes, read-only.
func mapFile(f *os.File, size int) ([]byte, error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	_ = syscall.Madvise(b, syscall.MADV_SEQUENTIAL) // a hint only
	return b, nil
}

// unmapFile undoes mapFile.
func unmapFile(b []byte) { _ = syscall.Munmap(b) }

// dropMapped lets the pages of b, a page-aligned part of a mapping, go
// from memory; reading them again reads them from the file.
func dropMapped(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }
