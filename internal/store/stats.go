package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
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
	TopRecipients       []Count
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

// Stats computes the dashboard's aggregates for records with from <=
// timestamp < to, with a series of bucket-long steps.
func (s *Stats) init(from, to time.Time, bucket time.Duration) {
	s.From, s.To, s.Bucket = from, to, bucket
	s.ByStatus = map[string]int64{}
	n := int((to.Sub(from) + bucket - 1) / bucket)
	s.Series = make([]Bucket, n)
	for i := range s.Series {
		s.Series[i] = Bucket{Start: from.Add(time.Duration(i) * bucket), ByStatus: map[string]int64{}}
	}
}

// Stats returns the aggregates of the records with from <= timestamp < to.
func (s *Store) Stats(ctx context.Context, from, to time.Time, bucket time.Duration) (*Stats, error) {
	if !to.After(from) {
		return nil, errors.New("store: stats: the range is empty: to must be after from")
	}
	if bucket <= 0 || to.Sub(from)/bucket >= MaxBuckets {
		return nil, fmt.Errorf("store: stats: bucket %v gives more than %d buckets", bucket, MaxBuckets)
	}
	st := &Stats{}
	st.init(from.UTC(), to.UTC(), bucket)
	lo, hi := unixNano(from), unixNano(to)

	rows, err := s.r.QueryContext(ctx, `SELECT ts, type, status, reply_code, tls, latency_ms, auth_result, mail_from
		FROM records INDEXED BY records_ts WHERE ts >= ? AND ts < ?`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	codes := map[int64]int64{}
	senders := map[string]int64{}
	var lat []float64
	for rows.Next() {
		var (
			ts                  int64
			typ                 string
			status, auth, from_ sql.RawBytes
			code                sql.NullInt64
			tls                 int64
			latency             sql.NullFloat64
		)
		if err := rows.Scan(&ts, &typ, &status, &code, &tls, &latency, &auth, &from_); err != nil {
			return nil, fmt.Errorf("store: stats: %w", err)
		}
		if typ == "session" {
			st.Sessions++
			if string(auth) == "failure" {
				st.AuthFailures++
			}
			continue
		}
		st.Messages++
		stat := string(status)
		st.ByStatus[stat]++
		b := &st.Series[(ts-lo)/int64(bucket)]
		b.Total++
		b.ByStatus[stat]++
		if code.Valid {
			codes[code.Int64]++
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
			lat = append(lat, latency.Float64)
		}
		if from_ != nil {
			senders[string(from_)]++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	rows.Close()

	for c, n := range codes {
		st.ReplyCodes = append(st.ReplyCodes, Count{strconv.FormatInt(c, 10), n})
	}
	sortCounts(st.ReplyCodes, len(st.ReplyCodes))
	st.TopSenders, st.TopSenderDomains = top(senders)
	st.Latency = latencies(lat)

	rrows, err := s.r.QueryContext(ctx, `SELECT addr FROM rcpts INDEXED BY rcpts_ts WHERE ts >= ? AND ts < ?`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: stats: recipients: %w", err)
	}
	defer rrows.Close()
	rcpts := map[string]int64{}
	for rrows.Next() {
		var a sql.RawBytes
		if err := rrows.Scan(&a); err != nil {
			return nil, fmt.Errorf("store: stats: recipients: %w", err)
		}
		rcpts[string(a)]++
	}
	if err := rrows.Err(); err != nil {
		return nil, fmt.Errorf("store: stats: recipients: %w", err)
	}
	st.TopRecipients, st.TopRecipientDomains = top(rcpts)
	return st, nil
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
