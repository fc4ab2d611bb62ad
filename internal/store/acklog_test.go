package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtplog/smtplog/internal/record"
)

// holdAcked makes the writer leave acknowledged records in the log until a
// read, a job or Close asks for them.
func holdAcked(t *testing.T) {
	old := indexIdle
	indexIdle = time.Hour
	t.Cleanup(func() { indexIdle = old })
}

func ackRecord(i int) *record.Record {
	return &record.Record{
		Type: record.TypeMessage, Source: record.SourceCapture, Timestamp: t0.Add(time.Duration(i) * time.Second),
		MessageID: fmt.Sprintf("<ack%d@log.test>", i), MailFrom: new("a@log.test"), RcptTo: []string{"b@log.test"},
		Subject: fmt.Sprintf("zqack%d", i), Status: record.StatusAccepted,
	}
}

func logBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, f := range []string{"a", "b"} {
		b, err := os.ReadFile(filepath.Join(path+"-ack", f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// A record is acknowledged once it is in the log: a reader sees it at
// once (the read inserts it), and after Close the log is empty.
func TestAckLogReadYourWrites(t *testing.T) {
	holdAcked(t)
	path := filepath.Join(t.TempDir(), "ack.db")
	s := openTest(t, path, Options{})
	if s.ack == nil {
		t.Fatal("a store on disk has no acknowledgement log")
	}
	for i := range 5 {
		if err := s.Handle(context.Background(), ackRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.ack.count(); n != 5 {
		t.Fatalf("%d records waiting in the log, want 5", n)
	}
	if len(logBytes(t, path)) == 0 {
		t.Fatal("acknowledged records are not in the log file")
	}
	items, err := s.ByMessageID(context.Background(), "<ack4@log.test>")
	if err != nil || len(items) != 1 {
		t.Fatalf("the last acknowledged record: %d found, %v", len(items), err)
	}
	if n := s.ack.count(); n != 0 {
		t.Errorf("%d records still waiting after a read", n)
	}
	if n := len(logBytes(t, path)); n != 0 {
		t.Errorf("the log holds %d bytes after its records were inserted", n)
	}
}

// copyStore copies a store's files as a crash would leave them: the
// database, its WAL and its acknowledgement log.
func copyStore(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-ack/a", "-ack/b"} {
		b, err := os.ReadFile(from + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to+suffix), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The records a crash leaves in the log are inserted at the next Open,
// each once, with derived rows; a write cut short at the end of the log
// (never acknowledged) is left out, with what came before it kept.
func TestAckLogReplay(t *testing.T) {
	holdAcked(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "live.db")
	s := openTest(t, path, Options{})
	acked := map[string]bool{}
	for i := range 40 {
		r := ackRecord(i)
		if err := s.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		acked[r.MessageID] = true
		if i == 19 {
			// Half of them reach SQLite before the "crash".
			if _, err := s.Count(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Captured messages: their exact bytes are in the log with their
	// records.
	c := openCapture(t, s, CaptureOptions{})
	bodies := map[string][]byte{}
	for i := range 3 {
		qid := fmt.Sprintf("QACK%d", i)
		bodies[qid] = []byte(fmt.Sprintf("Subject: %s\r\n\r\nbody %s\r\n", qid, strings.Repeat("x", i*1000)))
		captured(t, s, c, qid, t0.Add(time.Hour), bodies[qid])
	}
	crashed := filepath.Join(dir, "crashed.db")
	copyStore(t, path, crashed)
	// An unfinished frame at the end of the file written last.
	f, err := os.OpenFile(crashed+"-ack/"+[]string{"a", "b"}[s.ack.cur], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	checkDerivedOnce(t, crashed, acked, "after replay")
	if n := len(logBytes(t, crashed)); n != 0 {
		t.Errorf("the log holds %d bytes after Open inserted its records", n)
	}
	r := openTest(t, crashed, Options{})
	rc := openCapture(t, r, CaptureOptions{})
	for qid, body := range bodies {
		if _, got, err := rc.Get(context.Background(), qid); err != nil || !bytes.Equal(got, body) {
			t.Errorf("captured %s after replay: %d bytes, %v; want its %d bytes", qid, len(got), err, len(body))
		}
	}
}

// A record inserted from the log and deleted since never comes back, even
// should its frame still be in the log at Open (ack_mark).
func TestAckLogDeletedStayDeleted(t *testing.T) {
	holdAcked(t)
	path := filepath.Join(t.TempDir(), "del.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Handle(context.Background(), ackRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	frames := logBytes(t, path)
	if _, err := s.Prune(context.Background(), t0.Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(context.Background()); n != 0 {
		t.Fatalf("%d records after pruning all", n)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-ack/a", frames, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	if n, _ := s.Count(context.Background()); n != 0 {
		t.Errorf("%d pruned records came back from the log", n)
	}
	// New records get new ids, not those of the log's frames.
	if err := s.Handle(context.Background(), ackRecord(9)); err != nil {
		t.Fatal(err)
	}
	items, err := s.ByMessageID(context.Background(), "<ack9@log.test>")
	if err != nil || len(items) != 1 || items[0].ID <= 3 {
		t.Errorf("new record after reopen: %v %+v", err, items)
	}
}

// A second store on the same database (smtplog search beside smtplog
// serve) leaves the first's log alone and commits its own records.
func TestAckLogSecondProcess(t *testing.T) {
	holdAcked(t)
	path := filepath.Join(t.TempDir(), "two.db")
	first := openTest(t, path, Options{})
	if err := first.Handle(context.Background(), ackRecord(1)); err != nil {
		t.Fatal(err)
	}
	second, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if second.ack != nil {
		t.Fatal("a second store took the acknowledgement log of the first")
	}
	if n, _ := second.Count(context.Background()); n != 0 {
		t.Errorf("the second store inserted the first one's waiting record: %d records", n)
	}
	if err := second.Handle(context.Background(), ackRecord(2)); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Closed, the second store's record is committed; the first's comes
	// with the first's next read, and both stay unique.
	for _, id := range []string{"<ack1@log.test>", "<ack2@log.test>"} {
		items, err := first.ByMessageID(context.Background(), id)
		if err != nil || len(items) != 1 {
			t.Errorf("%s: %d found, %v", id, len(items), err)
		}
	}
}

// Should the log fail, records are committed directly, numbered after
// those of the log.
func TestAckLogDownFallsBack(t *testing.T) {
	holdAcked(t)
	s := openTest(t, "", Options{})
	if err := s.Handle(context.Background(), ackRecord(1)); err != nil {
		t.Fatal(err)
	}
	s.ack.mu.Lock()
	s.ack.err = errors.New("disk gone")
	s.ack.mu.Unlock()
	if err := s.Handle(context.Background(), ackRecord(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Insert(context.Background(), []*record.Record{ackRecord(3), ackRecord(4)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(context.Background()); n != 4 {
		t.Errorf("%d records, want 4", n)
	}
}

func TestReadFrames(t *testing.T) {
	var buf []byte
	for i := int64(1); i <= 3; i++ {
		rw := &row{seq: i, rec: []any{[]byte(fmt.Sprintf(`{"n":%d}`, i))}, transcript: []byte("t")}
		if i == 2 {
			rw.raw = &rawPut{queueID: "Q2", ts: -5, size: 9, data: []byte("zstd")}
		}
		buf = rw.appendFrame(buf)
	}
	whole := len(buf)
	frames, dropped, err := readFrames(bytes.NewReader(buf))
	if err != nil || dropped != 0 || len(frames) != 3 {
		t.Fatalf("%d frames, %d dropped, %v", len(frames), dropped, err)
	}
	if f := frames[1]; f.seq != 2 || string(f.body) != `{"n":2}` || string(f.transcript) != "t" ||
		f.raw == nil || f.raw.queueID != "Q2" || f.raw.ts != -5 || f.raw.size != 9 || string(f.raw.data) != "zstd" {
		t.Errorf("frame 2 read back as %+v raw %+v", f, f.raw)
	}
	// Cut anywhere in the last frame: the first two stay.
	for cut := whole - 1; cut > whole-10; cut-- {
		frames, dropped, err := readFrames(bytes.NewReader(buf[:cut]))
		if err != nil || len(frames) != 2 || dropped == 0 {
			t.Errorf("cut at %d: %d frames, %d dropped, %v", cut, len(frames), dropped, err)
		}
	}
	// A flipped byte in the second frame: only the first stays.
	bad := bytes.Clone(buf)
	bad[len(bad)/2] ^= 0xff
	if frames, dropped, _ := readFrames(bytes.NewReader(bad)); len(frames) != 1 || dropped == 0 {
		t.Errorf("damaged: %d frames, %d dropped", len(frames), dropped)
	}
}

func FuzzReadFrames(f *testing.F) {
	rw := &row{seq: 7, rec: []any{[]byte(`{}`)}, raw: &rawPut{queueID: "Q", data: []byte("d")}}
	f.Add(rw.appendFrame(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, dropped, err := readFrames(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if dropped < 0 || dropped > int64(len(b)) {
			t.Fatalf("dropped %d of %d", dropped, len(b))
		}
		_ = frames
	})
}

// A log that cannot be opened (here a file where its directory goes) is a
// warning, not a failure: the store commits every record directly.
func TestAckLogUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nolog.db")
	if err := os.WriteFile(path+"-ack", []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path, Options{})
	if s.ack != nil {
		t.Fatal("a log where none can be")
	}
	if err := s.Handle(context.Background(), ackRecord(1)); err != nil {
		t.Fatal(err)
	}
	if items, err := s.ByMessageID(context.Background(), "<ack1@log.test>"); err != nil || len(items) != 1 {
		t.Errorf("record stored without a log: %d found, %v", len(items), err)
	}
}

// faultFile fails as a full or failing disk does: a write stores half of
// its bytes and returns writeErr, a sync returns syncErr.
type faultFile struct {
	*os.File
	writeErr, syncErr error
}

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	if f.writeErr != nil {
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, f.writeErr
	}
	return f.File.WriteAt(b, off)
}

func (f *faultFile) Sync() error {
	if f.syncErr != nil {
		return f.syncErr
	}
	return f.File.Sync()
}

// A full disk refuses the record (the caller answers 4xx) and leaves no
// torn frame behind: once there is room again, records go on, and a crash
// then loses none of the acknowledged ones. A failing sync turns the log
// off; records then commit directly.
func TestAckLogDiskFull(t *testing.T) {
	holdAcked(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "full.db")
	s := openTest(t, path, Options{})
	ctx := context.Background()
	if err := s.Handle(ctx, ackRecord(1)); err != nil {
		t.Fatal(err)
	}
	faults := make([]*faultFile, 2)
	for i, af := range s.ack.files {
		faults[i] = &faultFile{File: af.f.(*os.File)}
		af.f = faults[i]
	}
	for _, f := range faults {
		f.writeErr = syscall.ENOSPC
	}
	// Longer than the next record: what the failed write left must be
	// cut, not just written over.
	big := ackRecord(2)
	big.Subject = strings.Repeat("long subject ", 500)
	if err := s.Handle(ctx, big); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Handle on a full disk: %v, want ENOSPC", err)
	}
	for _, f := range faults {
		f.writeErr = nil
	}
	if err := s.Handle(ctx, ackRecord(3)); err != nil {
		t.Fatal(err)
	}
	frames, dropped, err := readFrames(bytes.NewReader(logBytes(t, path)))
	if err != nil || len(frames) != 2 || dropped != 0 {
		t.Fatalf("log after a failed write: %d frames, %d bytes dropped, %v; want 2 whole frames", len(frames), dropped, err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	copyStore(t, path, crashed)
	c := openTest(t, crashed, Options{})
	for i, want := range []int{1, 0, 1} {
		items, err := c.ByMessageID(ctx, fmt.Sprintf("<ack%d@log.test>", i+1))
		if err != nil || len(items) != want {
			t.Errorf("record %d after the crash: %d found (%v), want %d", i+1, len(items), err, want)
		}
	}

	for _, f := range faults {
		f.syncErr = syscall.EIO
	}
	if err := s.Handle(ctx, ackRecord(4)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Handle when the sync fails: %v, want EIO", err)
	}
	if err := s.Handle(ctx, ackRecord(5)); err != nil {
		t.Fatalf("Handle after the log was turned off: %v", err)
	}
	if items, err := s.ByMessageID(ctx, "<ack5@log.test>"); err != nil || len(items) != 1 {
		t.Errorf("record committed directly: %d found, %v", len(items), err)
	}
}
