package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

// TestCALeaf proves that a default leaf is valid for localhost and
// 127.0.0.1 under its CA only, that its files load, that the key is ECDSA
// P-256 and private, and that a TLS handshake over loopback succeeds.
func TestCALeaf(t *testing.T) {
	ca := NewCA(t)
	certFile, keyFile, cert := ca.Leaf(t)
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("load leaf files: %v", err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", st.Mode(), err)
	}
	if k, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T is not ECDSA P-256", cert.PrivateKey)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.CertPool()}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: NewCA(t).CertPool()}); err == nil {
		t.Errorf("leaf verifies under another CA")
	}
	caFile, err := os.ReadFile(ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(caFile) {
		t.Errorf("CA file does not parse")
	}

	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), ca.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.Close()
}

// TestCALeafHosts proves that explicit hosts replace the loopback default,
// so negative tests can get a certificate with the wrong name.
func TestCALeafHosts(t *testing.T) {
	ca := NewCA(t)
	_, _, cert := ca.Leaf(t, "mx.example.test", "192.0.2.1")
	if cert.Leaf.Subject.CommonName != "mx.example.test" {
		t.Errorf("CN %q", cert.Leaf.Subject.CommonName)
	}
	opts := x509.VerifyOptions{Roots: ca.CertPool()}
	for name, ok := range map[string]bool{"mx.example.test": true, "192.0.2.1": true, "localhost": false, "127.0.0.1": false} {
		opts.DNSName = name
		if _, err := cert.Leaf.Verify(opts); (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok=%v", name, err, ok)
		}
	}
	if !cert.Leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("IP SANs %v", cert.Leaf.IPAddresses)
	}
}
