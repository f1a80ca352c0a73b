package est

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mozilla.org/pkcs7"
)

func ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestCACerts(t *testing.T) {
	f := newFixture(t)
	certs, err := f.client(nil).CACerts(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []*x509.Certificate{f.pki.ecInt.cert, f.pki.rsaInt.cert, f.pki.ecRoot.cert, f.pki.rsaRoot.cert}
	if len(certs) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(certs), len(want))
	}
	for i := range want {
		if !certs[i].Equal(want[i]) {
			t.Errorf("certificate %d is %s, want %s", i, certs[i].Subject, want[i].Subject)
		}
	}
	// The same through the label.
	c := f.client(nil)
	c.AdditionalPathSegment = "nmos"
	if certs, err := c.CACerts(ctx(t)); err != nil || len(certs) != 4 {
		t.Fatalf("label: %d certificates, %v", len(certs), err)
	}
}

// TestCACertsWire checks the exact wire format of a certs-only answer.
func TestCACertsWire(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(f.httpClient(nil, 0), http.MethodGet, "/.well-known/est/cacerts", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	checkHSTS(t, resp)
	for h, want := range map[string]string{
		"Content-Type":              "application/pkcs7-mime; smime-type=certs-only",
		"Content-Transfer-Encoding": "base64",
		"Content-Length":            itoa(len(body)),
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if !strings.HasSuffix(body, "\r\n") {
		t.Error("body does not end with CRLF")
	}
	lines := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
	for i, l := range lines {
		if len(l) > 76 || (i < len(lines)-1 && len(l) != 76) || strings.ContainsAny(l, "\r\n ") {
			t.Fatalf("line %d has %d characters: %q", i, len(l), l)
		}
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(lines, ""))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Certificates) != 4 || len(p7.Signers) != 0 {
		t.Fatalf("%d certificates, %d signers", len(p7.Certificates), len(p7.Signers))
	}
	// HEAD answers the same headers and no body.
	resp, body = f.do(f.httpClient(nil, 0), http.MethodHead, "/.well-known/est/cacerts", nil, nil)
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != mediaCertsOnly {
		t.Fatalf("HEAD: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestInvalidate: the cacerts answer is cached until Invalidate.
func TestInvalidate(t *testing.T) {
	f := newFixture(t)
	c := f.client(nil)
	if certs, _ := c.CACerts(ctx(t)); len(certs) != 4 {
		t.Fatalf("%d certificates", len(certs))
	}
	extra := []*x509.Certificate{sign(certSpec{cn: "New Root", isCA: true}, nil).cert}
	f.ca.extra.Store(&extra)
	if certs, _ := c.CACerts(ctx(t)); len(certs) != 4 {
		t.Fatalf("cache not used: %d certificates", len(certs))
	}
	f.srv.Invalidate()
	if certs, _ := c.CACerts(ctx(t)); len(certs) != 5 {
		t.Fatalf("after Invalidate: %d certificates", len(certs))
	}
}

func TestCACertsTTL(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.CACacheTTL = time.Minute })
	c := f.client(nil)
	c.CACerts(ctx(t))
	extra := []*x509.Certificate{sign(certSpec{cn: "New Root", isCA: true}, nil).cert}
	f.ca.extra.Store(&extra)
	f.clock.Advance(2 * time.Minute)
	if certs, _ := c.CACerts(ctx(t)); len(certs) != 5 {
		t.Fatalf("after TTL: %d certificates", len(certs))
	}
}

func TestCSRAttrs(t *testing.T) {
	for _, required := range []bool{false, true} {
		f := newFixture(t, func(o *Options) { o.RequireChannelBinding = required })
		attrs, err := f.client(nil).CSRAttrs(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		has := func(oid asn1.ObjectIdentifier) bool {
			return slices.ContainsFunc(attrs.OIDs, oid.Equal)
		}
		if has(oidChallengePassword) != required {
			t.Errorf("required=%v: challengePassword listed = %v", required, has(oidChallengePassword))
		}
		for _, oid := range []asn1.ObjectIdentifier{oidECDSAWithSHA256, oidRSAEncryption, oidSHA256WithRSAEncryption} {
			if !has(oid) {
				t.Errorf("%v not listed", oid)
			}
		}
		if len(attrs.Attributes) != 1 || !attrs.Attributes[0].Type.Equal(oidECPublicKey) ||
			len(attrs.Attributes[0].Values) != 1 || !oidSecp256r1.Equal(attrs.Attributes[0].Values[0].(asn1.ObjectIdentifier)) {
			t.Errorf("attributes %+v, want ecPublicKey {secp256r1}", attrs.Attributes)
		}
	}
}

// TestEnroll enrolls with the globalsign client and both key types.
func TestEnroll(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		issuer *x509.Certificate
		dev    *issued
		label  string
	}{
		{"ECDSA, maker A", ecKey(), f.pki.ecInt.cert, f.pki.devA, ""},
		{"RSA, maker B", rsaKey(2048), f.pki.rsaInt.cert, f.pki.devB, ""},
		{"ECDSA through a label", ecKey(), f.pki.ecInt.cert, f.pki.devA2, "nmos"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client(tc.dev)
			c.AdditionalPathSegment = tc.label
			csr := newCSR(t, tc.key, "cam1."+testDomain, "cam1-alias."+testDomain)
			cert, err := c.Enroll(ctx(t), csr)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignatureFrom(tc.issuer); err != nil {
				t.Fatal(err)
			}
			if !publicKeyEqual(cert.PublicKey, tc.key.Public()) {
				t.Fatal("certificate for another key")
			}
			if !slices.Equal(cert.DNSNames, []string{"cam1." + testDomain, "cam1-alias." + testDomain}) {
				t.Fatalf("names %v", cert.DNSNames)
			}
			rec, err := f.ca.Certificate(ctx(t), cert.SerialNumber)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rec.Identity, "manufacturer certificate") || !strings.Contains(rec.Identity, tc.dev.cert.Subject.CommonName) {
				t.Fatalf("identity %q", rec.Identity)
			}
		})
	}
	// Unknown label.
	c := f.client(f.pki.devA)
	c.AdditionalPathSegment = "other"
	if _, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "cam2."+testDomain)); estStatus(err) != http.StatusNotFound {
		t.Fatalf("unknown label: %v", err)
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// TestEnrollPolicyRefusal: a CSR the policy refuses gets 400 and its
// reason.
func TestEnrollPolicyRefusal(t *testing.T) {
	f := newFixture(t)
	c := f.client(f.pki.devA)
	_, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "cam1.elsewhere.test"))
	if estStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "outside the domain") {
		t.Fatalf("err %v", err)
	}
	// Key reuse.
	key := ecKey()
	if _, err := c.Enroll(ctx(t), newCSR(t, key, "cam1."+testDomain)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(ctx(t), newCSR(t, key, "cam1."+testDomain))
	if estStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "new key pair") {
		t.Fatalf("key reuse: %v", err)
	}
	if n := f.ca.count(t); n != 1 {
		t.Fatalf("%d certificates stored", n)
	}
}

