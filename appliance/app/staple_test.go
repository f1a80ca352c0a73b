package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// stapled connects to the EST port offering one kind of server key and
// returns the leaf, its issuer and the stapled OCSP answer.
func stapled(t *testing.T, addr string, suite uint16) (leaf, issuer *x509.Certificate, staple []byte) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{suite}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	if len(cs.PeerCertificates) < 2 {
		t.Fatalf("%d certificates in the chain", len(cs.PeerCertificates))
	}
	return cs.PeerCertificates[0], cs.PeerCertificates[1], cs.OCSPResponse
}

// TestOCSPStapling: both server certificates carry a good answer from
// the appliance's responder, and a replacement after revocation carries
// its own.
func TestOCSPStapling(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	a := start(t, cfg)
	addr := a.Addr("est").String()
	check := func(suite uint16) *x509.Certificate {
		t.Helper()
		leaf, issuer, der := stapled(t, addr, suite)
		if len(der) == 0 {
			t.Fatalf("no OCSP staple with %s", tls.CipherSuiteName(suite))
		}
		resp, err := xocsp.ParseResponseForCert(der, leaf, issuer)
		if err != nil {
			t.Fatalf("staple: %v", err)
		}
		if resp.Status != xocsp.Good || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Fatalf("staple says %d for serial %x, want good for %x", resp.Status, resp.SerialNumber, leaf.SerialNumber)
		}
		if now := time.Now(); now.Before(resp.ThisUpdate.Add(-time.Minute)) || !now.Before(resp.NextUpdate) {
			t.Fatalf("staple valid %s to %s", resp.ThisUpdate, resp.NextUpdate)
		}
		return leaf
	}
	first := check(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
	check(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)

	// openssl sees it too.
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "s_client", "-connect", addr, "-status", "-tls1_2",
			"-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "OCSP Response Status") {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
		for _, want := range []string{"OCSP Response Status: successful", "Cert Status: good"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("openssl s_client -status lacks %q:\n%s", want, out)
			}
		}
	}

	// Revoked: the replacement certificate comes with a good staple of
	// its own.
	ctx := context.Background()
	other, err := store.OpenSQLite(ctx, filepath.Join(cfg.DataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, first.SerialNumber, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	other.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaf, _, _ := stapled(t, addr, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked server certificate still presented")
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
}

// TestStapleRefusesBadAnswers: without a usable answer the certificate is
// served unstapled rather than with something a client would reject.
func TestStapleRefusesBadAnswers(t *testing.T) {
	dir := t.TempDir()
	a := start(t, testConfig(t, dir, ""))
	c := a.server.get()[0]
	ctx := context.Background()
	answers := map[string]func(w http.ResponseWriter){
		"server error": func(w http.ResponseWriter) { http.Error(w, "no", http.StatusInternalServerError) },
		"wrong type":   func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain"); w.Write([]byte("x")) },
		"not DER": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write([]byte{0x30, 0x03, 1})
		},
		"tryLater only": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write([]byte{0x30, 0x03, 0x0a, 0x01, 0x03})
		},
	}
	for name, answer := range answers {
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) })
		if _, err := staple(ctx, h, c, time.Now()); err == nil {
			t.Errorf("%s: stapled", name)
		}
	}
	// The real responder, but a certificate without its issuer.
	alone := *c
	alone.Certificate = alone.Certificate[:1]
	if _, err := staple(ctx, a.ocsp, &alone, time.Now()); err == nil {
		t.Error("stapled a certificate without its issuer")
	}
	// The real responder after the answer's nextUpdate.
	if _, err := staple(ctx, a.ocsp, c, time.Now().Add(400*24*time.Hour)); err == nil {
		t.Error("stapled an expired answer")
	}
	if _, err := staple(ctx, a.ocsp, c, time.Now()); err != nil {
		t.Errorf("the real responder: %v", err)
	}
}
