package ocsp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testCA is one CA generation made at test time.
type testCA struct {
	id   string
	cert *x509.Certificate
	key  crypto.Signer
	path string // PEM of cert
}

func (ca *testCA) issuer() Issuer { return Issuer{ID: ca.id, Cert: ca.cert, Signer: ca.key} }

// testLeaf is an issued end-entity certificate.
type testLeaf struct {
	cert *x509.Certificate
	path string
}

// pki is two hierarchies (ECDSA and RSA, each a root and an
// intermediate), a SQLite store and a Source over them.
type pki struct {
	t                              *testing.T
	dir                            string
	clock                          *fakeClock
	ecRoot, ecInt, rsaRoot, rsaInt *testCA
	// chain holds both roots (trust anchors for openssl -CAfile);
	// inters both intermediates (untrusted, for -verify_other).
	chain, inters string
	st            *store.SQLite
	src           *testSource
}

var (
	rsaKeysOnce sync.Once
	rsaKeys     [2]*rsa.PrivateKey
)

// testRSAKey returns one of two RSA keys made once per test binary, as
// RSA key generation is slow.
func testRSAKey(t testing.TB, i int) *rsa.PrivateKey {
	rsaKeysOnce.Do(func() {
		for j := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[j] = k
		}
	})
	return rsaKeys[i]
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "certs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := &pki{t: t, dir: dir, clock: newFakeClock(), st: st}
	ecRootKey := mustEC(t)
	ecIntKey := mustEC(t)
	p.ecRoot = p.newCA("ecdsa-root-1", "Test ECDSA Root", ecRootKey, nil)
	p.ecInt = p.newCA("ecdsa-int-1", "Test ECDSA Intermediate", ecIntKey, p.ecRoot)
	p.rsaRoot = p.newCA("rsa-root-1", "Test RSA Root", testRSAKey(t, 0), nil)
	p.rsaInt = p.newCA("rsa-int-1", "Test RSA Intermediate", testRSAKey(t, 1), p.rsaRoot)
	p.chain = p.writePEM("roots.pem", p.ecRoot.cert, p.rsaRoot.cert)
	p.inters = p.writePEM("intermediates.pem", p.ecInt.cert, p.rsaInt.cert)
	p.src = &testSource{st: st, issuers: []Issuer{p.ecRoot.issuer(), p.ecInt.issuer(), p.rsaRoot.issuer(), p.rsaInt.issuer()}}
	return p
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randSerial(t testing.TB) *big.Int {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] &= 0x7f
	b[0] |= 0x01
	return new(big.Int).SetBytes(b)
}

// newCA makes a root (parent nil) or an intermediate signed by parent;
// an intermediate is recorded in the store as issued by its root.
func (p *pki) newCA(id, cn string, key crypto.Signer, parent *testCA) *testCA {
	ca := makeCA(p.t, id, cn, key, parent)
	ca.path = p.writePEM(id+".pem", ca.cert)
	if parent != nil {
		p.put(parent.id, ca.cert, "intermediate")
	}
	return ca
}

// makeCA makes a CA certificate: a root when parent is nil.
func makeCA(t testing.TB, id, cn string, key crypto.Signer, parent *testCA) *testCA {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"nmos-certs test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		tmpl.MaxPathLenZero = true
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{id: id, cert: cert, key: key}
}

func (p *pki) put(issuerID string, cert *x509.Certificate, profile string) {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if err := p.st.PutCertificate(context.Background(), &store.Certificate{
		Serial: cert.SerialNumber, IssuerID: issuerID, Subject: cert.Subject.String(), SANs: cert.DNSNames,
		KeyType: "test", SPKIHash: sum[:], NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		IssuedAt: time.Now(), Identity: "test", Profile: profile, DER: cert.Raw,
	}); err != nil {
		p.t.Fatal(err)
	}
}

// leaf issues an end-entity certificate from ca, recorded in the store
// unless record is false. A zero serial picks a random one.
func (p *pki) leaf(ca *testCA, serial *big.Int, record bool) *testLeaf {
	t := p.t
	if serial == nil {
		serial = randSerial(t)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "node-" + serial.Text(16)[:8] + ".example.test"},
		DNSNames:     []string{"node-" + serial.Text(16)[:8] + ".example.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, mustEC(t).Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if record {
		p.put(ca.id, cert, "leaf")
	}
	return &testLeaf{cert: cert, path: p.writePEM("leaf-"+serial.Text(16)+".pem", cert)}
}

