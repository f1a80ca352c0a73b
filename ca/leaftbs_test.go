package ca

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// x509TBS is the TBSCertificate crypto/x509 encodes for tmpl, with its
// signature algorithm and digest.
func x509TBS(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, issuerKey crypto.PublicKey) (tbs, algID []byte, hash crypto.Hash) {
	t.Helper()
	capture := &tbsCapture{pub: issuerKey}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, capture); !errors.Is(err, errTBSCaptured) {
		t.Fatalf("crypto/x509: %v", err)
	}
	algID, hash, err := tbsSignatureAlgorithm(capture.tbs)
	if err != nil {
		t.Fatal(err)
	}
	return capture.tbs, algID, hash
}

// checkLeafTBS encodes tmpl with leafTBS, which must take it, and
// compares the bytes with crypto/x509's.
func checkLeafTBS(t *testing.T, tmpl, parent *x509.Certificate, pub, issuerKey crypto.PublicKey) {
	t.Helper()
	got, gotAlg, gotHash, ok := leafTBS(tmpl, parent, pub, issuerKey)
	if !ok {
		t.Fatal("leafTBS left the template to crypto/x509")
	}
	want, wantAlg, wantHash := x509TBS(t, tmpl, parent, pub, issuerKey)
	if !bytes.Equal(got, want) {
		t.Fatalf("TBSCertificate differs from crypto/x509's:\n got %x\nwant %x", got, want)
	}
	if !bytes.Equal(gotAlg, wantAlg) || gotHash != wantHash {
		t.Fatalf("signature algorithm %x/%v, crypto/x509 %x/%v", gotAlg, gotHash, wantAlg, wantHash)
	}
}

