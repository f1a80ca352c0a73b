package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// verifies reports whether leaf chains to one of roots through inters.
func verifies(leaf *x509.Certificate, roots, inters []*x509.Certificate, at time.Time) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		rp.AddCert(c)
	}
	for _, c := range inters {
		ip.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// opensslVerify runs openssl verify -CAfile root -untrusted chain leaf.
func opensslVerify(t *testing.T, dir, name string, root *x509.Certificate, chain []*x509.Certificate, leaf *x509.Certificate, at time.Time) error {
	t.Helper()
	rootFile, chainFile, leafFile := filepath.Join(dir, name+"-root.pem"), filepath.Join(dir, name+"-chain.pem"), filepath.Join(dir, name+"-leaf.pem")
	os.WriteFile(rootFile, PEM(root), 0o644)
	os.WriteFile(chainFile, PEM(chain...), 0o644)
	os.WriteFile(leafFile, PEM(leaf), 0o644)
	out, err := exec.Command("openssl", "verify", "-attime", strconv.FormatInt(at.Unix(), 10), "-CAfile", rootFile, "-untrusted", chainFile, leafFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		return &exec.ExitError{Stderr: out}
	}
	return nil
}

// TestRootRollover: a root rollover publishes the new root and both link
// certificates at once, issues from the old hierarchy during the overlap
// and from the new one after; a device trusting only the old root
// validates the new hierarchy's leaves through NewWithOld, one trusting
// only the new root the old hierarchy's leaves through OldWithNew (with
// crypto/x509 and openssl); the old hierarchy retires when its last leaf
// expired.
func TestRootRollover(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: apt-get install openssl (.ci/run does) to run this test")
	}
	a, clock, _, dir := clockedAuthority(t, nil)
	ctx := context.Background()
	req := policy.Requester{Identity: "t"}
	oldLeaf, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "old.studio.example.test"), req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.RolloverRoot(ctx, ECDSA, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r.NewRoot.ID != "ecdsa-root-2" || r.NewRoot.State != store.StateNext || r.NewIntermediate.ID != "ecdsa-int-2" ||
		r.OldWithNew.ID != "ecdsa-root-1-by-2" || r.NewWithOld.ID != "ecdsa-root-2-by-1" {
		t.Fatalf("rollover %+v", r)
	}
	if _, err := a.RolloverRoot(ctx, ECDSA, time.Hour); err == nil || !strings.Contains(err.Error(), "already under way") {
		t.Fatalf("second root rollover during the overlap: %v", err)
	}
	// The link certificates: OldWithNew has the old root's name and key
	// under the new root; NewWithOld the new root's under the old.
	own, nwo := r.OldWithNew.Cert, r.NewWithOld.Cert
	if !publicKeysEqual(own.PublicKey, r.OldRoot.Cert.PublicKey) || own.CheckSignatureFrom(r.NewRoot.Cert) != nil ||
		string(own.RawSubject) != string(r.OldRoot.Cert.RawSubject) || !own.IsCA {
		t.Fatal("OldWithNew is not the old root's key certified by the new root")
	}
	if !publicKeysEqual(nwo.PublicKey, r.NewRoot.Cert.PublicKey) || nwo.CheckSignatureFrom(r.OldRoot.Cert) != nil ||
		string(nwo.RawSubject) != string(r.NewRoot.Cert.RawSubject) || !nwo.NotAfter.Equal(r.OldRoot.Cert.NotAfter) ||
		!nwo.NotBefore.Equal(r.NewRoot.Cert.NotBefore) || !own.NotBefore.Equal(r.OldRoot.Cert.NotBefore) || !own.NotAfter.Equal(r.OldRoot.Cert.NotAfter) {
		t.Fatal("NewWithOld is not the new root's key certified by the old root")
	}
	// /cacerts during the overlap: the issuing CAs and the next
	// intermediate, OldWithOld, NewWithNew, NewWithOld, OldWithNew, ECDSA
	// before RSA in each group.
	cacerts, _ := a.CACerts(ctx)
	var names []string
	for _, c := range cacerts {
		names = append(names, c.Subject.CommonName+"/"+c.Issuer.CommonName)
	}
	// (The new root keeps the old root's name: RFC 4210's key update.)
	var ids []string
	for _, c := range cacerts {
		for _, g := range a.Generations() {
			if g.Cert.Equal(c) {
				ids = append(ids, g.ID)
			}
		}
	}
	want := "ecdsa-int-1,ecdsa-int-2,rsa-int-1,ecdsa-root-1,ecdsa-root-2,rsa-root-1,ecdsa-root-2-by-1,ecdsa-root-1-by-2"
	if strings.Join(ids, ",") != want {
		t.Fatalf("cacerts order: %s, want %s (%v)", strings.Join(ids, ","), want, names)
	}
	if r.NewRoot.Cert.Subject.String() != r.OldRoot.Cert.Subject.String() || own.Subject.String() != own.Issuer.String() {
		t.Fatal("the new root does not keep the old root's name, so the link certificates are not self-issued")
	}
	if len(cacerts) != 8 {
		t.Fatalf("%d certificates in /cacerts, want 6 ECDSA and 2 RSA", len(cacerts))
	}
	// During the overlap the old hierarchy issues.
	during, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "during.studio.example.test"), req)
	if err != nil || during.CheckSignatureFrom(r.OldRoot.Cert) == nil || !strings.Contains(during.Issuer.CommonName, "Intermediate CA 1") {
		t.Fatalf("issued during the overlap by %q: %v", during.Issuer.CommonName, err)
	}
	// Nothing activates before the overlap ends.
	if done, err := a.ActivateDue(ctx); err != nil || len(done) != 0 {
		t.Fatalf("activated early: %v %v", done, err)
	}
	*clock = clock.Add(31 * 24 * time.Hour)
	if done, err := a.ActivateDue(ctx); err != nil || len(done) != 1 || done[0] != ECDSA {
		t.Fatalf("activation: %v %v", done, err)
	}
	newLeaf, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "new.studio.example.test"), req)
	if err != nil || !strings.Contains(newLeaf.Issuer.CommonName, "Intermediate CA 2") {
		t.Fatalf("issued after the overlap by %v: %v", newLeaf.Issuer.CommonName, err)
	}
	// Both ways, both verifiers.
	oldInt, _ := a.CACertificate("ecdsa-int-1")
	newInt, _ := a.CACertificate("ecdsa-int-2")
	for _, c := range []struct {
		name   string
		leaf   *x509.Certificate
		root   *x509.Certificate
		chain  []*x509.Certificate
		direct []*x509.Certificate
	}{
		{"new leaf, old root", newLeaf, r.OldRoot.Cert, []*x509.Certificate{newInt, nwo}, []*x509.Certificate{newInt}},
		{"old leaf, new root", oldLeaf, r.NewRoot.Cert, []*x509.Certificate{oldInt, own}, []*x509.Certificate{oldInt}},
	} {
		if err := verifies(c.leaf, []*x509.Certificate{c.root}, c.chain, *clock); err != nil {
			t.Errorf("%s through the link certificate: %v", c.name, err)
		}
		if verifies(c.leaf, []*x509.Certificate{c.root}, c.direct, *clock) == nil {
			t.Errorf("%s verifies without the link certificate: the test proves nothing", c.name)
		}
		if err := opensslVerify(t, dir, strings.ReplaceAll(strings.ReplaceAll(c.name, " ", "-"), ",", ""), c.root, c.chain, c.leaf, *clock); err != nil {
			t.Errorf("openssl verify %s: %s", c.name, err.(*exec.ExitError).Stderr)
		}
	}
	// The appliance's own TLS chain, from the new hierarchy, leads a
	// device that trusts only the old root there (NewWithOld).
	tc, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var presented []*x509.Certificate
	for _, der := range tc.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		presented = append(presented, c)
	}
	if err := verifies(tc.Leaf, []*x509.Certificate{r.OldRoot.Cert}, presented, *clock); err != nil {
		t.Fatalf("TLS chain for a device trusting only the old root: %v", err)
	}
	states := map[string]store.GenerationState{}
	for _, g := range a.Generations() {
		states[g.ID] = g.State
	}
	if states["ecdsa-root-1"] != store.StateRetiring || states["ecdsa-int-1"] != store.StateRetiring ||
		states["ecdsa-root-2"] != store.StateActive || states["ecdsa-int-2"] != store.StateActive || states["ecdsa-root-1-by-2"] != store.StateActive {
		t.Fatalf("states after the overlap: %v", states)
	}
	// The old hierarchy retires with its last leaf.
	*clock = clock.Add(91 * 24 * time.Hour)
	if _, err := a.RetireExpired(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range a.Generations() {
		states[g.ID] = g.State
	}
	if states["ecdsa-int-1"] != store.StateRetired || states["ecdsa-root-1"] != store.StateRetired || states["ecdsa-root-2"] != store.StateActive {
		t.Fatalf("states after the old leaves expired: %v", states)
	}
	// No overlap: the RSA hierarchy switches at once.
	rr, err := a.RolloverRoot(ctx, RSA, 0)
	if err != nil || rr.NewRoot.State != store.StateActive || rr.NewIntermediate.State != store.StateActive {
		t.Fatalf("rollover without overlap: %+v %v", rr, err)
	}
}

