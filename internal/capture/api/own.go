package api

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/smtplog/smtplog/internal/chaos"
	"github.com/smtplog/smtplog/internal/mimeview"
)

// frameCSP is the policy of message HTML and parts: a sandbox (no script,
// no forms, no same-origin access), nothing loaded but our own parts and
// data: images, inline styles allowed (no script can run in the sandbox),
// framed only by our own UI.
const frameCSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"

// frameCSPRemote also lets images (and CSS backgrounds) load from the web.
const frameCSPRemote = "sandbox; default-src 'none'; img-src 'self' data: https: http:; style-src 'unsafe-inline'; frame-ancestors 'self'"

// raw answers the exact bytes.
func (a *API) raw(w http.ResponseWriter, r *http.Request) {
	_, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	a.serveRaw(w, r, qid, "message/rfc822")
}

func (a *API) serveRaw(w http.ResponseWriter, r *http.Request, qid, ctype string) {
	_, raw, err := a.cap.Get(r.Context(), qid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	if r.URL.Query().Get("dl") != "" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": qid + ".eml"}))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(raw)
	}
}

// View is the answer of GET /api/messages/{id}/view.
type View struct {
	ID          string                       `json:"id"`
	QueueID     string                       `json:"queue_id"`
	Read        bool                         `json:"read"`
	Tags        []string                     `json:"tags"`
	Message     *mimeview.Message            `json:"message"`
	HTML        *HTMLInfo                    `json:"html,omitempty"`
	Attachments []mimeview.AttachmentSummary `json:"attachments"`
	Inline      []mimeview.AttachmentSummary `json:"inline"`
	Checks      []mimeview.Finding           `json:"checks"`
}

// HTMLInfo describes the sanitised HTML body; the document itself is at
// /api/messages/{id}/html.
type HTMLInfo struct {
	URL        string   `json:"url"`
	Size       int      `json:"size"` // of the HTML body as sent
	Remote     []string `json:"remote,omitempty"`
	MissingCID []string `json:"missing_cid,omitempty"`
	DroppedCSS int      `json:"dropped_css,omitempty"`
}

func (a *API) view(w http.ResponseWriter, r *http.Request) {
	it, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	meta, m, ok := a.parsedOrFail(w, r, qid)
	if !ok {
		return
	}
	id := strconv.FormatInt(it.ID, 10)
	v := View{ID: id, QueueID: qid, Read: meta.Read, Tags: nonNil(meta.Tags), Message: m,
		Attachments: summaries(m.Attachments), Inline: summaries(m.Inline), Checks: m.CheckHTML()}
	if v.Checks == nil {
		v.Checks = []mimeview.Finding{}
	}
	if m.HTML != "" {
		s := m.SanitizeHTML(mimeview.SanitizeOptions{PartURL: "/api/messages/" + id + "/part/{PartID}"})
		v.HTML = &HTMLInfo{URL: "/api/messages/" + id + "/html", Size: len(m.HTML), Remote: s.Remote, MissingCID: s.MissingCID, DroppedCSS: s.DroppedCSS}
		m.HTML = "" // served sanitised only, at URL
	}
	writeJSON(w, http.StatusOK, v)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func summaries(ps []*mimeview.Part) []mimeview.AttachmentSummary {
	out := make([]mimeview.AttachmentSummary, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Summary())
	}
	return out
}

// html answers the sanitised HTML document for a sandboxed frame.
func (a *API) html(w http.ResponseWriter, r *http.Request) {
	it, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	_, m, ok := a.parsedOrFail(w, r, qid)
	if !ok {
		return
	}
	if m.HTML == "" {
		writeError(w, http.StatusNotFound, "the message has no HTML body")
		return
	}
	remote := r.URL.Query().Get("remote") == "1"
	// Inline images go into the document as data: URLs: the frame is
	// sandboxed without same-origin rights, so it may not fetch our parts.
	s := m.SanitizeHTML(mimeview.SanitizeOptions{
		PartURL:      "/api/messages/" + strconv.FormatInt(it.ID, 10) + "/part/{PartID}",
		AllowRemote:  remote,
		InlineImages: true,
	})
	h := w.Header()
	h.Set("Content-Security-Policy", frameCSP)
	if remote {
		h.Set("Content-Security-Policy", frameCSPRemote)
	}
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(s.HTML))
}