func (p *pki) writePEM(name string, certs ...*x509.Certificate) string {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

func (p *pki) revoke(serial *big.Int, reason int) {
	if _, err := p.st.Revoke(context.Background(), serial, p.clock.Now(), reason); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pki) options() Options {
	return Options{Source: p.src, Clock: p.clock.Now}
}

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// testSource is the Source the authority will be: CA certificates and
// keys in memory, certificates in a real store.
type testSource struct {
	st *store.SQLite

	mu      sync.Mutex
	issuers []Issuer
	// responderCerts counts IssueResponderCert calls per issuer.
	responderCerts map[string]int

	// failResponder makes IssueResponderCert fail (after counting).
	failResponder atomic.Bool

	statusCalls atomic.Int64
	// statusHook, when set, runs after the store was read and before
	// the status is returned.
	statusHook func()
}

func (s *testSource) setIssuers(is ...Issuer) {
	s.mu.Lock()
	s.issuers = is
	s.mu.Unlock()
}

func (s *testSource) responderCertCount(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.responderCerts[id]
}

func (s *testSource) Issuers(context.Context) ([]Issuer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Issuer(nil), s.issuers...), nil
}

func (s *testSource) CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*store.Certificate, error) {
	s.statusCalls.Add(1)
	c, err := s.st.CertificateStatus(ctx, issuerID, serial)
	s.mu.Lock()
	hook := s.statusHook
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return c, err
}

func (s *testSource) Revocations(ctx context.Context, issuerID string, fn func(store.Revocation) error) error {
	return s.st.Revocations(ctx, issuerID, fn)
}

func (s *testSource) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	return s.st.NextCRLNumber(ctx, issuerID)
}

func (s *testSource) IssueResponderCert(ctx context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	s.mu.Lock()
	var ca *Issuer
	for i := range s.issuers {
		if s.issuers[i].ID == issuerID {
			ca = &s.issuers[i]
		}
	}
	if s.responderCerts == nil {
		s.responderCerts = map[string]int{}
	}
	s.responderCerts[issuerID]++
	s.mu.Unlock()
	if s.failResponder.Load() {
		return nil, errors.New("CA unavailable")
	}
	if ca == nil {
		return nil, errors.New("no such issuer")
	}
	cert, err := signResponderCert(ca, pub, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if err := s.st.PutCertificate(ctx, &store.Certificate{
		Serial: cert.SerialNumber, IssuerID: issuerID, Subject: cert.Subject.String(), KeyType: "test",
		SPKIHash: sum[:], NotBefore: notBefore, NotAfter: notAfter, IssuedAt: notBefore,
		Identity: "ocsp", Profile: "ocsp", DER: cert.Raw,
	}); err != nil {
		return nil, err
	}
	return cert, nil
}

// needOpenSSL skips when the openssl command is missing.
func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: apt-get install openssl (.ci/run does) to run this test")
	}
}

// run runs a command and returns its stdout and stderr together.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// signResponderCert certifies pub as a delegated OCSP responder of ca.
func signResponderCert(ca *Issuer, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial := make([]byte, 16)
	rand.Read(serial)
	tmpl := &x509.Certificate{
		SerialNumber:    new(big.Int).SetBytes(serial),
		Subject:         pkix.Name{CommonName: "OCSP responder for " + ca.ID},
		NotBefore:       notBefore,
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign responder certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// mapSource is a Source in memory, for fuzzing and benchmarks.
type mapSource struct {
	issuers     []Issuer
	certs       map[string]*store.Certificate // by store.SerialKey
	revocations map[string][]store.Revocation // by issuer
	crlNumber   atomic.Int64
}

func (s *mapSource) Issuers(context.Context) ([]Issuer, error) { return s.issuers, nil }

func (s *mapSource) CertificateStatus(_ context.Context, issuerID string, serial *big.Int) (*store.Certificate, error) {
	c := s.certs[store.SerialKey(serial)]
	if c == nil || c.IssuerID != issuerID {
		return nil, store.ErrNotFound
	}
	return c, nil
}

func (s *mapSource) Revocations(_ context.Context, issuerID string, fn func(store.Revocation) error) error {
	for _, r := range s.revocations[issuerID] {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *mapSource) NextCRLNumber(context.Context, string) (int64, error) {
	return s.crlNumber.Add(1), nil
}

func (s *mapSource) IssueResponderCert(_ context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	for i := range s.issuers {
		if s.issuers[i].ID == issuerID {
			return signResponderCert(&s.issuers[i], pub, notBefore, notAfter)
		}
	}
	return nil, errors.New("no such issuer")
}
