package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/trace"
)

func (h *Handler) routes() error {
	m := h.mux
	m.HandleFunc("GET /api/health", h.health)
	m.HandleFunc("GET /api/ready", h.ready)
	m.HandleFunc("GET /api/search", h.search)
	m.HandleFunc("GET /api/messages/{id}", h.message)
	m.HandleFunc("GET /api/sessions/{id}", h.session)
	m.HandleFunc("GET /api/trace/{id...}", h.trace)
	m.HandleFunc("GET /api/stats", h.stats)
	m.HandleFunc("GET /api/stream", h.stream)
	m.HandleFunc("POST /api/prune", h.prune)
	return h.uiRoutes()
}

// serveMux routes r, answering unknown paths and methods with JSON.
func (h *Handler) serveMux(w http.ResponseWriter, r *http.Request) {
	if hd, pattern := h.mux.Handler(r); pattern == "" {
		rec := &recorder{header: http.Header{}, code: http.StatusOK} // the mux's own 404 or 405, for its status and Allow header
		hd.ServeHTTP(rec, r)
		if allow := rec.Header().Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch rec.code {
		case http.StatusMethodNotAllowed:
			writeError(w, rec.code, r.Method+" is not allowed here; use "+rec.Header().Get("Allow"))
		case http.StatusNotFound:
			writeError(w, rec.code, "no such page or endpoint; the API is described in docs/api.md")
		default: // redirects to a cleaned path
			if loc := rec.Header().Get("Location"); loc != "" {
				w.Header().Set("Location", loc)
			}
			w.WriteHeader(rec.code)
		}
		return
	}
	h.mux.ServeHTTP(w, r)
}

// recorder keeps the status and headers of the mux's fallback handlers.
type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// recordJSON is a record with its store ID, as search results carry it.
type recordJSON struct {
	ID string `json:"id"`
	record.Record
}

func itemJSON(it store.Item) recordJSON {
	return recordJSON{ID: strconv.FormatInt(it.ID, 10), Record: it.Record}
}

