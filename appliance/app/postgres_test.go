package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globalsign/est"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
)

// TestApplianceOnPostgres: with store.driver postgres (the DSN in a
// private file), the appliance creates its CA in the database, a device
// enrolls with the globalsign client, a revocation shows in the OCSP
// responder's answer, and after a restart the same CA serves from the
// same database.
func TestApplianceOnPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(cluster.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acme := newManufacturer(t)
	roots := writePEM(t, filepath.Join(dir, "acme.pem"), acme.cert)
	extra := fmt.Sprintf("est:\n  trusted_client_roots: [%s]\nstore:\n  driver: postgres\n  dsn_file: %s\n", roots, dsnFile)
	cfg := testConfig(t, dir, extra)
	if err := CheckConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// config check reads the DSN file, which must be private.
	if err := os.Chmod(dsnFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "store.dsn_file") || !strings.Contains(err.Error(), "open to group or others") {
		t.Fatalf("a DSN file others can read: %v", err)
	}
	if err := os.Chmod(dsnFile, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	run := func() (*App, func()) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		ready := make(chan *App, 1)
		a, err := New(rctx, cfg, Options{EventPoll: 50 * time.Millisecond, Ready: func(a *App) { ready <- a }})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(rctx) }()
		select {
		case <-ready:
		case err := <-done:
			cancel()
			t.Fatalf("run: %v", err)
		}
		return a, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	a, stop := run()
	if _, ok := a.store.(*store.Postgres); !ok {
		t.Fatalf("the store is %T", a.store)
	}
	fingerprints := func(a *App) string {
		var fp []string
		for _, g := range a.Authority().Generations() {
			fp = append(fp, g.ID+"="+g.Fingerprint)
		}
		return strings.Join(fp, ",")
	}
	before := fingerprints(a)

	devCert, devKey := acme.device(t, "CAM-1")
	client := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true, Certificates: []*x509.Certificate{devCert}, PrivateKey: devKey}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := client.Enroll(ctx, csrFor(t, key, "cam1.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.store.Certificate(ctx, cert.SerialNumber)
	if err != nil || !strings.Contains(rec.Identity, "Acme Camera") {
		t.Fatalf("stored: %+v %v", rec, err)
	}
	// The same key again is refused by the database's unique index.
	if _, err := client.Enroll(ctx, csrFor(t, key, "cam1.studio.example.test")); err == nil {
		t.Fatal("a reused key was certified")
	}

	issuer, _ := a.Authority().CACertificate("ecdsa-int-1")
	status := func(a *App) int {
		t.Helper()
		der, err := askOCSP(ctx, a.ocsp, cert, issuer)
		if err != nil {
			t.Fatal(err)
		}
		r, err := xocsp.ParseResponseForCert(der, cert, issuer)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if s := status(a); s != xocsp.Good {
		t.Fatalf("OCSP before the revocation: %d", s)
	}
	if _, err := a.Authority().Revoke(ctx, cert.SerialNumber, store.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); status(a) != xocsp.Revoked; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("OCSP does not say revoked")
		}
	}
	stop()

	// Restarted on the same database: the same CA, the revocation kept.
	a, stop = run()
	defer stop()
	if got := fingerprints(a); got != before {
		t.Fatalf("generations after the restart:\n%s\nwant\n%s", got, before)
	}
	if s := status(a); s != xocsp.Revoked {
		t.Fatalf("OCSP after the restart: %d", s)
	}
	if _, err := a.store.Certificate(ctx, cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	// nmos-certs backup is SQLite's; PostgreSQL has its own tools.
	if _, err := Backup(ctx, cfg, filepath.Join(dir, "backup.tar")); err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup on PostgreSQL: %v", err)
	}
}
