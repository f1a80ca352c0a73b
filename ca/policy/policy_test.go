package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
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
		{"_svc.studio.example.test", nil, nil, CodeReserved},
		{"ok.studio.example.test", []string{"_nmos-certs._tcp.studio.example.test"}, nil, CodeReserved},
		{"bad_name.studio.example.test", nil, nil, CodeBadName},
		{"ok.studio.example.test", []string{"x_y.studio.example.test"}, nil, CodeBadName},
		{"node8.studio.example.test.", nil, []string{"node8.studio.example.test"}, ""},
		{"Bücher.Studio.Example.Test", nil, []string{"xn--bcher-kva.studio.example.test"}, ""},
		{"xn--bcher-kva.studio.example.test", nil, []string{"xn--bcher-kva.studio.example.test"}, ""},
		{"xn--a.studio.example.test", nil, nil, CodeBadName},
		{"xn--zz-zz.studio.example.test", nil, nil, CodeBadName},
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

// subjectOf builds a DER subject from attributes in the order given.
func subjectOf(t *testing.T, rdns ...pkix.AttributeTypeAndValue) []byte {
	t.Helper()
	var seq pkix.RDNSequence
	for _, a := range rdns {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{a})
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var (
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
)

func TestSubjectKeptAsSent(t *testing.T) {
	p := Policy{Domain: "studio.example.test"}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// CN first, as many embedded clients write it; Go's pkix.Name would
	// put it last.
	raw := subjectOf(t,
		pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "node8.studio.example.test"},
		pkix.AttributeTypeAndValue{Type: oidOU, Value: "Cameras"},
		pkix.AttributeTypeAndValue{Type: oidO, Value: "Acme"},
		pkix.AttributeTypeAndValue{Type: oidC, Value: "GB"})
	n, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{RawSubject: raw}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(n.Subject, raw) {
		t.Fatalf("subject re-encoded: %s", SubjectString(n.Subject))
	}
	// A common name in capitals with a trailing dot is normalised in
	// place: the order and the other attributes stay.
	raw2 := subjectOf(t,
		pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "NODE8.Studio.Example.Test."},
		pkix.AttributeTypeAndValue{Type: oidO, Value: "Acme"})
	n, err = p.CheckNames(csr(t, key, &x509.CertificateRequest{RawSubject: raw2}))
	if err != nil {
		t.Fatal(err)
	}
	if got := SubjectString(n.Subject); got != "CN=node8.studio.example.test, O=Acme" {
		t.Fatalf("subject %s", got)
	}
	if n.CommonName != "node8.studio.example.test" || strings.Join(n.DNSNames, ",") != "node8.studio.example.test" {
		t.Fatalf("names %+v", n)
	}
	if !SameSubject(n.Subject, raw2) {
		t.Error("normalised subject does not compare equal to the one sent")
	}
	// A common name crypto/x509 cannot read (UniversalString) is refused,
	// not certified from this package's own reading of it.
	universal, _ := asn1.Marshal(pkix.RDNSequence{{{Type: oidCommonName, Value: asn1.RawValue{Tag: 28, Bytes: []byte{0, 0, 0, 'x', 0, 0, 0, '.', 0, 0, 0, 's', 0, 0, 0, 't', 0, 0, 0, 'u', 0, 0, 0, 'd', 0, 0, 0, 'i', 0, 0, 0, 'o', 0, 0, 0, '.', 0, 0, 0, 'e', 0, 0, 0, 'x', 0, 0, 0, 'a', 0, 0, 0, 'm', 0, 0, 0, 'p', 0, 0, 0, 'l', 0, 0, 0, 'e', 0, 0, 0, '.', 0, 0, 0, 't', 0, 0, 0, 'e', 0, 0, 0, 's', 0, 0, 0, 't'}}}}})
	if _, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{RawSubject: universal})); err == nil {
		t.Fatal("UniversalString common name accepted")
	}
	// Two common names are refused.
	raw3 := subjectOf(t,
		pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "a.studio.example.test"},
		pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "b.studio.example.test"})
	var r *Refusal
	if _, err := p.CheckNames(csr(t, key, &x509.CertificateRequest{RawSubject: raw3})); !errors.As(err, &r) || r.Code != CodeBadName {
		t.Fatalf("two common names: %v", err)
	}
}

func TestSameSubjectByMeaning(t *testing.T) {
	cnFirst := subjectOf(t,
		pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "cam1.studio.example.test"},
		pkix.AttributeTypeAndValue{Type: oidO, Value: "Acme"})
	goOrder, _ := asn1.Marshal(pkix.Name{CommonName: "cam1.studio.example.test", Organization: []string{"Acme"}}.ToRDNSequence())
	utf8CN, _ := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidO, Value: "Acme"}},
		{{Type: oidCommonName, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("CAM1.studio.example.test.")}}},
	})
	other, _ := asn1.Marshal(pkix.Name{CommonName: "cam1.studio.example.test", Organization: []string{"Other"}}.ToRDNSequence())
	extra, _ := asn1.Marshal(pkix.Name{CommonName: "cam1.studio.example.test", Organization: []string{"Acme"}, Country: []string{"GB"}}.ToRDNSequence())
	for _, c := range []struct {
		name string
		a, b []byte
		same bool
	}{
		{"order", cnFirst, goOrder, true},
		{"string type and case of the CN", cnFirst, utf8CN, true},
		{"another value", cnFirst, other, false},
		{"one more attribute", cnFirst, extra, false},
		{"garbage", cnFirst, []byte{0x30, 0x03, 0x01}, false},
	} {
		if got := SameSubject(c.a, c.b); got != c.same {
			t.Errorf("%s: SameSubject = %v", c.name, got)
		}
	}
	if got := SubjectString(cnFirst); got != "CN=cam1.studio.example.test, O=Acme" {
		t.Errorf("SubjectString = %q", got)
	}
}

func TestReserved(t *testing.T) {
	p := Policy{Domain: "studio.example.test", Reserved: []Reserved{
		{Pattern: "est.studio.example.test", Rule: "the appliance's hostname"},
		{Pattern: "studio.example.test", Rule: "the zone apex"},
		{Pattern: "*.infra.studio.example.test", Rule: "ca.reserved_names"},
	}}
	for name, want := range map[string]string{
		"est.studio.example.test":          "the appliance's hostname",
		"studio.example.test":              "the zone apex",
		"sw1.infra.studio.example.test":    "ca.reserved_names: every name below infra.studio.example.test",
		"infra.studio.example.test":        "",
		"cam1.studio.example.test":         "",
		"_x.studio.example.test":           "a label starting with \"_\" names a DNS-SD service or protocol, not a host",
		"est.studio.example.test.evil.net": "",
	} {
		if got := p.ReservedRule(name); got != want {
			t.Errorf("%s: rule %q, want %q", name, got, want)
		}
	}
	var r *Refusal
	err := p.CheckReserved([]string{"cam1.studio.example.test", "est.studio.example.test"})
	if !errors.As(err, &r) || r.Code != CodeReserved || !strings.Contains(r.Msg, "the appliance's hostname") {
		t.Fatalf("CheckReserved: %v", err)
	}
	if err := p.CheckReserved([]string{"cam1.studio.example.test"}); err != nil {
		t.Fatal(err)
	}
}
