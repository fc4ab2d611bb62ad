// Package api serves the messages that capture mode keeps: smtplog's own
// capture endpoints under /api/messages and /api/chaos, Mailpit's API
// under /api/v1 and MailHog's under /api/v2 (the subset docs/api.md lists),
// so that test suites written for those tools work unchanged.
//
// The bytes of each accepted message reach the store through API.Keep
// (capture.Config.Keep) and commit with its message record, durably before
// the client gets its 250. The
// handlers are mounted in the web server (web.Config.Routes) behind its
// access control; they read the message records from the store and the
// bytes from store.Capture, parse MIME with package mimeview, and never
// serve message HTML except sanitised and in a sandbox.
package api

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/mimeview"
	"github.com/smtplog/smtplog/internal/record"
	"github.com/smtplog/smtplog/internal/smtpd"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/web"
)

// Options configures the API. The zero value is usable.
type Options struct {
	// Keep and MaxAge are capture retention (store.CaptureOptions): the
	// newest Keep messages (default 500; negative: no limit), none older
	// than MaxAge (0: no limit).
	Keep   int
	MaxAge time.Duration
	// Release receives the records of release sessions (the relay's
	// message and session records); nil: the store.
	Release record.Handler
	// ReleaseRootCAs verifies the certificates of release targets; nil:
	// the system pool.
	ReleaseRootCAs *x509.CertPool
	// Version is reported by /api/v1/info.
	Version string
	Now     func() time.Time
}

// API serves captured messages. Close it before the store.
type API struct {
	st    *store.Store
	cap   *store.Capture
	chaos *chaos.Chaos
	log   *slog.Logger
	opts  Options
	start time.Time

	mu        sync.Mutex
	summaries map[string]*summary // parsed list entries by queue ID, bounded
	deleted   int64               // messages deleted through the API
	accepted  int64               // messages kept since New
	keptBytes int64
}

// New returns the API over st. ch may be nil (then GET /api/chaos answers
// no rules and PUT 501).
func New(st *store.Store, ch *chaos.Chaos, log *slog.Logger, opts Options) (*API, error) {
	if st == nil {
		return nil, errors.New("capture api: a store is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Release == nil {
		opts.Release = st
	}
	c, err := store.NewCapture(st, store.CaptureOptions{Keep: opts.Keep, MaxAge: opts.MaxAge})
	if err != nil {
		return nil, err
	}
	return &API{st: st, cap: c, chaos: ch, log: log, opts: opts, start: opts.Now(), summaries: map[string]*summary{}}, nil
}

// Close releases the compressors; it does not close the store.
func (a *API) Close() error { return a.cap.Close() }

// Capture is the raw message storage the API uses.
func (a *API) Capture() *store.Capture { return a.cap }

// Keep hands a message's exact bytes, under its queue ID, to the store;
// it is capture.Config.Keep. It does not commit: the store holds the bytes
// (store.Capture.Park) until the message record with that queue ID
// reaches its Handle, and commits both, with capture retention, in one
// transaction before Handle returns, so the bytes are durable before the
// client gets its 250. The store must therefore be among the record
// handlers of the SMTP server.
func (a *API) Keep(_ context.Context, queueID string, m *smtpd.Message) error {
	if err := a.cap.Park(queueID, m.Body); err != nil {
		return err
	}
	a.mu.Lock()
	a.accepted++
	a.keptBytes += int64(len(m.Body))
	a.mu.Unlock()
	return nil
}

// Routes are the handlers to mount with web.Config.Routes.
func (a *API) Routes() []web.Route {
	h := func(p string, f http.HandlerFunc) web.Route { return web.Route{Pattern: p, Handler: f} }
	return []web.Route{
		h("GET /api/messages/{id}/raw", a.raw),
		h("GET /api/messages/{id}/view", a.view),
		h("GET /api/messages/{id}/html", a.html),
		h("GET /api/messages/{id}/part/{part}", a.part),
		h("POST /api/messages/{id}/release", a.release),
		h("DELETE /api/messages/{id}", a.deleteOne),
		h("DELETE /api/messages", a.deleteAll),
		h("PUT /api/messages/{id}/read", a.markRead),
		h("PUT /api/messages/{id}/tags", a.setTags),
		h("GET /api/chaos", a.getChaos),
		h("PUT /api/chaos", a.putChaos),

		h("GET /api/v1/messages", a.mpMessages),
		h("DELETE /api/v1/messages", a.mpDelete),
		h("GET /api/v1/search", a.mpSearch),
		h("GET /api/v1/message/{ID}", a.mpMessage),
		h("GET /api/v1/message/{ID}/headers", a.mpHeaders),
		h("GET /api/v1/message/{ID}/raw", a.mpRaw),
		h("GET /api/v1/message/{ID}/part/{PartID}", a.mpPart),
		h("GET /api/v1/info", a.mpInfo),

		h("GET /api/v2/messages", a.mhMessages),
		h("GET /api/v2/search", a.mhSearch),
	}
}

// --- helpers

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: the answer could not be encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// fail answers err: 404 for not found, 500 (details to the log) otherwise.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such message: it may have been deleted by retention")
		return
	}
	if errors.Is(err, store.ErrBusy) {
		writeError(w, http.StatusServiceUnavailable, "the store is busy; try again")
		return
	}
	a.log.Error("capture api", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; the server log has the details")
}

// decodeBody reads an optional JSON object body into v (unknown fields
// refused); an empty body leaves v as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Body == nil || r.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return true
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad JSON body: "+clip(err.Error(), 200))
		return false
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// recordID reads the {id} path value: a store record ID.
func recordID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("the message id must be a positive decimal number (the record ID from search results)")
	}
	return id, nil
}

// queueID finds the capture queue ID of the message record {id}.
func (a *API) queueID(w http.ResponseWriter, r *http.Request) (store.Item, string, bool) {
	id, err := recordID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return store.Item{}, "", false
	}
	it, err := a.st.Message(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return store.Item{}, "", false
	}
	if it.Record.Type != record.TypeMessage || it.Record.Source != record.SourceCapture || it.Record.QueueID == "" {
		writeError(w, http.StatusNotFound, "record "+strconv.FormatInt(id, 10)+" is not a captured message: only capture mode keeps message bytes")
		return store.Item{}, "", false
	}
	return it, it.Record.QueueID, true
}

// captureRecord returns the capture message record of a queue ID, if
// stored yet.
func (a *API) captureRecord(ctx context.Context, qid string) (store.Item, bool) {
	items, err := a.st.ByQueueID(ctx, qid)
	if err != nil {
		return store.Item{}, false
	}
	for _, it := range items {
		if it.Record.Type == record.TypeMessage && it.Record.Source == record.SourceCapture && it.Record.QueueID == qid {
			return it, true
		}
	}
	return store.Item{}, false
}

// parsed loads and parses one message.
func (a *API) parsed(ctx context.Context, qid string) (store.RawMeta, []byte, *mimeview.Message, error) {
	meta, raw, err := a.cap.Get(ctx, qid)
	if err != nil {
		return meta, nil, nil, err
	}
	return meta, raw, mimeview.Parse(raw, mimeview.DefaultLimits()), nil
}

// parsedOrFail is parsed for a handler: on an error it answers it (with
// fail) and reports false.
func (a *API) parsedOrFail(w http.ResponseWriter, r *http.Request, qid string) (store.RawMeta, *mimeview.Message, bool) {
	meta, _, m, err := a.parsed(r.Context(), qid)
	if err != nil {
		a.fail(w, r, err)
		return meta, nil, false
	}
	return meta, m, true
}
