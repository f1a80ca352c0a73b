package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testOptions(t testing.TB, dir string, st store.Store) Options {
	return Options{
		Store:                st,
		DataDir:              dir,
		Domain:               "studio.example.test",
		BaseURL:              "http://est.studio.example.test:8080",
		LeafLifetime:         90 * 24 * time.Hour,
		Backdate:             5 * time.Minute,
		RootLifetime:         20 * 365 * 24 * time.Hour,
		IntermediateLifetime: 5 * 365 * 24 * time.Hour,
		Organization:         "nmos-certs test",
		RSARootBits:          3072,
		RSAIntermediateBits:  2048,
	}
}

func openStore(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "nmos-certs.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newAuthority creates a fresh authority in a temporary data dir.
func newAuthority(t testing.TB) (*Authority, string) {
	t.Helper()
	dir := t.TempDir()
	st := openStore(t, dir)
	t.Cleanup(func() { st.Close() })
	a, err := Open(context.Background(), testOptions(t, dir, st), true)
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

func makeCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func deviceCSR(t testing.TB, key crypto.Signer, cn string, sans ...string) *x509.CertificateRequest {
	return makeCSR(t, key, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn, SerialNumber: "SN-0042", Organization: []string{"Acme"}},
		DNSNames: sans,
	})
}

func TestIssueECDSAAndRSA(t *testing.T) {
	a, dir := newAuthority(t)
	ctx := context.Background()
	cases := []struct {
		name string
		key  crypto.Signer
		hier string
	}{
		{"ecdsa-p256", ecKey(t, elliptic.P256()), ECDSA},
		{"ecdsa-p384", ecKey(t, elliptic.P384()), ECDSA},
		{"rsa-2048", rsaKey(t, 2048), RSA},
	}
	cacerts, _ := a.CACerts(ctx)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			csr := deviceCSR(t, tc.key, "node1.studio.example.test", "node1-alt.studio.example.test")
			cert, err := a.Issue(ctx, csr, policy.Requester{Identity: "test"})
			if err != nil {
				t.Fatal(err)
			}
			if got := hierOf(cert); got != tc.hier {
				t.Fatalf("signed by the %s chain, want %s", got, tc.hier)
			}
			// SANs: CN added, CSR SANs kept.
			want := []string{"node1.studio.example.test", "node1-alt.studio.example.test"}
			if strings.Join(cert.DNSNames, ",") != strings.Join(want, ",") {
				t.Errorf("SANs %v, want %v", cert.DNSNames, want)
			}
			if cert.Subject.SerialNumber != "SN-0042" {
				t.Errorf("subject serialNumber %q lost", cert.Subject.SerialNumber)
			}
			eku := map[x509.ExtKeyUsage]bool{}
			for _, u := range cert.ExtKeyUsage {
				eku[u] = true
			}
			if !eku[x509.ExtKeyUsageServerAuth] || !eku[x509.ExtKeyUsageClientAuth] || len(eku) != 2 {
				t.Errorf("EKU %v, want serverAuth and clientAuth", cert.ExtKeyUsage)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if tc.hier == RSA {
				wantKU |= x509.KeyUsageKeyEncipherment
			}
			if cert.KeyUsage != wantKU {
				t.Errorf("KU %b, want %b", cert.KeyUsage, wantKU)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if len(cert.OCSPServer) != 1 || cert.OCSPServer[0] != "http://est.studio.example.test:8080/ocsp" {
				t.Errorf("OCSP URL %v", cert.OCSPServer)
			}
			if len(cert.CRLDistributionPoints) != 1 || !strings.HasPrefix(cert.CRLDistributionPoints[0], "http://est.studio.example.test:8080/crl/"+tc.hier+"-int-1") {
				t.Errorf("CDP %v", cert.CRLDistributionPoints)
			}
			if len(cert.IssuingCertificateURL) != 1 || !strings.HasSuffix(cert.IssuingCertificateURL[0], "/ca/"+tc.hier+"-int-1.crt") {
				t.Errorf("caIssuers %v", cert.IssuingCertificateURL)
			}
			if d := time.Since(cert.NotBefore); d < 4*time.Minute || d > 6*time.Minute {
				t.Errorf("notBefore %v not backdated by about 5 minutes", cert.NotBefore)
			}
			// crypto/x509 verification against the right chain only.
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			for _, c := range cacerts {
				if hierOf(c) != tc.hier {
					continue
				}
				if c.Subject.String() == c.Issuer.String() {
					roots.AddCert(c)
				} else {
					inters.AddCert(c)
				}
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "node1.studio.example.test",
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			// Durable record.
			rec, err := a.Certificate(ctx, cert.SerialNumber)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Identity != "test" || rec.IssuerID != tc.hier+"-int-1" || string(rec.DER) != string(cert.Raw) {
				t.Errorf("stored record %+v", rec)
			}
			// openssl verify against the right chain, and not the other.
			if _, err := exec.LookPath("openssl"); err != nil {
				t.Fatal("openssl is not installed: apt-get install openssl (.ci/run does) to run this test")
			}
			chain := filepath.Join(dir, tc.name+"-chain.pem")
			other := filepath.Join(dir, tc.name+"-other.pem")
			leaf := filepath.Join(dir, tc.name+"-leaf.pem")
			var mine, theirs []*x509.Certificate
			for _, c := range cacerts {
				if hierOf(c) == tc.hier {
					mine = append(mine, c)
				} else {
					theirs = append(theirs, c)
				}
			}
			os.WriteFile(chain, PEM(mine...), 0o644)
			os.WriteFile(other, PEM(theirs...), 0o644)
			os.WriteFile(leaf, PEM(cert), 0o644)
			out, err := exec.Command("openssl", "verify", "-purpose", "sslserver", "-CAfile", chain, leaf).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": OK") {
				t.Fatalf("openssl verify: %v\n%s", err, out)
			}
			out, err = exec.Command("openssl", "verify", "-CAfile", other, leaf).CombinedOutput()
			if err == nil {
				t.Fatalf("openssl verify accepted the wrong chain:\n%s", out)
			}
		})
	}
}

