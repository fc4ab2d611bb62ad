package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtplog/smtplog/internal/testenv"
)

const (
	adminPass  = "correct horse battery staple"
	readerPass = "reader-secret-1"
	adminToken = "tok-admin-0123456789abcdef"
	readToken  = "tok-read-0123456789abcdef"
)

// testAuth returns credentials: users admin and reader, tokens for both roles.
func testAuth(t testing.TB) *Auth {
	t.Helper()
	hash := func(p string) string {
		b, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// htpasswd -B writes $2y$; bcrypt treats it as $2b$.
		return strings.Replace(string(b), "$2a$", "$2y$", 1)
	}
	users, err := ParsePasswordFile(strings.NewReader(fmt.Sprintf(
		"# users\nadmin:%s:admin\n\nreader:%s:read\n", hash(adminPass), hash(readerPass))))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tokens, err := ParseTokenFile(strings.NewReader(fmt.Sprintf("%s admin ci\n%s read dashboard\n", sum(adminToken), sum(readToken))))
	if err != nil {
		t.Fatal(err)
	}
	return NewAuth(users, tokens)
}

// routeTable is every route with a request that reaches it.
var routeTable = []req{
	{path: "/"}, {path: "/live"}, {path: "/search?q=x"}, {path: "/messages/1"}, {path: "/sessions/S"},
	{path: "/trace/x"}, {path: "/assets/app.js"}, {path: "/assets/style.css"},
	{path: "/api/ready"}, {path: "/api/search?q=status:sent"}, {path: "/api/messages/1"},
	{path: "/api/sessions/S"}, {path: "/api/trace/x"}, {path: "/api/stats"}, {path: "/api/stream"},
	{method: "POST", path: "/api/prune", body: `{"before":"-400d"}`, header: map[string]string{"Content-Type": "application/json"}},
	{method: "DELETE", path: "/api/messages/1"}, {path: "/api/nope"}, {path: "/nope"},
}

func basic(user, pass string) map[string]string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return map[string]string{"Authorization": r.Header.Get("Authorization")}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func withHeader(r req, hdr map[string]string) req {
	m := map[string]string{}
	for k, v := range r.header {
		m[k] = v
	}
	for k, v := range hdr {
		m[k] = v
	}
	r.header = m
	return r
}

func checkSecurityHeaders(t *testing.T, name string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", name, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("%s: CSP allows unsafe sources: %q", name, csp)
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if h.Get(k) != v {
			t.Errorf("%s: %s is %q, want %q", name, k, h.Get(k), v)
		}
	}
}

