package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// This file builds, at test time, every certificate the tests use: the
// appliance's own CA (two hierarchies), its TLS server certificates, and
// the manufacturers' PKIs with their CRLs. Nothing is committed, nothing
// expires between runs.

const testDomain = "example.test"

// endOfTime is the GeneralizedTime 99991231235959Z of RFC 5280 4.1.2.5.
var endOfTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// testClock is an injectable clock tests move forward.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var serialCounter atomic.Int64

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(serialCounter.Add(1)))
}

func ecKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func rsaKey(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// issued is a certificate with its key and the chain above it (issuer
// first, root excluded).
type issued struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate
}

// tlsCert is the certificate as a TLS client or server presents it.
func (i *issued) tlsCert() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: i.key, Leaf: i.cert}
	c.Certificate = append(c.Certificate, i.cert.Raw)
	for _, x := range i.chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// certs is the certificate then its chain, as the globalsign client wants.
func (i *issued) certs() []*x509.Certificate {
	return append([]*x509.Certificate{i.cert}, i.chain...)
}

type certSpec struct {
	cn        string
	dns       []string
	ips       []net.IP
	isCA      bool
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage
	key       crypto.Signer
}

// sign makes a certificate for spec, signed by parent (nil: self-signed).
func sign(spec certSpec, parent *issued) *issued {
	key := spec.key
	if key == nil {
		key = ecKey()
	}
	nb, na := spec.notBefore, spec.notAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: spec.cn, Organization: []string{"Test"}},
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
		NotBefore:    nb,
		NotAfter:     na,
		ExtKeyUsage:  spec.eku,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.SubjectKeyId = keyID7093(key.Public())
	if spec.isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	issuerCert, issuerKey := tmpl, key
	var chain []*x509.Certificate
	if parent != nil {
		issuerCert, issuerKey = parent.cert, parent.key
		if !selfSigned(parent.cert) {
			chain = append([]*x509.Certificate{parent.cert}, parent.chain...)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, key.Public(), issuerKey)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &issued{cert: cert, key: key, chain: chain}
}

// keyID7093 is the RFC 7093 method 1 key identifier: the leftmost 160
// bits of the SHA-256 of the subjectPublicKey bits.
func keyID7093(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	var spki struct {
		Algo pkix.AlgorithmIdentifier
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		panic(err)
	}
	sum := sha256.Sum256(spki.Key.Bytes)
	return sum[:20]
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// makeCRL writes a CRL signed by ca revoking serials.
func makeCRL(ca *issued, number int64, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: c.SerialNumber, RevocationTime: thisUpdate.Add(-time.Minute), ReasonCode: 1,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		panic(err)
	}
	return der
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func pemKey(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		panic(err)
	}
	return p
}

// testPKI is everything built once for the whole test binary.
type testPKI struct {
	dir string

	// The appliance's CA: ECDSA and RSA hierarchies.
	ecRoot, ecInt, rsaRoot, rsaInt *issued
	serverEC, serverRSA            *issued
	caRootsFile                    string // both roots, PEM, for curl

	// Manufacturer A: ECDSA, root and intermediate with notAfter
	// 99991231235959Z; devices send the intermediate. Its CRL (a file)
	// is signed by the intermediate, which the trust store does not hold.
	mfrARoot, mfrAInt               *issued
	devA, devA2, devARevoked        *issued
	devAServerOnly                  *issued // EKU serverAuth only
	mfrARootFile, mfrACRLFile       string
	devAFile, devAKeyFile           string // leaf + intermediate, key
	devARevokedFile, devARevKeyFile string

	// Manufacturer B: RSA root signing devices directly, without EKU.
	// Its CRL is served over HTTP.
	mfrBRoot                       *issued
	devB, devBExpired, devBRevoked *issued
	mfrBRootFile                   string
	crlServer                      *httptest.Server
	crlB                           atomic.Pointer[[]byte]

	// A rogue CA nobody loaded.
	rogueRoot, rogueDev *issued
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pki != nil {
		pki.crlServer.Close()
		os.RemoveAll(pki.dir)
	}
	os.Exit(code)
}

// getPKI builds the shared PKI on first use.
func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki = buildPKI() })
	return pki
}

