// Package web serves smtplog's HTTP API (docs/api.md), the live stream of
// new records (Server-Sent Events, https://html.spec.whatwg.org/multipage/server-sent-events.html),
// and the embedded web UI, behind access control.
//
// Access control, in the order a request meets it:
//
//  1. Every response carries a strict Content-Security-Policy, nosniff,
//     Referrer-Policy no-referrer, X-Frame-Options DENY and no-store caching.
//  2. Host: when no credentials are configured (loopback only), the Host
//     header must name a loopback address, localhost, or one of
//     Config.AllowedHosts (DNS rebinding); with credentials, only when
//     AllowedHosts is set.
//  3. Credentials: when any are configured, every request needs HTTP basic
//     auth (bcrypt password file) or a bearer token (RFC 6750), except
//     GET /api/health; 401 otherwise, and 429 for a client address with
//     MaxFailures failed checks within FailureWindow. Without credentials
//     every client is admin, which the Server allows only on a loopback bind.
//  4. Role: requests other than GET, HEAD and OPTIONS need role admin; 403.
//  5. Origin: state-changing requests and the live stream are refused (403)
//     when the browser says they come from another origin (Sec-Fetch-Site
//     or an Origin other than the request's own); clients that send neither
//     (curl, scripts) pass.
//  6. Bodies: at most Config.MaxBody bytes (413), JSON only (415).
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtplog/smtplog/internal/query"
	"github.com/smtplog/smtplog/internal/store"
	"github.com/smtplog/smtplog/internal/trace"
)

// Store is what the API reads from the record store; *store.Store
// implements it.
type Store interface {
	Search(ctx context.Context, q *query.Query, page store.Page) (store.Result, error)
	Message(ctx context.Context, id int64) (store.Item, error)
	Session(ctx context.Context, sessionID string) ([]store.Item, error)
	Stats(ctx context.Context, from, to time.Time, bucket time.Duration) (*store.Stats, error)
}

// Pruner is the optional ability behind POST /api/prune; *store.Store has it.
type Pruner interface {
	Prune(ctx context.Context, olderThan time.Time, maxBytes int64) (store.PruneResult, error)
}

var (
	_ Store  = (*store.Store)(nil)
	_ Pruner = (*store.Store)(nil)
)

// Tracer joins everything known about one message (package trace). The
// result is encoded as JSON as it is; see docs/api.md for its shape. An
// error wrapping ErrNotFound or store.ErrNotFound answers 404.
type Tracer interface {
	Trace(ctx context.Context, id string) (any, error)
}

// TracerFunc adapts a function to Tracer, e.g.
//
//	web.TracerFunc(func(ctx context.Context, id string) (any, error) { return trace.Build(ctx, st, id) })
type TracerFunc func(ctx context.Context, id string) (any, error)

// Trace calls f.
func (f TracerFunc) Trace(ctx context.Context, id string) (any, error) { return f(ctx, id) }

// ErrNotFound may be wrapped by a Tracer for an unknown ID (as may
// store.ErrNotFound and trace.ErrNotFound).
var ErrNotFound = errors.New("not found")

// BuildTracer is the Tracer of package trace over src (the store).
func BuildTracer(src trace.Source) Tracer {
	return TracerFunc(func(ctx context.Context, id string) (any, error) { return trace.Build(ctx, src, id) })
}

// Check is a readiness check: nil when the part it checks is ready.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Route mounts another handler (capture mode's endpoints) behind the same
// access control: Pattern is a net/http ServeMux pattern.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Config configures the handler and the Server.
type Config struct {
	Store  Store  // required
	Tracer Tracer // nil: /api/trace answers 501
	Hub    *Hub   // nil: /api/stream answers 501
	Auth   *Auth  // nil or empty: no credentials (loopback binds only)
	Logger *slog.Logger
	Ready  []Check // all nil: /api/ready answers 200
	Routes []Route

	// AllowedHosts are further Host header values (host or host:port)
	// accepted besides loopback addresses and localhost.
	AllowedHosts []string
	MaxBody      int64         // request body limit; default 1 MiB
	Keepalive    time.Duration // SSE keep-alive comment interval; default 15s
	Now          func() time.Time

	// Server only.
	Addr        string // default 127.0.0.1:8025
	TLSCertFile string // HTTPS when both are set
	TLSKeyFile  string

	// exposedForTest makes the Server treat these loopback addresses as
	// non-loopback, so that the refusal to start can be tested on loopback.
	exposedForTest []netip.Addr
}

// DefaultAddr is where the UI and API listen by default.
const DefaultAddr = "127.0.0.1:8025"

func (c *Config) defaults() error {
	if c.Store == nil {
		return errors.New("web: no store configured")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.Keepalive <= 0 {
		c.Keepalive = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("web: HTTPS needs both a certificate and a key file")
	}
	return nil
}

// Handler is the API, the stream and the UI behind access control.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	hosts map[string]bool // lower-case allowed Host values (with and without port)
	stop  chan struct{}   // closed by Close: live streams end
	once  sync.Once
}

