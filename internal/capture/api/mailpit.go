package api

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smtplog/smtplog/internal/mimeview"
	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/store"
)

// Mailpit's API (v1.x, /api/v1), with its JSON names and shapes. IDs are
// capture queue IDs.

// MPAddress is Mailpit's address object.
type MPAddress = mimeview.Address

// MPSummary is Mailpit's MessageSummary.
type MPSummary struct {
	ID          string      `json:"ID"`
	MessageID   string      `json:"MessageID"`
	Read        bool        `json:"Read"`
	From        *MPAddress  `json:"From"`
	To          []MPAddress `json:"To"`
	Cc          []MPAddress `json:"Cc"`
	Bcc         []MPAddress `json:"Bcc"`
	ReplyTo     []MPAddress `json:"ReplyTo"`
	Subject     string      `json:"Subject"`
	Created     time.Time   `json:"Created"`
	Username    string      `json:"Username"`
	Tags        []string    `json:"Tags"`
	Size        int64       `json:"Size"`
	Attachments int         `json:"Attachments"`
	Snippet     string      `json:"Snippet"`
}

// MPMessagesSummary is Mailpit's messages list.
type MPMessagesSummary struct {
	Total         int64       `json:"total"`
	Unread        int64       `json:"unread"`
	Count         int         `json:"count"`
	MessagesCount int64       `json:"messages_count"`
	Start         int         `json:"start"`
	Tags          []string    `json:"tags"`
	Messages      []MPSummary `json:"messages"`
}

// MPMessage is Mailpit's Message.
type MPMessage struct {
	ID          string                       `json:"ID"`
	MessageID   string                       `json:"MessageID"`
	From        *MPAddress                   `json:"From"`
	To          []MPAddress                  `json:"To"`
	Cc          []MPAddress                  `json:"Cc"`
	Bcc         []MPAddress                  `json:"Bcc"`
	ReplyTo     []MPAddress                  `json:"ReplyTo"`
	ReturnPath  string                       `json:"ReturnPath"`
	Subject     string                       `json:"Subject"`
	Date        time.Time                    `json:"Date"`
	Tags        []string                     `json:"Tags"`
	Username    string                       `json:"Username"`
	Text        string                       `json:"Text"`
	HTML        string                       `json:"HTML"`
	Size        int64                        `json:"Size"`
	Inline      []mimeview.AttachmentSummary `json:"Inline"`
	Attachments []mimeview.AttachmentSummary `json:"Attachments"`
}

// MPInfo is Mailpit's AppInformation.
type MPInfo struct {
	Version       string           `json:"Version"`
	LatestVersion string           `json:"LatestVersion"`
	Database      string           `json:"Database"`
	DatabaseSize  int64            `json:"DatabaseSize"`
	Messages      int64            `json:"Messages"`
	Unread        int64            `json:"Unread"`
	Tags          map[string]int64 `json:"Tags"`
	RuntimeStats  MPRuntimeStats   `json:"RuntimeStats"`
}

// MPRuntimeStats is Mailpit's RuntimeStats.
type MPRuntimeStats struct {
	Uptime           int64  `json:"Uptime"`
	Memory           uint64 `json:"Memory"`
	MessagesDeleted  int64  `json:"MessagesDeleted"`
	SMTPAccepted     int64  `json:"SMTPAccepted"`
	SMTPAcceptedSize int64  `json:"SMTPAcceptedSize"`
	SMTPRejected     int64  `json:"SMTPRejected"`
	SMTPIgnored      int64  `json:"SMTPIgnored"`
}

// summary is what a list entry needs from the parsed message; cached.
type summary struct {
	messageID   string
	from        *MPAddress
	to, cc, bcc []MPAddress
	replyTo     []MPAddress
	subject     string
	attachments int
	snippet     string
}

const maxSummaries = 4096

func addrs(a []MPAddress) []MPAddress {
	if a == nil {
		return []MPAddress{}
	}
	return a
}