func buildPKI() *testPKI {
	dir, err := os.MkdirTemp("", "est-test-pki")
	if err != nil {
		panic(err)
	}
	p := &testPKI{dir: dir}
	now := time.Now()
	long := now.Add(20 * 365 * 24 * time.Hour)

	p.ecRoot = sign(certSpec{cn: "Test EC Root", isCA: true, notAfter: long}, nil)
	p.ecInt = sign(certSpec{cn: "Test EC Issuing", isCA: true, notAfter: long}, p.ecRoot)
	p.rsaRoot = sign(certSpec{cn: "Test RSA Root", isCA: true, notAfter: long, key: rsaKey(2048)}, nil)
	p.rsaInt = sign(certSpec{cn: "Test RSA Issuing", isCA: true, notAfter: long, key: rsaKey(2048)}, p.rsaRoot)
	srv := certSpec{cn: "est." + testDomain, dns: []string{"est." + testDomain, "localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)},
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	p.serverEC = sign(srv, p.ecInt)
	srv.key = rsaKey(2048)
	p.serverRSA = sign(srv, p.rsaInt)
	p.caRootsFile = writeFile(dir, "ca-roots.pem", pemCerts(p.ecRoot.cert, p.rsaRoot.cert))

	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p.mfrARoot = sign(certSpec{cn: "Maker A Root", isCA: true, notAfter: endOfTime}, nil)
	p.mfrAInt = sign(certSpec{cn: "Maker A Devices", isCA: true, notAfter: endOfTime}, p.mfrARoot)
	p.devA = sign(certSpec{cn: "maker-a-0001", notAfter: endOfTime, eku: client}, p.mfrAInt)
	p.devA2 = sign(certSpec{cn: "maker-a-0002", notAfter: endOfTime, eku: client}, p.mfrAInt)
	p.devARevoked = sign(certSpec{cn: "maker-a-0666", notAfter: endOfTime, eku: client}, p.mfrAInt)
	p.devAServerOnly = sign(certSpec{cn: "maker-a-0777", notAfter: endOfTime, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, p.mfrAInt)
	p.mfrARootFile = writeFile(dir, "maker-a-root.pem", pemCerts(p.mfrARoot.cert))
	p.mfrACRLFile = writeFile(dir, "maker-a.crl", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL",
		Bytes: makeCRL(p.mfrAInt, 1, now.Add(-time.Hour), now.Add(30*24*time.Hour), p.devARevoked.cert)}))
	p.devAFile = writeFile(dir, "dev-a.pem", pemCerts(p.devA.certs()...))
	p.devAKeyFile = writeFile(dir, "dev-a.key", pemKey(p.devA.key))
	p.devARevokedFile = writeFile(dir, "dev-a-revoked.pem", pemCerts(p.devARevoked.certs()...))
	p.devARevKeyFile = writeFile(dir, "dev-a-revoked.key", pemKey(p.devARevoked.key))

	p.mfrBRoot = sign(certSpec{cn: "Maker B Root", isCA: true, notBefore: now.Add(-5 * 365 * 24 * time.Hour), notAfter: long, key: rsaKey(2048)}, nil)
	p.devB = sign(certSpec{cn: "maker-b-0001", key: rsaKey(2048)}, p.mfrBRoot)
	p.devBExpired = sign(certSpec{cn: "maker-b-0002", notBefore: now.Add(-3 * 365 * 24 * time.Hour), notAfter: now.Add(-24 * time.Hour)}, p.mfrBRoot)
	p.devBRevoked = sign(certSpec{cn: "maker-b-0003"}, p.mfrBRoot)
	p.mfrBRootFile = writeFile(dir, "maker-b-root.pem", pemCerts(p.mfrBRoot.cert))
	crl := makeCRL(p.mfrBRoot, 1, now.Add(-time.Hour), now.Add(7*24*time.Hour), p.devBRevoked.cert)
	p.crlB.Store(&crl)
	p.crlServer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(*p.crlB.Load())
	}))

	p.rogueRoot = sign(certSpec{cn: "Maker A Root", isCA: true, notAfter: endOfTime}, nil) // same name as a real root
	p.rogueDev = sign(certSpec{cn: "maker-a-0001", notAfter: endOfTime, eku: client}, p.rogueRoot)
	return p
}

// trustConfig loads both manufacturers, A's CRL from a file and B's from
// the CRL server.
func (p *testPKI) trustConfig() TrustConfig {
	return TrustConfig{
		RootFiles:  []string{p.mfrARootFile, p.mfrBRootFile},
		CRLSources: []string{p.mfrACRLFile, p.crlServer.URL + "/maker-b.crl"},
	}
}

// testCA is a small, real authority: crypto/x509 signing, the policy
// package's checks and the SQLite store for durability and lookups.
type testCA struct {
	pki   *testPKI
	st    *store.SQLite
	pol   policy.Policy
	clock *testClock
	// extra certificates /cacerts returns (to test Invalidate).
	extra atomic.Pointer[[]*x509.Certificate]
	// failIssue makes Issue fail as a broken CA would.
	failIssue atomic.Bool
	// bind binds names to holders in the store, as ca.name_binding
	// strict or approve does.
	bind bool
}

