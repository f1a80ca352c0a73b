package ocsp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// crlCase is one CRL for both encoders.
type crlCase struct {
	name                   string
	entries                []x509.RevocationListEntry
	number                 *big.Int
	thisUpdate, nextUpdate time.Time
	idpURL                 string
}

// crlCases covers what the encoding depends on: no revocations, serials
// of every length with and without the high bit, every reason code a
// CRL may carry, revocation and update times on both sides of the
// UTCTime/GeneralizedTime boundary, with fractions of a second and in
// other time zones, CRL numbers up to 20 octets, with and without an
// issuing distribution point.
func crlCases() []crlCase {
	r := mrand.New(mrand.NewPCG(7, 9))
	now := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	times := []time.Time{
		time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2049, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2050, 1, 1, 3, 0, 0, 0, zone), // 2049 in UTC
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		now.Add(1500 * time.Millisecond).In(zone),
	}
	reasons := []int{0, 1, 2, 3, 4, 5, 6, 9, 10}
	var many []x509.RevocationListEntry
	for i := range 300 {
		n := 1 + i%20
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.UintN(256))
		}
		if i%3 == 0 {
			b[0] |= 0x80
		}
		many = append(many, x509.RevocationListEntry{
			SerialNumber:   new(big.Int).SetBytes(b),
			RevocationTime: times[i%len(times)],
			ReasonCode:     reasons[i%len(reasons)],
		})
	}
	maxNumber := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 20*8-1), big.NewInt(1)) // 20 octets, 0x7f ff .. ff
	cases := []crlCase{
		{name: "empty", number: big.NewInt(0), thisUpdate: now, nextUpdate: now.Add(7 * 24 * time.Hour)},
		{name: "empty with IDP", number: big.NewInt(1), thisUpdate: now, nextUpdate: now.Add(time.Hour), idpURL: "http://ca.studio.example.test/crl/ecdsa-int-1.crl"},
		{name: "one", number: big.NewInt(127), thisUpdate: now, nextUpdate: now.Add(time.Hour),
			entries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(1), RevocationTime: now, ReasonCode: 1}}},
		{name: "zero serial", number: big.NewInt(128), thisUpdate: now, nextUpdate: now,
			entries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(0), RevocationTime: now}}},
		{name: "many", number: big.NewInt(1 << 40), thisUpdate: now, nextUpdate: now.Add(time.Hour), entries: many,
			idpURL: "http://est.studio.example.test:8080/crl/rsa-int-2.crl"},
		{name: "20-octet number", number: maxNumber, thisUpdate: now, nextUpdate: now.Add(time.Hour), entries: many[:3]},
		{name: "updates across 2050", number: big.NewInt(5), thisUpdate: times[1], nextUpdate: times[2], entries: many[:10]},
		{name: "updates in 9999, other zone", number: big.NewInt(6), thisUpdate: now.In(zone), nextUpdate: times[4], entries: many[:10]},
	}
	return cases
}

// crlIssuers are CA certificates with the keys the appliance's
// hierarchies can have, each with its key.
func crlIssuers(t *testing.T) []*testCA {
	var cas []*testCA
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, makeCA(t, "ecdsa-"+c.Params().Name, "Test CRL issuer "+c.Params().Name, k, nil))
	}
	return append(cas, makeCA(t, "rsa", "Test CRL issuer RSA", testRSAKey(t, 0), nil))
}

func encodeCRL(c crlCase, ca *testCA) ([]byte, error) {
	enc := newCRLEncoder(len(c.entries))
	for _, e := range c.entries {
		enc.add(e.SerialNumber, e.RevocationTime, e.ReasonCode)
	}
	p := crlParams{issuer: ca.cert, signer: ca.key, number: c.number, thisUpdate: c.thisUpdate, nextUpdate: c.nextUpdate}
	if c.idpURL != "" {
		ext, err := issuingDistributionPoint(c.idpURL)
		if err != nil {
			return nil, err
		}
		p.idp = ext.Value
	}
	return enc.finish(p)
}

