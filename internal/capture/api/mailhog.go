package api

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/smtplog/smtplog/internal/store"
)

// MailHog's API v2 (/api/v2/messages, /api/v2/search), with its JSON names
// and shapes. IDs are capture queue IDs.

// MHPath is MailHog's address (data.Path).
type MHPath struct {
	Relays  []string `json:"Relays"`
	Mailbox string   `json:"Mailbox"`
	Domain  string   `json:"Domain"`
	Params  string   `json:"Params"`
}

// MHContent is MailHog's Content.
type MHContent struct {
	Headers map[string][]string `json:"Headers"`
	Body    string              `json:"Body"`
	Size    int                 `json:"Size"`
	MIME    *MHMIMEBody         `json:"MIME"`
}

// MHMIMEBody is MailHog's MIME: the parts of a top-level multipart.
type MHMIMEBody struct {
	Parts []MHContent `json:"Parts"`
}

// MHRaw is MailHog's SMTPMessage: the envelope and the bytes.
type MHRaw struct {
	From string   `json:"From"`
	To   []string `json:"To"`
	Data string   `json:"Data"`
	Helo string   `json:"Helo"`
}

// MHMessage is MailHog's Message.
type MHMessage struct {
	ID      string      `json:"ID"`
	From    *MHPath     `json:"From"`
	To      []*MHPath   `json:"To"`
	Content MHContent   `json:"Content"`
	Created time.Time   `json:"Created"`
	MIME    *MHMIMEBody `json:"MIME"`
	Raw     *MHRaw      `json:"Raw"`
}

// MHMessages is MailHog's messages result.
type MHMessages struct {
	Total int         `json:"total"`
	Count int         `json:"count"`
	Start int         `json:"start"`
	Items []MHMessage `json:"items"`
}

func mhPath(addr string) *MHPath {
	local, dom, _ := strings.Cut(addr, "@")
	return &MHPath{Relays: nil, Mailbox: local, Domain: dom, Params: ""}
}

// splitHeader splits raw bytes at the blank line after the header.
func splitHeader(raw []byte) (head, body []byte) {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(raw, sep); i >= 0 {
			return raw[:i+len(sep)], raw[i+len(sep):]
		}
	}
	return raw, nil
}

// mhMessage builds one item. The MIME field is built for a top-level
// multipart only: each part's headers and (undecoded) body.
func (a *API) mhMessage(ctx context.Context, m store.RawMeta) (MHMessage, error) {
	_, raw, pm, err := a.parsed(ctx, m.QueueID)
	if err != nil {
		return MHMessage{}, err
	}
	_, body := splitHeader(raw)
	out := MHMessage{ID: m.QueueID, To: []*MHPath{}, Created: m.Time,
		Content: MHContent{Headers: pm.HeaderMap(), Body: validUTF8(body), Size: len(raw)},
		Raw:     &MHRaw{To: []string{}, Data: validUTF8(raw)}}
	if it, ok := a.captureRecord(ctx, m.QueueID); ok {
		rec := it.Record
		if rec.MailFrom != nil {
			out.From = mhPath(*rec.MailFrom)
			out.Raw.From = *rec.MailFrom
		}
		for _, t := range rec.RcptTo {
			out.To = append(out.To, mhPath(t))
			out.Raw.To = append(out.Raw.To, t)
		}
		out.Raw.Helo = rec.Helo
	}
	if out.From == nil {
		out.From = mhPath("")
	}
	if mime := mhMIME(pm.Values("Content-Type"), body); mime != nil {
		out.MIME, out.Content.MIME = mime, mime
	}
	return out, nil
}

// mhMIME splits a multipart body at its boundary, as MailHog does.
func mhMIME(ctype []string, body []byte) *MHMIMEBody {
	if len(ctype) == 0 || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ctype[0])), "multipart/") {
		return nil
	}
	_, params, _ := strings.Cut(ctype[0], "boundary=")
	b := strings.Trim(strings.TrimSpace(strings.SplitN(params, ";", 2)[0]), `"`)
	if b == "" {
		return nil
	}
	delim := []byte("--" + b)
	chunks := bytes.Split(body, delim)
	if len(chunks) < 3 {
		return nil
	}
	mime := &MHMIMEBody{Parts: []MHContent{}}
	for _, c := range chunks[1 : len(chunks)-1] {
		c = bytes.TrimPrefix(bytes.TrimPrefix(c, []byte("\r\n")), []byte("\n"))
		head, pbody := splitHeader(c)
		hm := map[string][]string{}
		for _, line := range strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n") {
			if line == "" {
				continue
			}
			if line[0] == ' ' || line[0] == '\t' {
				continue // folded continuation: MailHog keeps only the first line too
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				hm[k] = append(hm[k], strings.TrimSpace(v))
			}
		}
		mime.Parts = append(mime.Parts, MHContent{Headers: hm, Body: validUTF8(pbody), Size: len(c)})
	}
	return mime
}

func (a *API) mhList(w http.ResponseWriter, r *http.Request, metas []store.RawMeta, total int64, start int) {
	res := MHMessages{Total: int(total), Start: start, Items: []MHMessage{}}
	for _, m := range metas {
		it, err := a.mhMessage(r.Context(), m)
		if err != nil {
			continue // deleted meanwhile
		}
		res.Items = append(res.Items, it)
	}
	res.Count = len(res.Items)
	writeJSON(w, http.StatusOK, res)
}

// mhPaging reads MailHog's start and limit (default 50, at most 250:
// items carry whole messages).
func mhPaging(r *http.Request) (int, int) {
	start, limit := paging(r)
	return start, min(limit, 250)
}

func (a *API) mhMessages(w http.ResponseWriter, r *http.Request) {
	start, limit := mhPaging(r)
	metas, total, _, err := a.cap.List(r.Context(), start, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.mhList(w, r, metas, total, start)
}

// mhSearch: kind is from (envelope sender), to (envelope recipients) or
// containing (free text: subject and reply texts).
func (a *API) mhSearch(w http.ResponseWriter, r *http.Request) {
	start, limit := mhPaging(r)
	kind, text := r.URL.Query().Get("kind"), strings.TrimSpace(r.URL.Query().Get("query"))
	if text == "" {
		writeError(w, http.StatusBadRequest, "query is required")
		return
	}
	q := "type:message source:capture "
	switch kind {
	case "from":
		q += quoteTerm("from:", text)
	case "to":
		q += quoteTerm("to:", text)
	case "containing":
		q += quoteTerm("", text)
	default:
		writeError(w, http.StatusBadRequest, "kind must be from, to or containing")
		return
	}
	metas, matched, err := a.search(r.Context(), q, mpFilter{}, start, limit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "search: "+clip(err.Error(), 300))
		return
	}
	a.mhList(w, r, metas, matched, start)
}
