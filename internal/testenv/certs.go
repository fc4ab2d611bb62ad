package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throw-away certificate authority for one test: an ECDSA P-256 key
// and a self-signed certificate valid from one hour ago for three days. Its
// files live in a directory removed when the test ends.
type CA struct {
	dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certPEM  []byte
	certFile string
}

// NewCA creates a certificate authority named "smtplog test CA".
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: "smtplog test CA", Organization: []string{"smtplog tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(72 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: parse CA certificate: %v", err)
	}
	ca := &CA{
		dir:     t.TempDir(),
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
	ca.certFile = filepath.Join(ca.dir, "ca.crt")
	writeFile(t, ca.certFile, ca.certPEM, 0o644)
	return ca
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// CertFile returns the path of the CA certificate in PEM form, for programs
// such as swaks (--tls-ca-path) and openssl (-CAfile).
func (ca *CA) CertFile() string { return ca.certFile }

// CertPool returns a new pool holding only this CA, for tls.Config.RootCAs
// or ClientCAs.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ClientConfig returns a TLS client configuration that trusts only this CA
// and verifies the server as serverName (a DNS name or an IP address).
func (ca *CA) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.CertPool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// Leaf issues a certificate for hosts, usable for both server and client
// authentication, valid from one hour ago for two days, with a new ECDSA
// P-256 key. A host that parses as an IP address goes into the IP SANs,
// any other into the DNS SANs; the first host is also the common name. With
// no hosts the certificate is for "localhost" and 127.0.0.1; pass hosts
// explicitly to get a certificate that does not match loopback.
//
// certFile holds the leaf certificate in PEM form, keyFile its PKCS #8 key
// (mode 0600); both are removed when the test ends.
func (ca *CA) Leaf(t testing.TB, hosts ...string) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"smtplog tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testenv: create leaf certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: parse leaf certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal key: %v", err)
	}
	f, err := os.CreateTemp(ca.dir, "leaf-*.crt")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	certFile = f.Name()
	f.Close()
	keyFile = certFile[:len(certFile)-len(".crt")] + ".key"
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n
}

func writeFile(t testing.TB, name string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, data, perm); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(name, perm); err != nil { // WriteFile keeps an existing file's mode
		t.Fatalf("testenv: %v", err)
	}
}