func testIssuer(t testing.TB, key crypto.Signer, ski []byte) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "Issuing CA", Organization: []string{"Studio"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLeafTBSMatchesX509: for every field leafTBS encodes, alone and in
// combination, at the edges of its encoding (serial lengths and signs of
// the top bit, key usage bits in one octet and two, UTCTime and
// GeneralizedTime, empty subjects, every kind of alternative name), the
// bytes are crypto/x509's; and for every issuer key it signs with.
func TestLeafTBSMatchesX509(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	issuers := map[string]crypto.Signer{
		"P-256": p256, "P-384": ecKey(t, elliptic.P384()), "P-521": ecKey(t, elliptic.P521()), "RSA": rsaKey(t, 2048),
	}
	subjectKeys := map[string]crypto.PublicKey{
		"P-256": ecKey(t, elliptic.P256()).Public(), "P-384": ecKey(t, elliptic.P384()).Public(),
		"P-521": ecKey(t, elliptic.P521()).Public(), "RSA": rsaKey(t, 2048).Public(),
	}
	now := time.Date(2026, 11, 23, 12, 30, 45, 987654321, time.FixedZone("CET", 3600))
	base := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: new(big.Int).SetBytes([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}),
			Subject:      pkix.Name{CommonName: "node1.studio.example.test", Organization: []string{"Acme"}, SerialNumber: "SN-0042"},
			NotBefore:    now.Add(-5 * time.Minute), NotAfter: now.Add(90 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			SubjectKeyId:          []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
			OCSPServer:            []string{"http://ca.studio.example.test/ocsp"},
			IssuingCertificateURL: []string{"http://ca.studio.example.test/ca/ecdsa-int-1.crt"},
			CRLDistributionPoints: []string{"http://ca.studio.example.test/crl/ecdsa-int-1.crl"},
			DNSNames:              []string{"node1.studio.example.test", "node1-alt.studio.example.test"},
		}
	}
	uri, _ := url.Parse("urn:uuid:0d1e4f3a-0b5c-4d8e-9f00-112233445566")
	uri2, _ := url.Parse("https://node1.studio.example.test:8443/x-nmos")
	variants := map[string]func(c *x509.Certificate){
		"as built":             func(*x509.Certificate) {},
		"serial 0":             func(c *x509.Certificate) { c.SerialNumber = big.NewInt(0) },
		"serial 127":           func(c *x509.Certificate) { c.SerialNumber = big.NewInt(127) },
		"serial 128":           func(c *x509.Certificate) { c.SerialNumber = big.NewInt(128) },
		"serial top bit set":   func(c *x509.Certificate) { c.SerialNumber = new(big.Int).Lsh(big.NewInt(1), 159) },
		"no key usage":         func(c *x509.Certificate) { c.KeyUsage = 0 },
		"digitalSignature":     func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature },
		"keyAgreement":         func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement },
		"encipherOnly":         func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageEncipherOnly | x509.KeyUsageDigitalSignature },
		"decipherOnly":         func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDecipherOnly },
		"decipherOnly and one": func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDecipherOnly | x509.KeyUsageContentCommitment },
		"no extended usage":    func(c *x509.Certificate) { c.ExtKeyUsage = nil },
		"every extended usage": func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth,
				x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageTimeStamping, x509.ExtKeyUsageOCSPSigning}
		},
		"no basic constraints": func(c *x509.Certificate) { c.BasicConstraintsValid = false },
		"MaxPathLen -1":        func(c *x509.Certificate) { c.MaxPathLen = -1 },
		"no key identifiers":   func(c *x509.Certificate) { c.SubjectKeyId = nil },
		"no AIA, no CRL": func(c *x509.Certificate) {
			c.OCSPServer, c.IssuingCertificateURL, c.CRLDistributionPoints = nil, nil, nil
		},
		"OCSP only":       func(c *x509.Certificate) { c.IssuingCertificateURL = nil },
		"issuer URL only": func(c *x509.Certificate) { c.OCSPServer = nil },
		"several URLs": func(c *x509.Certificate) {
			c.OCSPServer = append(c.OCSPServer, "http://backup.studio.example.test/ocsp")
			c.IssuingCertificateURL = append(c.IssuingCertificateURL, "http://backup.studio.example.test/ca.crt")
			c.CRLDistributionPoints = append(c.CRLDistributionPoints, "http://backup.studio.example.test/ca.crl")
		},
		"every kind of name": func(c *x509.Certificate) {
			c.EmailAddresses = []string{"ops@studio.example.test"}
			c.IPAddresses = []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7"), net.IPv4(198, 51, 100, 1).To4()}
			c.URIs = []*url.URL{uri, uri2}
		},
		"IP only":             func(c *x509.Certificate) { c.DNSNames, c.IPAddresses = nil, []net.IP{net.ParseIP("192.0.2.7")} },
		"no names":            func(c *x509.Certificate) { c.DNSNames = nil },
		"empty subject":       func(c *x509.Certificate) { c.Subject = pkix.Name{} },
		"empty subject, none": func(c *x509.Certificate) { c.Subject, c.DNSNames = pkix.Name{}, nil },
		"raw subject": func(c *x509.Certificate) {
			c.RawSubject, _ = asn1.Marshal(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "raw"}}})
		},
		"subject with other attributes": func(c *x509.Certificate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{
				{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "ops@studio.example.test"},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Kamera Süd"},
			}
		},
		"authority key ID given": func(c *x509.Certificate) { c.AuthorityKeyId = []byte{9, 9, 9} },
		"year 1950":              func(c *x509.Certificate) { c.NotBefore = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year 1949":              func(c *x509.Certificate) { c.NotBefore = time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC) },
		"year 2049":              func(c *x509.Certificate) { c.NotAfter = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC) },
		"year 2050":              func(c *x509.Certificate) { c.NotAfter = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC) },
		"99991231235959Z":        func(c *x509.Certificate) { c.NotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) },
	}
	for iname, ikey := range issuers {
		for _, ski := range [][]byte{{0xaa, 0xbb, 0xcc}, nil} {
			parent := testIssuer(t, ikey, ski)
			for kname, pub := range subjectKeys {
				for vname, vary := range variants {
					tmpl := base()
					vary(tmpl)
					t.Run(iname+"/"+kname+"/"+vname, func(t *testing.T) {
						checkLeafTBS(t, tmpl, parent, pub, ikey.Public())
					})
				}
			}
		}
	}
	// Self-issued: subject and issuer names equal, so crypto/x509 keeps
	// the template's authority key identifier.
	parent := testIssuer(t, p256, []byte{1})
	self := base()
	self.RawSubject = parent.RawSubject
	self.AuthorityKeyId = []byte{7, 7}
	checkLeafTBS(t, self, parent, subjectKeys["P-256"], p256.Public())
}

