//go:build !unix

package mtalog

import (
	"errors"
	"os"
)

// mapFile is not available here: files are read.
func mapFile(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapFile([]byte) {}

func dropMapped([]byte) {}