// TestSerialsFollowTheClock: certificates issued within one second of the
// authority's clock (so with the same notBefore) get serials that grow
// with the clock, which keeps the store's serial index appended at its end.
func TestSerialsFollowTheClock(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	t0 := time.Now().Truncate(time.Second).Add(100 * time.Millisecond)
	var prev *x509.Certificate
	for i := range 8 {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		a.o.Clock = func() time.Time { return at }
		cert, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), fmt.Sprintf("cam%d.studio.example.test", i)), policy.Requester{Identity: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			if !cert.NotBefore.Equal(prev.NotBefore) {
				t.Fatalf("notBefore %v, want the same second as %v", cert.NotBefore, prev.NotBefore)
			}
			if cert.SerialNumber.Cmp(prev.SerialNumber) <= 0 {
				t.Fatalf("serial %x issued 50 ms after %x is not larger", cert.SerialNumber, prev.SerialNumber)
			}
			if store.SerialKey(cert.SerialNumber) <= store.SerialKey(prev.SerialNumber) {
				t.Fatalf("serial key %s does not sort after %s", store.SerialKey(cert.SerialNumber), store.SerialKey(prev.SerialNumber))
			}
		}
		prev = cert
	}
}

func TestPolicyRefusals(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	p256 := func() crypto.Signer { return ecKey(t, elliptic.P256()) }
	reused := p256()
	if _, err := a.Issue(ctx, deviceCSR(t, reused, "first.studio.example.test"), policy.Requester{Identity: "test"}); err != nil {
		t.Fatal(err)
	}
	badSig := deviceCSR(t, p256(), "x.studio.example.test")
	badSig.Signature[len(badSig.Signature)-3] ^= 0xff
	sha1CSR := makeCSR(t, rsaKey(t, 2048), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}, SignatureAlgorithm: x509.SHA1WithRSA})
	cases := []struct {
		name string
		csr  *x509.CertificateRequest
		code string
	}{
		{"bad signature", badSig, policy.CodeBadSignature},
		{"sha1", sha1CSR, policy.CodeWeakHash},
		{"rsa 1024", deviceCSR(t, rsaKey(t, 1024), "x.studio.example.test"), policy.CodeRSATooSmall},
		{"p224", deviceCSR(t, ecKey(t, elliptic.P224()), "x.studio.example.test"), policy.CodeCurve},
		{"no names", deviceCSR(t, p256(), ""), policy.CodeNoNames},
		{"wildcard san", deviceCSR(t, p256(), "x.studio.example.test", "*.studio.example.test"), policy.CodeWildcard},
		{"wildcard cn", deviceCSR(t, p256(), "*.studio.example.test"), policy.CodeWildcard},
		{"ip cn", deviceCSR(t, p256(), "192.0.2.1"), policy.CodeIPAddress},
		{"ip san", makeCSR(t, p256(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}, IPAddresses: []net.IP{{192, 0, 2, 1}}}), policy.CodeIPAddress},
		{"outside domain", deviceCSR(t, p256(), "x.example.org"), policy.CodeOutsideDomain},
		{"suffix trick", deviceCSR(t, p256(), "evilstudio.example.test"), policy.CodeOutsideDomain},
		{"san outside", deviceCSR(t, p256(), "x.studio.example.test", "x.example.org"), policy.CodeOutsideDomain},
		{"bad name", deviceCSR(t, p256(), "my device.studio.example.test"), policy.CodeBadName},
		{"key reused", deviceCSR(t, reused, "second.studio.example.test"), policy.CodeKeyReused},
	}
	before, _ := a.Store().CountCertificates(ctx)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := a.Issue(ctx, tc.csr, policy.Requester{Identity: "test"})
			var r *policy.Refusal
			if !errors.As(err, &r) {
				t.Fatalf("got cert=%v err=%v, want a refusal", cert != nil, err)
			}
			if r.Code != tc.code {
				t.Fatalf("refused with %s (%s), want %s", r.Code, r.Msg, tc.code)
			}
			if len(r.Msg) < 20 {
				t.Errorf("reason %q is not explanatory", r.Msg)
			}
		})
	}
	after, _ := a.Store().CountCertificates(ctx)
	if before["ecdsa-int-1"] != after["ecdsa-int-1"] || before["rsa-int-1"] != after["rsa-int-1"] {
		t.Errorf("refusals stored certificates: before %v after %v", before, after)
	}
}

