package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/query"
)

// Stats are the dashboard's aggregates over [From, To).
type Stats struct {
	From, To time.Time
	Bucket   time.Duration
	Series   []Bucket // one per Bucket from From, message records by status

	Messages  int64
	Sessions  int64
	ByStatus  map[string]int64 // messages
	Temporary int64            // messages whose final reply was 4xx
	Permanent int64            // messages whose final reply was 5xx

	ReplyCodes   []Count // final reply codes of messages, most frequent first
	TLS          TLSCount
	AuthFailures int64 // sessions whose AUTH failed
	Latency      Latency

	TopSenders          []Count
	TopSenderDomains    []Count
	TopRecipients       []Count // any recipient: accepted, refused or delivered to
	TopRecipientDomains []Count
}

// Bucket is one time bucket of the series.
type Bucket struct {
	Start    time.Time
	Total    int64
	ByStatus map[string]int64
}

// Count is one entry of a top list.
type Count struct {
	Key string
	N   int64
}

// TLSCount counts message records by whether the client used TLS.
type TLSCount struct{ Yes, No int64 }

// Latency summarises latency_ms (MAIL FROM to final reply) of messages
// that have one.
type Latency struct {
	Count              int64
	P50, P90, P99, Max float64
}

// TopN is the length of Stats' top lists.
const TopN = 10

// MaxBuckets bounds Stats' series.
const MaxBuckets = 10000

func (s *Stats) init(from, to time.Time, bucket time.Duration) {
	s.From, s.To, s.Bucket = from, to, bucket
	s.ByStatus = map[string]int64{}
	n := int((to.Sub(from) + bucket - 1) / bucket)
	s.Series = make([]Bucket, n)
	for i := range s.Series {
		s.Series[i] = Bucket{Start: from.Add(time.Duration(i) * bucket), ByStatus: map[string]int64{}}
	}
}

// partial is what scans of part of a range count into: series slots are
// buckets of the given size from lo.
type partial struct {
	agg        *agg
	lo, bucket int64
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Stats returns the aggregates of the records with from <= timestamp < to.
// The whole hours of the range come from the roll-ups (rollup.go); the
// rest is scanned from covering indexes, never the record bodies, on the
// reader connections concurrently. A range that is not cut into whole
// minutes is scanned whole.
func (s *Store) Stats(ctx context.Context, from, to time.Time, bucket time.Duration) (*Stats, error) {
	if !to.After(from) {
		return nil, errors.New("store: stats: the range is empty: to must be after from")
	}
	if bucket <= 0 || to.Sub(from)/bucket >= MaxBuckets {
		return nil, fmt.Errorf("store: stats: bucket %v gives more than %d buckets", bucket, MaxBuckets)
	}
	if err := s.caughtUp(ctx); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	from, to = from.UTC(), to.UTC()
	lo, hi := unixNano(from), unixNano(to)
	a0, b0 := floorDiv(lo+hourNS-1, hourNS)*hourNS, floorDiv(hi, hourNS)*hourNS
	var total *agg
	var err error
	if a0 < b0 && int64(bucket)%minuteNS == 0 && lo%minuteNS == 0 {
		total, err = s.statsRolled(ctx, lo, hi, a0, b0, int64(bucket))
	} else {
		total, err = s.statsScanned(ctx, lo, hi, int64(bucket))
	}
	if err != nil {
		return nil, err
	}
	return total.stats(from, to, bucket), nil
}

// statsScanned scans [lo, hi) in parts concurrently.
func (s *Store) statsScanned(ctx context.Context, lo, hi, bucket int64) (*agg, error) {
	parts := 1
	if !s.memory {
		parts = max(1, s.opts.ReadConns/2)
	}
	step := (hi - lo + int64(parts) - 1) / int64(parts)
	var spans [][2]int64
	for i := 0; i < parts; i++ {
		if a, b := lo+int64(i)*step, min(hi, lo+int64(i+1)*step); a < b {
			spans = append(spans, [2]int64{a, b})
		}
	}
	return s.scanSpans(ctx, lo, bucket, spans, nil)
}

// statsRolled sums the roll-ups of the hours [a0, b0) and scans the rest
// of [lo, hi).
func (s *Store) statsRolled(ctx context.Context, lo, hi, a0, b0, bucket int64) (*agg, error) {
	var spans [][2]int64
	if lo < a0 {
		spans = append(spans, [2]int64{lo, a0})
	}
	if b0 < hi {
		spans = append(spans, [2]int64{b0, hi})
	}
	return s.scanSpans(ctx, lo, bucket, spans, func(a *agg) error {
		h0, h1 := a0/hourNS, b0/hourNS
		if h1-h0 < 48 || s.memory {
			return s.decodeRollups(ctx, a, h0, h1, lo, bucket)
		}
		// A long range: the later half is decoded on another connection
		// (and core) into a total of its own, then added.
		mid := h0 + (h1-h0)/2
		other := newAgg()
		done := make(chan error, 1)
		go func() { done <- s.decodeRollups(ctx, other, mid, h1, lo, bucket) }()
		err := s.decodeRollups(ctx, a, h0, mid, lo, bucket)
		if oerr := <-done; err == nil {
			err = oerr
		}
		if err != nil {
			return err
		}
		a.add(other)
		return nil
	})
}

// decodeRollups adds the roll-ups of the hours [h0, h1) to a, their minute
// slots mapped to buckets of the given size from lo: the day rows of the
// whole days in the range that have one, and the hourly rows of the other
// hours, read in one transaction so that they agree.
func (s *Store) decodeRollups(ctx context.Context, a *agg, h0, h1, lo, bucket int64) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("store: stats: roll-ups: %w", err)
	}
	defer tx.Rollback()
	var days []int64
	if d0, d1 := floorDiv(h0+23, 24), floorDiv(h1, 24); d0 < d1 { // the whole days
		days, err = decodeRows(ctx, tx, a, `SELECT day, data FROM rollup_days WHERE day >= ? AND day < ? ORDER BY day`,
			d0, d1, dayNS, lo, bucket)
		if err != nil {
			return fmt.Errorf("store: stats: roll-ups of days: %w", err)
		}
	}
	// The hours between the days summed.
	from := h0
	for _, d := range append(days, floorDiv(h1+23, 24)) {
		if to := min(d*24, h1); from < to {
			_, err := decodeRows(ctx, tx, a, `SELECT hour, data FROM rollups WHERE hour >= ? AND hour < ?`,
				from, to, hourNS, lo, bucket)
			if err != nil {
				return fmt.Errorf("store: stats: roll-ups: %w", err)
			}
		}
		from = d*24 + 24
	}
	return nil
}

