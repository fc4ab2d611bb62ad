package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"time"
)

// Roll-ups: what the dashboard's aggregates (Stats) need, per hour.
//
// The writer adds, in each transaction that writes records' derived rows
// (index.go), one rollups row per hour those records fall in, holding what
// they add (an agg whose series slots are minutes of the hour). Deleting
// records (retention, prune, capture) goes through the rollup_gone
// triggers, and the writer turns what they collected into rows with
// negative counts before the transaction commits; records are only ever
// deleted once their derived rows exist, and readers wait for those, so
// the roll-ups always agree with the records a reader sees.
// An hour's rows are merged into one when the new ones amount to half of
// the last merge (amortised: merging costs about what was added).

const (
	minuteNS = int64(time.Minute)
	hourNS   = int64(time.Hour)
	dayNS    = 24 * hourNS
)

// floorDiv divides rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// slot is a series cell: a time slot and a message status.
type slot struct {
	i      int64
	status string
}

// agg is what some records add to Stats. Counts may be negative in a
// roll-up row of deleted records; sums over a range never are.
type agg struct {
	messages, sessions, authFailures, temporary, permanent, tlsYes, tlsNo int64

	series  map[slot]int64
	codes   map[int64]int64
	senders map[string]int64
	rcpts   map[string]int64
	lat     map[float64]int64 // latency_ms value -> how many
}

func newAgg() *agg {
	return &agg{series: map[slot]int64{}, codes: map[int64]int64{}, senders: map[string]int64{},
		rcpts: map[string]int64{}, lat: map[float64]int64{}}
}

// record counts n records (n is -1 for a deleted one) with the columns
// Stats reads: a session, or a message in series slot i. code and latency
// are 0 when unknown; hasFrom says whether a sender is known (from is ""
// for the null sender).
func (a *agg) record(i int64, typ, status string, code int64, tls bool, latency float64, auth, from string, hasFrom bool, n int64) {
	if typ == "session" {
		a.sessions += n
		if auth == "failure" {
			a.authFailures += n
		}
		return
	}
	a.messages += n
	a.series[slot{i, status}] += n
	if code != 0 {
		a.codes[code] += n
		switch code / 100 {
		case 4:
			a.temporary += n
		case 5:
			a.permanent += n
		}
	}
	if tls {
		a.tlsYes += n
	} else {
		a.tlsNo += n
	}
	if latency > 0 {
		a.lat[latencyKey(latency)] += n
	}
	if hasFrom {
		a.senders[from] += n
	}
}

// latencyKey keeps a latency to three significant digits, rounded down
// (1,234.5 ms counts as 1,230): percentiles then stay within 1% below the
// exact value, and a month's latencies take thousands of keys instead of
// one per message, which is what a long range's dashboard costs.
func latencyKey(ms float64) float64 {
	scale := math.Pow(10, 2-math.Floor(math.Log10(ms)))
	return math.Floor(ms*scale*(1+1e-12)) / scale
}

// add adds o to a.
func (a *agg) add(o *agg) {
	a.messages += o.messages
	a.sessions += o.sessions
	a.authFailures += o.authFailures
	a.temporary += o.temporary
	a.permanent += o.permanent
	a.tlsYes += o.tlsYes
	a.tlsNo += o.tlsNo
	addCounts(a.series, o.series)
	addCounts(a.codes, o.codes)
	addCounts(a.senders, o.senders)
	addCounts(a.rcpts, o.rcpts)
	addCounts(a.lat, o.lat)
}

func addCounts[K comparable](dst, src map[K]int64) {
	for k, n := range src {
		dst[k] += n
	}
}

// prune drops the keys whose counts came to zero.
func (a *agg) prune() {
	dropZeros(a.series)
	dropZeros(a.codes)
	dropZeros(a.senders)
	dropZeros(a.rcpts)
	dropZeros(a.lat)
}

func dropZeros[K comparable](m map[K]int64) {
	for k, n := range m {
		if n == 0 {
			delete(m, k)
		}
	}
}

func (a *agg) empty() bool {
	return a.messages == 0 && a.sessions == 0 && a.authFailures == 0 && a.temporary == 0 && a.permanent == 0 &&
		a.tlsYes == 0 && a.tlsNo == 0 && len(a.series) == 0 && len(a.codes) == 0 && len(a.senders) == 0 &&
		len(a.rcpts) == 0 && len(a.lat) == 0
}