var _ CA = (*testCA)(nil)

func newTestCA(t testing.TB, clock *testClock) *testCA {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testCA{pki: getPKI(t), st: st, pol: policy.Policy{Domain: testDomain}, clock: clock}
}

func (c *testCA) CACerts(context.Context) ([]*x509.Certificate, error) {
	p := c.pki
	out := []*x509.Certificate{p.ecInt.cert, p.rsaInt.cert, p.ecRoot.cert, p.rsaRoot.cert}
	if e := c.extra.Load(); e != nil {
		out = append(out, *e...)
	}
	return out, nil
}

func (c *testCA) Chains(context.Context) ([]*x509.Certificate, []*x509.Certificate, error) {
	p := c.pki
	return []*x509.Certificate{p.ecRoot.cert, p.rsaRoot.cert}, []*x509.Certificate{p.ecInt.cert, p.rsaInt.cert}, nil
}

func (c *testCA) CheckCSR(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) ([]*store.NameBinding, error) {
	names, err := c.check(ctx, csr, req)
	if err != nil || !c.bind || req.Holder == "" {
		return nil, err
	}
	var conflicts []*store.NameBinding
	for _, n := range names.DNSNames {
		bs, err := c.st.NameBindings(ctx, store.BindingFilter{Name: n})
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			if b.Holder != req.Holder {
				conflicts = append(conflicts, b)
			}
		}
	}
	if !req.ListConflicts {
		for _, b := range conflicts {
			if req.TakeOver[b.Name] != b.Holder {
				return conflicts, policy.NameBound(b.Name, b.Holder)
			}
		}
	}
	return conflicts, nil
}

func (c *testCA) check(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*policy.Names, error) {
	names, err := c.pol.Check(csr)
	if err != nil {
		return nil, err
	}
	if !req.AllowReserved {
		if err := c.pol.CheckReserved(names.DNSNames); err != nil {
			return nil, err
		}
	}
	if req.Renewing != nil && bytes.Equal(req.Renewing.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		return names, nil
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	used, err := c.st.KeyUsed(ctx, sum[:])
	if err != nil {
		return nil, err
	}
	if used {
		return nil, policy.KeyReused()
	}
	return names, nil
}

func (c *testCA) Issue(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error) {
	if c.failIssue.Load() {
		return nil, errors.New("signing key unavailable")
	}
	names, err := c.check(ctx, csr, req)
	if err != nil {
		return nil, err
	}
	keyType, hier, err := policy.KeyType(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	issuer := c.pki.ecInt
	if hier == "rsa" {
		issuer = c.pki.rsaInt
	}
	now := c.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		RawSubject:   names.Subject,
		DNSNames:     names.DNSNames,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, csr.PublicKey, issuer.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	rec := &store.Certificate{
		Serial: cert.SerialNumber, IssuerID: hier + "-int-1", Subject: cert.Subject.String(), SANs: cert.DNSNames,
		KeyType: keyType, SPKIHash: sum[:], NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, IssuedAt: now,
		Identity: req.Identity, Profile: "leaf", DER: der, Holder: req.Holder,
	}
	if req.Renewing != nil && bytes.Equal(req.Renewing.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo) {
		rec.Renews = req.Renewing.SerialNumber
	}
	if c.bind && req.Holder != "" {
		rec.Bind = &store.Binding{Lapsed: now.Add(-time.Hour), TakeOver: req.TakeOver, Actor: req.DecidedBy}
	}
	err = c.st.PutCertificate(ctx, rec)
	var nb *store.NameBoundError
	if errors.As(err, &nb) {
		return nil, policy.NameBound(nb.Name, nb.Holder)
	}
	if errors.Is(err, store.ErrKeyReused) {
		return nil, policy.KeyReused()
	}
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// IssuedBefore finds nothing: answering a repeated request again is the
// authority's (ca.Authority.IssuedBefore), tested with it in ca and,
// through this server, in appliance/app.
func (c *testCA) IssuedBefore(context.Context, *x509.CertificateRequest, policy.Requester) (*x509.Certificate, error) {
	return nil, store.ErrNotFound
}

func (c *testCA) Certificate(ctx context.Context, serial *big.Int) (*store.Certificate, error) {
	return c.st.Certificate(ctx, serial)
}

// count is the number of certificates in the store.
func (c *testCA) count(t testing.TB) int {
	t.Helper()
	list, err := c.st.ListCertificates(context.Background(), store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}
