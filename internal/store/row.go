package store

import (
	"bytes"
	"compress/flate"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"

	kflate "github.com/klauspost/compress/flate"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

// row is a record turned into column values. It is built by the caller's
// goroutine (JSON encoding and compression run in parallel there), so the
// single writer only binds and steps.
type row struct {
	id         int64 // records.id, given in the transaction that inserts it
	seq        int64 // its frame's sequence number in the acknowledgement log; 0: none
	frameLen   int   // and the length of the frame
	rec        []any // the records columns, in insertRecord's order
	ts         int64
	rcpts      []rcptRow
	rejected   []record.Rejection
	deliveries []record.Delivery
	codes      []query.ReplyCode
	transcript []byte  // compressed, nil when none
	text       string  // for FTS, "" when it has no words
	hashes     []int64 // term hashes (terms.go)
	raw        *rawPut // the message's parked bytes (raw.go), nil when none
	stats      rowStats
}

type rcptRow struct {
	addr   string
	domain any
	kind   int
}

const (
	kindAccepted  = 1
	kindRejected  = 2
	kindDelivered = 4
)

// unixNano clamps t to what an int64 of nanoseconds holds.
func unixNano(t time.Time) int64 {
	switch {
	case t.Year() < 1678:
		return math.MinInt64
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullNum[T int | int64 | float64](n T) any {
	if n == 0 {
		return nil
	}
	return n
}

// ipBytes encodes an address for range comparisons: 4 bytes for IPv4, 16
// for IPv6.
func ipBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

func (s *Store) prepareRow(r *record.Record) (*row, error) {
	c := *r
	c.Transcript = nil
	body, err := record.MarshalJSONLine(&c)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	body = bytes.TrimSuffix(body, []byte("\n"))
	rw := &row{ts: unixNano(r.Timestamp)}

	var mailFrom, fromDomain any
	if a, ok := query.Sender(r); ok {
		mailFrom = a
		fromDomain = nullStr(query.Domain(a))
		if a != "" {
			rw.hashes = append(rw.hashes, termHash(tagSender, a))
		}
	}
	var ip any
	if a, ok := query.ClientAddr(r); ok {
		b := ipBytes(a)
		ip = b
		rw.hashes = append(rw.hashes, termHash(tagClientIP, string(b)))
	}
	if id := query.NormMessageID(r.MessageID); id != "" {
		rw.hashes = append(rw.hashes, termHash(tagMessageID, id))
	}
	// A queue ID shares its tag with those of the deliveries: one probe
	// finds a message by its own and by a re-injected copy's.
	if r.QueueID != "" {
		rw.hashes = append(rw.hashes, termHash(tagQueueID, r.QueueID))
	}
	for _, d := range r.Deliveries {
		if d.QueueID != "" {
			rw.hashes = append(rw.hashes, termHash(tagQueueID, d.QueueID))
		}
	}
	if r.SessionID != "" {
		rw.hashes = append(rw.hashes, termHash(tagSession, r.SessionID))
	}
	tls := 0
	if query.TLSUsed(r) {
		tls = 1
	}
	var authResult any
	if r.Auth != nil {
		authResult = nullStr(r.Auth.Result)
	}
	reply := r.ReplyCode
	if reply == 0 {
		reply = query.ParseReply(r.SMTPResponse).Reply
	}
	rw.stats = rowStats{typ: string(r.Type), status: r.Status, code: int64(reply), tls: tls == 1, latency: r.LatencyMS}
	if m, ok := mailFrom.(string); ok {
		rw.stats.from, rw.stats.hasFrom = m, true
	}
	if a, ok := authResult.(string); ok {
		rw.stats.auth = a
	}
	rw.rec = []any{
		string(r.Type), rw.ts, nullStr(string(r.Source)), nullStr(r.SessionID),
		nullStr(query.NormMessageID(r.MessageID)), nullStr(r.QueueID), mailFrom, fromDomain, ip,
		nullStr(query.User(r)), nullStr(query.Helo(r)), nullStr(r.Status), nullNum(reply), tls,
		nullStr(r.Subject), nullNum(r.Size), nullNum(r.LatencyMS), authResult, body,
	}

	kinds := map[string]int{}
	for _, a := range r.RcptTo {
		kinds[query.NormAddr(a)] |= kindAccepted
	}
	for _, rj := range r.RejectedRcpt {
		kinds[query.NormAddr(rj.Address)] |= kindRejected
	}
	for _, d := range r.Deliveries {
		kinds[query.NormAddr(d.Rcpt)] |= kindDelivered
	}
	for _, a := range query.Recipients(r) {
		d := query.Domain(a)
		rw.rcpts = append(rw.rcpts, rcptRow{addr: a, domain: nullStr(d), kind: kinds[a]})
		rw.hashes = append(rw.hashes, termHash(tagRcpt, a))
		if d != "" {
			// Repeats of a domain are dropped with the batch's (sortTerms).
			rw.hashes = append(rw.hashes, termHash(tagRcptDom, d))
		}
	}
	rw.rejected = r.RejectedRcpt
	rw.deliveries = r.Deliveries
	rw.codes = query.Codes(r)
	if len(query.Tokens(query.Text(r))) > 0 {
		rw.text = query.Text(r)
	}
	if len(r.Transcript) > 0 {
		rw.transcript, err = s.compress(r.Transcript)
		if err != nil {
			return nil, err
		}
	}
	if r.Type == record.TypeMessage {
		rw.raw = s.unpark(r.QueueID)
	}
	return rw, nil
}

// compress encodes a transcript as DEFLATE-compressed JSON, with
// klauspost's stateless encoder: it keeps no state between calls, where a
// compress/flate Writer holds several hundred KiB, one per concurrent
// caller, and it costs less per small transcript.
func (s *Store) compress(t []record.TranscriptLine) ([]byte, error) {
	js, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("store: encode transcript: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(js)/3 + 64)
	if err := kflate.StatelessDeflate(&buf, js, true, nil); err != nil {
		return nil, fmt.Errorf("store: compress transcript: %w", err)
	}
	return buf.Bytes(), nil
}

func decompress(b []byte) ([]record.TranscriptLine, error) {
	zr := flate.NewReader(bytes.NewReader(b))
	defer zr.Close()
	var t []record.TranscriptLine
	if err := json.NewDecoder(io.LimitReader(zr, 256<<20)).Decode(&t); err != nil {
		return nil, fmt.Errorf("store: decode transcript: %w", err)
	}
	return t, nil
}

// table describes one multi-row INSERT: a batch's rows for a table are
// inserted with statements of up to rowsPerStmt rows each, which costs far
// less per row than one statement per row.
type table struct {
	head string // INSERT INTO t (cols) VALUES
	cols int
}

const rowsPerStmt = 128

var (
	tRecords = table{`INSERT INTO records (id, type, ts, source, session_id, message_id, queue_id, mail_from, from_domain,
		client_ip, username, helo, status, reply_code, tls, subject, size, latency_ms, auth_result, body) VALUES `, 20}
	tRcpts       = table{`INSERT INTO rcpts (record_id, addr, domain, ts, kind) VALUES `, 5}
	tRejected    = table{`INSERT INTO rejected (record_id, seq, addr, response) VALUES `, 4}
	tDeliveries  = table{`INSERT INTO deliveries (record_id, seq, ts, rcpt, status, relay, dsn, response, delay_s, queue_id) VALUES `, 10}
	tCodes       = table{`INSERT INTO codes (record_id, reply, enhanced) VALUES `, 3}
	tTranscripts = table{`INSERT INTO transcripts (record_id, data) VALUES `, 2}
	tFTS         = table{`INSERT INTO fts (rowid, text) VALUES `, 2}
	tTerms       = table{`INSERT OR IGNORE INTO terms (bucket, h, rid) VALUES `, 3}
	tBuckets     = table{`INSERT OR IGNORE INTO buckets (b) VALUES `, 1}
	tables       = []table{tRecords, tRcpts, tRejected, tDeliveries, tCodes, tTranscripts, tFTS, tTerms, tBuckets}
)

func (t table) sql(rows int) string {
	var b strings.Builder
	b.WriteString(t.head)
	tuple := "(" + strings.Repeat("?, ", t.cols-1) + "?)"
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(tuple)
	}
	return b.String()
}

// inserts are the writer's prepared full-size statements, one per table:
// the writer numbers records itself, so it can insert their children in
// bulk.
type inserts struct {
	full  map[string]*sql.Stmt // by table head
	small map[smallKey]*sql.Stmt
	roll  rollups
	idx   deferred
	// deleted says that the open transaction may have deleted records, so
	// that their roll-ups need settling (rollup_gone).
	deleted bool
}

// smallKey names a prepared statement of a few rows: a capture server
// commits one or two records at a time, and parsing their statements
// again in every transaction cost as much as running them.
type smallKey struct {
	head string
	rows int
}

const smallRows = 8 // statements of 1 to smallRows rows are prepared too

func (in *inserts) prepare(ctx context.Context, db *sql.DB) error {
	in.full = map[string]*sql.Stmt{}
	in.small = map[smallKey]*sql.Stmt{}
	for _, t := range tables {
		st, err := db.PrepareContext(ctx, t.sql(rowsPerStmt))
		if err != nil {
			in.close()
			return fmt.Errorf("store: prepare insert: %w", err)
		}
		in.full[t.head] = st
		for n := 1; n <= smallRows; n++ {
			st, err := db.PrepareContext(ctx, t.sql(n))
			if err != nil {
				in.close()
				return fmt.Errorf("store: prepare insert: %w", err)
			}
			in.small[smallKey{t.head, n}] = st
		}
	}
	return nil
}

func (in *inserts) close() {
	for _, st := range in.full {
		st.Close()
	}
	for _, st := range in.small {
		st.Close()
	}
}

// exec inserts args (rows of t.cols values) into t.
func (in *inserts) exec(ctx context.Context, tx *sql.Tx, t table, args []any) error {
	per := rowsPerStmt * t.cols
	for len(args) > 0 {
		n := min(per, len(args))
		var err error
		if n == per {
			_, err = tx.StmtContext(ctx, in.full[t.head]).ExecContext(ctx, args[:n]...)
		} else if st := in.small[smallKey{t.head, n / t.cols}]; st != nil {
			_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args[:n]...)
		} else {
			_, err = tx.ExecContext(ctx, t.sql(n/t.cols), args[:n]...)
		}
		if err != nil {
			return fmt.Errorf("store: %s: %w", strings.Fields(t.head)[2], err)
		}
		args = args[n:]
	}
	return nil
}

// insertRows inserts rows into records and transcripts, numbering them,
// and hands them to in.idx, which writes their derived rows later
// (index.go). The ids follow the highest in the database, read in tx: the
// write lock of tx makes them this process's even should another one
// write to the same database.
func (in *inserts) insertRows(ctx context.Context, tx *sql.Tx, rows []*row) error {
	id, err := nextID(ctx, tx)
	if err != nil {
		return err
	}
	var recs, transcripts []any
	for _, rw := range rows {
		rw.id = id
		id++
		recs = append(recs, rw.id)
		recs = append(recs, rw.rec...)
		if rw.transcript != nil {
			transcripts = append(transcripts, rw.id, rw.transcript)
		}
		in.idx.tent = append(in.idx.tent, rw)
	}
	if err := in.exec(ctx, tx, tRecords, recs); err != nil {
		return err
	}
	return in.exec(ctx, tx, tTranscripts, transcripts)
}

// nextID is the id after every record stored, and after index_mark:
// should the newest records have been deleted, their ids must not be given
// again to records the mark would count as indexed.
func nextID(ctx context.Context, tx *sql.Tx) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT max(coalesce((SELECT max(id) FROM records), 0),
		coalesce((SELECT upto FROM index_mark), 0)) + 1`).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: next record id: %w", err)
	}
	return id, nil
}

// index writes the rows derived from rws (numbered, in id order): recipients,
// refused recipients, deliveries, reply codes, full text, terms and
// roll-ups.
func (in *inserts) index(ctx context.Context, tx *sql.Tx, rws []*row) error {
	var rcpts, rejected, deliveries, codes, fts []any
	var ts []term
	for _, rw := range rws {
		id := rw.id
		bk := bucketOf(rw.ts)
		for _, h := range rw.hashes {
			ts = append(ts, term{bk, h, id})
		}
		for _, r := range rw.rcpts {
			rcpts = append(rcpts, id, r.addr, r.domain, rw.ts, r.kind)
		}
		for i, r := range rw.rejected {
			rejected = append(rejected, id, i, r.Address, r.SMTPResponse)
		}
		for i, d := range rw.deliveries {
			deliveries = append(deliveries, id, i, unixNano(d.Timestamp), d.Rcpt, d.Status, nullStr(d.Relay),
				nullStr(d.DSN), nullStr(d.SMTPResponse), nullNum(d.DelayS), nullStr(d.QueueID))
		}
		for _, c := range rw.codes {
			codes = append(codes, id, c.Reply, c.Enhanced)
		}
		if rw.text != "" {
			fts = append(fts, id, rw.text)
		}
	}
	terms, buckets := termArgs(ts)
	for _, x := range []struct {
		t    table
		args []any
	}{{tRcpts, rcpts}, {tRejected, rejected}, {tDeliveries, deliveries}, {tCodes, codes},
		{tFTS, fts}, {tTerms, terms}, {tBuckets, buckets}} {
		if err := in.exec(ctx, tx, x.t, x.args); err != nil {
			return err
		}
	}
	return in.roll.addRows(ctx, tx, rowAggs(rws))
}