// Encoding of a roll-up row: a version byte, then varints. Written by hand
// because decoding is most of what a dashboard over a long range costs,
// and a flat varint layout decodes several times faster than gob or JSON.
//
//	1
//	messages sessions authFailures temporary permanent tlsYes tlsNo
//	len(series)  { minute status n }
//	len(codes)   { code n }
//	len(senders) { addr n }
//	len(rcpts)   { addr n }
//	len(lat)     { float64 bits n }
//
// Strings are a uvarint length and the bytes; counts are zig-zag varints.
const rollupVersion = 1

func (a *agg) encode() []byte {
	b := make([]byte, 0, 64+24*(len(a.series)+len(a.codes)+len(a.senders)+len(a.rcpts)+len(a.lat)))
	b = append(b, rollupVersion)
	for _, n := range []int64{a.messages, a.sessions, a.authFailures, a.temporary, a.permanent, a.tlsYes, a.tlsNo} {
		b = binary.AppendVarint(b, n)
	}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(a.series)))
	for k, n := range a.series {
		b = binary.AppendVarint(b, k.i)
		str(k.status)
		b = binary.AppendVarint(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(a.codes)))
	for k, n := range a.codes {
		b = binary.AppendVarint(b, k)
		b = binary.AppendVarint(b, n)
	}
	for _, m := range []map[string]int64{a.senders, a.rcpts} {
		b = binary.AppendUvarint(b, uint64(len(m)))
		for k, n := range m {
			str(k)
			b = binary.AppendVarint(b, n)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(a.lat)))
	for k, n := range a.lat {
		b = binary.AppendUvarint(b, math.Float64bits(k))
		b = binary.AppendVarint(b, n)
	}
	return b
}

var errRollup = errors.New("damaged roll-up row")

// decodeInto adds the row b to a, its minute slots mapped by slotOf.
func (a *agg) decodeInto(b []byte, slotOf func(int64) int64) error {
	if len(b) == 0 || b[0] != rollupVersion {
		return fmt.Errorf("%w: unknown version", errRollup)
	}
	b = b[1:]
	bad := false
	vint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	uint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	count := func() int {
		v := uint()
		if v > uint64(len(b)) { // every entry takes at least one byte
			bad = true
			b = nil
			return 0
		}
		return int(v)
	}
	str := func() string {
		l := uint()
		if l > uint64(len(b)) {
			bad = true
			b = nil
			return ""
		}
		s := string(b[:l])
		b = b[l:]
		return s
	}
	for _, p := range []*int64{&a.messages, &a.sessions, &a.authFailures, &a.temporary, &a.permanent, &a.tlsYes, &a.tlsNo} {
		*p += vint()
	}
	for n := count(); n > 0 && !bad; n-- {
		i := vint()
		st := str()
		c := vint()
		if slotOf != nil {
			i = slotOf(i)
		}
		a.series[slot{i, st}] += c
	}
	for n := count(); n > 0 && !bad; n-- {
		k := vint()
		a.codes[k] += vint()
	}
	for _, m := range []map[string]int64{a.senders, a.rcpts} {
		for n := count(); n > 0 && !bad; n-- {
			k := str()
			m[k] += vint()
		}
	}
	for n := count(); n > 0 && !bad; n-- {
		k := math.Float64frombits(uint())
		a.lat[k] += vint()
	}
	if bad || len(b) != 0 {
		return fmt.Errorf("%w: truncated or trailing bytes", errRollup)
	}
	return nil
}

// rowStats are the columns of a row that roll-ups count.
type rowStats struct {
	typ, status, auth, from string
	hasFrom                 bool
	code                    int64
	tls                     bool
	latency                 float64
}

// hourState is what the writer knows of an hour's roll-up rows since it
// last merged them.
type hourState struct {
	rows      int // rows of the hour
	newBytes  int // bytes added since the last merge
	baseBytes int // the size of the last merge
}

// rollups is the writer's side: it adds rows and merges them.
type rollups struct {
	hours map[int64]*hourState
}

const maxHourStates = 2048

