package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func csr(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckNames(t *testing.T) {
	p := Policy{Domain: "Studio.Example.Test."}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		cn   string
		sans []string
		want []string // names certified, or nil for a refusal
		code string
	}{
		{"node.studio.example.test", nil, []string{"node.studio.example.test"}, ""},
		{"NODE.Studio.Example.Test.", []string{"node.studio.example.test"}, []string{"node.studio.example.test"}, ""},
		{"a.studio.example.test", []string{"b.studio.example.test", "B.studio.example.test"}, []string{"a.studio.example.test", "b.studio.example.test"}, ""},
		{"", []string{"only-san.studio.example.test"}, []string{"only-san.studio.example.test"}, ""},
		{"studio.example.test", nil, []string{"studio.example.test"}, ""},
		{"_svc.studio.example.test", nil, []string{"_svc.studio.example.test"}, ""},
		{"-bad.studio.example.test", nil, nil, CodeBadName},
		{"a..studio.example.test", nil, nil, CodeBadName},
		{strings.Repeat("a", 64) + ".studio.example.test", nil, nil, CodeBadName},
		{"xstudio.example.test", nil, nil, CodeOutsideDomain},
		{"example.test", nil, nil, CodeOutsideDomain},
		{"a.*.studio.example.test", nil, nil, CodeWildcard},
		{"::1", nil, nil, CodeIPAddress},
	}
	for _, tc := range cases {
		t.Run(tc.cn+"|"+strings.Join(tc.sans, ","), func(t *testing.T) {
			names, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.sans}))
			if tc.want == nil {
				var r *Refusal
				if !errors.As(err, &r) || r.Code != tc.code {
					t.Fatalf("got %v, %v; want refusal %s", names, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(names.DNSNames, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("names %v, want %v", names.DNSNames, tc.want)
			}
		})
	}
	u, _ := url.Parse("https://x.studio.example.test/")
	if _, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}, URIs: []*url.URL{u}})); err == nil {
		t.Error("URI SAN accepted")
	}
	if _, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}, EmailAddresses: []string{"a@b.c"}})); err == nil {
		t.Error("email SAN accepted")
	}
}

func TestCheckKeyTypes(t *testing.T) {
	p := Policy{Domain: "studio.example.test"}
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if _, err := p.Check(csr(t, p521, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}})); err != nil {
		t.Errorf("P-521: %v", err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, err := p.Check(csr(t, edKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x.studio.example.test"}}))
	var r *Refusal
	if !errors.As(err, &r) || r.Code != CodeKeyType {
		t.Errorf("Ed25519: %v", err)
	}
	if d, h, err := KeyType(&p521.PublicKey); d != "ECDSA P-521" || h != "ecdsa" || err != nil {
		t.Errorf("KeyType: %s %s %v", d, h, err)
	}
}

// BenchmarkCheck is the policy's share of an enrollment: key, names and
// the CSR's signature (the proof of possession, most of the cost).
func BenchmarkCheck(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "cam1.studio.example.test"},
		DNSNames: []string{"cam1.studio.example.test"},
	}, key)
	if err != nil {
		b.Fatal(err)
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		b.Fatal(err)
	}
	p := Policy{Domain: "studio.example.test"}
	for b.Loop() {
		if _, err := p.Check(req); err != nil {
			b.Fatal(err)
		}
	}
}
