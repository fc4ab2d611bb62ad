package web

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestAssetsStatic guards the UI's safety rules in its source: no HTML
// string sinks, no inline script or style, nothing loaded from elsewhere.
func TestAssetsStatic(t *testing.T) {
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function|srcdoc|setTimeout\(\s*['"]`)
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		src := string(b)
		if strings.HasSuffix(path, ".js") {
			// Comments may name the sinks; code may not.
			code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(src, "")
			if m := sinks.FindString(code); m != "" {
				t.Errorf("%s uses %q", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") {
			if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).MatchString(src) || strings.Contains(src, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(src) {
				t.Errorf("%s has inline script, style or event handlers", path)
			}
		}
		if m := external.FindString(src); m != "" && !strings.Contains(m, "www.w3.org") {
			t.Errorf("%s loads from elsewhere: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAssetsServed(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t)})
	for path, ct := range map[string]string{
		"/":                   "text/html; charset=utf-8",
		"/live":               "text/html; charset=utf-8",
		"/dashboard":          "text/html; charset=utf-8",
		"/messages/12":        "text/html; charset=utf-8",
		"/assets/app.js":      "text/javascript; charset=utf-8",
		"/assets/style.css":   "text/css; charset=utf-8",
		"/assets/favicon.svg": "image/svg+xml",
	} {
		w := do(t, h, req{path: path})
		if w.Code != 200 || w.Header().Get("Content-Type") != ct {
			t.Errorf("%s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, path := range []string{"/assets/index.html", "/assets/nope.js", "/assets/../web.go", "/assets/%2e%2e%2fweb.go"} {
		if w := do(t, h, req{path: path}); w.Code == 200 {
			t.Errorf("%s: served", path)
		}
	}
}

// TestMountedRoutesAndPanics: routes mounted through Config.Routes sit
// behind the same access control, and a panic answers 500 without details.
func TestMountedRoutesAndPanics(t *testing.T) {
	mounted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("panic") != "" {
			panic("secret internal state")
		}
		writeJSON(w, 200, map[string]string{"ok": "yes"})
	})
	h := newHandler(t, Config{Store: openStore(t), Auth: testAuth(t), Routes: []Route{
		{Pattern: "GET /api/v1/messages", Handler: mounted},
		{Pattern: "DELETE /api/v1/messages", Handler: mounted},
	}})
	if w := do(t, h, req{path: "/api/v1/messages"}); w.Code != 401 {
		t.Errorf("mounted route without credentials: %d", w.Code)
	}
	if w := do(t, h, req{path: "/api/v1/messages", header: bearer(readToken)}); w.Code != 200 {
		t.Errorf("mounted route as reader: %d", w.Code)
	}
	if w := do(t, h, req{method: "DELETE", path: "/api/v1/messages", header: bearer(readToken)}); w.Code != 403 {
		t.Errorf("mounted DELETE as reader: %d", w.Code)
	}
	if w := do(t, h, req{method: "DELETE", path: "/api/v1/messages", header: bearer(adminToken)}); w.Code != 200 {
		t.Errorf("mounted DELETE as admin: %d", w.Code)
	}
	w := do(t, h, req{path: "/api/v1/messages?panic=1", header: bearer(readToken)})
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") || w.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("panic: %d %s", w.Code, w.Body)
	}
	if _, err := New(Config{Store: openStore(t), Routes: []Route{{Pattern: "GET /api/search", Handler: mounted}}}); err == nil {
		t.Error("a conflicting route was accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("a config without a store was accepted")
	}
}