func TestAuthOnEveryRoute(t *testing.T) {
	st := openStore(t, known())
	h := newHandler(t, Config{Store: st, Auth: testAuth(t), Hub: NewHub(HubOptions{})})
	clients := 0
	for _, r := range routeTable {
		name := r.method + " " + r.path
		for cname, hdr := range map[string]map[string]string{
			"none":          nil,
			"bad password":  basic("admin", "wrong"),
			"unknown user":  basic("nobody", adminPass),
			"empty user":    basic("", ""),
			"bad token":     bearer("tok-nope"),
			"basic garbage": {"Authorization": "Basic !!!"},
			"token as pass": basic("admin", adminToken),
		} {
			clients++ // one address each, below the failed-login limit
			rq := withHeader(r, hdr)
			rq.remote = fmt.Sprintf("198.51.100.%d:1234", clients%250)
			w := do(t, h, rq)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d, want 401", name, cname, w.Code)
			}
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("%s: no basic challenge", name)
			}
			if strings.Contains(w.Body.String(), adminPass) || strings.Contains(w.Body.String(), "$2") {
				t.Errorf("%s: the answer shows a secret", name)
			}
			checkSecurityHeaders(t, name+" "+cname, w.Header())
		}
		safe := r.method == "" || r.method == "GET"
		for cname, hdr := range map[string]map[string]string{
			"reader": basic("reader", readerPass), "read token": bearer(readToken),
		} {
			if r.path == "/api/stream" {
				continue // checked in TestStream; here it would not end
			}
			w := do(t, h, withHeader(r, hdr))
			if safe && (w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden) {
				t.Errorf("%s as %s: %d", name, cname, w.Code)
			}
			if !safe && w.Code != http.StatusForbidden {
				t.Errorf("%s as %s: %d, want 403", name, cname, w.Code)
			}
			checkSecurityHeaders(t, name+" "+cname, w.Header())
		}
		if r.path == "/api/stream" {
			continue
		}
		for cname, hdr := range map[string]map[string]string{"admin": basic("admin", adminPass), "admin token": bearer(adminToken)} {
			if w := do(t, h, withHeader(r, hdr)); w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
				t.Errorf("%s as %s: %d %s", name, cname, w.Code, w.Body)
			}
		}
	}
	// Health stays open for probes; nothing else does.
	if w := do(t, h, req{path: "/api/health"}); w.Code != http.StatusOK {
		t.Errorf("health without credentials: %d", w.Code)
	}
	// The Host check is off with credentials and no allow list.
	if w := do(t, h, req{path: "/api/stats", host: "smtplog.example:8025", header: bearer(readToken)}); w.Code != http.StatusOK {
		t.Errorf("named host with credentials: %d", w.Code)
	}
}

func TestFailedLoginThrottle(t *testing.T) {
	auth := testAuth(t)
	now := base
	auth.now = func() time.Time { return now }
	h := newHandler(t, Config{Store: openStore(t), Auth: auth})
	const attacker, other = "203.0.113.9:5555", "203.0.113.10:5555"
	// A browser's first request without credentials does not count.
	for range 20 {
		do(t, h, req{path: "/api/stats", remote: attacker})
	}
	for i := range MaxFailures {
		if w := do(t, h, req{path: "/api/stats", remote: attacker, header: basic("admin", fmt.Sprint("guess", i))}); w.Code != 401 {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	w := do(t, h, req{path: "/api/stats", remote: attacker, header: basic("admin", adminPass)})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("after %d failures: %d, Retry-After %q", MaxFailures, w.Code, w.Header().Get("Retry-After"))
	}
	if w := do(t, h, req{path: "/api/stats", remote: other, header: basic("admin", adminPass)}); w.Code != 200 {
		t.Errorf("another client: %d", w.Code)
	}
	now = now.Add(FailureWindow + time.Second)
	if w := do(t, h, req{path: "/api/stats", remote: attacker, header: basic("admin", adminPass)}); w.Code != 200 {
		t.Errorf("after the window: %d", w.Code)
	}
}

func TestOpenLoopbackHostAndOrigin(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t, known()), Hub: NewHub(HubOptions{}), AllowedHosts: []string{"mail-ui.internal"}})
	for _, r := range routeTable {
		if r.path == "/api/stream" {
			continue
		}
		w := do(t, h, r)
		checkSecurityHeaders(t, r.method+" "+r.path, w.Header())
		if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
			t.Errorf("%s %s on loopback without credentials: %d", r.method, r.path, w.Code)
		}
	}
	// DNS rebinding: a foreign Host is refused on every route.
	for host, code := range map[string]int{
		"evil.test": 403, "evil.test:8025": 403, "127.0.0.1.evil.test": 403, "": 403,
		"localhost:8025": 200, "[::1]:8025": 200, "127.0.0.2": 200, "mail-ui.internal:8025": 200, "app.localhost": 200,
	} {
		for _, r := range []req{{path: "/api/search"}, {path: "/"}} {
			r.host = host
			if host == "" {
				r.host = " "
			}
			if w := do(t, h, r); w.Code != code {
				t.Errorf("Host %q %s: %d, want %d", host, r.path, w.Code, code)
			}
		}
	}
	js := map[string]string{"Content-Type": "application/json"}
	prune := req{method: "POST", path: "/api/prune", body: `{"before":"-400d"}`, header: js}
	for name, c := range map[string]struct {
		hdr  map[string]string
		code int
	}{
		"no origin (curl)":      {nil, 200},
		"same origin":           {map[string]string{"Origin": "http://127.0.0.1:8025", "Sec-Fetch-Site": "same-origin"}, 200},
		"foreign origin":        {map[string]string{"Origin": "http://evil.test"}, 403},
		"other port":            {map[string]string{"Origin": "http://127.0.0.1:9999"}, 403},
		"https origin":          {map[string]string{"Origin": "https://127.0.0.1:8025"}, 403},
		"null origin":           {map[string]string{"Origin": "null"}, 403},
		"cross-site fetch meta": {map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		"same-site fetch meta":  {map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
	} {
		if w := do(t, h, withHeader(prune, c.hdr)); w.Code != c.code {
			t.Errorf("POST, %s: %d %s, want %d", name, w.Code, w.Body, c.code)
		}
		if c.code == 403 {
			if w := do(t, h, withHeader(req{path: "/api/stream"}, c.hdr)); w.Code != 403 {
				t.Errorf("stream, %s: %d, want 403", name, w.Code)
			}
		}
	}
	// CSRF with a form-encodable body: refused for its content type even
	// without Origin.
	if w := do(t, h, req{method: "POST", path: "/api/prune", body: `{"before":"-400d"}`, header: map[string]string{"Content-Type": "text/plain"}}); w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %d", w.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	h := newHandler(t, Config{Store: openStore(t), MaxBody: 1 << 10})
	js := map[string]string{"Content-Type": "application/json"}
	big := `{"before":"` + strings.Repeat("1", 2000) + `"}`
	if w := do(t, h, req{method: "POST", path: "/api/prune", body: big, header: js}); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("with Content-Length: %d %s", w.Code, w.Body)
	}
	// Without Content-Length (chunked), MaxBytesReader stops the read.
	hr, _ := http.NewRequest("POST", "/api/prune", io.MultiReader(strings.NewReader(big)))
	hr.Host = "127.0.0.1"
	hr.ContentLength = -1
	hr.Header.Set("Content-Type", "application/json")
	w := &respRecorder{header: http.Header{}}
	h.ServeHTTP(w, hr)
	if w.code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: %d %s", w.code, w.body.String())
	}
}

type respRecorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *respRecorder) Header() http.Header { return r.header }
func (r *respRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *respRecorder) WriteHeader(c int) { r.code = c }

func TestCheckBind(t *testing.T) {
	auth := testAuth(t)
	for _, tc := range []struct {
		addr string
		open bool // may run without credentials
	}{
		{"127.0.0.1:8025", true}, {"127.0.0.2:8025", true}, {"[::1]:8025", true}, {"[::ffff:127.0.0.1]:80", true},
		{"0.0.0.0:8025", false}, {"[::]:8025", false}, {"192.0.2.1:8025", false}, {"[2001:db8::1]:8025", false},
		{"10.0.0.1:80", false},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		addr := net.TCPAddrFromAddrPort(ap)
		err := CheckBind(addr, nil)
		if (err == nil) != tc.open {
			t.Errorf("%s without credentials: %v", tc.addr, err)
		}
		if err != nil && (!errors.Is(err, ErrExposedWithoutCredentials) || !strings.Contains(err.Error(), "password file")) {
			t.Errorf("%s: error does not say what to fix: %v", tc.addr, err)
		}
		if err := CheckBind(addr, auth); err != nil {
			t.Errorf("%s with credentials: %v", tc.addr, err)
		}
		if err := CheckBind(addr, NewAuth(nil, nil)); (err == nil) != tc.open {
			t.Errorf("%s with empty credentials: %v", tc.addr, err)
		}
	}
}

