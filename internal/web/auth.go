package web

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an authenticated client may do.
type Role int

const (
	RoleNone  Role = iota // not authenticated
	RoleRead              // GET and HEAD: the UI, search, trace, stats, the live stream
	RoleAdmin             // everything, including state-changing requests (POST, PUT, PATCH, DELETE)
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads "read" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: use read or admin", s)
}

// User is one line of a password file: "name:$2y$...:role".
type User struct {
	Name string
	Hash []byte // bcrypt
	Role Role
}

// Token is one line of a token file: "sha256-hex-of-token role name".
type Token struct {
	SHA256 [sha256.Size]byte
	Role   Role
	Name   string
}

// ParsePasswordFile reads lines "user:bcrypt-hash:role" (as written by
// htpasswd -B, with ":role" appended). Empty lines and lines starting
// with "#" are skipped. Errors name the line, never its content.
func ParsePasswordFile(r io.Reader) ([]User, error) {
	var users []User
	seen := map[string]bool{}
	err := eachLine(r, func(n int, line string) error {
		name, rest, ok1 := strings.Cut(line, ":")
		i := strings.LastIndexByte(rest, ':')
		if !ok1 || i < 0 || name == "" {
			return fmt.Errorf("line %d: want user:bcrypt-hash:role", n)
		}
		hash, roleText := rest[:i], rest[i+1:]
		role, err := ParseRole(roleText)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("line %d: the password hash is not bcrypt ($2a$, $2b$ or $2y$); make one with htpasswd -nB USER", n)
		}
		if seen[name] {
			return fmt.Errorf("line %d: user %q appears twice", n, name)
		}
		seen[name] = true
		users = append(users, User{Name: name, Hash: []byte(hash), Role: role})
		return nil
	})
	return users, err
}

// ParseTokenFile reads lines "sha256-hex-of-token role name"; the token
// itself is never stored. Make a line with:
//
//	tok=$(openssl rand -hex 32); printf '%s admin ci\n' "$(printf %s "$tok" | sha256sum | cut -d' ' -f1)"
func ParseTokenFile(r io.Reader) ([]Token, error) {
	var tokens []Token
	err := eachLine(r, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return fmt.Errorf("line %d: want sha256-hex-of-token role [name]", n)
		}
		var t Token
		b, err := hex.DecodeString(f[0])
		if err != nil || len(b) != sha256.Size {
			return fmt.Errorf("line %d: the first field must be the 64 hex digits of the token's SHA-256", n)
		}
		copy(t.SHA256[:], b)
		if t.Role, err = ParseRole(f[1]); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if len(f) == 3 {
			t.Name = f[2]
		}
		tokens = append(tokens, t)
		return nil
	})
	return tokens, err
}