func TestRestartKeepsCA(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openStore(t, dir)
	a, err := Open(ctx, testOptions(t, dir, st), true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "n.studio.example.test"), policy.Requester{Identity: "test"})
	if err != nil {
		t.Fatal(err)
	}
	first := a.Generations()
	st.Close()

	st2 := openStore(t, dir)
	defer st2.Close()
	b, err := Open(ctx, testOptions(t, dir, st2), true)
	if err != nil {
		t.Fatal(err)
	}
	second := b.Generations()
	if len(first) != 4 || len(second) != 4 {
		t.Fatalf("generations %d then %d, want 4", len(first), len(second))
	}
	for i := range first {
		if first[i].Fingerprint != second[i].Fingerprint {
			t.Errorf("generation %s changed across restart", first[i].ID)
		}
	}
	if _, err := b.Certificate(ctx, cert.SerialNumber); err != nil {
		t.Errorf("issued certificate lost: %v", err)
	}
	// Issuing still works with the reloaded keys.
	if _, err := b.Issue(ctx, deviceCSR(t, rsaKey(t, 2048), "m.studio.example.test"), policy.Requester{Identity: "test"}); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFilesModeAndAtomic(t *testing.T) {
	_, dir := newAuthority(t)
	ents, err := os.ReadDir(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, e := range ents {
		fi, _ := e.Info()
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
		if strings.HasSuffix(e.Name(), ".key") {
			keys++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %04o, want 0600", e.Name(), fi.Mode().Perm())
			}
		}
	}
	if keys != 4 {
		t.Errorf("%d key files, want 4", keys)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "ca")); fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %04o, want 0700", fi.Mode().Perm())
	}
}

