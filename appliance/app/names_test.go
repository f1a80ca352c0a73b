package app

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca/policy"
)

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// shapedCSR is a CSR with the subject's attributes in the order given
// and no subjectAltName, as many embedded clients make it.
func shapedCSR(t *testing.T, key crypto.Signer, cn string) *x509.CertificateRequest {
	t.Helper()
	raw, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Acme"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "GB"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: raw}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

// TestNamePolicyEndToEnd: devices enrolling through a real EST client
// cannot get the appliance's names or each other's, can when the
// operator releases a name or turns binding off, renew with the subject
// they enrolled with, and renew with the same key only when allowed.
func TestNamePolicyEndToEnd(t *testing.T) {
	dir := t.TempDir()
	acme := newManufacturer(t)
	roots := writePEM(t, filepath.Join(dir, "acme.pem"), acme.cert)
	// testConfig's YAML ends inside dns, under the advertisement.
	site := func(binding string, sameKey bool) *config.Config {
		return testConfig(t, dir, `  services:
    - type: _nmos-register._tcp
      instance: registry-a
      target: registry-a.studio.example.test
      addresses: [127.0.0.20]
      port: 443
est:
  trusted_client_roots: [`+roots+`]
  allow_renewal_with_same_key: `+strconv.FormatBool(sameKey)+`
ca:
  reserved_names: ["*.infra.studio.example.test"]
  name_binding: "`+binding+`"
`)
	}
	cfg := site("strict", false)
	a := start(t, cfg)
	ctx := context.Background()
	client := func(cert *x509.Certificate, key crypto.Signer) *est.Client {
		return &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
	}
	certA, keyA := acme.device(t, "CAM-A")
	certB, keyB := acme.device(t, "CAM-B")
	devA, devB := client(certA, keyA), client(certB, keyB)

	// The appliance's own names, a service target, a configured pattern
	// and a service label: refused to every device, naming the rule.
	for name, rule := range map[string]string{
		"est.studio.example.test":        "hostname",
		"studio.example.test":            "zone apex",
		"registry-a.studio.example.test": "dns.services[0]",
		"sw1.infra.studio.example.test":  "ca.reserved_names[0]",
		"_x.studio.example.test":         "DNS-SD",
		"EST.Studio.Example.Test.":       "hostname",
	} {
		_, err := devA.Enroll(ctx, csrFor(t, newKey(t), name))
		if !containsStatus(err, 403) || !strings.Contains(err.Error(), rule) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// A's name is A's.
	if _, err := devA.Enroll(ctx, csrFor(t, newKey(t), "cam1.studio.example.test")); err != nil {
		t.Fatal(err)
	}
	_, err := devB.Enroll(ctx, csrFor(t, newKey(t), "cam1.studio.example.test"))
	if !containsStatus(err, 403) || !strings.Contains(err.Error(), "nmos-certs names release cam1.studio.example.test") || !strings.Contains(err.Error(), `serialNumber "CAM-A"`) {
		t.Fatalf("B took A's name: %v", err)
	}
	// Released by the operator: B may have it.
	if _, err := a.store.ReleaseName(ctx, "cam1.studio.example.test", "operator test", "cli", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := devB.Enroll(ctx, csrFor(t, newKey(t), "cam1.studio.example.test")); err != nil {
		t.Fatalf("after release: %v", err)
	}

	// Renewal with the enrollment's own subject shape: CN first, no SAN.
	k1 := newKey(t)
	first, err := devA.Enroll(ctx, shapedCSR(t, k1, "cam2.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if got := policy.SubjectString(first.RawSubject); got != "CN=cam2.studio.example.test, O=Acme, C=GB" || string(first.RawSubject) != string(shapedCSR(t, k1, "cam2.studio.example.test").RawSubject) {
		t.Fatalf("subject %s not kept as sent", got)
	}
	k2 := newKey(t)
	renewed, err := client(first, k1).Reenroll(ctx, shapedCSR(t, k2, "cam2.studio.example.test"))
	if err != nil {
		t.Fatalf("renewal with the enrollment's subject: %v", err)
	}
	// Same key: refused by default.
	if _, err := client(renewed, k2).Reenroll(ctx, shapedCSR(t, k2, "cam2.studio.example.test")); !containsStatus(err, 400) {
		t.Fatalf("same-key renewal by default: %v", err)
	}

	// Reload: binding off, same-key renewal allowed.
	if err := a.Reload(ctx, site("off", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := devA.Enroll(ctx, csrFor(t, newKey(t), "cam1.studio.example.test")); err != nil {
		t.Fatalf("binding off: %v", err)
	}
	again, err := client(renewed, k2).Reenroll(ctx, shapedCSR(t, k2, "cam2.studio.example.test"))
	if err != nil {
		t.Fatalf("same-key renewal allowed: %v", err)
	}
	if !again.PublicKey.(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("renewal is not for the same key")
	}
	if _, err := devA.Enroll(ctx, shapedCSR(t, k2, "cam2.studio.example.test")); !containsStatus(err, 400) {
		t.Fatalf("enrollment with a reused key: %v", err)
	}
	// Reserved names stay reserved with binding off.
	if _, err := devA.Enroll(ctx, csrFor(t, newKey(t), "est.studio.example.test")); !containsStatus(err, 403) {
		t.Fatalf("hostname with binding off: %v", err)
	}
}