// addRows adds one roll-up row per hour of aggs and merges hours that have
// grown enough. It runs on the writer goroutine inside tx.
func (r *rollups) addRows(ctx context.Context, tx *sql.Tx, aggs map[int64]*agg) error {
	if r.hours == nil || len(r.hours) > maxHourStates {
		r.hours = map[int64]*hourState{}
	}
	hours := make([]int64, 0, len(aggs))
	for h := range aggs {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i] < hours[j] })
	for _, h := range hours {
		a := aggs[h]
		a.prune()
		if a.empty() {
			continue
		}
		data := a.encode()
		if _, err := tx.ExecContext(ctx, `INSERT INTO rollups (hour, data) VALUES (?, ?)`, h, data); err != nil {
			return fmt.Errorf("store: roll-up: %w", err)
		}
		// The day's sum is no longer that (rollDay makes it again).
		if _, err := tx.ExecContext(ctx, `DELETE FROM rollup_days WHERE day = ?`, floorDiv(h, 24)); err != nil {
			return fmt.Errorf("store: roll-up: %w", err)
		}
		st := r.hours[h]
		if st == nil {
			st = &hourState{}
			r.hours[h] = st
		}
		st.rows++
		st.newBytes += len(data)
		if st.rows >= 512 || st.rows >= 8 && st.newBytes >= st.baseBytes/2 {
			n, err := mergeHour(ctx, tx, h)
			if err != nil {
				return err
			}
			*st = hourState{rows: 1, baseBytes: n}
		}
	}
	return nil
}

// mergeHour replaces the roll-up rows of hour h by one and returns its
// size.
func mergeHour(ctx context.Context, tx *sql.Tx, h int64) (int, error) {
	a := newAgg()
	rows, err := tx.QueryContext(ctx, `SELECT id, data FROM rollups WHERE hour = ?`, h)
	if err != nil {
		return 0, fmt.Errorf("store: roll-up merge: %w", err)
	}
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: roll-up merge: %w", err)
		}
		if err := a.decodeInto(data, nil); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: roll-up merge: row %d: %w", id, err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: roll-up merge: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM rollups WHERE hour = ?`, h); err != nil {
		return 0, fmt.Errorf("store: roll-up merge: %w", err)
	}
	a.prune()
	if a.empty() {
		return 0, nil
	}
	data := a.encode()
	if _, err := tx.ExecContext(ctx, `INSERT INTO rollups (hour, data) VALUES (?, ?)`, h, data); err != nil {
		return 0, fmt.Errorf("store: roll-up merge: %w", err)
	}
	return len(data), nil
}

// rowAggs counts rows per hour.
func rowAggs(rws []*row) map[int64]*agg {
	aggs := map[int64]*agg{}
	for _, rw := range rws {
		h := floorDiv(rw.ts, hourNS)
		a := aggs[h]
		if a == nil {
			a = newAgg()
			aggs[h] = a
		}
		s := &rw.stats
		a.record((rw.ts-h*hourNS)/minuteNS, s.typ, s.status, s.code, s.tls, s.latency, s.auth, s.from, s.hasFrom, 1)
		for _, rc := range rw.rcpts {
			a.rcpts[rc.addr]++
		}
	}
	return aggs
}

// settleGone turns what the rollup_gone triggers collected in tx into
// negative roll-up rows.
func (r *rollups) settleGone(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT ts, kind, type, status, reply_code, tls, latency_ms, auth_result, addr FROM rollup_gone`)
	if err != nil {
		return fmt.Errorf("store: roll-up of deleted records: %w", err)
	}
	var aggs map[int64]*agg
	for rows.Next() {
		var (
			ts, kind                int64
			typ, status, auth, addr sql.NullString
			code, tls               sql.NullInt64
			latency                 sql.NullFloat64
		)
		if err := rows.Scan(&ts, &kind, &typ, &status, &code, &tls, &latency, &auth, &addr); err != nil {
			rows.Close()
			return fmt.Errorf("store: roll-up of deleted records: %w", err)
		}
		if aggs == nil {
			aggs = map[int64]*agg{}
		}
		h := floorDiv(ts, hourNS)
		a := aggs[h]
		if a == nil {
			a = newAgg()
			aggs[h] = a
		}
		if kind == 1 {
			a.rcpts[addr.String]--
			continue
		}
		a.record((ts-h*hourNS)/minuteNS, typ.String, status.String, code.Int64, tls.Int64 == 1, latency.Float64,
			auth.String, addr.String, addr.Valid, -1)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: roll-up of deleted records: %w", err)
	}
	if aggs == nil {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM rollup_gone`); err != nil {
		return fmt.Errorf("store: roll-up of deleted records: %w", err)
	}
	return r.addRows(ctx, tx, aggs)
}