func TestBadKeyFilesRefuseToStart(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"missing", func(t *testing.T, p string) { os.Remove(p) }, "missing"},
		{"corrupt", func(t *testing.T, p string) {
			os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, "not a valid PEM private key"},
		{"too open", func(t *testing.T, p string) { os.Chmod(p, 0o644) }, "too open"},
		{"other key", func(t *testing.T, p string) {
			if err := writeKey(p, ecKey(t, elliptic.P256())); err != nil {
				t.Fatal(err)
			}
		}, "does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, dir := newAuthority(t)
			_ = a
			path := filepath.Join(dir, "ca", "ecdsa-int-1.key")
			tc.damage(t, path)
			st := openStore(t, dir)
			defer st.Close()
			_, err := Open(ctx, testOptions(t, dir, st), true)
			if err == nil {
				t.Fatal("opened with a damaged key file")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s and %q", err, path, tc.want)
			}
			gens, _ := st.Generations(ctx)
			if len(gens) != 4 {
				t.Fatalf("generations changed to %d", len(gens))
			}
		})
	}
}

func TestNoNewCAOverStrayKeys(t *testing.T) {
	ctx := context.Background()
	_, dir := newAuthority(t)
	os.Remove(filepath.Join(dir, "nmos-certs.db"))
	os.Remove(filepath.Join(dir, "nmos-certs.db-wal"))
	os.Remove(filepath.Join(dir, "nmos-certs.db-shm"))
	st := openStore(t, dir)
	defer st.Close()
	_, err := Open(ctx, testOptions(t, dir, st), true)
	if err == nil || !strings.Contains(err.Error(), "refusing to create a new CA") {
		t.Fatalf("err = %v, want a refusal to create a CA over existing keys", err)
	}
	if _, err := Open(ctx, testOptions(t, dir, st), false); !errors.Is(err, ErrNoCA) && err == nil {
		t.Fatal("opened without a CA")
	}
}