func (a *API) summaryOf(ctx context.Context, qid string) (*summary, error) {
	a.mu.Lock()
	s := a.summaries[qid]
	a.mu.Unlock()
	if s != nil {
		return s, nil
	}
	_, _, m, err := a.parsed(ctx, qid)
	if err != nil {
		return nil, err
	}
	s = &summary{messageID: strings.Trim(m.MessageID, "<>"), from: m.From, to: addrs(m.To), cc: addrs(m.Cc), bcc: addrs(m.Bcc),
		replyTo: addrs(m.ReplyTo), subject: m.Subject, attachments: len(m.Attachments), snippet: snippet(m.Text)}
	a.mu.Lock()
	if len(a.summaries) >= maxSummaries {
		clear(a.summaries)
	}
	a.summaries[qid] = s
	a.mu.Unlock()
	return s, nil
}

// snippet is Mailpit's: the text with runs of white space made one space,
// at most 250 characters.
func snippet(text string) string {
	f := strings.Fields(text)
	var b strings.Builder
	n := 0
	for i, w := range f {
		if i > 0 {
			b.WriteByte(' ')
			n++
		}
		for _, r := range w {
			if n >= 250 {
				return strings.TrimSpace(b.String()) + "..."
			}
			b.WriteRune(r)
			n++
		}
	}
	return b.String()
}

func (a *API) mpSummary(ctx context.Context, m store.RawMeta) (MPSummary, error) {
	s, err := a.summaryOf(ctx, m.QueueID)
	if err != nil {
		return MPSummary{}, err
	}
	out := MPSummary{ID: m.QueueID, MessageID: s.messageID, Read: m.Read, From: s.from, To: s.to, Cc: s.cc, Bcc: s.bcc,
		ReplyTo: s.replyTo, Subject: s.subject, Created: m.Time, Tags: nonNil(m.Tags), Size: m.Size,
		Attachments: s.attachments, Snippet: s.snippet}
	if out.From == nil {
		out.From = &MPAddress{}
	}
	return out, nil
}

// paging reads Mailpit's start and limit (default 50, at most 1000).
func paging(r *http.Request) (start, limit int) {
	q := r.URL.Query()
	start, _ = strconv.Atoi(q.Get("start"))
	limit, _ = strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 50
	}
	return max(start, 0), min(limit, 1000)
}

