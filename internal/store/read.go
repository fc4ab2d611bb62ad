package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
)

// Item is a stored record with its store ID.
type Item struct {
	ID     int64
	Record record.Record
}

// Page asks for one page of search results, newest first.
type Page struct {
	Limit  int    // default 50, at most 1000
	Cursor string // Result.Next of the previous page; "" for the first
}

// Result is one page of search results. Next is "" on the last page.
type Result struct {
	Items []Item
	Next  string
}

// MaxLookup caps what one lookup by Message-ID, queue ID or session ID
// returns.
const MaxLookup = 1000

// cursor is the keyset position (ts, id) of the last item of a page.
func encodeCursor(ts, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(itoa(ts) + "." + itoa(id)))
}

func decodeCursor(s string) (ts, id int64, err error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		a, c, ok := strings.Cut(string(b), ".")
		if ok {
			ts, err = strconv.ParseInt(a, 10, 64)
			if err == nil {
				id, err = strconv.ParseInt(c, 10, 64)
				if err == nil {
					return ts, id, nil
				}
			}
		}
	}
	return 0, 0, errors.New("store: bad page cursor: start again from the first page")
}

// Search returns the records that match q, newest first (by timestamp,
// then by insertion), one page at a time. Transcripts are left out; Message
// returns a record with its transcript.
func (s *Store) Search(ctx context.Context, q *query.Query, page Page) (Result, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	if err := s.caughtUp(ctx); err != nil {
		return Result{}, fmt.Errorf("store: search: %w", err)
	}
	b := newSQLBuilder(q)
	var err error
	if b.probeText, err = s.textPlans(ctx, q, limit); err != nil {
		return Result{}, err
	}
	if b.scanTerms, err = s.termPlans(ctx, q, b.buckets, limit); err != nil {
		return Result{}, err
	}
	where := "1"
	if q != nil && q.Expr != nil {
		w, err := b.expr(q.Expr)
		if err != nil {
			return Result{}, err
		}
		where = w
	}
	if page.Cursor != "" {
		ts, id, err := decodeCursor(page.Cursor)
		if err != nil {
			return Result{}, err
		}
		where = "(" + where + ") AND (r.ts, r.id) < (" + b.arg(ts) + ", " + b.arg(id) + ")"
	}
	sqlText := "SELECT r.id, r.ts, r.body FROM records r WHERE " + where +
		" ORDER BY r.ts DESC, r.id DESC LIMIT " + b.arg(limit+1)
	rows, err := s.r.QueryContext(ctx, sqlText, b.args...)
	if err != nil {
		return Result{}, fmt.Errorf("store: search: %w", err)
	}
	defer rows.Close()
	var res Result
	var prevTS int64
	for rows.Next() {
		var it Item
		var ts int64
		var body []byte
		if err := rows.Scan(&it.ID, &ts, &body); err != nil {
			return Result{}, fmt.Errorf("store: search: %w", err)
		}
		if len(res.Items) == limit {
			res.Next = encodeCursor(prevTS, res.Items[limit-1].ID)
			break
		}
		prevTS = ts
		if err := json.Unmarshal(body, &it.Record); err != nil {
			return Result{}, fmt.Errorf("store: search: record %d: %w", it.ID, err)
		}
		res.Items = append(res.Items, it)
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("store: search: %w", err)
	}
	return res, nil
}

// Message returns one record, with its transcript, by store ID.
func (s *Store) Message(ctx context.Context, id int64) (Item, error) {
	items, err := s.lookup(ctx, "r.id = ?", id)
	if err != nil {
		return Item{}, err
	}
	if len(items) == 0 {
		return Item{}, fmt.Errorf("record %d: %w", id, ErrNotFound)
	}
	return items[0], nil
}