func TestImportHierarchy(t *testing.T) {
	ctx := context.Background()
	src, _ := newAuthority(t)
	srcDir := t.TempDir()
	imp := map[string]*Import{}
	for _, g := range src.Generations() {
		src.mu.RLock()
		key := src.byID[g.ID].key
		src.mu.RUnlock()
		certPath := filepath.Join(srcDir, g.ID+".pem")
		keyPath := filepath.Join(srcDir, g.ID+".key")
		os.WriteFile(certPath, PEM(g.Cert), 0o644)
		if err := writeKey(keyPath, key); err != nil {
			t.Fatal(err)
		}
		if imp[g.Hierarchy] == nil {
			imp[g.Hierarchy] = &Import{}
		}
		if g.Role == RoleRoot {
			imp[g.Hierarchy].RootCert = certPath
		} else {
			imp[g.Hierarchy].IntermediateCert, imp[g.Hierarchy].IntermediateKey = certPath, keyPath
		}
	}
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	o := testOptions(t, dir, st)
	o.Import = imp
	a, err := Open(ctx, o, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range a.Generations() {
		if g.Fingerprint != src.Generations()[i].Fingerprint {
			t.Errorf("%s not imported as is", g.ID)
		}
		if g.Role == RoleRoot && g.KeyHeld {
			t.Errorf("%s: root key held though none was given", g.ID)
		}
	}
	cert, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "imp.studio.example.test"), policy.Requester{Identity: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(src.Generations()[1].Cert); err != nil {
		t.Errorf("not signed by the imported intermediate: %v", err)
	}
	// With the root offline, the appliance cannot roll its intermediate
	// over itself, and says so.
	if _, err := a.RolloverIntermediate(ctx, ECDSA, "operator"); !errors.Is(err, ErrRootKeyNotHeld) {
		t.Errorf("rollover with the root offline: %v", err)
	}

	// A mismatched import is refused.
	dir2 := t.TempDir()
	st2 := openStore(t, dir2)
	defer st2.Close()
	o2 := testOptions(t, dir2, st2)
	o2.Import = map[string]*Import{ECDSA: {RootCert: imp[RSA].RootCert, IntermediateCert: imp[ECDSA].IntermediateCert, IntermediateKey: imp[ECDSA].IntermediateKey}}
	if _, err := Open(ctx, o2, true); err == nil {
		t.Fatal("imported an intermediate under a root that did not sign it")
	}
}

func TestRevoke(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	cert, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "r.studio.example.test"), policy.Requester{Identity: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var hooked *store.Certificate
	a.OnRevoke(func(c *store.Certificate) { hooked = c })
	reason, err := ParseReason("keyCompromise")
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Revoke(ctx, cert.SerialNumber, reason)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revoked || c.Reason != 1 || hooked == nil || hooked.Serial.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("revocation %+v hook %+v", c, hooked)
	}
	if _, err := a.Revoke(ctx, cert.SerialNumber, 1); !errors.Is(err, store.ErrAlreadyRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := ParseReason("bogus"); err == nil {
		t.Fatal("bogus reason accepted")
	}
	if _, err := a.Revoke(ctx, cert.SerialNumber, 7); err == nil {
		t.Fatal("reason 7 accepted")
	}
}

func TestServerCertificateReusedAndRenewed(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	for _, h := range Hierarchies {
		c1, err := a.ServerCertificate(ctx, h, "est.studio.example.test", 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if hierOf(c1.Leaf) != h || len(c1.Certificate) != 2 {
			t.Fatalf("%s server cert: hierarchy %s, chain %d", h, hierOf(c1.Leaf), len(c1.Certificate))
		}
		c2, err := a.ServerCertificate(ctx, h, "est.studio.example.test", 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber) != 0 {
			t.Errorf("%s: fresh server certificate was not reused", h)
		}
		// Within the renewal window a new one is made.
		a.o.Clock = func() time.Time { return time.Now().Add(61 * 24 * time.Hour) }
		c3, err := a.ServerCertificate(ctx, h, "est.studio.example.test", 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c3.Leaf.SerialNumber.Cmp(c1.Leaf.SerialNumber) == 0 {
			t.Errorf("%s: server certificate not renewed inside the renewal window", h)
		}
		// Revoked: replaced.
		if _, err := a.Revoke(ctx, c3.Leaf.SerialNumber, 4); err != nil {
			t.Fatal(err)
		}
		c4, err := a.ServerCertificate(ctx, h, "est.studio.example.test", 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		a.o.Clock = time.Now
		if c4.Leaf.SerialNumber.Cmp(c3.Leaf.SerialNumber) == 0 {
			t.Errorf("%s: revoked server certificate reused", h)
		}
	}
}

func TestResponderCert(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	k := ecKey(t, elliptic.P256())
	now := time.Now()
	c, err := a.IssueResponderCert(ctx, "ecdsa-int-1", k.Public(), now, now.Add(7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Errorf("EKU %v", c.ExtKeyUsage)
	}
	found := false
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}) {
			found = true
		}
	}
	if !found {
		t.Error("no id-pkix-ocsp-nocheck")
	}
	if _, err := a.IssueResponderCert(ctx, "nope", k.Public(), now, now.Add(time.Hour)); err == nil {
		t.Error("unknown issuer accepted")
	}
}

// BenchmarkIssue is one enrollment's work in the authority: the policy
// check (including the CSR's signature), signing, and the durable
// record in SQLite (one caller, so one commit per certificate).
func BenchmarkIssue(b *testing.B) {
	a, _ := newAuthority(b)
	ctx := context.Background()
	csrs := make([]*x509.CertificateRequest, 0, 256)
	for i := range cap(csrs) {
		csrs = append(csrs, deviceCSR(b, ecKey(b, elliptic.P256()), fmt.Sprintf("node-%d.studio.example.test", i)))
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i == len(csrs) {
			// Keys are used once: make more, off the clock.
			b.StopTimer()
			for j := range csrs {
				csrs[j] = deviceCSR(b, ecKey(b, elliptic.P256()), fmt.Sprintf("node-%d-%d.studio.example.test", i, j))
			}
			i = 0
			b.StartTimer()
		}
		if _, err := a.Issue(ctx, csrs[i], policy.Requester{Identity: "bench"}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