func (a *API) mpMessages(w http.ResponseWriter, r *http.Request) {
	start, limit := paging(r)
	metas, total, unread, err := a.cap.List(r.Context(), start, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mpList(w, r, metas, total, unread, total, start)
}

func (a *API) mpList(w http.ResponseWriter, r *http.Request, metas []store.RawMeta, total, unread, matched int64, start int) {
	tags, err := a.cap.Tags(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res := MPMessagesSummary{Total: total, Unread: unread, MessagesCount: matched, Start: start, Tags: tags, Messages: []MPSummary{}}
	for _, m := range metas {
		s, err := a.mpSummary(r.Context(), m)
		if err != nil {
			continue // deleted meanwhile
		}
		res.Messages = append(res.Messages, s)
	}
	res.Count = len(res.Messages)
	writeJSON(w, http.StatusOK, res)
}

// mpQuery translates Mailpit's search syntax into smtplog's query
// language, and collects the filters that only the raw store knows
// (is:read, is:unread, tag:).
type mpFilter struct {
	read, unread bool
	tags         []string
	notTags      []string
}

func mpQuery(s string) (string, mpFilter) {
	var f mpFilter
	out := []string{"type:message", "source:capture"}
	for _, tok := range splitQuery(s) {
		neg := false
		if strings.HasPrefix(tok, "-") || strings.HasPrefix(tok, "!") {
			neg, tok = true, tok[1:]
		}
		key, val, hasKey := strings.Cut(tok, ":")
		key = strings.ToLower(key)
		val = strings.Trim(val, `"`)
		if val == "" && hasKey {
			continue
		}
		term := ""
		switch {
		case !hasKey:
			term = quoteTerm("", tok)
		case key == "from" || key == "to" || key == "subject":
			term = quoteTerm(key+":", val)
		case key == "cc" || key == "bcc":
			term = quoteTerm("to:", val)
		case key == "message-id":
			term = quoteTerm("msgid:", val)
		case key == "before" || key == "after":
			term = quoteTerm(key+":", val)
		case key == "is" && strings.EqualFold(val, "read"):
			f.read, f.unread = !neg, neg
		case key == "is" && strings.EqualFold(val, "unread"):
			f.unread, f.read = !neg, neg
		case key == "tag":
			if neg {
				f.notTags = append(f.notTags, val)
			} else {
				f.tags = append(f.tags, val)
			}
		default:
			term = quoteTerm("", tok)
		}
		if term == "" {
			continue
		}
		if neg {
			term = "-" + term
		}
		out = append(out, term)
	}
	return strings.Join(out, " "), f
}

// splitQuery splits on spaces outside double quotes.
func splitQuery(s string) []string {
	var out []string
	var cur strings.Builder
	inQ := false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// quoteTerm writes field:value with the value quoted for our language.
func quoteTerm(field, val string) string {
	val = strings.Trim(val, `"`)
	if val == "" {
		return ""
	}
	return field + `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(val) + `"`
}

func (f mpFilter) keep(m store.RawMeta) bool {
	if (f.read && !m.Read) || (f.unread && m.Read) {
		return false
	}
	has := func(t string) bool {
		for _, x := range m.Tags {
			if strings.EqualFold(x, t) {
				return true
			}
		}
		return false
	}
	for _, t := range f.tags {
		if !has(t) {
			return false
		}
	}
	for _, t := range f.notTags {
		if has(t) {
			return false
		}
	}
	return true
}

// maxScan bounds how many records one search reads.
const maxScan = 20000

// search runs a query over the capture message records, newest first,
// and returns the kept messages from start to start+limit, with the number
// that matched (up to maxScan records read).
func (a *API) search(ctx context.Context, q string, f mpFilter, start, limit int) ([]store.RawMeta, int64, error) {
	pq, err := query.Parse(q, a.opts.Now())
	if err != nil {
		return nil, 0, err
	}
	var out []store.RawMeta
	var matched int64
	cursor := ""
	for scanned := 0; scanned < maxScan; {
		res, err := a.st.Search(ctx, pq, store.Page{Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, 0, err
		}
		scanned += len(res.Items)
		qids := make([]string, 0, len(res.Items))
		for _, it := range res.Items {
			qids = append(qids, it.Record.QueueID)
		}
		metas, err := a.cap.Meta(ctx, qids)
		if err != nil {
			return nil, 0, err
		}
		for _, q := range qids {
			m, ok := metas[q]
			if !ok || !f.keep(m) {
				continue
			}
			if matched >= int64(start) && len(out) < limit {
				out = append(out, m)
			}
			matched++
		}
		if res.Next == "" {
			break
		}
		cursor = res.Next
	}
	return out, matched, nil
}

func (a *API) mpSearch(w http.ResponseWriter, r *http.Request) {
	start, limit := paging(r)
	raw := r.URL.Query().Get("query")
	if strings.TrimSpace(raw) == "" {
		writeError(w, http.StatusBadRequest, "query is required")
		return
	}
	q, f := mpQuery(raw)
	metas, matched, err := a.search(r.Context(), q, f, start, limit)
	if err != nil {
		if _, ok := err.(*query.Error); ok {
			writeError(w, http.StatusBadRequest, "search: "+clip(err.Error(), 300))
			return
		}
		a.fail(w, r, err)
		return
	}
	_, total, unread, err := a.cap.List(r.Context(), 0, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mpList(w, r, metas, total, unread, matched, start)
}

// mpID resolves {ID}: a queue ID, or "latest".
func (a *API) mpID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("ID")
	if id == "latest" {
		q, err := a.cap.Latest(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return "", false
		}
		return q, true
	}
	if id == "" || len(id) > 64 {
		writeError(w, http.StatusNotFound, "no such message")
		return "", false
	}
	return id, true
}

func (a *API) mpMessage(w http.ResponseWriter, r *http.Request) {
	qid, ok := a.mpID(w, r)
	if !ok {
		return
	}
	meta, m, ok := a.parsedOrFail(w, r, qid)
	if !ok {
		return
	}
	// Mailpit marks a message read when it is fetched.
	if !meta.Read {
		if _, err := a.cap.SetRead(r.Context(), true, qid); err != nil {
			a.log.Warn("capture api: mark read", "err", err)
		}
	}
	out := MPMessage{ID: qid, MessageID: strings.Trim(m.MessageID, "<>"), From: m.From, To: addrs(m.To), Cc: addrs(m.Cc),
		Bcc: addrs(m.Bcc), ReplyTo: addrs(m.ReplyTo), ReturnPath: strings.Trim(m.ReturnPath, "<>"), Subject: m.Subject,
		Date: m.Date, Tags: nonNil(meta.Tags), Text: m.Text, HTML: m.HTML, Size: meta.Size,
		Inline: summaries(m.Inline), Attachments: summaries(m.Attachments)}
	if out.From == nil {
		out.From = &MPAddress{}
	}
	if out.Date.IsZero() {
		out.Date = meta.Time
	}
	if it, ok := a.captureRecord(r.Context(), qid); ok {
		out.Username = it.Record.Username
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) mpHeaders(w http.ResponseWriter, r *http.Request) {
	qid, ok := a.mpID(w, r)
	if !ok {
		return
	}
	_, m, ok := a.parsedOrFail(w, r, qid)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, m.HeaderMap())
}

func (a *API) mpRaw(w http.ResponseWriter, r *http.Request) {
	qid, ok := a.mpID(w, r)
	if !ok {
		return
	}
	// Mailpit answers text/plain; the bytes are exact.
	a.serveRaw(w, r, qid, "text/plain; charset=utf-8")
}

func (a *API) mpPart(w http.ResponseWriter, r *http.Request) {
	qid, ok := a.mpID(w, r)
	if !ok {
		return
	}
	a.servePart(w, r, qid, r.PathValue("PartID"))
}

// mpDelete deletes the messages of {"IDs": [...]}, or all of them when the
// body is empty or has no IDs.
func (a *API) mpDelete(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs []string `json:"IDs"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	var n int64
	var err error
	if len(body.IDs) == 0 {
		n, err = a.cap.DeleteAll(r.Context())
		a.forget(n)
	} else {
		n, err = a.cap.Delete(r.Context(), body.IDs...)
		a.forget(n, body.IDs...)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}

func (a *API) mpInfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	metas, total, unread, err := a.cap.List(ctx, 0, maxScan)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	size, err := a.st.Size(ctx)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	tags := map[string]int64{}
	for _, m := range metas {
		for _, t := range m.Tags {
			tags[t]++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a.mu.Lock()
	deleted, accepted, acceptedSize := a.deleted, a.accepted, a.keptBytes
	a.mu.Unlock()
	v := a.opts.Version
	if v == "" {
		v = "smtplog"
	}
	writeJSON(w, http.StatusOK, MPInfo{Version: v, LatestVersion: v, Database: "smtplog", DatabaseSize: size,
		Messages: total, Unread: unread, Tags: tags, RuntimeStats: MPRuntimeStats{
			Uptime: int64(a.opts.Now().Sub(a.start).Seconds()), Memory: ms.Sys, MessagesDeleted: deleted,
			SMTPAccepted: accepted, SMTPAcceptedSize: acceptedSize}})
}

// validUTF8 replaces invalid UTF-8 (MailHog's JSON strings carry the
// message bytes).
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}
