package ca

import (
	"context"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
)

// TestOfflineRootCRLChecks: a CRL for an offline root is taken only
// when it is signed by that root for a request it answers, lists every
// revocation on record and carries a number the appliance gave out; an
// encrypted key file that is not one is an error, not a crash.
func TestOfflineRootCRLChecks(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "root.key")
	pass := []byte("a passphrase long enough")
	if _, err := a.ExportRootKey(ctx, ECDSA, out, pass, 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	key, err := ReadEncryptedKey(out, pass)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := a.CACertificate("ecdsa-root-1")
	rsaRoot, _ := a.CACertificate("rsa-root-1")
	// Something the root revoked: a certificate on record as its own.
	leaf, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "x.studio.example.test"), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := a.Certificate(ctx, leaf.SerialNumber)
	rec.IssuerID = "ecdsa-root-1"
	rec.Serial.Add(rec.Serial, rec.Serial) // another serial, same record shape
	rec.SPKIHash = append([]byte{1}, rec.SPKIHash[1:]...)
	if err := a.Store().PutCertificate(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(ctx, rec.Serial, 1); err != nil {
		t.Fatal(err)
	}
	req, err := a.CRLRequest(ctx, "ecdsa-root-1")
	if err != nil || len(req.Revoked) != 1 {
		t.Fatalf("request %+v %v", req, err)
	}
	if _, err := SignCRL(req, rsaRoot, key, time.Hour, time.Now()); err == nil {
		t.Fatal("signed with a key that is not the root certificate's")
	}
	for name, c := range map[string]struct {
		edit func(*CRLRequestDoc)
		want string
	}{
		"missing a revocation": {func(r *CRLRequestDoc) { r.Revoked = nil }, "does not list"},
		"a number never given": {func(r *CRLRequestDoc) { r.Number += 5 }, "never given out"},
	} {
		r := *req
		c.edit(&r)
		crl, err := SignCRL(&r, root, key, 30*24*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := a.ImportCRL(ctx, crl); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	good, err := SignCRL(req, root, key, 30*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ImportCRL(ctx, good); err != nil {
		t.Fatal(err)
	}
	// A truncated or foreign encrypted key file is an error.
	b, _ := os.ReadFile(out)
	for i, bad := range [][]byte{b[:len(b)/2], []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n")} {
		p := filepath.Join(t.TempDir(), "bad.key")
		os.WriteFile(p, bad, 0o600)
		if _, err := ReadEncryptedKey(p, pass); err == nil {
			t.Errorf("bad key file %d read", i)
		}
	}
}
