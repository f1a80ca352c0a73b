package ca

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/signer"
)

// signLeaf builds its template itself rather than through cfssl's Sign;
// the certificates must be the same but for the serial and the signature.
func TestSignLeafMatchesCFSSL(t *testing.T) {
	a, _ := newAuthority(t)
	oidEmail := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	// A subject in an unusual order with an attribute crypto/x509 does
	// not name: cfssl reorders the named ones and keeps the other; this
	// CA keeps the subject as the device sent it, so that the device can
	// renew with it (the one difference allowed from cfssl's certificate).
	rawSubject, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "node7.studio.example.test"}},
		{{Type: oidEmail, Value: "ops@studio.example.test"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Acme"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "SN-7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	nb, na := now.Add(-5*time.Minute), now.Add(90*24*time.Hour)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		hier string
		csr  *x509.CertificateRequest
	}{
		{name: "ecdsa-p256", key: ecKey(t, elliptic.P256()), hier: ECDSA},
		{name: "ecdsa-p384", key: ecKey(t, elliptic.P384()), hier: ECDSA},
		{name: "rsa-2048", key: rsaKey(t, 2048), hier: RSA},
		{name: "raw-subject", key: ecKey(t, elliptic.P256()), hier: ECDSA,
			csr: &x509.CertificateRequest{RawSubject: rawSubject, DNSNames: []string{"node7.studio.example.test"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := tc.csr
			if tmpl == nil {
				tmpl = &x509.CertificateRequest{
					Subject:  pkix.Name{CommonName: "node1.studio.example.test", SerialNumber: "SN-0042", Organization: []string{"Acme"}, OrganizationalUnit: []string{"Cameras"}},
					DNSNames: []string{"node1.studio.example.test", "ignored-by-hosts.studio.example.test"},
				}
			}
			csr := makeCSR(t, tc.key, tmpl)
			hosts := []string{"node1.studio.example.test", "node1-alt.studio.example.test"}
			a.mu.RLock()
			g := a.active[tc.hier]
			a.mu.RUnlock()

			out, err := g.signer.Sign(signer.SignRequest{
				Request:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})),
				Hosts:     hosts,
				Profile:   cfProfileLeaf,
				NotBefore: nb,
				NotAfter:  na,
			})
			if err != nil {
				t.Fatal(err)
			}
			want, err := parsePEMCert(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.signLeaf(csr, hosts, csr.RawSubject, time.Now(), nb, na)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.CheckSignatureFrom(g.cert); err != nil {
				t.Fatalf("not signed by the intermediate: %v", err)
			}
			wantSubject := want.RawSubject
			if tc.csr != nil {
				if bytes.Equal(want.RawSubject, rawSubject) {
					t.Error("cfssl kept the subject's order: the case no longer shows the difference")
				}
				wantSubject = rawSubject
			}
			if got.Version != want.Version || got.SignatureAlgorithm != want.SignatureAlgorithm ||
				!bytes.Equal(got.RawSubject, wantSubject) || !bytes.Equal(got.RawIssuer, want.RawIssuer) ||
				!bytes.Equal(got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo) ||
				!got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) {
				t.Errorf("certificates differ:\n got %v %v %q %v..%v\nwant %v %v %q %v..%v",
					got.Version, got.SignatureAlgorithm, got.Subject, got.NotBefore, got.NotAfter,
					want.Version, want.SignatureAlgorithm, want.Subject, want.NotBefore, want.NotAfter)
			}
			if len(got.Extensions) != len(want.Extensions) {
				t.Fatalf("%d extensions, cfssl makes %d", len(got.Extensions), len(want.Extensions))
			}
			for i := range want.Extensions {
				g, w := got.Extensions[i], want.Extensions[i]
				if !g.Id.Equal(w.Id) || g.Critical != w.Critical || !bytes.Equal(g.Value, w.Value) {
					t.Errorf("extension %d: got %v critical=%v %x, cfssl %v critical=%v %x", i, g.Id, g.Critical, g.Value, w.Id, w.Critical, w.Value)
				}
			}
			if got.SerialNumber.Sign() <= 0 || len(got.SerialNumber.Bytes()) > 20 {
				t.Errorf("serial %x: want positive, at most 20 octets", got.SerialNumber)
			}
		})
	}
}