// Session returns the records of one SMTP session (the session record and
// its message records), oldest first, with transcripts.
func (s *Store) Session(ctx context.Context, sessionID string) ([]Item, error) {
	b := newSQLBuilder(nil)
	items, err := s.lookup(ctx, b.sessionID(sessionID), b.args...)
	if err == nil && len(items) == 0 {
		err = fmt.Errorf("session %q: %w", sessionID, ErrNotFound)
	}
	return items, err
}

// ByMessageID returns every record with this Message-ID (angle brackets
// optional), oldest first, with transcripts: what each vantage point saw of
// the message.
func (s *Store) ByMessageID(ctx context.Context, msgid string) ([]Item, error) {
	id := query.NormMessageID(msgid)
	if id == "" {
		return nil, nil
	}
	b := newSQLBuilder(nil)
	where := b.termSQL(tagMessageID, id) + " AND r.message_id = " + b.arg(id)
	return s.lookup(ctx, where, b.args...)
}

// ByQueueID returns every record with this queue ID, as its own or as the
// queue ID of a delivery from a re-injected copy, oldest first, with
// transcripts.
func (s *Store) ByQueueID(ctx context.Context, queueID string) ([]Item, error) {
	if queueID == "" {
		return nil, nil
	}
	b := newSQLBuilder(nil)
	return s.lookup(ctx, b.queueID(queueID), b.args...)
}

func (s *Store) lookup(ctx context.Context, where string, args ...any) ([]Item, error) {
	if err := s.caughtUp(ctx); err != nil {
		return nil, fmt.Errorf("store: lookup: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT r.id, r.body, t.data FROM records r
		LEFT JOIN transcripts t ON t.record_id = r.id
		WHERE `+where+` ORDER BY r.ts, r.id LIMIT `+strconv.Itoa(MaxLookup), args...)
	if err != nil {
		return nil, fmt.Errorf("store: lookup: %w", err)
	}
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var it Item
		var body, tr []byte
		if err := rows.Scan(&it.ID, &body, &tr); err != nil {
			return nil, fmt.Errorf("store: lookup: %w", err)
		}
		if err := json.Unmarshal(body, &it.Record); err != nil {
			return nil, fmt.Errorf("store: lookup: record %d: %w", it.ID, err)
		}
		if tr != nil {
			if it.Record.Transcript, err = decompress(tr); err != nil {
				return nil, fmt.Errorf("store: lookup: record %d: %w", it.ID, err)
			}
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: lookup: %w", err)
	}
	return items, nil
}

// Count returns the number of records.
func (s *Store) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.caughtUp(ctx); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// Scan calls fn with every record whose timestamp is in [from, to), oldest
// first (by timestamp, then by insertion), without transcripts, until fn
// returns an error, which Scan returns. A zero from or to leaves that end
// open. It reads a page at a time, so the store's size does not matter to
// memory, and records the writer commits meanwhile may or may not be seen.
func (s *Store) Scan(ctx context.Context, from, to time.Time, fn func(*record.Record) error) error {
	const page = 1000
	if err := s.caughtUp(ctx); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !from.IsZero() {
		lo = unixNano(from)
	}
	if !to.IsZero() {
		hi = unixNano(to)
	}
	lastTS, lastID := lo, int64(-1)
	for {
		rows, err := s.r.QueryContext(ctx, `SELECT id, ts, body FROM records INDEXED BY records_ts
			WHERE (ts, id) > (?, ?) AND ts < ? ORDER BY ts, id LIMIT ?`, lastTS, lastID, hi, page)
		if err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		var batch []*record.Record
		for rows.Next() {
			var body []byte
			r := new(record.Record)
			if err := rows.Scan(&lastID, &lastTS, &body); err != nil {
				rows.Close()
				return fmt.Errorf("store: scan: %w", err)
			}
			if err := json.Unmarshal(body, r); err != nil {
				rows.Close()
				return fmt.Errorf("store: scan: record %d: %w", lastID, err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(batch) < page {
			return nil
		}
	}
}
