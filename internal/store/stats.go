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

// partial holds what one scan of part of the range counted.
type partial struct {
	st      Stats
	codes   map[int64]int64
	senders map[string]int64
	rcpts   map[string]int64
	lat     []float64
}

// Stats returns the aggregates of the records with from <= timestamp < to.
// The range is cut into parts scanned concurrently on the reader
// connections (covering indexes only, never the record bodies).
func (s *Store) Stats(ctx context.Context, from, to time.Time, bucket time.Duration) (*Stats, error) {
	if !to.After(from) {
		return nil, errors.New("store: stats: the range is empty: to must be after from")
	}
	if bucket <= 0 || to.Sub(from)/bucket >= MaxBuckets {
		return nil, fmt.Errorf("store: stats: bucket %v gives more than %d buckets", bucket, MaxBuckets)
	}
	from, to = from.UTC(), to.UTC()
	lo, hi := unixNano(from), unixNano(to)
	parts := 1
	if !s.memory {
		parts = max(1, s.opts.ReadConns/2)
	}
	ps := make([]*partial, parts)
	errs := make([]error, 2*parts)
	var wg sync.WaitGroup
	step := (hi - lo + int64(parts) - 1) / int64(parts)
	for i := range ps {
		p := &partial{codes: map[int64]int64{}, senders: map[string]int64{}, rcpts: map[string]int64{}}
		p.st.init(from, to, bucket)
		ps[i] = p
		a, b := lo+int64(i)*step, min(hi, lo+int64(i+1)*step)
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[2*i] = s.scanRecords(ctx, p, lo, a, b, int64(bucket))
		}()
		go func() {
			defer wg.Done()
			errs[2*i+1] = s.scanRcpts(ctx, p, a, b)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	st := &ps[0].st
	codes, senders, rcpts, lat := ps[0].codes, ps[0].senders, ps[0].rcpts, ps[0].lat
	for _, p := range ps[1:] {
		o := &p.st
		st.Messages += o.Messages
		st.Sessions += o.Sessions
		st.Temporary += o.Temporary
		st.Permanent += o.Permanent
		st.TLS.Yes += o.TLS.Yes
		st.TLS.No += o.TLS.No
		st.AuthFailures += o.AuthFailures
		for k, n := range o.ByStatus {
			st.ByStatus[k] += n
		}
		for i := range o.Series {
			st.Series[i].Total += o.Series[i].Total
			for k, n := range o.Series[i].ByStatus {
				st.Series[i].ByStatus[k] += n
			}
		}
		for k, n := range p.codes {
			codes[k] += n
		}
		for k, n := range p.senders {
			senders[k] += n
		}
		for k, n := range p.rcpts {
			rcpts[k] += n
		}
		lat = append(lat, p.lat...)
	}
	for c, n := range codes {
		st.ReplyCodes = append(st.ReplyCodes, Count{strconv.FormatInt(c, 10), n})
	}
	sortCounts(st.ReplyCodes, len(st.ReplyCodes))
	st.TopSenders, st.TopSenderDomains = top(senders)
	st.TopRecipients, st.TopRecipientDomains = top(rcpts)
	st.Latency = latencies(lat)
	return st, nil
}

// scanRecords counts the records with a <= ts < b into p; buckets start at
// lo.
func (s *Store) scanRecords(ctx context.Context, p *partial, lo, a, b, bucket int64) error {
	rows, err := s.r.QueryContext(ctx, `SELECT ts, type, status, reply_code, tls, latency_ms, auth_result, mail_from
		FROM records INDEXED BY records_ts WHERE ts >= ? AND ts < ?`, a, b)
	if err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	st := &p.st
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
		if string(typ) == "session" {
			st.Sessions++
			if string(auth) == "failure" {
				st.AuthFailures++
			}
			continue
		}
		st.Messages++
		stat := string(status)
		st.ByStatus[stat]++
		bk := &st.Series[(ts-lo)/bucket]
		bk.Total++
		bk.ByStatus[stat]++
		if code.Valid {
			p.codes[code.Int64]++
			switch code.Int64 / 100 {
			case 4:
				st.Temporary++
			case 5:
				st.Permanent++
			}
		}
		if tls == 1 {
			st.TLS.Yes++
		} else {
			st.TLS.No++
		}
		if latency.Valid && latency.Float64 > 0 {
			p.lat = append(p.lat, latency.Float64)
		}
		if from != nil {
			p.senders[string(from)]++
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: stats: %w", err)
	}
	return nil
}

// scanRcpts counts recipients of records with a <= ts < b into p.
func (s *Store) scanRcpts(ctx context.Context, p *partial, a, b int64) error {
	rows, err := s.r.QueryContext(ctx, `SELECT addr FROM rcpts INDEXED BY rcpts_ts WHERE ts >= ? AND ts < ?`, a, b)
	if err != nil {
		return fmt.Errorf("store: stats: recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var addr sql.RawBytes
		if err := rows.Scan(&addr); err != nil {
			return fmt.Errorf("store: stats: recipients: %w", err)
		}
		p.rcpts[string(addr)]++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: stats: recipients: %w", err)
	}
	return nil
}

// top returns the TopN addresses and domains of counts.
func top(counts map[string]int64) (addrs, domains []Count) {
	doms := map[string]int64{}
	for a, n := range counts {
		addrs = append(addrs, Count{a, n})
		if d := query.Domain(a); d != "" {
			doms[d] += n
		}
	}
	for d, n := range doms {
		domains = append(domains, Count{d, n})
	}
	return sortCounts(addrs, TopN), sortCounts(domains, TopN)
}

// sortCounts sorts by count, then key, and keeps the first n.
func sortCounts(c []Count, n int) []Count {
	sort.Slice(c, func(i, j int) bool {
		if c[i].N != c[j].N {
			return c[i].N > c[j].N
		}
		return c[i].Key < c[j].Key
	})
	if len(c) > n {
		c = c[:n]
	}
	return c
}

func latencies(v []float64) Latency {
	if len(v) == 0 {
		return Latency{}
	}
	sort.Float64s(v)
	p := func(q float64) float64 {
		return v[int(math.Ceil(q*float64(len(v))))-1]
	}
	return Latency{Count: int64(len(v)), P50: p(0.50), P90: p(0.90), P99: p(0.99), Max: v[len(v)-1]}
}
