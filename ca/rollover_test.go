package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// TestRolloverIntermediate: a rollover makes a new active intermediate
// under the same root; the old one retires only once its last
// certificate expired, and until then its leaves verify, renew and are
// answered for; another process sharing the store sees the same state.
func TestRolloverIntermediate(t *testing.T) {
	a, clock, o, dir := clockedAuthority(t, nil)
	now := *clock
	var err error
	ctx := context.Background()
	for _, hier := range Hierarchies {
		var key = ecKey(t, elliptic.P256())
		var old *x509.Certificate
		if hier == RSA {
			old, err = a.Issue(ctx, deviceCSR(t, rsaKey(t, 2048), "r1.studio.example.test"), policy.Requester{Identity: "t"})
		} else {
			old, err = a.Issue(ctx, deviceCSR(t, key, "e1.studio.example.test"), policy.Requester{Identity: "t"})
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.RolloverIntermediate(ctx, hier, "operator")
		if err != nil {
			t.Fatal(err)
		}
		if r.Old.ID != hier+"-int-1" || r.New.ID != hier+"-int-2" || r.New.State != store.StateActive || r.Old.State != store.StateRetiring {
			t.Fatalf("%s rollover %+v -> %+v", hier, r.Old, r.New)
		}
		if r.New.Cert.CheckSignatureFrom(r.Old.Cert) == nil || r.New.Cert.Issuer.String() != r.Old.Cert.Issuer.String() {
			t.Fatalf("the new intermediate is not under the same root")
		}
		var fresh *x509.Certificate
		if hier == RSA {
			fresh, err = a.Issue(ctx, deviceCSR(t, rsaKey(t, 2048), "r2.studio.example.test"), policy.Requester{Identity: "t"})
		} else {
			fresh, err = a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "e2.studio.example.test"), policy.Requester{Identity: "t"})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.CheckSignatureFrom(r.New.Cert); err != nil {
			t.Fatalf("new leaf not signed by the new intermediate: %v", err)
		}
		// Both leaves verify against the root with what /cacerts carries.
		cacerts, _ := a.CACerts(ctx)
		roots, inters := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range cacerts {
			if c.Subject.String() == c.Issuer.String() {
				roots.AddCert(c)
			} else {
				inters.AddCert(c)
			}
		}
		for _, leaf := range []*x509.Certificate{old, fresh} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("%s leaf after rollover: %v", hier, err)
			}
		}
		// The retiring generation still answers OCSP and signs its CRL.
		held := map[string]bool{}
		for _, is := range a.Issuers() {
			held[is.ID] = true
		}
		if !held[r.Old.ID] || !held[r.New.ID] {
			t.Fatalf("issuers after rollover: %v", held)
		}
	}
	// Another process on the same store sees it.
	o2 := o
	o2.Registerer = nil
	b, err := Open(ctx, o2, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Generations()) != 6 || b.IntermediateLifeUsed(ECDSA) > 0.01 {
		t.Fatalf("second process: %d generations, life used %v", len(b.Generations()), b.IntermediateLifeUsed(ECDSA))
	}
	// The retiring generations' OCSP responder certificates, renewed for
	// as long as they answer, do not hold their retirement back.
	for _, id := range []string{"ecdsa-int-1", "rsa-int-1"} {
		rk := ecKey(t, elliptic.P256())
		if _, err := a.IssueResponderCert(ctx, id, rk.Public(), now, now.Add(365*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing retires while a leaf of the old generation is valid.
	if retired, err := a.RetireExpired(ctx); err != nil || len(retired) != 0 {
		t.Fatalf("retired early: %v %v", retired, err)
	}
	*clock = now.Add(91 * 24 * time.Hour)
	retired, err := a.RetireExpired(ctx)
	if err != nil || len(retired) != 2 {
		t.Fatalf("retired after the last leaf expired: %v %v", retired, err)
	}
	for _, is := range a.Issuers() {
		if is.ID == "ecdsa-int-1" || is.ID == "rsa-int-1" {
			t.Fatalf("retired generation %s still issues OCSP and CRLs", is.ID)
		}
	}
	// A retired generation's key may be destroyed; an active one's not.
	if err := a.DestroyKey(ctx, "ecdsa-int-2"); err == nil || !strings.Contains(err.Error(), "only a retired") {
		t.Fatalf("destroy an active key: %v", err)
	}
	if err := a.DestroyKey(ctx, "ecdsa-int-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca", "ecdsa-int-1.key")); !os.IsNotExist(err) {
		t.Fatalf("key file after destroy-key: %v", err)
	}
	if err := a.DestroyKey(ctx, "ecdsa-int-1"); err == nil || !strings.Contains(err.Error(), "holds no key") {
		t.Fatalf("destroy twice: %v", err)
	}
	if _, err := Open(ctx, o2, false); err != nil {
		t.Fatalf("open after destroy-key: %v", err)
	}
	// A rollover racing with another process's: one wins, the other
	// rolls the new one over (no generation is lost or doubled).
	if _, err := b.RolloverIntermediate(ctx, ECDSA, "operator"); err != nil {
		t.Fatal(err)
	}
	r, err := a.RolloverIntermediate(ctx, ECDSA, "operator")
	if err != nil || r.Old.ID != "ecdsa-int-3" || r.New.ID != "ecdsa-int-4" {
		t.Fatalf("rollover after another process's: %+v %v", r, err)
	}
	if u := a.IntermediateLifeUsed(ECDSA); u > 0.01 {
		t.Fatalf("life used of a fresh intermediate %v", u)
	}
}

// TestCompromisedIntermediateOnRootCRL: an intermediate rolled over for
// keyCompromise is revoked by its root: the root's CRL lists it.
func TestCompromisedIntermediateOnRootCRL(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	old, _ := a.CACertificate("rsa-int-1")
	if _, err := a.RolloverIntermediate(ctx, RSA, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := a.Store().Revocations(ctx, "rsa-root-1", func(r store.Revocation) error {
		listed = append(listed, r.Serial.Text(16)+"/"+strconv.Itoa(r.Reason))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != old.SerialNumber.Text(16)+"/1" {
		t.Fatalf("the root's revocations %v, want the old intermediate for keyCompromise", listed)
	}
	// A routine rollover revokes nothing.
	if _, err := a.RolloverIntermediate(ctx, ECDSA, "superseded"); err != nil {
		t.Fatal(err)
	}
	n := 0
	a.Store().Revocations(ctx, "ecdsa-root-1", func(store.Revocation) error { n++; return nil })
	if n != 0 {
		t.Fatalf("a routine rollover revoked %d certificates", n)
	}
}

func TestLifeUsed(t *testing.T) {
	nb := time.Unix(0, 0)
	na := nb.Add(100 * time.Hour)
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{-time.Hour, 0}, {0, 0}, {80 * time.Hour, 0.8}, {100 * time.Hour, 1}, {200 * time.Hour, 1}} {
		if got := LifeUsed(nb, na, nb.Add(c.at)); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("at %v: %v, want %v", c.at, got, c.want)
		}
	}
}