// TestEnrollCAFailure: a CA failure is a 500 without detail for the
// client, with the detail in the log.
func TestEnrollCAFailure(t *testing.T) {
	f := newFixture(t)
	f.ca.failIssue.Store(true)
	_, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), "cam1."+testDomain))
	if estStatus(err) != http.StatusInternalServerError || strings.Contains(err.Error(), "signing key") {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(f.logs.String(), "signing key unavailable") {
		t.Fatal("cause not logged")
	}
}

// TestClientAuthMatrix runs every kind of client certificate against
// simpleenroll and serverkeygen, with and without the options that change
// the verdict, and checks that a refusal stores nothing.
func TestClientAuthMatrix(t *testing.T) {
	p := getPKI(t)
	type want struct{ plain, allowExpired, manual int }
	cases := []struct {
		name string
		dev  *issued
		want want
	}{
		{"trusted maker A (chain sent, notAfter 9999)", p.devA, want{200, 200, 200}},
		{"trusted maker B (no EKU)", p.devB, want{200, 200, 200}},
		{"rogue CA", p.rogueDev, want{403, 403, 202}},
		{"serverAuth-only EKU", p.devAServerOnly, want{403, 403, 202}},
		{"expired", p.devBExpired, want{403, 200, 202}},
		{"revoked (CRL file, intermediate)", p.devARevoked, want{403, 403, 403}},
		{"revoked (CRL over HTTP, root)", p.devBRevoked, want{403, 403, 403}},
		{"no certificate", nil, want{401, 401, 202}},
	}
	modes := []struct {
		name string
		opt  func(*Options)
		pick func(want) int
	}{
		{"default", func(*Options) {}, func(w want) int { return w.plain }},
		{"AllowExpiredClientCerts", func(o *Options) { o.AllowExpiredClientCerts = true }, func(w want) int { return w.allowExpired }},
		{"ManualApproval", func(o *Options) { o.ManualApproval = true }, func(w want) int { return w.manual }},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t, m.opt)
			for _, tc := range cases {
				for _, op := range []string{opEnroll, opServerKeyGen} {
					t.Run(tc.name+"/"+op, func(t *testing.T) {
						before := f.ca.count(t)
						c := f.client(tc.dev)
						csr := newCSR(t, ecKey(), "dev."+testDomain)
						var err error
						if op == opEnroll {
							_, err = c.Enroll(ctx(t), csr)
						} else {
							_, _, err = c.ServerKeyGen(ctx(t), csr)
						}
						got := estStatus(err)
						if got == 0 {
							got = 200
						}
						if want := m.pick(tc.want); got != want {
							t.Fatalf("status %d (%v), want %d", got, err, want)
						}
						stored := f.ca.count(t) - before
						if (got == 200) != (stored == 1) {
							t.Fatalf("status %d and %d certificates stored", got, stored)
						}
						if got == 401 || got == 403 {
							if !strings.Contains(err.Error(), "certificate") {
								t.Errorf("reason %q does not say why", err)
							}
						}
					})
				}
			}
		})
	}
}