// decodeRows adds to a the roll-up rows q selects, (key, data) with keys
// in [k0, k1) counted in units of width nanoseconds (hours or days), their
// minute slots mapped to buckets of the given size from lo; it returns
// the keys.
func decodeRows(ctx context.Context, tx *sql.Tx, a *agg, q string, k0, k1, width, lo, bucket int64) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, q, k0, k1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []int64
	for rows.Next() {
		var k int64
		var data sql.RawBytes
		if err := rows.Scan(&k, &data); err != nil {
			return nil, err
		}
		base := k*width - lo
		if err := a.decodeInto(data, func(m int64) int64 { return (base + m*minuteNS) / bucket }); err != nil {
			return nil, fmt.Errorf("row %d: %w", k, err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// scanSpans scans the records and recipients of each span concurrently,
// runs extra (when not nil) beside them, and adds everything up.
func (s *Store) scanSpans(ctx context.Context, lo, bucket int64, spans [][2]int64, extra func(*agg) error) (*agg, error) {
	aggs := make([]*agg, 2*len(spans)+1)
	errs := make([]error, len(aggs))
	var wg sync.WaitGroup
	for i, sp := range spans {
		for j, scan := range []func(context.Context, querier, *partial, int64, int64) error{scanRecordsQ, scanRcptsQ} {
			k := 2*i + j
			aggs[k] = newAgg()
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k] = scan(ctx, s.r, &partial{agg: aggs[k], lo: lo, bucket: bucket}, sp[0], sp[1])
			}()
		}
	}
	if extra != nil {
		k := len(aggs) - 1
		aggs[k] = newAgg()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = extra(aggs[k])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The roll-ups' sums are the largest: add the scans to them.
	total := aggs[len(aggs)-1]
	if total == nil {
		total = newAgg()
	}
	for _, a := range aggs[:len(aggs)-1] {
		total.add(a)
	}
	return total, nil
}

// stats turns the sums over [from, to) into Stats.
func (a *agg) stats(from, to time.Time, bucket time.Duration) *Stats {
	st := &Stats{}
	st.init(from, to, bucket)
	st.Messages, st.Sessions, st.AuthFailures = a.messages, a.sessions, a.authFailures
	st.Temporary, st.Permanent = a.temporary, a.permanent
	st.TLS = TLSCount{Yes: a.tlsYes, No: a.tlsNo}
	for k, n := range a.series {
		if n == 0 {
			continue
		}
		st.ByStatus[k.status] += n
		if k.i >= 0 && k.i < int64(len(st.Series)) {
			bk := &st.Series[k.i]
			bk.Total += n
			bk.ByStatus[k.status] += n
		}
	}
	for c, n := range a.codes {
		if n != 0 {
			st.ReplyCodes = append(st.ReplyCodes, Count{strconv.FormatInt(c, 10), n})
		}
	}
	sortCounts(st.ReplyCodes, len(st.ReplyCodes))
	st.TopSenders, st.TopSenderDomains = top(a.senders)
	st.TopRecipients, st.TopRecipientDomains = top(a.rcpts)
	st.Latency = latencies(a.lat)
	return st
}

// scanRecordsQ counts the records with a <= ts < b into p.
func scanRecordsQ(ctx context.Context, q querier, p *partial, a, b int64) error {
	rows, err := q.QueryContext(ctx, `SELECT ts, type, status, reply_code, tls, latency_ms, auth_result, mail_from
		FROM records INDEXED BY records_ts WHERE ts >= ? AND ts < ?`, a, b)
	if err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ts          int64
			typ, status sql.RawBytes
			auth, from  sql.RawBytes
			code        sql.NullInt64
			tls         int64
			latency     sql.NullFloat64
		)
		if err := rows.Scan(&ts, &typ, &status, &code, &tls, &latency, &auth, &from); err != nil {
			return fmt.Errorf("store: stats: %w", err)
		}
		p.agg.record((ts-p.lo)/p.bucket, string(typ), string(status), code.Int64, tls == 1, latency.Float64,
			string(auth), string(from), from != nil, 1)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	return nil
}

// scanRcptsQ counts recipients of records with a <= ts < b into p.
func scanRcptsQ(ctx context.Context, q querier, p *partial, a, b int64) error {
	rows, err := q.QueryContext(ctx, `SELECT c.addr FROM records r INDEXED BY records_ts
		JOIN rcpts c ON c.record_id = r.id WHERE r.ts >= ? AND r.ts < ?`, a, b)
	if err != nil {
		return fmt.Errorf("store: stats: recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var addr sql.RawBytes
		if err := rows.Scan(&addr); err != nil {
			return fmt.Errorf("store: stats: recipients: %w", err)
		}
		p.agg.rcpts[string(addr)]++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: stats: recipients: %w", err)
	}
	return nil
}

// top returns the TopN addresses and domains of counts.
func top(counts map[string]int64) (addrs, domains []Count) {
	doms := map[string]int64{}
	var t topN
	for a, n := range counts {
		if n == 0 {
			continue
		}
		t.offer(Count{a, n})
		if d := query.Domain(a); d != "" {
			doms[d] += n
		}
	}
	var td topN
	for d, n := range doms {
		td.offer(Count{d, n})
	}
	return t.c, td.c
}

// topN keeps the TopN greatest counts offered, in sortCounts' order,
// without sorting them all.
type topN struct{ c []Count }

func before(a, b Count) bool { return a.N > b.N || a.N == b.N && a.Key < b.Key }

func (t *topN) offer(x Count) {
	if len(t.c) == TopN && !before(x, t.c[TopN-1]) {
		return
	}
	i := sort.Search(len(t.c), func(i int) bool { return before(x, t.c[i]) })
	if len(t.c) < TopN {
		t.c = append(t.c, Count{})
	}
	copy(t.c[i+1:], t.c[i:])
	t.c[i] = x
}

// sortCounts sorts by count, then key, and keeps the first n.
func sortCounts(c []Count, n int) []Count {
	sort.Slice(c, func(i, j int) bool { return before(c[i], c[j]) })
	if len(c) > n {
		c = c[:n]
	}
	return c
}

func latencies(m map[float64]int64) Latency {
	vals := make([]float64, 0, len(m))
	var total int64
	for v, n := range m {
		if n > 0 {
			vals = append(vals, v)
			total += n
		}
	}
	if total == 0 {
		return Latency{}
	}
	sort.Float64s(vals)
	// The value at 1-based rank ceil(q*total), as for a sorted list.
	p := func(q float64) float64 {
		rank := int64(math.Ceil(q * float64(total)))
		var seen int64
		for _, v := range vals {
			seen += m[v]
			if seen >= rank {
				return v
			}
		}
		return vals[len(vals)-1]
	}
	return Latency{Count: total, P50: p(0.50), P90: p(0.90), P99: p(0.99), Max: vals[len(vals)-1]}
}