// TestRootRolloverFromPathLengthOne: a root made as earlier versions made
// them (path length 1) leaves no room, for crypto/x509, for NewWithOld
// between it and the new intermediate; the rollover then also certifies
// the new intermediate with the old root, and a device trusting only the
// old root validates the new hierarchy's leaves and the appliance's TLS
// chain.
func TestRootRolloverFromPathLengthOne(t *testing.T) {
	rootPathLen = 1
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	now := time.Now()
	o := testOptions(t, dir, st)
	o.Clock = func() time.Time { return now }
	a, err := Open(context.Background(), o, true)
	rootPathLen = 2
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	oldRoot, _ := a.CACertificate("ecdsa-root-1")
	if oldRoot.MaxPathLen != 1 {
		t.Fatalf("old root path length %d", oldRoot.MaxPathLen)
	}
	r, err := a.RolloverRoot(ctx, ECDSA, 0)
	if err != nil {
		t.Fatal(err)
	}
	cross, ok := a.CACertificate("ecdsa-int-2-by-root-1")
	if !ok || cross.CheckSignatureFrom(oldRoot) != nil || !publicKeysEqual(cross.PublicKey, r.NewIntermediate.Cert.PublicKey) {
		t.Fatal("no cross-certificate of the new intermediate by the old root")
	}
	leaf, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "n.studio.example.test"), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	newInt := r.NewIntermediate.Cert
	if verifies(leaf, []*x509.Certificate{oldRoot}, []*x509.Certificate{newInt, r.NewWithOld.Cert}, now) == nil {
		t.Fatal("crypto/x509 took NewWithOld under a path-length-1 root: the case proves nothing")
	}
	cacerts, _ := a.CACerts(ctx)
	var inters []*x509.Certificate
	for _, c := range cacerts {
		if c.CheckSignatureFrom(c) != nil {
			inters = append(inters, c)
		}
	}
	if err := verifies(leaf, []*x509.Certificate{oldRoot}, inters, now); err != nil {
		t.Fatalf("a device trusting only the old root, with /cacerts: %v", err)
	}
	// The appliance's TLS chain carries what such a device needs.
	tc, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var presented []*x509.Certificate
	for _, der := range tc.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		presented = append(presented, c)
	}
	if err := verifies(tc.Leaf, []*x509.Certificate{oldRoot}, presented, now); err != nil {
		t.Fatalf("TLS chain for a device trusting only the old root: %v (%d certificates)", err, len(presented))
	}
	if err := verifies(tc.Leaf, []*x509.Certificate{r.NewRoot.Cert}, presented, now); err != nil {
		t.Fatalf("TLS chain for a device trusting the new root: %v", err)
	}
}