func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var reasons []string
	for _, c := range h.cfg.Ready {
		if err := c.Check(ctx); err != nil {
			reasons = append(reasons, c.Name+": "+err.Error())
		}
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "degraded", "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// queryError answers a query syntax error with its position.
func queryError(w http.ResponseWriter, param string, err error) {
	var qe *query.Error
	if errors.As(err, &qe) {
		off := qe.Offset
		writeJSON(w, http.StatusBadRequest, apiError{
			Error: "query (" + param + "): " + qe.Error(), Position: qe.Pos, Offset: &off, Token: qe.Token,
		})
		return
	}
	writeError(w, http.StatusBadRequest, "query ("+param+"): "+err.Error())
}

// messagesOnly is ANDed with queries that do not mention type:.
func withDefaultType(q *query.Query, now time.Time) *query.Query {
	if mentionsType(q.Expr) {
		return q
	}
	t := query.MustParse("type:message", now)
	if q.Expr == nil {
		return t
	}
	return &query.Query{Expr: &query.And{X: []query.Expr{q.Expr, t.Expr}}}
}

func mentionsType(x query.Expr) bool {
	switch x := x.(type) {
	case *query.Term:
		return x.Field == query.FieldType
	case *query.Not:
		return mentionsType(x.X)
	case *query.And:
		for _, y := range x.X {
			if mentionsType(y) {
				return true
			}
		}
	case *query.Or:
		for _, y := range x.X {
			if mentionsType(y) {
				return true
			}
		}
	}
	return false
}

// MaxLimit is the largest page of search results.
const MaxLimit = 1000

type searchAnswer struct {
	Query      string       `json:"query"` // canonical form
	Records    []recordJSON `json:"records"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q, err := query.Parse(v.Get("q"), h.cfg.Now())
	if err != nil {
		queryError(w, "q", err)
		return
	}
	limit := 50
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a number from 1 to "+strconv.Itoa(MaxLimit))
			return
		}
		limit = min(n, MaxLimit)
	}
	cursor := v.Get("cursor")
	if cursor != "" && !validCursor(cursor) {
		writeError(w, http.StatusBadRequest, "cursor is not one this server gave out: pass next_cursor back unchanged, or leave it out to start again")
		return
	}
	res, err := h.cfg.Store.Search(r.Context(), withDefaultType(q, h.cfg.Now()), store.Page{Limit: limit, Cursor: cursor})
	if err != nil {
		h.internal(w, r, "search", err)
		return
	}
	ans := searchAnswer{Query: q.String(), Records: make([]recordJSON, 0, len(res.Items)), NextCursor: res.Next}
	for _, it := range res.Items {
		ans.Records = append(ans.Records, itemJSON(it))
	}
	writeJSON(w, http.StatusOK, ans)
}

// validCursor checks the shape of the store's keyset cursor: base64url of
// "timestamp.id".
func validCursor(s string) bool {
	if len(s) > 64 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	a, c, ok := strings.Cut(string(b), ".")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseInt(a, 10, 64)
	_, err2 := strconv.ParseInt(c, 10, 64)
	return err1 == nil && err2 == nil
}

// internal answers 500 (or 503 when the client went away or timed out)
// and logs the details, which the client does not see.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, what+" took too long or was cancelled; try a narrower query")
		return
	}
	h.cfg.Logger.Error("web: "+what, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, what+" failed; the server log has the details")
}

type messageAnswer struct {
	Record     recordJSON              `json:"record"`
	Deliveries []record.Delivery       `json:"deliveries"`
	Transcript []record.TranscriptLine `json:"transcript"`
	Session    *recordJSON             `json:"session,omitempty"`
}

func parseID(w http.ResponseWriter, s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "record id must be a positive decimal number, as in search results")
		return 0, false
	}
	return id, true
}

func (h *Handler) message(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r.PathValue("id"))
	if !ok {
		return
	}
	it, err := h.cfg.Store.Message(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no record "+strconv.FormatInt(id, 10)+"; it may have been pruned")
		return
	}
	if err != nil {
		h.internal(w, r, "message lookup", err)
		return
	}
	ans := messageAnswer{Deliveries: it.Record.Deliveries, Transcript: it.Record.Transcript}
	if ans.Deliveries == nil {
		ans.Deliveries = []record.Delivery{}
	}
	if ans.Transcript == nil {
		ans.Transcript = []record.TranscriptLine{}
	}
	it.Record.Deliveries, it.Record.Transcript = nil, nil
	ans.Record = itemJSON(it)
	if sid := it.Record.SessionID; sid != "" && it.Record.Type != record.TypeSession {
		items, err := h.cfg.Store.Session(r.Context(), sid)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.internal(w, r, "session lookup", err)
			return
		}
		for _, s := range items {
			if s.Record.Type == record.TypeSession {
				s.Record.Transcript = nil
				sj := itemJSON(s)
				ans.Session = &sj
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

type sessionAnswer struct {
	Record   *recordJSON  `json:"record,omitempty"`
	Messages []recordJSON `json:"messages"`
}

// validTextID checks a session, queue or Message-ID from a path.
func validTextID(w http.ResponseWriter, what, s string) bool {
	if s == "" || len(s) > 998 || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		writeError(w, http.StatusBadRequest, what+" must be 1 to 998 bytes of printable UTF-8")
		return false
	}
	return true
}

func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("id")
	if !validTextID(w, "session id", sid) {
		return
	}
	items, err := h.cfg.Store.Session(r.Context(), sid)
	if errors.Is(err, store.ErrNotFound) || err == nil && len(items) == 0 {
		writeError(w, http.StatusNotFound, "no session "+quoteClip(sid)+"; it may have been pruned")
		return
	}
	if err != nil {
		h.internal(w, r, "session lookup", err)
		return
	}
	ans := sessionAnswer{Messages: []recordJSON{}}
	for _, it := range items {
		if it.Record.Type == record.TypeSession && ans.Record == nil {
			j := itemJSON(it)
			ans.Record = &j
			continue
		}
		it.Record.Transcript = nil // the session's transcript has the whole dialogue
		ans.Messages = append(ans.Messages, itemJSON(it))
	}
	writeJSON(w, http.StatusOK, ans)
}

func (h *Handler) trace(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Tracer == nil {
		writeError(w, http.StatusNotImplemented, "trace is not available in this server; use search with msgid:, queue: or session:")
		return
	}
	id := r.PathValue("id")
	if !validTextID(w, "trace id", id) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	t, err := h.cfg.Tracer.Trace(ctx, id)
	if errors.Is(err, ErrNotFound) || errors.Is(err, store.ErrNotFound) || errors.Is(err, trace.ErrNotFound) {
		writeError(w, http.StatusNotFound, "nothing known about "+quoteClip(id)+": give a Message-ID, a queue ID or a session ID")
		return
	}
	if err != nil {
		h.internal(w, r, "trace", err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// parseTime reads an RFC 3339 time, a date or a relative time (-2h, -7d),
// as the query language's after: does.
func parseTime(param, v string, now time.Time) (time.Time, error) {
	bad := fmt.Errorf("%s: %s is not a time: use RFC 3339 (2026-11-29T10:00:00Z), a date (2026-11-29) or a relative time (-2h, -7d)", param, quoteClip(v))
	if v == "" || len(v) > 64 || strings.ContainsAny(v, " \t\r\n\"()\\") {
		return time.Time{}, bad
	}
	q, err := query.Parse("after:"+v, now)
	if err != nil {
		return time.Time{}, bad
	}
	t, ok := q.Expr.(*query.Term)
	if !ok || t.Field != query.FieldAfter {
		return time.Time{}, bad
	}
	return t.Time, nil
}

// niceBuckets are the bucket sizes the stats endpoint picks from.
var niceBuckets = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// MaxStatsRange is the longest range /api/stats answers for.
const MaxStatsRange = 400 * 24 * time.Hour

type countJSON struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

type statsAnswer struct {
	From          time.Time          `json:"from"`
	To            time.Time          `json:"to"`
	BucketSeconds int64              `json:"bucket_seconds"`
	Statuses      []string           `json:"statuses"`
	Series        []map[string]any   `json:"series"`
	Totals        map[string]int64   `json:"totals"`
	ByStatus      map[string]int64   `json:"by_status"`
	Rates         map[string]float64 `json:"rates"`
	Classes       map[string]int64   `json:"classes"`
	Codes         []countJSON        `json:"codes"`
	TopSenders    []countJSON        `json:"top_senders"`
	TopSenderDom  []countJSON        `json:"top_sender_domains"`
	TopRcpts      []countJSON        `json:"top_recipients"`
	TopRcptDom    []countJSON        `json:"top_recipient_domains"`
	TLS           map[string]any     `json:"tls"`
	Auth          map[string]int64   `json:"auth"`
	Latency       map[string]any     `json:"latency_ms"`
}

var statuses = []string{
	record.StatusAccepted, record.StatusSent, record.StatusDeferred, record.StatusBounced,
	record.StatusRejected, record.StatusExpired, record.StatusAborted,
}

func counts(c []store.Count) []countJSON {
	out := make([]countJSON, 0, len(c))
	for _, x := range c {
		out = append(out, countJSON{x.Key, x.N})
	}
	return out
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(float64(a)/float64(b)*1e4) / 1e4
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	now := h.cfg.Now()
	to, from := now, now.Add(-24*time.Hour)
	var err error
	if s := v.Get("to"); s != "" {
		if to, err = parseTime("to", s, now); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	from = to.Add(-24 * time.Hour)
	if s := v.Get("from"); s != "" {
		if from, err = parseTime("from", s, now); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	span := to.Sub(from)
	if span <= 0 {
		writeError(w, http.StatusBadRequest, "from must be before to")
		return
	}
	if span > MaxStatsRange {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the range is over %d days: narrow it", MaxStatsRange/(24*time.Hour)))
		return
	}
	var bucket time.Duration
	if s := v.Get("bucket"); s != "" {
		bucket, err = time.ParseDuration(s)
		if err != nil || bucket < time.Second {
			writeError(w, http.StatusBadRequest, "bucket must be a duration of at least 1s, e.g. 5m or 1h")
			return
		}
		if span/bucket > 2000 {
			writeError(w, http.StatusBadRequest, "bucket is too small for the range: at most 2000 buckets")
			return
		}
	} else {
		bucket = niceBuckets[len(niceBuckets)-1]
		for _, b := range niceBuckets {
			if span/b <= 120 {
				bucket = b
				break
			}
		}
		if span/bucket > 2000 {
			bucket = span / 2000
		}
	}
	// Align to the bucket so that series from successive calls line up.
	from = from.Truncate(bucket)
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	st, err := h.cfg.Store.Stats(ctx, from, to, bucket)
	if err != nil {
		h.internal(w, r, "statistics", err)
		return
	}
	ans := statsAnswer{
		From: st.From, To: st.To, BucketSeconds: int64(bucket / time.Second), Statuses: statuses,
		Series:   make([]map[string]any, 0, len(st.Series)),
		Totals:   map[string]int64{"messages": st.Messages, "sessions": st.Sessions},
		ByStatus: st.ByStatus,
		Rates: map[string]float64{
			"bounce":   ratio(st.ByStatus[record.StatusBounced], st.Messages),
			"deferral": ratio(st.ByStatus[record.StatusDeferred], st.Messages),
			"reject":   ratio(st.ByStatus[record.StatusRejected], st.Messages),
		},
		Classes:      map[string]int64{"4xx": st.Temporary, "5xx": st.Permanent},
		Codes:        counts(st.ReplyCodes),
		TopSenders:   counts(st.TopSenders),
		TopSenderDom: counts(st.TopSenderDomains),
		TopRcpts:     counts(st.TopRecipients),
		TopRcptDom:   counts(st.TopRecipientDomains),
		TLS:          map[string]any{"yes": st.TLS.Yes, "no": st.TLS.No, "ratio": ratio(st.TLS.Yes, st.TLS.Yes+st.TLS.No)},
		Auth:         map[string]int64{"failures": st.AuthFailures},
		Latency: map[string]any{"count": st.Latency.Count, "p50": st.Latency.P50, "p90": st.Latency.P90,
			"p99": st.Latency.P99, "max": st.Latency.Max},
	}
	for _, b := range st.Series {
		row := map[string]any{"t": b.Start, "total": b.Total}
		for _, s := range statuses {
			row[s] = b.ByStatus[s]
		}
		ans.Series = append(ans.Series, row)
	}
	writeJSON(w, http.StatusOK, ans)
}

type pruneRequest struct {
	Before   string `json:"before"`    // RFC 3339, a date or relative (-30d); "" for no age limit
	MaxBytes int64  `json:"max_bytes"` // 0 for no size limit
}

func (h *Handler) prune(w http.ResponseWriter, r *http.Request) {
	p, ok := h.cfg.Store.(Pruner)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this store cannot prune")
		return
	}
	var req pruneRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var before time.Time
	if req.Before != "" {
		var err error
		if before, err = parseTime("before", req.Before, h.cfg.Now()); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if req.MaxBytes < 0 || before.IsZero() && req.MaxBytes == 0 {
		writeError(w, http.StatusBadRequest, `say what to delete: {"before": "-30d"} and/or {"max_bytes": N} with N > 0`)
		return
	}
	res, err := p.Prune(r.Context(), before, req.MaxBytes)
	if err != nil {
		h.internal(w, r, "prune", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": res.Deleted, "bytes": res.Bytes})
}

// decodeBody reads one JSON object with known fields only.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes: send less", mbe.Limit))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "the body must be one JSON object with the documented fields: "+err.Error())
		return false
	}
	return true
}
