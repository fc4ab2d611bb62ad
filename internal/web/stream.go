package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/smtplog/smtplog/internal/query"
)

// streamWriteTimeout bounds one write to a live-stream client: a client
// that stops reading is disconnected rather than holding its goroutine.
const streamWriteTimeout = 10 * time.Second

// stream serves GET /api/stream?q=QUERY as Server-Sent Events: a "record"
// event per new matching record, a "dropped" event when records were lost
// for this (slow) client, and keep-alive comments.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Hub == nil {
		writeError(w, http.StatusNotImplemented, "the live stream is not available in this server")
		return
	}
	q, err := query.Parse(r.URL.Query().Get("q"), h.cfg.Now())
	if err != nil {
		queryError(w, "q", err)
		return
	}
	if q.Expr == nil {
		q = nil
	}
	sub, err := h.cfg.Hub.Subscribe(q)
	switch {
	case errors.Is(err, ErrTooManySubscribers):
		writeError(w, http.StatusServiceUnavailable, "too many live viewers; close one and try again")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "the live stream is shutting down")
		return
	}
	defer sub.Close()

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(parts ...string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		for _, p := range parts {
			if _, err := w.Write([]byte(p)); err != nil {
				return false
			}
		}
		return true
	}
	flush := func() bool { return rc.Flush() == nil }
	if !write("retry: 3000\n: connected\n\n") || !flush() {
		return
	}
	tick := time.NewTicker(h.cfg.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case <-tick.C:
			if !h.sendDropped(sub, write) || !write(": keep-alive\n\n") || !flush() {
				return
			}
		case data, ok := <-sub.C:
			if !ok {
				return
			}
			// Send what is queued, then flush once.
			for n := 0; ; n++ {
				if !h.sendDropped(sub, write) || !write("event: record\ndata: ", string(data), "\n\n") {
					return
				}
				if n == 64 {
					break
				}
				select {
				case data, ok = <-sub.C:
					if !ok {
						flush()
						return
					}
					continue
				default:
				}
				break
			}
			if !flush() {
				return
			}
		}
	}
}

func (h *Handler) sendDropped(sub *Subscription, write func(...string) bool) bool {
	if n := sub.TakeDropped(); n > 0 {
		return write("event: dropped\ndata: {\"dropped\":", strconv.FormatUint(n, 10), "}\n\n")
	}
	return true
}
