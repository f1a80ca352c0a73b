package app

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globalsign/est"
	mdns "github.com/miekg/dns"

	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// manufacturer is a device maker's CA with lifetime certificates
// (notAfter 99991231235959Z, as BCP-003-03 recommends).
type manufacturer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var forever = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

func newManufacturer(t *testing.T) *manufacturer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme Devices Root", Organization: []string{"Acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: forever, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &manufacturer{cert: cert, key: key}
}

func (m *manufacturer) device(t *testing.T, serial string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "Acme Camera", SerialNumber: serial},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: forever,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.cert, key.Public(), m.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) string {
	t.Helper()
	if err := os.WriteFile(path, ca.PEM(certs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func csrFor(t *testing.T, key crypto.Signer, cn string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, SerialNumber: "CAM-1"}, DNSNames: []string{cn},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

// TestEndToEnd runs the whole appliance and uses it the way a facility
// does: a device finds the EST server by DNS-SD, enrolls with its
// manufacturer certificate through a real EST client, its certificate is
// checked with openssl over OCSP and the CRL, then revoked by the
// operator from another process.
func TestEndToEnd(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: install it (.ci/run does) to run this test", tool)
		}
	}
	dir := t.TempDir()
	acme := newManufacturer(t)
	roots := writePEM(t, filepath.Join(dir, "acme.pem"), acme.cert)
	cfg := testConfig(t, dir, "est:\n  trusted_client_roots: ["+roots+"]\n")
	cfg.DNS.Advertise[0].APISelector = "lab"
	cfg.DNS.Advertise[0].Pri = 10
	a := start(t, cfg)
	ctx := context.Background()

	// Discovery over UDP and TCP.
	dnsAddr := a.Addr("dns").String()
	for _, proto := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: proto, Timeout: 5 * time.Second}
		m := new(mdns.Msg)
		m.SetQuestion("_nmos-certs._tcp.studio.example.test.", mdns.TypePTR)
		r, _, err := c.Exchange(m, dnsAddr)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if len(r.Answer) != 1 {
			t.Fatalf("%s PTR: %v", proto, r)
		}
		instance := r.Answer[0].(*mdns.PTR).Ptr
		m.SetQuestion(instance, mdns.TypeTXT)
		r, _, err = c.Exchange(m, dnsAddr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("%s TXT: %v %v", proto, r, err)
		}
		txt := strings.Join(r.Answer[0].(*mdns.TXT).Txt, " ")
		if txt != "pri=10 api_selector=lab" {
			t.Fatalf("TXT %q", txt)
		}
		m.SetQuestion(instance, mdns.TypeSRV)
		r, _, err = c.Exchange(m, dnsAddr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("%s SRV: %v %v", proto, r, err)
		}
		if srv := r.Answer[0].(*mdns.SRV); srv.Target != "est.studio.example.test." || srv.Priority != 10 {
			t.Fatalf("SRV %v", srv)
		}
	}

	// Bootstrap: cacerts without trusting the server yet (BCP-003-03).
	devCert, devKey := acme.device(t, "CAM-1")
	client := &est.Client{
		Host: a.Addr("est").String(), AdditionalPathSegment: "lab", InsecureSkipVerify: true,
		Certificates: []*x509.Certificate{devCert}, PrivateKey: devKey,
	}
	cacerts, err := client.CACerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cacerts) != 4 || !cacerts[0].IsCA {
		t.Fatalf("cacerts: %d certificates", len(cacerts))
	}
	anchors := x509.NewCertPool()
	for _, c := range cacerts {
		if c.Subject.String() == c.Issuer.String() {
			anchors.AddCert(c)
		}
	}
	// The server's certificate, ECDSA or RSA as the client prefers, is
	// valid for its hostname under the roots it handed out.
	for _, suites := range [][]uint16{{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, {tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}} {
		conn, err := tls.Dial("tcp", client.Host, &tls.Config{RootCAs: anchors, ServerName: "est.studio.example.test", MaxVersion: tls.VersionTLS12, CipherSuites: suites})
		if err != nil {
			t.Fatalf("server certificate: %v", err)
		}
		conn.Close()
	}
	// (The client below dials 127.0.0.1, which no certificate names, so
	// it does not check the name itself.)

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := client.Enroll(ctx, csrFor(t, ecKey, "cam1.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCert, err := client.Enroll(ctx, csrFor(t, rsaKey, "cam1.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rsaCert.PublicKey.(*rsa.PublicKey); !ok || rsaCert.CheckSignatureFrom(cacerts[1]) != nil {
		t.Fatal("RSA certificate not signed by the RSA intermediate")
	}
	rec, err := a.store.Certificate(ctx, cert.SerialNumber)
	if err != nil || !strings.Contains(rec.Identity, "Acme Camera") {
		t.Fatalf("stored identity: %+v %v", rec, err)
	}

	// A device without a manufacturer certificate is refused (no manual approval).
	anon := &est.Client{Host: client.Host, InsecureSkipVerify: true}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := anon.Enroll(ctx, csrFor(t, otherKey, "cam2.studio.example.test")); err == nil {
		t.Fatal("anonymous enrollment accepted")
	}

	// OCSP and CRL with openssl, then a revocation by another process.
	leaf := writePEM(t, filepath.Join(dir, "leaf.pem"), cert)
	issuer := writePEM(t, filepath.Join(dir, "int.pem"), cacerts[0])
	chain := writePEM(t, filepath.Join(dir, "chain.pem"), cacerts[0], cacerts[2])
	ocspURL := "http://" + a.Addr("http").String() + "/ocsp"
	ocspStatus := func() string {
		out, err := exec.Command("openssl", "ocsp", "-sha256", "-issuer", issuer, "-cert", leaf, "-url", ocspURL, "-CAfile", chain).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := ocspStatus(); !strings.Contains(out, leaf+": good") || !strings.Contains(out, "Response verify OK") {
		t.Fatalf("OCSP before revocation:\n%s", out)
	}
	other, err := store.OpenSQLite(ctx, filepath.Join(cfg.DataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, cert.SerialNumber, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	other.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := ocspStatus()
		if strings.Contains(out, leaf+": revoked") {
			if !strings.Contains(out, "Reason: keyCompromise") {
				t.Fatalf("revoked without the reason:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OCSP still says, 5s after the revocation:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	crlPath := filepath.Join(dir, "int.crl")
	cdp, err := url.Parse(cert.CRLDistributionPoints[0])
	if err != nil || cdp.Host != "est.studio.example.test:0" {
		t.Fatalf("CDP %v", cert.CRLDistributionPoints)
	}
	crlURL := "http://" + a.Addr("http").String() + cdp.Path
	deadline = time.Now().Add(5 * time.Second)
	for {
		if out, err := exec.Command("curl", "-sf", "-o", crlPath, crlURL).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v %s", crlURL, err, out)
		}
		out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlPath, "-CAfile", chain, "-noout", "-text").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl crl: %v\n%s", err, out)
		}
		text := string(out)
		if !strings.Contains(text, "verify OK") || !strings.Contains(text, "X509v3 CRL Number") {
			t.Fatalf("CRL:\n%s", text)
		}
		if strings.Contains(text, strings.ToUpper(store.SerialKey(cert.SerialNumber))) && strings.Contains(text, "Key Compromise") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRL lacks the revocation 5s after it:\n%s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A revoked certificate cannot renew itself.
	renewer := &est.Client{Host: client.Host, InsecureSkipVerify: true, Certificates: []*x509.Certificate{cert}, PrivateKey: ecKey}
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := renewer.Reenroll(ctx, csrFor(t, newKey, "cam1.studio.example.test")); err == nil {
		t.Fatal("a revoked certificate renewed itself")
	}
	// The RSA one can.
	renewer.Certificates, renewer.PrivateKey = []*x509.Certificate{rsaCert}, rsaKey
	rsaKey2, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := renewer.Reenroll(ctx, csrFor(t, rsaKey2, "cam1.studio.example.test")); err != nil {
		t.Fatalf("reenroll: %v", err)
	}

	// One /metrics with everything.
	_, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics")
	for _, want := range []string{"coredns_dns_requests_total", "nmos_certs_est_requests_total", "nmos_certs_ocsp_responses_total",
		"nmos_certs_crl_number", `nmos_certs_ca_issued_total{key_type="ecdsa",profile="leaf"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, name := range []string{"nmos_certs_store_certificate_commits_total", "nmos_certs_store_certificates_committed_total",
		`nmos_certs_store_wal_syncs_total{path="held"}`, "nmos_certs_store_wal_sync_seconds_total"} {
		if !strings.Contains(string(body), "\n"+name+" ") || strings.Contains(string(body), "\n"+name+" 0\n") {
			t.Errorf("/metrics: %s missing or 0 after enrollments", name)
		}
	}
}