func eachLine(r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// LoadAuth reads a password file and a token file; either name may be "".
func LoadAuth(passwordFile, tokenFile string) (*Auth, error) {
	var users []User
	var tokens []Token
	if passwordFile != "" {
		f, err := os.Open(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("web: password file: %w", err)
		}
		users, err = ParsePasswordFile(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("web: password file %s: %w", passwordFile, err)
		}
	}
	if tokenFile != "" {
		f, err := os.Open(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("web: token file: %w", err)
		}
		tokens, err = ParseTokenFile(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("web: token file %s: %w", tokenFile, err)
		}
	}
	return NewAuth(users, tokens), nil
}

// Auth checks credentials: HTTP basic auth against bcrypt hashes, and
// bearer tokens against their SHA-256. A successful basic-auth check is
// remembered for a few minutes under a keyed hash of the name and password,
// so the UI's many requests do not each pay for bcrypt; failed checks are
// not remembered, and at most a few bcrypt comparisons run at once.
type Auth struct {
	users  map[string]User
	tokens map[[sha256.Size]byte]Token
	dummy  []byte // compared against for unknown users, so they take as long

	key   [32]byte // for the cache's keyed hashes
	slots chan struct{}
	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
	fails map[string]*failures // by client IP
	now   func() time.Time
}

// failures counts one client's failed checks in the current window.
type failures struct {
	n     int
	since time.Time
}

// Failed-login throttling: after MaxFailures failed checks from one client
// address within FailureWindow, its requests answer 429 until the window
// ends. (Behind a reverse proxy every client shares the proxy's address.)
const (
	MaxFailures   = 10
	FailureWindow = time.Minute
	maxFailIPs    = 4096
)

type cached struct {
	role    Role
	expires time.Time
}

const (
	authCacheTTL  = 5 * time.Minute
	authCacheMax  = 1024
	bcryptAtOnce  = 4
	maxCredential = 1024 // bytes of a user name, password or token
)

// NewAuth returns an Auth for these users and tokens.
func NewAuth(users []User, tokens []Token) *Auth {
	a := &Auth{
		users:  make(map[string]User, len(users)),
		tokens: make(map[[sha256.Size]byte]Token, len(tokens)),
		slots:  make(chan struct{}, bcryptAtOnce),
		cache:  map[[sha256.Size]byte]cached{},
		fails:  map[string]*failures{},
		now:    time.Now,
	}
	for _, u := range users {
		a.users[u.Name] = u
	}
	for _, t := range tokens {
		a.tokens[t.SHA256] = t
	}
	_, _ = rand.Read(a.key[:])
	a.dummy, _ = bcrypt.GenerateFromPassword(a.key[:16], bcrypt.DefaultCost)
	return a
}

// Empty reports whether no credential is configured.
func (a *Auth) Empty() bool {
	return a == nil || len(a.users) == 0 && len(a.tokens) == 0
}

// errBadCredentials is the one answer to every failed check: it does not say
// whether the user exists.
var errBadCredentials = errors.New("wrong or missing credentials")

// Check authenticates a request; who is the user or token name.
func (a *Auth) Check(r *http.Request) (role Role, who string, err error) {
	if a.Empty() {
		return RoleNone, "", errBadCredentials
	}
	h := r.Header.Get("Authorization")
	if len(h) > 2*maxCredential {
		return RoleNone, "", errBadCredentials
	}
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		t, ok := a.tokens[sum]
		if !ok || subtle.ConstantTimeCompare(t.SHA256[:], sum[:]) != 1 {
			return RoleNone, "", errBadCredentials
		}
		return t.Role, t.Name, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok || len(user) > maxCredential || len(pass) > maxCredential {
		return RoleNone, "", errBadCredentials
	}
	return a.checkPassword(r, user, pass)
}

func (a *Auth) checkPassword(r *http.Request, user, pass string) (Role, string, error) {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	now := a.now()
	a.mu.Lock()
	c, hit := a.cache[k]
	a.mu.Unlock()
	if hit && now.Before(c.expires) {
		return c.role, user, nil
	}
	select {
	case a.slots <- struct{}{}:
	case <-r.Context().Done():
		return RoleNone, "", errBadCredentials
	}
	u, known := a.users[user]
	hash := u.Hash
	if !known {
		hash = a.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	<-a.slots
	if err != nil || !known {
		return RoleNone, "", errBadCredentials
	}
	a.mu.Lock()
	if len(a.cache) >= authCacheMax {
		clear(a.cache)
	}
	a.cache[k] = cached{role: u.Role, expires: now.Add(authCacheTTL)}
	a.mu.Unlock()
	return u.Role, user, nil
}

// throttled reports how long the client at ip must wait, or 0.
func (a *Auth) throttled(ip string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fails[ip]
	if f == nil || f.n < MaxFailures {
		return 0
	}
	if left := f.since.Add(FailureWindow).Sub(a.now()); left > 0 {
		return left
	}
	delete(a.fails, ip)
	return 0
}

// failed counts a failed check from ip.
func (a *Auth) failed(ip string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fails[ip]
	if f == nil || now.Sub(f.since) > FailureWindow {
		if f == nil && len(a.fails) >= maxFailIPs {
			clear(a.fails)
		}
		f = &failures{since: now}
		a.fails[ip] = f
	}
	f.n++
}

// challenge is the WWW-Authenticate value of a 401.
func (a *Auth) challenge() string {
	if a != nil && len(a.users) == 0 && len(a.tokens) > 0 {
		return `Bearer realm="smtplog"`
	}
	return `Basic realm="smtplog", charset="UTF-8"`
}