// rebuildRollups computes every hour's roll-up from the records: for a
// database created before roll-ups existed. It runs before the writer
// starts, once; on a large store it takes a while, so it says so.
func rebuildRollups(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var need bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM records) AND NOT EXISTS (SELECT 1 FROM rollups)`).Scan(&need); err != nil {
		return fmt.Errorf("store: roll-ups: %w", err)
	}
	if !need {
		return nil
	}
	var lo, hi int64
	if err := db.QueryRowContext(ctx, `SELECT min(ts), max(ts) FROM records`).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("store: roll-ups: %w", err)
	}
	log.Info("store: computing the dashboard's hourly roll-ups of the records stored before they existed (once)")
	t0 := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: roll-ups: %w", err)
	}
	defer tx.Rollback()
	var r rollups
	hours := 0
	for h := floorDiv(lo, hourNS); h <= floorDiv(hi, hourNS); {
		// Skip empty hours in one step.
		var next sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT min(ts) FROM records WHERE ts >= ?`, h*hourNS).Scan(&next); err != nil {
			return fmt.Errorf("store: roll-ups: %w", err)
		}
		if !next.Valid {
			break
		}
		h = floorDiv(next.Int64, hourNS)
		a := newAgg()
		p := &partial{agg: a, lo: h * hourNS, bucket: minuteNS}
		if err := scanRecordsQ(ctx, tx, p, h*hourNS, (h+1)*hourNS); err != nil {
			return err
		}
		if err := scanRcptsQ(ctx, tx, p, h*hourNS, (h+1)*hourNS); err != nil {
			return err
		}
		if err := r.addRows(ctx, tx, map[int64]*agg{h: a}); err != nil {
			return err
		}
		hours++
		h++
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: roll-ups: %w", err)
	}
	log.Info("store: roll-ups computed", "hours", hours, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// rollDayAfter is how many hours behind the newest hour of the roll-ups a
// day's last hour must be before its hours are summed into a day row: a
// day is summed once, when little is still added to it. (A variable for
// tests.)
var rollDayAfter int64 = 48

// rollStep sums a day's roll-ups into one row, in a transaction of its
// own, if one is due; after finding none, it looks again only after
// compactEvery. It runs on the writer goroutine, between batches.
func (s *Store) rollStep(ctx context.Context) error {
	c := &s.compact
	now := time.Now()
	if now.Sub(c.rolled) < compactEvery {
		return nil
	}
	var did bool
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		did, err = rollDay(ctx, tx)
		return err
	})
	if !did {
		c.rolled = now
	}
	c.more = c.more || did
	return err
}

// rollDay sums, in tx, the hourly rows of the oldest day due that has no
// day row into one, and reports whether it did. It runs on the writer
// goroutine. A day whose hourly rows sum to nothing gets an empty row, so
// that it is not looked at again.
func rollDay(ctx context.Context, tx *sql.Tx) (bool, error) {
	var newest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(hour) FROM rollups`).Scan(&newest); err != nil || !newest.Valid {
		return false, err
	}
	// The oldest day with hourly rows and without a day row, among those
	// whose last hour is far enough behind.
	last := floorDiv(newest.Int64-rollDayAfter-23, 24)
	var day sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT min(d) FROM (SELECT DISTINCT (hour - ((hour % 24) + 24) % 24) / 24 AS d
		FROM rollups WHERE hour < ?) WHERE d NOT IN (SELECT day FROM rollup_days)`, (last+1)*24).Scan(&day)
	if err != nil || !day.Valid {
		return false, err
	}
	d := day.Int64
	a := newAgg()
	// Minute slots of the hours become minutes of the day.
	if _, err := decodeRows(ctx, tx, a, `SELECT hour, data FROM rollups WHERE hour >= ? AND hour < ?`,
		d*24, d*24+24, hourNS, d*dayNS, minuteNS); err != nil {
		return false, err
	}
	a.prune()
	_, err = tx.ExecContext(ctx, `INSERT INTO rollup_days (day, data) VALUES (?, ?)`, d, a.encode())
	return err == nil, err
}
