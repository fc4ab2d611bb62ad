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
	"time"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

// row is a record turned into column values. It is built by the caller's
// goroutine (JSON encoding and compression run in parallel there), so the
// single writer only binds and steps.
type row struct {
	rec        []any // the records columns, in insertRecord's order
	ts         int64
	rcpts      []rcptRow
	rejected   []record.Rejection
	deliveries []record.Delivery
	codes      []query.ReplyCode
	transcript []byte // compressed, nil when none
	text       string // for FTS, "" when it has no words
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

func prepareRow(r *record.Record) (*row, error) {
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
	}
	var ip any
	if a, ok := query.ClientAddr(r); ok {
		ip = ipBytes(a)
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
		rw.rcpts = append(rw.rcpts, rcptRow{addr: a, domain: nullStr(query.Domain(a)), kind: kinds[a]})
	}
	rw.rejected = r.RejectedRcpt
	rw.deliveries = r.Deliveries
	rw.codes = query.Codes(r)
	if len(query.Tokens(query.Text(r))) > 0 {
		rw.text = query.Text(r)
	}
	if len(r.Transcript) > 0 {
		rw.transcript, err = compress(r.Transcript)
		if err != nil {
			return nil, err
		}
	}
	return rw, nil
}

func compress(t []record.TranscriptLine) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("store: compress transcript: %w", err)
	}
	if err := json.NewEncoder(zw).Encode(t); err != nil {
		return nil, fmt.Errorf("store: encode transcript: %w", err)
	}
	if err := zw.Close(); err != nil {
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

// inserts are the writer's prepared statements.
type inserts struct {
	record, rcpt, rejected, delivery, code, transcript, fts *sql.Stmt
}

func (in *inserts) prepare(ctx context.Context, db *sql.DB) error {
	var err error
	p := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, q)
		if err != nil {
			err = fmt.Errorf("store: prepare %q: %w", q, err)
		}
		return st
	}
	in.record = p(`INSERT INTO records (type, ts, source, session_id, message_id, queue_id, mail_from, from_domain,
		client_ip, username, helo, status, reply_code, tls, subject, size, latency_ms, auth_result, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	in.rcpt = p(`INSERT INTO rcpts (record_id, addr, domain, ts, kind) VALUES (?, ?, ?, ?, ?)`)
	in.rejected = p(`INSERT INTO rejected (record_id, seq, addr, response) VALUES (?, ?, ?, ?)`)
	in.delivery = p(`INSERT INTO deliveries (record_id, seq, ts, rcpt, status, relay, dsn, response, delay_s, queue_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	in.code = p(`INSERT INTO codes (record_id, reply, enhanced) VALUES (?, ?, ?)`)
	in.transcript = p(`INSERT INTO transcripts (record_id, data) VALUES (?, ?)`)
	in.fts = p(`INSERT INTO fts (rowid, text) VALUES (?, ?)`)
	if err != nil {
		in.close()
	}
	return err
}

func (in *inserts) close() {
	for _, st := range []*sql.Stmt{in.record, in.rcpt, in.rejected, in.delivery, in.code, in.transcript, in.fts} {
		if st != nil {
			st.Close()
		}
	}
}

func (in *inserts) insert(ctx context.Context, tx *sql.Tx, batch []*item) error {
	rec := tx.StmtContext(ctx, in.record)
	rcpt := tx.StmtContext(ctx, in.rcpt)
	rej := tx.StmtContext(ctx, in.rejected)
	del := tx.StmtContext(ctx, in.delivery)
	code := tx.StmtContext(ctx, in.code)
	trans := tx.StmtContext(ctx, in.transcript)
	fts := tx.StmtContext(ctx, in.fts)
	for _, it := range batch {
		for _, rw := range it.rows {
			res, err := rec.ExecContext(ctx, rw.rec...)
			if err != nil {
				return fmt.Errorf("store: insert record: %w", err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("store: insert record: %w", err)
			}
			for _, r := range rw.rcpts {
				if _, err := rcpt.ExecContext(ctx, id, r.addr, r.domain, rw.ts, r.kind); err != nil {
					return fmt.Errorf("store: insert recipient: %w", err)
				}
			}
			for i, r := range rw.rejected {
				if _, err := rej.ExecContext(ctx, id, i, r.Address, r.SMTPResponse); err != nil {
					return fmt.Errorf("store: insert rejected recipient: %w", err)
				}
			}
			for i, d := range rw.deliveries {
				if _, err := del.ExecContext(ctx, id, i, unixNano(d.Timestamp), d.Rcpt, d.Status, nullStr(d.Relay),
					nullStr(d.DSN), nullStr(d.SMTPResponse), nullNum(d.DelayS), nullStr(d.QueueID)); err != nil {
					return fmt.Errorf("store: insert delivery: %w", err)
				}
			}
			for _, c := range rw.codes {
				if _, err := code.ExecContext(ctx, id, c.Reply, c.Enhanced); err != nil {
					return fmt.Errorf("store: insert reply code: %w", err)
				}
			}
			if rw.transcript != nil {
				if _, err := trans.ExecContext(ctx, id, rw.transcript); err != nil {
					return fmt.Errorf("store: insert transcript: %w", err)
				}
			}
			if rw.text != "" {
				if _, err := fts.ExecContext(ctx, id, rw.text); err != nil {
					return fmt.Errorf("store: insert full text: %w", err)
				}
			}
		}
	}
	return nil
}