func (a *API) part(w http.ResponseWriter, r *http.Request) {
	_, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	a.servePart(w, r, qid, r.PathValue("part"))
}

// inlineTypes are the part types served inline: raster images only (SVG
// can carry script).
var inlineTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true, "image/avif": true, "image/bmp": true,
}

// servePart answers one MIME part's decoded content: raster images inline,
// everything else (HTML included) as an attachment, in a sandbox, never
// sniffed.
func (a *API) servePart(w http.ResponseWriter, r *http.Request, qid, partID string) {
	_, m, ok := a.parsedOrFail(w, r, qid)
	if !ok {
		return
	}
	p := m.Part(partID)
	if p == nil || len(p.Children) > 0 {
		writeError(w, http.StatusNotFound, "no such part: part IDs are those of the MIME tree (/view)")
		return
	}
	ct := strings.ToLower(strings.TrimSpace(p.ContentType))
	if ct == "" || strings.ContainsAny(ct, "\r\n;") {
		ct = "application/octet-stream"
	}
	h := w.Header()
	name := p.FileName
	if name == "" {
		name = "part-" + partID
	}
	disp := "attachment"
	if inlineTypes[ct] {
		disp = "inline"
	}
	if strings.HasPrefix(ct, "text/") {
		ct += "; charset=utf-8" // mimeview converted text parts to UTF-8
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", frameCSP)
	h.Set("Content-Length", strconv.Itoa(len(p.Content)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(p.Content)
	}
}

func (a *API) deleteOne(w http.ResponseWriter, r *http.Request) {
	_, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	n, err := a.cap.Delete(r.Context(), qid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.forget(n, qid)
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": n})
}

func (a *API) deleteAll(w http.ResponseWriter, r *http.Request) {
	n, err := a.cap.DeleteAll(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.forget(n)
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": n})
}

// forget drops cached summaries (all when no queue ID is given) and counts
// deletions.
func (a *API) forget(n int64, qids ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deleted += n
	if len(qids) == 0 {
		clear(a.summaries)
	}
	for _, q := range qids {
		delete(a.summaries, q)
	}
}

func (a *API) markRead(w http.ResponseWriter, r *http.Request) {
	_, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	body := struct {
		Read *bool `json:"read"`
	}{}
	if !decodeBody(w, r, &body) {
		return
	}
	read := body.Read == nil || *body.Read
	if _, err := a.cap.SetRead(r.Context(), read, qid); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"read": read})
}

func (a *API) setTags(w http.ResponseWriter, r *http.Request) {
	_, qid, ok := a.queueID(w, r)
	if !ok {
		return
	}
	var body struct {
		Tags []string `json:"tags"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	tags, err := a.cap.SetTags(r.Context(), qid, body.Tags)
	if err != nil && strings.Contains(err.Error(), "at most") {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"tags": tags})
}

// chaosBody is GET/PUT /api/chaos: rules as objects (or, on PUT, strings
// in the rule syntax).
type chaosBody struct {
	Rules chaos.Rules `json:"rules"`
}

func (a *API) getChaos(w http.ResponseWriter, r *http.Request) {
	rules := chaos.Rules{}
	if a.chaos != nil {
		rules = append(rules, a.chaos.Rules()...)
	}
	writeJSON(w, http.StatusOK, chaosBody{Rules: rules})
}

func (a *API) putChaos(w http.ResponseWriter, r *http.Request) {
	if a.chaos == nil {
		writeError(w, http.StatusNotImplemented, "chaos is not enabled on this server")
		return
	}
	var body chaosBody
	if !decodeBody(w, r, &body) {
		return
	}
	if err := a.chaos.Set(body.Rules); err != nil {
		writeError(w, http.StatusBadRequest, clip(err.Error(), 300))
		return
	}
	a.getChaos(w, r)
}