func x509CRL(c crlCase, ca *testCA) ([]byte, error) {
	tmpl := &x509.RevocationList{Number: c.number, ThisUpdate: c.thisUpdate, NextUpdate: c.nextUpdate, RevokedCertificateEntries: c.entries}
	if c.idpURL != "" {
		ext, err := issuingDistributionPoint(c.idpURL)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{ext}
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
}

// TestCRLEncoderMatchesX509: the TBSCertList is byte for byte the one
// crypto/x509 writes for the same list, for every issuer key and case,
// and the CRL verifies under the issuer and reads back with its entries.
func TestCRLEncoderMatchesX509(t *testing.T) {
	for _, ca := range crlIssuers(t) {
		for _, c := range crlCases() {
			t.Run(ca.id+"/"+c.name, func(t *testing.T) {
				ours, err := encodeCRL(c, ca)
				if err != nil {
					t.Fatal(err)
				}
				ref, err := x509CRL(c, ca)
				if err != nil {
					t.Fatal(err)
				}
				got, err := x509.ParseRevocationList(ours)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				want, err := x509.ParseRevocationList(ref)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.RawTBSRevocationList, want.RawTBSRevocationList) {
					t.Fatalf("TBSCertList differs from crypto/x509's:\n got %x\nwant %x", got.RawTBSRevocationList, want.RawTBSRevocationList)
				}
				if err := got.CheckSignatureFrom(ca.cert); err != nil {
					t.Fatalf("signature: %v", err)
				}
				if len(got.RevokedCertificateEntries) != len(c.entries) {
					t.Fatalf("%d entries, want %d", len(got.RevokedCertificateEntries), len(c.entries))
				}
				for i, e := range got.RevokedCertificateEntries {
					w := c.entries[i]
					if e.SerialNumber.Cmp(w.SerialNumber) != 0 || e.ReasonCode != w.ReasonCode || !e.RevocationTime.Equal(w.RevocationTime.Truncate(time.Second)) {
						t.Fatalf("entry %d: %v %v %d, want %v %v %d", i, e.SerialNumber, e.RevocationTime, e.ReasonCode, w.SerialNumber, w.RevocationTime, w.ReasonCode)
					}
				}
			})
		}
	}
}

// TestCRLEncoderRefuses: what crypto/x509 refuses, the encoder refuses
// too, with nothing signed.
func TestCRLEncoderRefuses(t *testing.T) {
	ca := crlIssuers(t)[0]
	noCRLSign := *ca.cert
	noCRLSign.KeyUsage = x509.KeyUsageCertSign
	noSKI := *ca.cert
	noSKI.SubjectKeyId = nil
	now := time.Now()
	long := new(big.Int).Lsh(big.NewInt(1), 20*8-1) // 20 octets, high bit set: 21 encoded
	for _, tc := range []struct {
		name   string
		issuer *x509.Certificate
		c      crlCase
	}{
		{"issuer without cRLSign", &noCRLSign, crlCase{number: big.NewInt(1), thisUpdate: now, nextUpdate: now}},
		{"issuer without SKI", &noSKI, crlCase{number: big.NewInt(1), thisUpdate: now, nextUpdate: now}},
		{"nextUpdate before thisUpdate", ca.cert, crlCase{number: big.NewInt(1), thisUpdate: now, nextUpdate: now.Add(-time.Second)}},
		{"number of 20 octets, high bit set", ca.cert, crlCase{number: long, thisUpdate: now, nextUpdate: now}},
		{"number of 21 octets", ca.cert, crlCase{number: new(big.Int).Lsh(long, 1), thisUpdate: now, nextUpdate: now}},
		{"no number", ca.cert, crlCase{thisUpdate: now, nextUpdate: now}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issuer := &testCA{id: ca.id, cert: tc.issuer, key: ca.key}
			if der, err := encodeCRL(tc.c, issuer); err == nil {
				t.Fatalf("encoded a CRL (%d bytes)", len(der))
			}
			if _, err := x509CRL(tc.c, issuer); err == nil {
				t.Fatal("crypto/x509 made this CRL: the refusal is the encoder's own")
			}
		})
	}
	if _, err := encodeCRL(crlCase{number: big.NewInt(-1), thisUpdate: now, nextUpdate: now}, ca); err == nil {
		t.Fatal("encoded a negative CRL number")
	}
}

// BenchmarkCRLEncoding encodes and signs a CRL of 10,000 revocations, with
// crypto/x509 and with crlEncoder.
func BenchmarkCRLEncoding(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ca := makeCA(b, "ecdsa-int-1", "Bench CRL issuer", k, nil)
	now := time.Now()
	c := crlCase{number: big.NewInt(9), thisUpdate: now, nextUpdate: now.Add(time.Hour)}
	for i := range 10000 {
		c.entries = append(c.entries, x509.RevocationListEntry{SerialNumber: randSerial(b), RevocationTime: now, ReasonCode: i % 2})
	}
	for _, enc := range []struct {
		name string
		f    func(crlCase, *testCA) ([]byte, error)
	}{{"x509", x509CRL}, {"crlEncoder", encodeCRL}} {
		b.Run(fmt.Sprint(enc.name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.f(c, ca); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
