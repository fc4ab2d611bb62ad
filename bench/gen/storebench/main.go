// Command storebench fills a store with synthetic records (package gen) and
// times the queries the UI and the trace depend on. bench/store.sh runs it.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smtplog/smtplog/bench/gen"
	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("db", "", "database file to create (required)")
	n := flag.Int("n", 10_000_000, "records to insert")
	perDay := flag.Int("per-day", 300_000, "records per day of timestamps")
	producers := flag.Int("producers", 4, "goroutines calling Load (the bulk path of smtplog ingest --db)")
	chunk := flag.Int("chunk", 2500, "records per Load call")
	handleN := flag.Int("handle", 100_000, "records then written through Handle by -handlers goroutines (the relay's path)")
	handlers := flag.Int("handlers", 256, "concurrent Handle callers")
	samples := flag.Int("samples", 500, "queries timed per kind")
	syncLevel := flag.String("sync", "FULL", "synchronous level: FULL or NORMAL")
	cacheKiB := flag.Int("cache", 0, "SQLite page cache per connection in KiB (0: the store's default)")
	maxBatch := flag.Int("batch", 0, "records per transaction at most (0: the store's default)")
	drop := flag.String("drop-indexes", "", "comma-separated indexes to drop before filling (to measure what each costs)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the fill to this file")
	floorN := flag.Int("floor", 200_000, "records for the engine's ceiling, measured first on a bare table beside -db (0: skip)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *path == "" {
		return fmt.Errorf("-db is required")
	}
	ctx := context.Background()
	if *drop != "" {
		if err := dropIndexes(ctx, *path, strings.Split(*drop, ",")); err != nil {
			return err
		}
	}
	s, err := store.Open(ctx, *path, store.Options{Sync: store.Sync(*syncLevel), CacheKiB: *cacheKiB, MaxBatch: *maxBatch})
	if err != nil {
		return err
	}
	defer s.Close(ctx)

	days := max(1, (*n+*perDay-1) / *perDay)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	span := time.Duration(days) * 24 * time.Hour
	fmt.Printf("records: %d over %d days (%d per day), %d producers\n", *n, days, *perDay, *producers)

	if *floorN > 0 {
		fp := *path + "-floor"
		err := reportFloor(ctx, fp, *floorN, max(*maxBatch, 5000), *syncLevel, start, span)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(fp + suffix)
		}
		if err != nil {
			return err
		}
	}

	// Fill. Each producer draws its own share over the whole span.
	var mu sync.Mutex
	var msgids []string
	var domains []string
	t0 := time.Now()
	cpu0 := cpuTime()
	w0 := written()
	var wg sync.WaitGroup
	errs := make(chan error, *producers)
	for p := 0; p < *producers; p++ {
		share := *n / *producers
		if p == 0 {
			share += *n % *producers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gen.New(gen.Config{Seed: uint64(p + 1), Start: start, Span: span, N: share, TranscriptEvery: 20})
			batch := make([]*record.Record, 0, *chunk)
			for i := 0; i < share; i++ {
				r := g.Next()
				if i%(max(1, share/(*samples*2 / *producers + 1))) == 0 && r.MessageID != "" {
					mu.Lock()
					msgids = append(msgids, r.MessageID)
					if r.MailFrom != nil && *r.MailFrom != "" {
						domains = append(domains, query.Domain(*r.MailFrom))
					}
					mu.Unlock()
				}
				batch = append(batch, r)
				if len(batch) == cap(batch) || i == share-1 {
					if err := s.Load(ctx, batch); err != nil {
						errs <- err
						return
					}
					batch = batch[:0]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	el := time.Since(t0)
	cpu := cpuTime() - cpu0
	fmt.Printf("insert (%d producers calling Load with %d records each time): %d records in %.1fs = %.0f records/s\n", *producers, *chunk, *n, el.Seconds(), float64(*n)/el.Seconds())
	fmt.Printf("insert CPU (generator included): %.1fs = %.1f µs per record\n", cpu.Seconds(), float64(cpu.Microseconds())/float64(*n))
	if w := written() - w0; w0 >= 0 && w > 0 {
		fmt.Printf("insert writes (acknowledgement log, WAL, checkpoints): %.0f MiB = %.0f bytes per record\n", float64(w)/(1<<20), float64(w)/float64(*n))
	}

	// The relay's path: many sessions each waiting for its record's commit.
	if *handleN > 0 {
		g := gen.New(gen.Config{Seed: 99, Start: start.Add(span - time.Hour), Span: time.Hour, N: *handleN})
		recs := make(chan *record.Record, 1024)
		go func() {
			for i := 0; i < *handleN; i++ {
				recs <- g.Next()
			}
			close(recs)
		}()
		lat := make([]time.Duration, 0, *handleN)
		var lmu sync.Mutex
		var herr error
		t1 := time.Now()
		var hw sync.WaitGroup
		for h := 0; h < *handlers; h++ {
			hw.Add(1)
			go func() {
				defer hw.Done()
				for r := range recs {
					ts := time.Now()
					err := s.Handle(ctx, r)
					d := time.Since(ts)
					lmu.Lock()
					if err != nil && herr == nil {
						herr = err
					}
					lat = append(lat, d)
					lmu.Unlock()
				}
			}()
		}
		hw.Wait()
		if herr != nil {
			return herr
		}
		el := time.Since(t1)
		p50, p99 := pct(lat)
		fmt.Printf("insert (Handle, %d concurrent callers, each waits until its record is acknowledged): %d records in %.1fs = %.0f records/s; Handle latency p50 %s p99 %s\n",
			*handlers, *handleN, el.Seconds(), float64(*handleN)/el.Seconds(), p50, p99)
	}
	if size, err := s.Size(ctx); err == nil {
		fmt.Printf("database: %.0f MiB in use, %.0f bytes per record\n", float64(size)/(1<<20), float64(size)/float64(*n+*handleN))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	// Lookup by Message-ID.
	var lat []time.Duration
	for i := 0; i < *samples; i++ {
		id := msgids[rng.IntN(len(msgids))]
		t := time.Now()
		items, err := s.ByMessageID(ctx, id)
		lat = append(lat, time.Since(t))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return fmt.Errorf("message %s not found", id)
		}
	}
	p50, p99 := pct(lat)
	fmt.Printf("lookup by Message-ID (with transcript): p50 %s p99 %s (%d lookups)\n", p50, p99, len(lat))

	// Searches by sender and by recipient domain over one day, first page
	// of 50.
	for _, field := range []string{"from", "to"} {
		lat = lat[:0]
		hits := 0
		for i := 0; i < *samples; i++ {
			d := domains[rng.IntN(len(domains))]
			day := start.Add(time.Duration(rng.IntN(days)) * 24 * time.Hour)
			q, err := query.Parse(fmt.Sprintf("%s:@%s after:%s before:%s", field, d, day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339)), day)
			if err != nil {
				return err
			}
			t := time.Now()
			res, err := s.Search(ctx, q, store.Page{Limit: 50})
			lat = append(lat, time.Since(t))
			if err != nil {
				return err
			}
			hits += len(res.Items)
		}
		p50, p99 = pct(lat)
		fmt.Printf("search %s:@domain over one day, first 50: p50 %s p99 %s (%d searches, %.1f results each)\n", field, p50, p99, len(lat), float64(hits)/float64(len(lat)))
	}

	// The same with a free-text term and a status.
	lat = lat[:0]
	for i := 0; i < *samples/5; i++ {
		day := start.Add(time.Duration(rng.IntN(days)) * 24 * time.Hour)
		q := query.MustParse(fmt.Sprintf("status:deferred greylisted after:%s before:%s", day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339)), day)
		t := time.Now()
		if _, err := s.Search(ctx, q, store.Page{Limit: 50}); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	p50, p99 = pct(lat)
	fmt.Printf("search status:deferred + free text over one day, first 50: p50 %s p99 %s (%d searches)\n", p50, p99, len(lat))

	// Dashboard aggregates; each range is drawn at random over the
	// store's span.
	dashboard := func(what string, runs int, rangeOf func() (from, to time.Time), step time.Duration) error {
		lat := lat[:0]
		var msgs int64
		for i := 0; i < runs; i++ {
			from, to := rangeOf()
			t := time.Now()
			st, err := s.Stats(ctx, from, to, step)
			lat = append(lat, time.Since(t))
			if err != nil {
				return err
			}
			msgs += st.Messages
		}
		p50, p99 := pct(lat)
		fmt.Printf("dashboard Stats over %s: p50 %s p99 %s (%d runs, %d messages each)\n", what, p50, p99, len(lat), msgs/int64(len(lat)))
		return nil
	}
	// 24 hours, hourly buckets, the start aligned to the bucket as the
	// HTTP API aligns it.
	if err := dashboard("24h (hourly)", 20, func() (time.Time, time.Time) {
		from := start.Add(time.Duration(rng.Int64N(int64(span - 24*time.Hour + 1)))).Truncate(time.Hour)
		return from, from.Add(24 * time.Hour)
	}, time.Hour); err != nil {
		return err
	}
	// The last 24 hours as the UI asks for them: a range that ends now,
	// its start aligned to a 15-minute bucket, so both ends are ragged.
	if err := dashboard("the last 24h (15-minute buckets, ragged ends)", 20, func() (time.Time, time.Time) {
		to := start.Add(span - time.Duration(rng.Int64N(int64(time.Hour))))
		return to.Add(-24 * time.Hour).Truncate(15 * time.Minute), to
	}, 15*time.Minute); err != nil {
		return err
	}
	// A month, when the store holds one.
	if span >= 30*24*time.Hour {
		if err := dashboard("30 days (daily)", 5, func() (time.Time, time.Time) {
			from := start.Add(time.Duration(rng.Int64N(int64(span - 30*24*time.Hour + 1)))).Truncate(24 * time.Hour)
			return from, from.Add(30 * 24 * time.Hour)
		}, 24*time.Hour); err != nil {
			return err
		}
	}
	return s.Close(ctx)
}

// dropIndexes creates the database and drops some of its indexes.
func dropIndexes(ctx context.Context, path string, names []string) error {
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		return err
	}
	if err := s.Close(ctx); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, "DROP INDEX "+n); err != nil {
			return err
		}
	}
	return nil
}

func pct(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	c := append([]time.Duration(nil), d...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	at := func(q float64) time.Duration {
		i := int(q*float64(len(c))+0.5) - 1
		return c[min(max(i, 0), len(c)-1)].Round(10 * time.Microsecond)
	}
	return at(0.50), at(0.99)
}

// written is the bytes this process has handed to write calls so far
// (Linux's /proc/self/io wchar), -1 where that is not available: what the
// store writes per record, acknowledgement log, WAL and checkpoints
// together, shows its write amplification.
func written() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// cpuTime is the CPU time this process has used, user and system: a
// figure that other load on the machine disturbs less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