// TestLeafTBSLeavesTheRestToX509: what leafTBS does not encode goes to
// crypto/x509 (ok false), and createCertificate still makes those
// certificates, or refuses them with crypto/x509's error.
func TestLeafTBSLeavesTheRestToX509(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	parent := testIssuer(t, key, []byte{1, 2})
	pub := ecKey(t, elliptic.P256()).Public()
	now := time.Now()
	base := func() *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "n"}, NotBefore: now, NotAfter: now.Add(time.Hour),
			DNSNames: []string{"n.studio.example.test"}, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}
	}
	_, ipnet, _ := net.ParseCIDR("192.0.2.0/24")
	for name, tc := range map[string]struct {
		vary   func(c *x509.Certificate)
		issuer crypto.PublicKey
		fails  bool // crypto/x509 refuses it too
	}{
		"a CA":                {vary: func(c *x509.Certificate) { c.IsCA = true }},
		"path length":         {vary: func(c *x509.Certificate) { c.MaxPathLen = 2 }, fails: true},
		"path length zero":    {vary: func(c *x509.Certificate) { c.MaxPathLenZero = true }, fails: true},
		"a policy":            {vary: func(c *x509.Certificate) { c.Policies = []x509.OID{mustOID(t, "1.3.6.1.4.1.99.1")} }},
		"a policy identifier": {vary: func(c *x509.Certificate) { c.PolicyIdentifiers = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99, 1}} }},
		"name constraints":    {vary: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"studio.example.test"} }},
		"IP constraints":      {vary: func(c *x509.Certificate) { c.ExcludedIPRanges = []*net.IPNet{ipnet} }},
		"an extra extension": {vary: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{5, 0}}}
		}},
		"an unknown usage":      {vary: func(c *x509.Certificate) { c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99, 2}} }},
		"an unlisted usage":     {vary: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageIPSECUser} }},
		"a chosen algorithm":    {vary: func(c *x509.Certificate) { c.SignatureAlgorithm = x509.ECDSAWithSHA384 }},
		"no serial":             {vary: func(c *x509.Certificate) { c.SerialNumber = nil }},
		"a negative serial":     {vary: func(c *x509.Certificate) { c.SerialNumber = big.NewInt(-1) }, fails: true},
		"a non-ASCII DNS name":  {vary: func(c *x509.Certificate) { c.DNSNames = []string{"kamera-süd.studio.example.test"} }, fails: true},
		"a non-ASCII address":   {vary: func(c *x509.Certificate) { c.EmailAddresses = []string{"büro@studio.example.test"} }, fails: true},
		"another issuer key":    {issuer: ecKey(t, elliptic.P256()).Public(), fails: true},
		"an Ed25519 issuer key": {issuer: ed25519.PublicKey(make([]byte, 32))},
		"year 10000":            {vary: func(c *x509.Certificate) { c.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, fails: true},
	} {
		t.Run(name, func(t *testing.T) {
			tmpl := base()
			if tc.vary != nil {
				tc.vary(tmpl)
			}
			issuer := tc.issuer
			if issuer == nil {
				issuer = key.Public()
			}
			if _, _, _, ok := leafTBS(tmpl, parent, pub, issuer); ok {
				t.Fatal("leafTBS encoded a template it does not cover")
			}
			if issuer != key.Public() {
				return
			}
			der, err := createCertificate(tmpl, parent, pub, key)
			if tc.fails {
				if err == nil {
					t.Fatal("createCertificate made a certificate crypto/x509 refuses")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckSignatureFrom(parent); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLeafTemplatesEncodedHere: the templates the authority really signs
// (cfssl's leaf profile filled for CSRs of every key type, with names of
// every kind) are all encoded by leafTBS, to crypto/x509's bytes.
func TestLeafTemplatesEncodedHere(t *testing.T) {
	a, _ := newAuthority(t)
	now := time.Now()
	for _, tc := range []struct {
		name  string
		key   crypto.Signer
		hier  string
		hosts []string
	}{
		{"ecdsa-p256", ecKey(t, elliptic.P256()), ECDSA, []string{"node1.studio.example.test"}},
		{"ecdsa-p384", ecKey(t, elliptic.P384()), ECDSA, []string{"node1.studio.example.test", "192.0.2.7", "2001:db8::7"}},
		{"rsa-2048", rsaKey(t, 2048), RSA, []string{"node1.studio.example.test", "ops@studio.example.test", "urn:uuid:0d1e4f3a-0b5c-4d8e-9f00-112233445566"}},
		{"ecdsa in rsa", ecKey(t, elliptic.P256()), RSA, []string{"node1.studio.example.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := makeCSR(t, tc.key, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "node1.studio.example.test", Organization: []string{"Acme"}},
			})
			a.mu.RLock()
			g := a.active[tc.hier]
			a.mu.RUnlock()
			tmpl, err := g.leafTemplate(csr, tc.hosts, csr.RawSubject, now, now.Add(-5*time.Minute), now.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			checkLeafTBS(t, tmpl, g.cert, tmpl.PublicKey, g.key.Public())
		})
	}
}

func mustOID(t *testing.T, s string) x509.OID {
	t.Helper()
	o, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// BenchmarkLeafTBS: encoding an EST leaf's TBSCertificate (the template
// the authority fills for a P-256 CSR) by crypto/x509 and by leafTBS.
func BenchmarkLeafTBS(b *testing.B) {
	key, leaf := ecKey(b, elliptic.P256()), ecKey(b, elliptic.P256())
	parent := testIssuer(b, key, []byte{1, 2, 3})
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Lsh(big.NewInt(1), 150), Subject: pkix.Name{CommonName: "node1.studio.example.test"},
		NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyId: make([]byte, 20), DNSNames: []string{"node1.studio.example.test"},
		OCSPServer: []string{"http://ca.studio.example.test/ocsp"}, IssuingCertificateURL: []string{"http://ca.studio.example.test/ca.crt"},
		CRLDistributionPoints: []string{"http://ca.studio.example.test/ca.crl"},
	}
	b.Run("crypto/x509", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			capture := &tbsCapture{pub: key.Public()}
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &leaf.PublicKey, capture); !errors.Is(err, errTBSCaptured) {
				b.Fatal(err)
			}
		}
	})
	b.Run("cryptobyte", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, ok := leafTBS(tmpl, parent, &leaf.PublicKey, key.Public()); !ok {
				b.Fatal("not encoded")
			}
		}
	})
}