// TestReenroll renews with the certificate being renewed.
func TestReenroll(t *testing.T) {
	f := newFixture(t)
	name := "cam9." + testDomain
	first, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), name))
	if err != nil {
		t.Fatal(err)
	}
	firstKey := ecKey()
	// Enroll again to get a certificate whose key we hold.
	mine, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, firstKey, name))
	if err != nil {
		t.Fatal(err)
	}
	_ = first
	me := &issued{cert: mine, key: firstKey, chain: []*x509.Certificate{f.pki.ecInt.cert}}

	// The renewal CSR copies the certificate's subject and SAN, as the
	// globalsign estclient does.
	renewCSR := func(key crypto.Signer, cert *x509.Certificate) *x509.CertificateRequest {
		tmpl := &x509.CertificateRequest{RawSubject: cert.RawSubject}
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidSubjectAltName) {
				tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
			}
		}
		der, err := x509.CreateCertificateRequest(nil, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(der)
		return csr
	}
	newKey := ecKey()
	renewed, err := f.client(me).Reenroll(ctx(t), renewCSR(newKey, mine))
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(renewed.PublicKey, newKey.Public()) || renewed.SerialNumber.Cmp(mine.SerialNumber) == 0 {
		t.Fatal("not a new certificate for the new key")
	}
	rec, _ := f.ca.Certificate(ctx(t), renewed.SerialNumber)
	if !strings.Contains(rec.Identity, mine.SerialNumber.Text(16)) {
		t.Fatalf("identity %q does not name the renewed certificate", rec.Identity)
	}
	// A certificate of ours may also use simpleenroll for its own names,
	// not for others.
	if _, err := f.client(me).Enroll(ctx(t), newCSR(t, ecKey(), name)); err != nil {
		t.Fatalf("enroll with our certificate: %v", err)
	}
	if _, err := f.client(me).Enroll(ctx(t), newCSR(t, ecKey(), "other."+testDomain)); estStatus(err) != http.StatusForbidden {
		t.Fatalf("enroll for other names with our certificate: %v", err)
	}

	cases := []struct {
		name   string
		who    *issued
		csr    *x509.CertificateRequest
		status int
		reason string
	}{
		{"different names", me, newCSR(t, ecKey(), "other."+testDomain), 403, "RFC 7030 4.2.2"},
		{"extra SAN", me, newCSR(t, ecKey(), name, "more."+testDomain), 403, "4.2.2"},
		{"manufacturer certificate", f.pki.devA, renewCSR(ecKey(), mine), 403, "simpleenroll"},
		{"no certificate", nil, renewCSR(ecKey(), mine), 401, "certificate being renewed"},
		{"untrusted certificate", f.pki.rogueDev, renewCSR(ecKey(), mine), 403, "not issued by this CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.ca.count(t)
			_, err := f.client(tc.who).Reenroll(ctx(t), tc.csr)
			if estStatus(err) != tc.status || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %v, want %d mentioning %q", err, tc.status, tc.reason)
			}
			if f.ca.count(t) != before {
				t.Fatal("refused request stored a certificate")
			}
		})
	}

	t.Run("revoked", func(t *testing.T) {
		if _, err := f.ca.st.Revoke(ctx(t), mine.SerialNumber, f.clock.Now(), 1); err != nil {
			t.Fatal(err)
		}
		_, err := f.client(me).Reenroll(ctx(t), renewCSR(ecKey(), mine))
		if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		key := ecKey()
		cert, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, key, "cam10."+testDomain))
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(31 * 24 * time.Hour)
		defer f.clock.Advance(-31 * 24 * time.Hour)
		who := &issued{cert: cert, key: key, chain: []*x509.Certificate{f.pki.ecInt.cert}}
		_, err = f.client(who).Reenroll(ctx(t), renewCSR(ecKey(), cert))
		if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "validity") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("not in our records", func(t *testing.T) {
		// Signed by our intermediate, never recorded.
		key := ecKey()
		ghost := sign(certSpec{cn: name, dns: []string{name}, key: key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, f.pki.ecInt)
		_, err := f.client(ghost).Reenroll(ctx(t), renewCSR(ecKey(), ghost.cert))
		if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "not in its records") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestServerKeyGen: a plain key like the CSR's, certified.
func TestServerKeyGen(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		want func(crypto.PrivateKey) bool
	}{
		{"ECDSA P-256", ecKey(), func(k crypto.PrivateKey) bool {
			e, ok := k.(*ecdsa.PrivateKey)
			return ok && e.Curve == elliptic.P256()
		}},
		{"ECDSA P-384", must(ecdsa.GenerateKey(elliptic.P384(), nil)), func(k crypto.PrivateKey) bool {
			e, ok := k.(*ecdsa.PrivateKey)
			return ok && e.Curve == elliptic.P384()
		}},
		{"RSA 2048", rsaKey(2048), func(k crypto.PrivateKey) bool {
			r, ok := k.(*rsa.PrivateKey)
			return ok && r.N.BitLen() == 2048
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client(f.pki.devA)
			c.AdditionalPathSegment = "nmos"
			csr := newCSR(t, tc.key, "kg."+testDomain)
			cert, keyDER, err := c.ServerKeyGen(ctx(t), csr)
			if err != nil {
				t.Fatal(err)
			}
			key, err := x509.ParsePKCS8PrivateKey(keyDER)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(key) {
				t.Fatalf("key %T of the wrong kind", key)
			}
			if !publicKeyEqual(cert.PublicKey, key.(crypto.Signer).Public()) {
				t.Fatal("certificate is not for the returned key")
			}
			if publicKeyEqual(cert.PublicKey, tc.key.Public()) {
				t.Fatal("certificate is for the CSR's key")
			}
			if cert.Subject.CommonName != "kg."+testDomain || !slices.Equal(cert.DNSNames, []string{"kg." + testDomain}) {
				t.Fatalf("names %s %v", cert.Subject, cert.DNSNames)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestServerKeyGenEncrypted: the key encrypted to the client's RSA
// certificate (AsymmetricDecryptKeyIdentifier), decrypted as a
// go.mozilla.org/pkcs7 client does.
func TestServerKeyGenEncrypted(t *testing.T) {
	f := newFixture(t)
	dev := f.pki.devB // RSA
	var spki struct {
		Algo pkix.AlgorithmIdentifier
		Key  asn1.BitString
	}
	if _, err := asn1.Unmarshal(dev.cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string][]byte{
		"subjectKeyIdentifier":          dev.cert.SubjectKeyId,
		"RFC 5280 SHA-1 key identifier": sha1Sum(spki.Key.Bytes),
	} {
		t.Run(name, func(t *testing.T) {
			csr := csrWithAttrs(t, ecKey(), "enc."+testDomain, asymmKeyID(id))
			cert, blob, err := f.client(dev).ServerKeyGen(ctx(t), csr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509.ParsePKCS8PrivateKey(blob); err == nil {
				t.Fatal("key returned in clear")
			}
			env, err := pkcs7.Parse(blob)
			if err != nil {
				t.Fatal(err)
			}
			signed, err := env.Decrypt(dev.cert, dev.key)
			if err != nil {
				t.Fatal(err)
			}
			checkSignedKey(t, f, signed, cert)
		})
	}

	cases := []struct {
		name   string
		who    *issued
		attr   csrAttr
		opt    func(*Options)
		status int
		reason string
	}{
		{"unknown key identifier", dev, asymmKeyID([]byte{1, 2, 3}), nil, 400, "does not identify"},
		{"ECDSA client key", f.pki.devA, asymmKeyID(f.pki.devA.cert.SubjectKeyId), nil, 400, "RSA"},
		{"symmetric", dev, decryptKeyID([]byte("k1")), nil, 400, "DecryptKeyIdentifier"},
		{"no signer configured", dev, asymmKeyID(dev.cert.SubjectKeyId), func(o *Options) { o.KeySigner = nil }, 501, "not configured"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.opt != nil {
				g = newFixture(t, tc.opt)
			}
			before := g.ca.count(t)
			_, _, err := g.client(tc.who).ServerKeyGen(ctx(t), csrWithAttrs(t, ecKey(), "enc2."+testDomain, tc.attr))
			if estStatus(err) != tc.status || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %v, want %d mentioning %q", err, tc.status, tc.reason)
			}
			if g.ca.count(t) != before {
				t.Fatal("a refused request was issued")
			}
		})
	}
}

func TestServerKeyGenDisabled(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.DisableServerKeyGen = true })
	_, _, err := f.client(f.pki.devA).ServerKeyGen(ctx(t), newCSR(t, ecKey(), "kg."+testDomain))
	if estStatus(err) != http.StatusNotImplemented {
		t.Fatalf("err %v", err)
	}
}

// TestNoTrust: without a manufacturer trust only our certificates work.
func TestNoTrust(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Trust = nil })
	_, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), "cam1."+testDomain))
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "no manufacturer roots") {
		t.Fatalf("err %v", err)
	}
	// SetTrust brings it back.
	tr, err := LoadTrust(context.Background(), f.pki.trustConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetTrust(tr)
	if _, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), "cam1."+testDomain)); err != nil {
		t.Fatal(err)
	}
}
