package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	canaryUser   = "canary-user"
	canarySecret = "pw-CANARY-7f3a9d"
)

// TestSecretFormsFoundInContext proves that every form is found when it is
// embedded in larger text, and that each hit names the form, not the
// secret.
func TestSecretFormsFoundInContext(t *testing.T) {
	forms := secretForms(canarySecret+"/+?", canaryUser) // '/', '+', '?' make the URL and base64url forms differ
	names := map[string]bool{}
	for _, f := range forms {
		names[f.name] = true
	}
	for _, want := range []string{"plain", "hex", "HEX", "url query escaped", "url path escaped",
		"base64 at alignment 0", "base64 at alignment 1", "base64 at alignment 2",
		"base64 of AUTH PLAIN blob (no authzid)", "base64 of AUTH PLAIN blob (authzid)"} {
		if !names[want] {
			t.Errorf("no form %q", want)
		}
	}
	for _, f := range forms {
		blob := []byte(`{"level":"debug","msg":"line ` + f.value + ` end"}`)
		ft := newFakeTB(t)
		ft.run(func(tb testing.TB) { AssertNoSecret(tb, canarySecret+"/+?", []byte("clean"), blob) })
		if len(ft.errors) == 0 {
			t.Errorf("form %q not found", f.name)
			continue
		}
		for _, e := range ft.errors {
			if strings.Contains(e, canarySecret) || !strings.Contains(e, "blob 1") {
				t.Errorf("report %q", e)
			}
		}
	}
}

// TestSecretInsideBase64 proves the alignment forms: the secret is found in
// the base64 encoding of any text that contains it, whatever its offset and
// whatever surrounds it — the AUTH PLAIN blob for any user, a JSON []byte,
// a base64 line from a transcript.
func TestSecretInsideBase64(t *testing.T) {
	var blobs [][]byte
	for pre := 0; pre < 7; pre++ {
		for post := 0; post < 4; post++ {
			raw := strings.Repeat("\xa5", pre) + canarySecret + strings.Repeat("Z", post)
			blobs = append(blobs,
				[]byte("334 "+base64.StdEncoding.EncodeToString([]byte(raw))),
				[]byte(base64.RawURLEncoding.EncodeToString([]byte(raw))))
		}
	}
	for _, user := range []string{"", "u", "ab", "someone-else"} {
		blobs = append(blobs, []byte("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+canarySecret))))
	}
	js, _ := json.Marshal(struct{ Raw []byte }{[]byte("password=" + canarySecret)})
	blobs = append(blobs, js)
	for i, b := range blobs {
		ft := newFakeTB(t)
		ft.run(func(tb testing.TB) { AssertNoSecret(tb, canarySecret, b) })
		if len(ft.errors) == 0 {
			t.Errorf("blob %d %q: secret not found", i, b)
		}
	}
}

// TestSecretOtherEncodings proves hex and URL encodings inside text.
func TestSecretOtherEncodings(t *testing.T) {
	secret := "p@ss word&1=2"
	for _, blob := range []string{
		"GET /api/x?pw=" + url.QueryEscape(secret) + "&y=1",
		"path /u/" + url.PathEscape(secret) + "/x",
		"dump " + hex.EncodeToString([]byte(secret)) + "00",
		"DUMP " + strings.ToUpper(hex.EncodeToString([]byte(secret))) + "00",
	} {
		ft := newFakeTB(t)
		ft.run(func(tb testing.TB) { AssertNoSecret(tb, secret, []byte(blob)) })
		if len(ft.errors) == 0 {
			t.Errorf("%q: secret not found", blob)
		}
	}
}

// TestSecretNoFalsePositive proves that ordinary output mentioning the user,
// other credentials and base64 does not trip the scanner.
func TestSecretNoFalsePositive(t *testing.T) {
	normal := []string{
		`{"type":"session","username":"canary-user","auth":{"mechanism":"PLAIN","username":"canary-user","result":"ok"}}`,
		"C: AUTH PLAIN [redacted]\r\nS: 235 2.7.0 Authentication successful\r\n",
		"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00canary-user\x00pw-OTHER-0000000")),
		"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n",
		"Nov 30 01:38:22 postfix postfix/smtpd[15936]: C088E9854AB: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=canary-user",
		strings.Repeat("The quick brown fox jumps over the lazy dog. 0123456789abcdef ", 200),
		hex.EncodeToString(bytes.Repeat([]byte{0, 1, 2, 0xfe}, 100)),
	}
	for _, n := range normal {
		ft := newFakeTB(t)
		ft.run(func(tb testing.TB) { AssertNoSecret(tb, canarySecret, []byte(n)) })
		if len(ft.errors) != 0 {
			t.Errorf("false positive on %q: %v", n[:min(len(n), 60)], ft.errors)
		}
	}
}

// TestSecretTooShort proves that a secret too short to scan for reliably
// is refused.
func TestSecretTooShort(t *testing.T) {
	ft := newFakeTB(t)
	ft.run(func(tb testing.TB) { AssertNoSecret(tb, "abc", []byte("abc")) })
	if ft.fatal == "" {
		t.Errorf("short secret accepted")
	}
}

// TestSecretInFiles proves the directory walk, a hit across the scanner's
// chunk boundary with its true offset, and a clean tree passing.
func TestSecretInFiles(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean")
	dirty := filepath.Join(dir, "dirty", "deeper")
	for _, d := range []string{clean, dirty} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(clean, "a.log"), []byte("username=canary-user\n"), 0o644)
	big := bytes.Repeat([]byte("x"), 1<<20-5) // the secret straddles the 1 MiB chunk boundary
	offset := len(big)
	big = append(big, canarySecret...)
	big = append(big, bytes.Repeat([]byte("y"), 1<<20)...)
	writeFile(t, filepath.Join(dirty, "store.db"), big, 0o644)

	ft := newFakeTB(t)
	ft.run(func(tb testing.TB) { AssertNoSecretInFiles(tb, canarySecret, clean) })
	if len(ft.errors) != 0 {
		t.Errorf("clean tree: %v", ft.errors)
	}

	ft = newFakeTB(t)
	ft.run(func(tb testing.TB) { AssertNoSecretInFiles(tb, canarySecret, dir) })
	if len(ft.errors) != 1 || !strings.Contains(ft.errors[0], "store.db at offset "+strconv.Itoa(offset)) {
		t.Errorf("dirty tree: %v", ft.errors)
	}

	ft = newFakeTB(t)
	ft.run(func(tb testing.TB) { AssertNoSecretInFiles(tb, canarySecret, filepath.Join(dir, "missing")) })
	if len(ft.errors) != 1 {
		t.Errorf("missing path: %v", ft.errors)
	}
}
