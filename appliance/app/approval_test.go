package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// A device without a manufacturer certificate waits for an operator, who
// decides from another process (as the CLI does); the device's retry then
// gets its certificate, or 403 when denied.
func TestManualApprovalAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	a := start(t, testConfig(t, dir, "est:\n  manual_approval: true\n  retry_after: 2s\n"))
	ctx := context.Background()
	client := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true}
	operator, err := store.OpenSQLite(ctx, filepath.Join(dir, "data", DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer operator.Close()

	for _, decision := range []store.PendingState{store.PendingApproved, store.PendingDenied} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr := csrFor(t, key, "cam-"+string(decision)+".studio.example.test")
		before, _ := operator.CountCertificates(ctx)
		_, err := client.Enroll(ctx, csr)
		var ra interface{ RetryAfter() int }
		if !errors.As(err, &ra) || ra.RetryAfter() != 2 {
			t.Fatalf("first request: %v, want 202 with Retry-After 2", err)
		}
		waiting, err := operator.ListPending(ctx, store.PendingWaiting)
		if err != nil || len(waiting) != 1 {
			t.Fatalf("waiting: %d %v", len(waiting), err)
		}
		if n, _ := operator.CountCertificates(ctx); n["ecdsa-int-1"] != before["ecdsa-int-1"] {
			t.Fatalf("a certificate was issued before the decision: %v, before %v", n, before)
		}
		if _, err := operator.DecidePending(ctx, waiting[0].ID, decision, "operator test", time.Now()); err != nil {
			t.Fatal(err)
		}
		cert, err := client.Enroll(ctx, csr)
		if decision == store.PendingApproved {
			if err != nil || cert.Subject.CommonName != "cam-approved.studio.example.test" {
				t.Fatalf("retry after approval: %v", err)
			}
			rec, err := operator.Certificate(ctx, cert.SerialNumber)
			if err != nil || rec.Identity == "" {
				t.Fatalf("record: %+v %v", rec, err)
			}
		} else if err == nil || !containsStatus(err, 403) {
			t.Fatalf("retry after denial: %v, want 403", err)
		}
	}
}

func containsStatus(err error, code int) bool {
	var se interface{ StatusCode() int }
	return errors.As(err, &se) && se.StatusCode() == code
}
