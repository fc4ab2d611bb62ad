package testenv

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// PostfixSASL makes o a Postfix that authenticates user (password pass)
// with Cyrus SASL against a sasldb of its own, in realm domain, offering
// PLAIN and LOGIN; with tlsOnly, only after STARTTLS. It adds to
// o.ConfigFiles and o.Extra, and marks the test unavailable when
// saslpasswd2 or the PLAIN plugin is missing.
func PostfixSASL(t testing.TB, o *PostfixOptions, domain, user_, pass string, tlsOnly bool) {
	t.Helper()
	NeedRoot(t)
	saslpasswd := NeedBinary(t, "saslpasswd2")
	if m, _ := filepath.Glob("/usr/lib/*/sasl2/libplain.so"); len(m) == 0 {
		Unavailable(t, "Cyrus SASL PLAIN plugin missing: apt-get install libsasl2-modules")
	}
	dir, err := os.MkdirTemp("", "sasl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	db := filepath.Join(dir, "sasldb2")
	cmd := exec.Command(saslpasswd, "-p", "-c", "-f", db, "-u", domain, user_)
	cmd.Stdin = strings.NewReader(pass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2: %v\n%s", err, out)
	}
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	os.Chown(db, uid, gid)
	os.Chmod(db, 0o600)
	if o.ConfigFiles == nil {
		o.ConfigFiles = map[string]string{}
	}
	// Debian's Postfix reads Cyrus SASL configuration from
	// $config_directory/sasl (README.Debian), not cyrus_sasl_config_path.
	o.ConfigFiles["sasl/smtpd.conf"] = "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: " + db + "\n"
	if o.Extra == nil {
		o.Extra = map[string]string{}
	}
	authOnly := "no"
	if tlsOnly {
		authOnly = "yes"
	}
	for k, v := range map[string]string{
		"smtpd_sasl_auth_enable":      "yes",
		"smtpd_sasl_type":             "cyrus",
		"smtpd_sasl_path":             "smtpd",
		"cyrus_sasl_config_path":      dir,
		"smtpd_sasl_local_domain":     domain,
		"smtpd_tls_auth_only":         authOnly,
		"smtpd_sasl_security_options": "noanonymous",
	} {
		o.Extra[k] = v
	}
}
