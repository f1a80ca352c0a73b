package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
)

// TestResponderKeyFiles: a responder key and certificate saved are loaded
// again as they were; files that cannot be trusted are refused.
func TestResponderKeyFiles(t *testing.T) {
	a, dir := newAuthority(t)
	ctx := context.Background()
	now := time.Now()
	if _, _, err := a.LoadResponderKey(ctx, "ecdsa-int-1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("nothing saved yet: %v, want fs.ErrNotExist", err)
	}
	k := ecKey(t, elliptic.P256())
	c, err := a.IssueResponderCert(ctx, "ecdsa-int-1", k.Public(), now, now.Add(7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SaveResponderKey(ctx, "ecdsa-int-1", k, c); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "ocsp", "ecdsa-int-1.key")
	certPath := filepath.Join(dir, "ocsp", "ecdsa-int-1.crt")
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Dir(keyPath)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory: %v, %v", fi, err)
	}
	gk, gc, err := a.LoadResponderKey(ctx, "ecdsa-int-1")
	if err != nil {
		t.Fatal(err)
	}
	if !gc.Equal(c) || !k.PublicKey.Equal(gk.Public()) {
		t.Error("loaded key or certificate differs from the saved one")
	}
	// Another generation has nothing kept.
	if _, _, err := a.LoadResponderKey(ctx, "rsa-int-1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("rsa-int-1: %v, want fs.ErrNotExist", err)
	}
	for _, id := range []string{"../server/ecdsa", "ecdsa/int", "", ".hidden"} {
		if _, _, err := a.LoadResponderKey(ctx, id); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("issuer ID %q: %v", id, err)
		}
		if err := a.SaveResponderKey(ctx, id, k, c); err == nil {
			t.Errorf("issuer ID %q saved", id)
		}
	}

	refuse := func(what, id, want string) {
		t.Helper()
		_, _, err := a.LoadResponderKey(ctx, id)
		if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", what, err, want)
		}
	}

	// A key readable by others.
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	refuse("key mode 0644", "ecdsa-int-1", "too open")
	if err := os.Chmod(keyPath, 0o600); err != nil {
		t.Fatal(err)
	}

	// Kept under another generation's name.
	if err := a.SaveResponderKey(ctx, "rsa-int-1", k, c); err != nil {
		t.Fatal(err)
	}
	refuse("another generation's certificate", "rsa-int-1", "not issued as the OCSP responder of rsa-int-1")

	// A key that is not the certificate's (a crash between the writes).
	other := ecKey(t, elliptic.P256())
	if err := writeKey(keyPath, other); err != nil {
		t.Fatal(err)
	}
	refuse("mismatched key", "ecdsa-int-1", "not the certificate")
	if err := writeKey(keyPath, k); err != nil {
		t.Fatal(err)
	}

	// A corrupt certificate file.
	if err := os.WriteFile(certPath, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refuse("corrupt certificate", "ecdsa-int-1", certPath)

	if err := os.WriteFile(certPath, PEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.LoadResponderKey(ctx, "ecdsa-int-1"); err != nil {
		t.Fatalf("restored files: %v", err)
	}

	// A certificate of the key that the store has no record of.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: now, NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	self, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SaveResponderKey(ctx, "ecdsa-int-2", k, self); err != nil {
		t.Fatal(err)
	}
	refuse("unrecorded certificate", "ecdsa-int-2", "not in the store")

	// A device certificate with its key.
	dk := ecKey(t, elliptic.P256())
	leaf, err := a.Issue(ctx, deviceCSR(t, dk, "dev-1.studio.example.test", "dev-1.studio.example.test"), policy.Requester{Identity: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SaveResponderKey(ctx, "ecdsa-int-1", dk, leaf); err != nil {
		t.Fatal(err)
	}
	refuse("a device certificate", "ecdsa-int-1", "not issued as the OCSP responder of ecdsa-int-1")
	if err := a.SaveResponderKey(ctx, "ecdsa-int-1", k, c); err != nil {
		t.Fatal(err)
	}

	// Revoked.
	if _, err := a.Revoke(ctx, c.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	refuse("revoked", "ecdsa-int-1", "revoked")
}
