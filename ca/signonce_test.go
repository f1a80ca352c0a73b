package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"testing"
	"time"
)

// opaqueSigner hides the key's type, as a hardware token would.
type opaqueSigner struct{ k crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, d, opts)
}

func TestCreateCertificateSignsOnce(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  x509.SignatureAlgorithm
		want x509.SignatureAlgorithm
	}{
		{"P-256", p256, 0, x509.ECDSAWithSHA256},
		{"P-384", p384, 0, x509.ECDSAWithSHA384},
		{"P-521", p521, 0, x509.ECDSAWithSHA512},
		{"RSA", r2048, 0, x509.SHA256WithRSA},
		{"RSA SHA-384", r2048, x509.SHA384WithRSA, x509.SHA384WithRSA},
		{"RSA-PSS", r2048, x509.SHA256WithRSAPSS, x509.SHA256WithRSAPSS},
		{"opaque signer", opaqueSigner{p256}, 0, x509.ECDSAWithSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caTmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA " + tc.name},
				NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
				KeyUsage: x509.KeyUsageCertSign, SubjectKeyId: []byte{1, 2, 3, 4},
			}
			caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, tc.key.Public(), tc.key)
			if err != nil {
				t.Fatal(err)
			}
			ca, _ := x509.ParseCertificate(caDER)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "dev.studio.example.test"},
				DNSNames: []string{"dev.studio.example.test"}, NotBefore: now, NotAfter: now.Add(time.Minute),
				KeyUsage: x509.KeyUsageDigitalSignature, SignatureAlgorithm: tc.alg,
			}
			der, err := createCertificate(tmpl, ca, &leafKey.PublicKey, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.CheckSignatureFrom(ca); err != nil {
				t.Fatalf("signature: %v", err)
			}
			if got.SignatureAlgorithm != tc.want {
				t.Errorf("algorithm %v, want %v", got.SignatureAlgorithm, tc.want)
			}
			ref, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leafKey.PublicKey, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			refCert, _ := x509.ParseCertificate(ref)
			if !bytes.Equal(got.RawTBSCertificate, refCert.RawTBSCertificate) {
				t.Error("the TBSCertificate differs from crypto/x509's")
			}
		})
	}
}

func TestCreateCertificateErrors(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"},
		NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &k.PublicKey, k)
	ca, _ := x509.ParseCertificate(caDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now, NotAfter: now.Add(time.Minute)}
	// The wrong key for the issuer: crypto/x509's own check still runs.
	if _, err := createCertificate(tmpl, ca, &k.PublicKey, other); err == nil {
		t.Error("a key that is not the issuer's signed")
	}
	if _, _, err := tbsSignatureAlgorithm([]byte{0x30, 0x03, 0x02, 0x01, 0x01}); err == nil {
		t.Error("a TBS without an algorithm parsed")
	}
	if _, _, err := tbsSignatureAlgorithm([]byte{0x04, 0x00}); err == nil {
		t.Error("a non-SEQUENCE parsed")
	}
}

func BenchmarkCreateCertificate(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "CA"},
		NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &k.PublicKey, k)
	ca, _ := x509.ParseCertificate(caDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now, NotAfter: now.Add(time.Minute),
		DNSNames: []string{"dev.studio.example.test"}}
	b.Run("crypto/x509", func(b *testing.B) {
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leaf.PublicKey, k); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signed once", func(b *testing.B) {
		for b.Loop() {
			if _, err := createCertificate(tmpl, ca, &leaf.PublicKey, k); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestRandomSerial(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	var prev *big.Int
	for i := range 200 {
		at := t0.Add(time.Duration(i) * time.Second)
		a, err := randomSerial(at)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := randomSerial(at)
		if a.Sign() <= 0 || len(a.Bytes()) > 20 {
			t.Fatalf("serial %x: want positive, at most 20 octets", a)
		}
		if a.Cmp(b) == 0 || seen[a.String()] {
			t.Fatalf("serial %x repeated", a)
		}
		seen[a.String()], seen[b.String()] = true, true
		if prev != nil && a.Cmp(prev) <= 0 {
			t.Fatalf("serial %x issued a second after %x is not larger", a, prev)
		}
		prev = b
	}
	// Within one second too: a microsecond later is larger.
	prev = nil
	for i := range 200 {
		a, err := randomSerial(t0.Add(time.Duration(i) * time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && a.Cmp(prev) <= 0 {
			t.Fatalf("serial %x issued a microsecond after %x is not larger", a, prev)
		}
		prev = a
	}
}
