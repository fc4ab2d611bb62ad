package mtalog

// SetTestChunking makes p read in batches of batchLines lines and, through
// o, in chunks of chunk bytes (o.MaxLine becomes chunk-1), and overwrite
// released chunks when poison is set: small enough that a test log is
// read, released and read over many times.
func SetTestChunking(p *Pipeline, o *ReaderOptions, batchLines, chunk int, poison bool) {
	p.batchLines = batchLines
	p.poison = poison
	o.MaxLine = chunk - 1
	o.chunkSize = chunk
}

// ReusedChunks is how many chunk buffers p's last Run read into again.
func ReusedChunks(p *Pipeline) int64 {
	if p.reuse == nil {
		return 0
	}
	return p.reuse.reused.Load()
}

// Detach is Line.detach.
func Detach(l Line) Line { return l.detach() }
