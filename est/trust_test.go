package est

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func loadTestTrust(t *testing.T, c TrustConfig) *Trust {
	t.Helper()
	tr, err := LoadTrust(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTrustCheck covers the manufacturer verdicts without HTTP.
func TestTrustCheck(t *testing.T) {
	p := getPKI(t)
	tr := loadTestTrust(t, p.trustConfig())
	now := time.Now()
	cases := []struct {
		name      string
		dev       *issued
		presented []*x509.Certificate
		at        time.Time
		trusted   bool // a chain was found
		expired   bool
		revoked   bool
		reason    string
	}{
		{name: "maker A with intermediate, notAfter 9999", dev: p.devA, presented: p.devA.chain, trusted: true},
		{name: "maker A far in the future", dev: p.devA, presented: p.devA.chain, at: time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC), trusted: true},
		{name: "maker A without its intermediate", dev: p.devA, reason: "unknown authority"},
		{name: "maker B root-signed, no EKU", dev: p.devB, trusted: true},
		{name: "rogue root with a real root's name", dev: p.rogueDev, presented: p.rogueDev.chain, reason: "unknown authority"},
		{name: "serverAuth-only EKU", dev: p.devAServerOnly, presented: p.devAServerOnly.chain, reason: "usage"},
		{name: "expired", dev: p.devBExpired, trusted: true, expired: true},
		{name: "revoked by intermediate CRL file", dev: p.devARevoked, presented: p.devARevoked.chain, trusted: true, revoked: true},
		{name: "revoked by root CRL over HTTP", dev: p.devBRevoked, trusted: true, revoked: true},
		{name: "not yet valid counts as outside validity", dev: p.devB, at: p.devB.cert.NotBefore.Add(-time.Hour), trusted: true, expired: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			v := tr.check(tc.dev.cert, tc.presented, at)
			if got := v.chain != nil; got != tc.trusted {
				t.Fatalf("trusted = %v (err %v), want %v", got, v.err, tc.trusted)
			}
			if v.expired != tc.expired {
				t.Errorf("expired = %v, want %v", v.expired, tc.expired)
			}
			if got := v.revoked != nil; got != tc.revoked {
				t.Errorf("revoked = %v, want %v", got, tc.revoked)
			}
			if tc.reason != "" && (v.err == nil || !strings.Contains(v.err.Error(), tc.reason)) {
				t.Errorf("err = %v, want it to mention %q", v.err, tc.reason)
			}
			if tc.revoked && !strings.Contains(v.revoked.String(), tc.dev.cert.SerialNumber.Text(16)) {
				t.Errorf("revocation %q does not name the serial", v.revoked)
			}
		})
	}
}

// TestTrustIntermediateFile lets devices that do not send their chain in.
func TestTrustIntermediateFile(t *testing.T) {
	p := getPKI(t)
	c := p.trustConfig()
	c.IntermediateFiles = []string{writeFile(t.TempDir(), "int.pem", pemCerts(p.mfrAInt.cert))}
	tr := loadTestTrust(t, c)
	if v := tr.check(p.devA.cert, nil, time.Now()); v.chain == nil {
		t.Fatalf("not trusted: %v", v.err)
	}
	// The CRL signed by the intermediate is now verified at load, and
	// still revokes.
	if v := tr.check(p.devARevoked.cert, nil, time.Now()); v.revoked == nil {
		t.Fatal("revoked certificate accepted")
	}
}

func TestTrustNoRoots(t *testing.T) {
	p := getPKI(t)
	tr := loadTestTrust(t, TrustConfig{})
	if v := tr.check(p.devB.cert, nil, time.Now()); v.chain != nil || v.err == nil {
		t.Fatalf("trusted without roots: %+v", v)
	}
}

