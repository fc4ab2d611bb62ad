package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minSecretLen is the shortest secret the scanners accept: the base64
// alignment forms of a shorter one are a few characters that ordinary text
// contains by chance.
const minSecretLen = 8

// secretForm is one encoding of a secret, named for reports; the reports
// never show the value itself.
type secretForm struct {
	name  string
	value string
}

// SecretForms returns every form of secret that must never appear in
// smtplog's output (test plan A-01), without duplicates:
//
//   - the secret itself;
//   - hex, lower and upper case;
//   - URL encoding (query and path escaping), when it differs;
//   - base64 (standard and URL alphabets) of the secret at each of the three
//     byte alignments: the encoding of the secret preceded by 0, 1 and 2
//     filler bytes, keeping only the characters that depend on the secret's
//     bytes alone, so that each form matches wherever the secret sits inside
//     a longer base64 text (an AUTH PLAIN blob, a JSON-encoded []byte, …);
//   - base64 of the AUTH PLAIN blobs "\x00user\x00secret" and
//     "user\x00user\x00secret" (RFC 4616).
//
// Use a secret of at least 8 bytes (the canary of the test plan is
// "pw-CANARY-7f3a9d"); user may be empty.
func SecretForms(secret, user string) []string {
	forms := secretForms(secret, user)
	out := make([]string, len(forms))
	for i, f := range forms {
		out[i] = f.value
	}
	return out
}

func secretForms(secret, user string) []secretForm {
	var forms []secretForm
	seen := map[string]bool{"": true}
	add := func(name, value string) {
		if !seen[value] {
			seen[value] = true
			forms = append(forms, secretForm{name, value})
		}
	}
	add("plain", secret)
	add("hex", hex.EncodeToString([]byte(secret)))
	add("HEX", strings.ToUpper(hex.EncodeToString([]byte(secret))))
	add("url query escaped", url.QueryEscape(secret))
	add("url path escaped", url.PathEscape(secret))
	for _, enc := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for k := 0; k < 3; k++ {
			add(fmt.Sprintf("%s at alignment %d", enc.name, k), alignedBase64(enc.enc, secret, k))
		}
		add(enc.name+" of AUTH PLAIN blob (no authzid)", enc.enc.EncodeToString([]byte("\x00"+user+"\x00"+secret)))
		add(enc.name+" of AUTH PLAIN blob (authzid)", enc.enc.EncodeToString([]byte(user+"\x00"+user+"\x00"+secret)))
	}
	return forms
}

// alignedBase64 returns the characters of the base64 encoding of secret,
// preceded by k filler bytes, that are determined by the secret's bytes
// alone: each base64 character encodes 6 bits, so those from bit 8k
// (rounded up) to the last complete 6 bits of the secret.
func alignedBase64(enc *base64.Encoding, secret string, k int) string {
	n := k + len(secret)
	s := enc.EncodeToString(append(make([]byte, k), secret...))
	first := (8*k + 5) / 6
	last := 8 * n / 6
	if first >= last {
		return ""
	}
	return s[first:last]
}

// AssertNoSecret fails the test if any form of secret from [SecretForms]
// appears in any of blobs. The report names the blob, the form and the
// offset, never the secret. secret must be at least 8 bytes long.
func AssertNoSecret(t testing.TB, secret string, blobs ...[]byte) {
	t.Helper()
	forms := checkedForms(t, secret)
	for i, b := range blobs {
		for _, f := range forms {
			if at := bytes.Index(b, []byte(f.value)); at >= 0 {
				t.Errorf("secret leaked: %s in blob %d at offset %d", f.name, i, at)
			}
		}
	}
}

// AssertNoSecretInFiles fails the test if any form of secret from
// [SecretForms] appears in the files at paths; a directory is walked and
// every regular file below it is scanned as bytes (so SQLite files, pcaps
// and gzip-free rotated logs are covered). Files are read in chunks, so
// their size does not matter. A path that does not exist fails the test.
// secret must be at least 8 bytes long.
func AssertNoSecretInFiles(t testing.TB, secret string, paths ...string) {
	t.Helper()
	forms := checkedForms(t, secret)
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			hits, err := scanFile(path, forms)
			if err != nil {
				return err
			}
			for _, h := range hits {
				t.Errorf("secret leaked: %s in %s at offset %d", h.form, path, h.offset)
			}
			return nil
		})
		if err != nil {
			t.Errorf("testenv: scan %s for secrets: %v", root, err)
		}
	}
}

func checkedForms(t testing.TB, secret string) []secretForm {
	t.Helper()
	if len(secret) < minSecretLen {
		t.Fatalf("testenv: secret of %d bytes is too short to scan for without false alarms; use at least %d", len(secret), minSecretLen)
	}
	// The user only matters for the AUTH PLAIN blob forms, and those
	// contain the secret at some alignment, so the alignment forms find
	// them whatever the user was.
	return secretForms(secret, "")
}

type secretHit struct {
	form   string
	offset int64
}

// scanFile reports the first occurrence of each form in the file, reading
// it in chunks that overlap by the longest form's length minus one byte.
func scanFile(path string, forms []secretForm) ([]secretHit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	overlap := 0
	for _, fm := range forms {
		overlap = max(overlap, len(fm.value)-1)
	}
	const chunk = 1 << 20
	buf := make([]byte, 0, chunk+overlap)
	var base int64 // file offset of buf[0]
	found := make(map[string]bool)
	var hits []secretHit
	for {
		n, rerr := io.ReadFull(f, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		for _, fm := range forms {
			if found[fm.name] {
				continue
			}
			if at := bytes.Index(buf, []byte(fm.value)); at >= 0 {
				found[fm.name] = true
				hits = append(hits, secretHit{fm.name, base + int64(at)})
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return hits, nil
			}
			return hits, rerr
		}
		keep := min(overlap, len(buf))
		base += int64(len(buf) - keep)
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
	}
}