// TestServerExposed serves on 127.0.0.2, treated as a non-loopback
// address: without credentials the server refuses to start; with them,
// every request needs them, over HTTPS.
func TestServerExposed(t *testing.T) {
	st := openStore(t, known())
	exposed := []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		testenv.Unavailable(t, "cannot listen on 127.0.0.2: %v", err)
	}
	s, err := NewServer(Config{Store: st, exposedForTest: exposed})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrExposedWithoutCredentials) {
		t.Fatalf("Serve without credentials: %v", err)
	}

	ca := testenv.NewCA(t)
	certFile, keyFile, _ := ca.Leaf(t, "127.0.0.2", "localhost")
	s, err = NewServer(Config{Store: st, Auth: testAuth(t), exposedForTest: exposed, Addr: "127.0.0.2:0",
		TLSCertFile: certFile, TLSKeyFile: keyFile, Hub: NewHub(HubOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	l, err = net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("127.0.0.2")}, Timeout: 10 * time.Second}
	base := "https://" + l.Addr().String()
	get := func(path string, hdr map[string]string) *http.Response {
		r, _ := http.NewRequest("GET", base+path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get("/api/search", nil); resp.StatusCode != 401 {
		t.Errorf("no credentials: %d", resp.StatusCode)
	}
	if resp := get("/", nil); resp.StatusCode != 401 {
		t.Errorf("UI without credentials: %d", resp.StatusCode)
	}
	resp := get("/api/search", basic("reader", readerPass))
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" || resp.TLS == nil {
		t.Errorf("reader over HTTPS: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp := get("/api/stats", bearer(adminToken)); resp.StatusCode != 200 {
		t.Errorf("token: %d", resp.StatusCode)
	}
	// Plain HTTP on the HTTPS port gets nowhere.
	if r, err := http.Get("http://" + l.Addr().String() + "/api/health"); err == nil {
		if r.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the HTTPS listener")
		}
		r.Body.Close()
	}
	// A live stream does not hold up Shutdown.
	sr, _ := http.NewRequest("GET", base+"/api/stream", nil)
	sr.SetBasicAuth("reader", readerPass)
	stream, err := client.Do(sr)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	defer stream.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with a live stream open: %v", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

func TestServerRun(t *testing.T) {
	s, err := NewServer(Config{Store: openStore(t), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for s.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/api/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", err, resp)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// The default address is loopback, and an exposed one is refused.
	if _, err := NewServer(Config{Store: openStore(t), TLSCertFile: "x"}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
	s, _ = NewServer(Config{Store: openStore(t), Addr: "0.0.0.0:0"})
	if err := s.ListenAndServe(); !errors.Is(err, ErrExposedWithoutCredentials) {
		t.Errorf("0.0.0.0 without credentials: %v", err)
	}
}

func TestCredentialFiles(t *testing.T) {
	secretHash := "$2y$10$abcdefghijklmnopqrstuuZqvCwZGyPPvKcaw8ZRyJhO2ggbQrCIi"
	for _, bad := range []string{
		"admin:" + secretHash,                                   // no role
		"admin:" + secretHash + ":root",                         // unknown role
		"admin:plaintext-password:admin",                        // not bcrypt
		":" + secretHash + ":read",                              // no user
		"a:" + secretHash + ":read\na:" + secretHash + ":admin", // twice
	} {
		_, err := ParsePasswordFile(strings.NewReader(bad))
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "$2y$10$abc") || strings.Contains(err.Error(), "plaintext-password") {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	for _, bad := range []string{"abc read", strings.Repeat("ab", 32) + " root", strings.Repeat("zz", 32) + " read", "x"} {
		if _, err := ParseTokenFile(strings.NewReader(bad)); err == nil {
			t.Errorf("token line %q accepted", bad)
		}
	}
	if _, err := LoadAuth(t.TempDir()+"/missing", ""); err == nil {
		t.Error("a missing password file was accepted")
	}
}
