package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// The UI is plain HTML, CSS and JavaScript: no build step, no CDN. Every
// value from mail is put into the page with textContent or as an
// attribute value through the DOM, never parsed as HTML; the
// Content-Security-Policy allows scripts from this server only and
// requires Trusted Types, so an HTML string sink would throw.
//
//go:embed assets
var assets embed.FS

// assetTypes are the content types of the embedded assets, by extension
// (not the system's MIME table, which differs between machines).
var assetTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
	".txt": "text/plain; charset=utf-8",
}

// pageCSP is the policy of the UI's pages: that of every response, except
// that frames from this server are allowed, for a captured message's
// sanitised HTML (which its own answer sandboxes).
var pageCSP = strings.Replace(securityHeaders[0][1], "frame-src 'none'", "frame-src 'self'", 1)

func (h *Handler) uiRoutes() error {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return err
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return err
	}
	page := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", pageCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	}
	for _, p := range []string{"GET /{$}", "GET /dashboard", "GET /live", "GET /search", "GET /messages/{id}", "GET /sessions/{id}", "GET /trace/{id...}"} {
		h.mux.HandleFunc(p, page)
	}
	h.mux.HandleFunc("GET /assets/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		b, err := fs.ReadFile(sub, name)
		ct := assetTypes[path.Ext(name)]
		if err != nil || name == "index.html" || ct == "" {
			writeError(w, http.StatusNotFound, "no such asset")
			return
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(b)
	})
	return nil
}