func TestLoadTrustErrors(t *testing.T) {
	p := getPKI(t)
	dir := t.TempDir()
	// A CRL claiming to be Maker B's root's but signed by another key.
	forged := sign(certSpec{cn: "Maker B Root", isCA: true}, nil)
	forgedCRL := writeFile(dir, "forged.crl", makeCRL(forged, 9, time.Now(), time.Now().Add(time.Hour)))
	cases := map[string]TrustConfig{
		"missing root file":              {RootFiles: []string{dir + "/nope.pem"}},
		"root file without certificates": {RootFiles: []string{writeFile(dir, "empty.pem", []byte("nothing here\n"))}},
		"garbage certificate":            {RootFiles: []string{writeFile(dir, "bad.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}))}},
		"missing CRL file":               {RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{dir + "/nope.crl"}},
		"garbage CRL":                    {RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{writeFile(dir, "bad.crl", []byte("junk"))}},
		"CRL with a bad signature":       {RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{forgedCRL}},
		"PEM of another type":            {RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{p.mfrBRootFile}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadTrust(context.Background(), c); err == nil {
				t.Fatal("LoadTrust succeeded")
			}
		})
	}
}

// TestTrustCRLUnverifiable refuses a certificate whose issuer is named by
// a CRL that does not verify against it: revocation cannot be known.
func TestTrustCRLUnverifiable(t *testing.T) {
	p := getPKI(t)
	// A CRL named like Maker A's intermediate (unknown at load, so not
	// checked then) but signed by another key.
	forged := sign(certSpec{cn: "Maker A Devices", isCA: true}, nil)
	c := TrustConfig{
		RootFiles:  []string{p.mfrARootFile},
		CRLSources: []string{writeFile(t.TempDir(), "forged.crl", makeCRL(forged, 1, time.Now(), time.Now().Add(time.Hour)))},
	}
	tr := loadTestTrust(t, c)
	v := tr.check(p.devA.cert, p.devA.chain, time.Now())
	if v.chain != nil || !errors.Is(v.err, errCRLUnverifiable) {
		t.Fatalf("verdict %+v, want errCRLUnverifiable", v)
	}
}

// TestTrustRefresh fetches a CRL URL again once past its nextUpdate.
func TestTrustRefresh(t *testing.T) {
	p := getPKI(t)
	now := time.Now()
	var crl atomic.Pointer[[]byte]
	var fetches atomic.Int32
	var down atomic.Bool
	first := makeCRL(p.mfrBRoot, 1, now.Add(-time.Hour), now.Add(time.Hour))
	crl.Store(&first)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(*crl.Load())
	}))
	defer srv.Close()
	clock := newTestClock()
	tr := loadTestTrust(t, TrustConfig{RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{srv.URL}, Clock: clock.Now})
	if v := tr.check(p.devBRevoked.cert, nil, now); v.revoked != nil || v.chain == nil {
		t.Fatalf("revoked before the CRL says so: %+v", v)
	}
	// Not due yet: nothing fetched.
	second := makeCRL(p.mfrBRoot, 2, now, now.Add(2*time.Hour), p.devBRevoked.cert)
	crl.Store(&second)
	if err := tr.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fetches.Load() != 1 {
		t.Fatalf("fetched %d times before nextUpdate", fetches.Load())
	}
	clock.Advance(61 * time.Minute)
	if err := tr.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := tr.check(p.devBRevoked.cert, nil, now); v.revoked == nil {
		t.Fatal("new CRL not used")
	}
	st := tr.CRLs()
	if len(st) != 1 || st[0].Revoked != 1 || st[0].Err != nil {
		t.Fatalf("CRLs() = %+v", st)
	}
	// An older CRL does not replace a newer one; a failed fetch keeps it.
	crl.Store(&first)
	clock.Advance(2 * time.Hour)
	if err := tr.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := tr.check(p.devBRevoked.cert, nil, now); v.revoked == nil {
		t.Fatal("older CRL replaced the newer one")
	}
	down.Store(true)
	clock.Advance(2 * time.Hour)
	if err := tr.Refresh(context.Background()); err == nil {
		t.Fatal("refresh from a failing server reported no error")
	}
	if v := tr.check(p.devBRevoked.cert, nil, now); v.revoked == nil {
		t.Fatal("failed refresh dropped the CRL")
	}
	if st := tr.CRLs(); st[0].Err == nil {
		t.Fatal("CRLs() does not report the failure")
	}
}

// TestTrustURLDownAtLoad: an unreachable CRL URL does not stop loading.
func TestTrustURLDownAtLoad(t *testing.T) {
	p := getPKI(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	tr := loadTestTrust(t, TrustConfig{RootFiles: []string{p.mfrBRootFile}, CRLSources: []string{srv.URL}})
	if st := tr.CRLs(); len(st) != 1 || st[0].Err == nil {
		t.Fatalf("CRLs() = %+v", st)
	}
	if len(tr.Roots()) != 1 {
		t.Fatal("roots not loaded")
	}
}

// TestTrustRun stops with its context.
func TestTrustRun(t *testing.T) {
	tr := loadTestTrust(t, TrustConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	cancel()
	<-done
}

// TestTrustRemembersChains: a verified chain is reused for the same
// certificates, only inside its validity, and never skips revocation.
func TestTrustRemembersChains(t *testing.T) {
	p := getPKI(t)
	tr := loadTestTrust(t, p.trustConfig())
	now := time.Now()
	first := tr.check(p.devB.cert, nil, now)
	if first.chain == nil {
		t.Fatalf("not trusted: %v", first.err)
	}
	again := tr.check(p.devB.cert, nil, now.Add(time.Minute))
	if again.chain == nil || &again.chain[0] != &first.chain[0] {
		t.Fatal("the second check verified the chain again")
	}
	// Past the device certificate's notAfter the remembered chain is not
	// used: the verdict is expiry.
	late := tr.check(p.devB.cert, nil, p.devB.cert.NotAfter.Add(time.Second))
	if !late.expired {
		t.Fatalf("after notAfter: expired = false (err %v)", late.err)
	}
	// Other presented certificates are another entry.
	withChain := tr.check(p.devA.cert, p.devA.chain, now)
	without := tr.check(p.devA.cert, nil, now)
	if withChain.chain == nil || without.chain != nil {
		t.Fatalf("with chain %v, without %v: want trusted, then not", withChain.err, without.err)
	}
	// A revoked certificate is refused on every check, remembered chain or not.
	for range 2 {
		if v := tr.check(p.devARevoked.cert, p.devARevoked.chain, now); v.revoked == nil {
			t.Fatal("revoked certificate accepted")
		}
	}
	// The cache is bounded.
	for i := range chainCacheSize + 10 {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		tr.verified.put(k, [][]*x509.Certificate{first.chain})
	}
	if n := len(tr.verified.m); n > chainCacheSize {
		t.Fatalf("%d entries, bound %d", n, chainCacheSize)
	}
}