// New returns the handler for cfg.
func New(cfg Config) (*Handler, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), hosts: map[string]bool{}, stop: make(chan struct{})}
	for _, a := range cfg.AllowedHosts {
		h.hosts[strings.ToLower(a)] = true
	}
	if err := h.routes(); err != nil {
		return nil, fmt.Errorf("web: embedded UI: %w", err)
	}
	for _, r := range cfg.Routes {
		if err := register(h.mux, r.Pattern, r.Handler); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func register(mux *http.ServeMux, pattern string, handler http.Handler) (err error) {
	defer func() { // ServeMux panics on a bad or conflicting pattern
		if p := recover(); p != nil {
			err = fmt.Errorf("web: route %q: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, handler)
	return nil
}

// Close ends the live streams; the Server calls it on Shutdown.
func (h *Handler) Close() {
	h.once.Do(func() { close(h.stop) })
}

// securityHeaders go on every response.
var securityHeaders = [][2]string{
	{"Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; font-src 'self'; object-src 'none'; frame-src 'none'; frame-ancestors 'none'; " +
		"base-uri 'none'; form-action 'self'; require-trusted-types-for 'script'; trusted-types 'none'"},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"},
	{"X-Frame-Options", "DENY"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=()"},
	{"Cache-Control", "no-store"},
}

// ServeHTTP applies access control (see the package documentation) and
// routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	for _, kv := range securityHeaders {
		hdr.Set(kv[0], kv[1])
	}
	if r.TLS != nil {
		hdr.Set("Strict-Transport-Security", "max-age=31536000")
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.cfg.Logger.Error("web: panic", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, "internal error; the server log has the details")
		}
	}()

	open := h.cfg.Auth.Empty()
	if open || len(h.hosts) > 0 {
		if !h.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, "Host "+quoteClip(r.Host)+" is not allowed: use a loopback address or localhost, or add the name to the server's allowed hosts")
			return
		}
	}
	role := RoleAdmin
	if !open && !(r.URL.Path == "/api/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead)) {
		ip := clientIP(r)
		if wait := h.cfg.Auth.throttled(ip); wait > 0 {
			hdr.Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			writeError(w, http.StatusTooManyRequests, "too many failed logins from this address; wait a minute and check the credentials")
			return
		}
		var err error
		role, _, err = h.cfg.Auth.Check(r)
		if err != nil {
			if r.Header.Get("Authorization") != "" { // a browser's first, credential-less request does not count
				h.cfg.Auth.failed(ip)
			}
			hdr.Set("WWW-Authenticate", h.cfg.Auth.challenge())
			writeError(w, http.StatusUnauthorized, "wrong or missing credentials: use HTTP basic auth or an Authorization: Bearer token")
			return
		}
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	if !safe && role < RoleAdmin {
		writeError(w, http.StatusForbidden, r.Method+" needs the admin role; these credentials have role "+role.String())
		return
	}
	if !safe || r.URL.Path == "/api/stream" {
		if msg := crossOrigin(r); msg != "" {
			writeError(w, http.StatusForbidden, msg)
			return
		}
	}
	if !safe {
		if r.ContentLength > h.cfg.MaxBody {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes: send less", h.cfg.MaxBody))
			return
		}
		if r.ContentLength != 0 {
			ct := r.Header.Get("Content-Type")
			if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "send the body as Content-Type: application/json")
				return
			}
		}
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	}
	if r.URL.Path != "/api/stream" {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	h.serveMux(w, r)
}

// writeTimeout bounds writing any answer but the live stream's.
const writeTimeout = 2 * time.Minute

// clientIP is the address of the peer (not of any forwarded-for header,
// which a client can forge).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// hostAllowed reports whether the Host header names this server: a
// loopback address, localhost (or a name under .localhost), or an allowed
// host.
func (h *Handler) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	if h.hosts[host] {
		return true
	}
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
		if h.hosts[name] {
			return true
		}
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(name)
	return err == nil && a.Unmap().IsLoopback()
}

// crossOrigin returns why a request is refused as cross-origin, or "".
// Browsers send Sec-Fetch-Site (and Origin on POST and on EventSource
// requests); non-browser clients send neither and pass.
func crossOrigin(r *http.Request) string {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return "cross-origin request refused: open the UI from this server's own address"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || origin == "null" || !strings.EqualFold(u.Host, r.Host) {
		return "cross-origin request refused: Origin " + quoteClip(origin) + " is not this server"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if u.Scheme != scheme {
		return "cross-origin request refused: Origin " + quoteClip(origin) + " is not this server"
	}
	return ""
}

// quoteClip quotes a client-supplied value for an error message, clipped.
func quoteClip(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// apiError is the body of every error answer.
type apiError struct {
	Error    string `json:"error"`
	Position int    `json:"position,omitempty"` // query errors: 1-based character column
	Offset   *int   `json:"offset,omitempty"`   // query errors: 0-based byte offset
	Token    string `json:"token,omitempty"`    // query errors: the offending token
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
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
