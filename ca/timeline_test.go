package ca

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// simDevice is a device of the timeline: its key and certificate, and
// what it fetched from /cacerts when it last renewed (its trust store:
// the self-signed roots; the rest it keeps to build chains).
type simDevice struct {
	name   string
	hier   string
	key    crypto.Signer
	cert   *x509.Certificate
	roots  []*x509.Certificate
	others []*x509.Certificate
	holder string
}

func (d *simDevice) fetchCACerts(t *testing.T, a *Authority) {
	t.Helper()
	certs, err := a.CACerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d.roots, d.others = nil, nil
	for _, c := range certs {
		if c.CheckSignatureFrom(c) == nil {
			d.roots = append(d.roots, c)
		} else {
			d.others = append(d.others, c)
		}
	}
}

// TestTwentyYearTimeline simulates twenty years by the clock, in steps of
// ten days, with the appliance's schedule (intermediates rolled over at
// 80 % of their life, roots at 80 % with a 30-day overlap, generations
// retired with their last certificate) and devices of both hierarchies
// that renew their 90-day certificates at 80 % (the RSA ones with the
// same key, as some clients do) and fetch /cacerts when they renew. At
// every step, every device's certificate verifies against its own trust
// store and against every other device's (with the chain it presents: its
// certificate and what /cacerts gave it), the appliance's OCSP responder
// answers good for it, and its issuer's CRL, fetched at the URL the
// certificate names, verifies and does not list it. Roots live 8 years here, so that two
// root rollovers and more than five intermediate rollovers per hierarchy
// happen; openssl verifies every pair again after each rollover. Zero
// failed validations is the criterion; go test -v prints the counts.
func TestTwentyYearTimeline(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: apt-get install openssl (.ci/run does) to run this test")
	}
	if testing.Short() {
		t.Skip("twenty simulated years: not with -short")
	}
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	start := time.Now()
	now := start
	o := testOptions(t, dir, st)
	o.Clock = func() time.Time { return now }
	o.RootLifetime = 8 * 365 * 24 * time.Hour
	o.IntermediateLifetime = 2 * 365 * 24 * time.Hour
	o.Names = Names{Bind: true, Grace: 30 * 24 * time.Hour}
	ctx := context.Background()
	a, err := Open(ctx, o, true)
	if err != nil {
		t.Fatal(err)
	}
	const overlap = 30 * 24 * time.Hour
	var devices []*simDevice
	for i, hier := range []string{ECDSA, ECDSA, ECDSA, RSA, RSA} {
		d := &simDevice{name: fmt.Sprintf("dev%d.studio.example.test", i), hier: hier, holder: fmt.Sprintf("device %d", i)}
		if hier == RSA {
			d.key = rsaKey(t, 2048)
		} else {
			d.key = ecKey(t, elliptic.P256())
		}
		devices = append(devices, d)
	}
	renew := func(d *simDevice) {
		t.Helper()
		if d.hier == ECDSA {
			d.key = ecKey(t, elliptic.P256())
		}
		req := policy.Requester{Identity: d.name, Holder: d.holder}
		if d.hier == RSA && d.cert != nil {
			req.Renewing = d.cert
		}
		c, err := a.Issue(ctx, deviceCSR(t, d.key, d.name), req)
		if err != nil {
			t.Fatalf("%s: renewal at %s: %v", d.name, now.Format(time.DateOnly), err)
		}
		d.cert = c
		d.fetchCACerts(t, a)
	}
	for _, d := range devices {
		renew(d)
	}
	status := newStatusChecker(t, a, func() time.Time { return now })
	counts := map[string]int{}
	failed := 0
	// Chains found are kept while the certificates involved stay the
	// same (the same parsed certificates): a chain whose certificates are
	// all within their validity at now is what Verify would find again,
	// signatures and constraints being unchanged; otherwise Verify runs.
	chains := map[string][]*x509.Certificate{}
	verifyAt := func(leaf *x509.Certificate, roots, inters []*x509.Certificate) error {
		key := fmt.Sprintf("%p|%d", leaf, len(roots))
		for _, c := range append(append([]*x509.Certificate{}, roots...), inters...) {
			key += fmt.Sprintf(",%p", c)
		}
		if chain, ok := chains[key]; ok {
			valid := true
			for _, c := range chain {
				valid = valid && !now.Before(c.NotBefore) && !now.After(c.NotAfter)
			}
			if valid {
				counts["x509 validations (chain kept)"]++
				return nil
			}
		}
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range roots {
			rp.AddCert(c)
		}
		for _, c := range inters {
			ip.AddCert(c)
		}
		found, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return err
		}
		chains[key] = found[0]
		return nil
	}
	check := func(withOpenSSL bool) {
		for _, v := range devices {
			issuers := map[string]bool{}
			for _, is := range a.Issuers() {
				issuers[string(is.Cert.Raw)] = true
			}
			for _, p := range devices {
				inters := append(append([]*x509.Certificate{}, v.others...), p.others...)
				if err := verifyAt(p.cert, v.roots, inters); err != nil {
					failed++
					t.Errorf("%s: %s does not validate %s (issued by %q): %v", now.Format(time.DateOnly), v.name, p.name, p.cert.Issuer.CommonName, err)
				}
				counts["x509 validations"]++
				if withOpenSSL {
					for _, root := range v.roots {
						if verifies(p.cert, []*x509.Certificate{root}, inters, now) != nil {
							continue
						}
						if err := opensslVerify(t, t.TempDir(), "p", root, inters, p.cert, now); err != nil {
							failed++
							t.Errorf("%s: openssl: %s does not validate %s", now.Format(time.DateOnly), v.name, p.name)
						}
						counts["openssl validations"]++
						break
					}
				}
			}
			// The appliance's OCSP responder answers good for it, and its
			// issuer's CRL verifies and does not list it.
			var issuer *x509.Certificate
			for _, is := range a.Issuers() {
				if v.cert.CheckSignatureFrom(is.Cert) == nil {
					issuer = is.Cert
				}
			}
			if issuer == nil {
				failed++
				t.Errorf("%s: %s: its issuer %q signs no more answers", now.Format(time.DateOnly), v.name, v.cert.Issuer.CommonName)
			} else {
				if err := status.ocspGood(v.cert, issuer); err != nil {
					failed++
					t.Errorf("%s: %s: OCSP: %v", now.Format(time.DateOnly), v.name, err)
				}
				counts["OCSP answers"]++
				if err := status.crlClean(v.cert, issuer, now); err != nil {
					failed++
					t.Errorf("%s: %s: CRL: %v", now.Format(time.DateOnly), v.name, err)
				}
				counts["CRL checks"]++
			}
		}
	}
	rolled := false
	for now.Before(start.Add(20 * 365 * 24 * time.Hour)) {
		now = now.Add(10 * 24 * time.Hour)
		if _, err := a.ActivateDue(ctx); err != nil {
			t.Fatal(err)
		}
		for _, h := range Hierarchies {
			if a.RootLifeUsed(h) >= 0.8 {
				if _, err := a.RolloverRoot(ctx, h, overlap); err == nil {
					counts["root rollovers "+h]++
					rolled = true
				}
			}
			if a.IntermediateLifeUsed(h) >= 0.8 {
				if _, err := a.RolloverIntermediate(ctx, h, "scheduled"); err != nil {
					t.Fatal(err)
				}
				counts["intermediate rollovers "+h]++
				rolled = true
			}
		}
		if _, err := a.RetireExpired(ctx); err != nil {
			t.Fatal(err)
		}
		if rolled || counts["steps"]%3 == 0 {
			status.reload(t) // the event feed's work, and the CRLs rebuilt before half their 60 days, as the appliance does
		}
		for _, d := range devices {
			if LifeUsed(d.cert.NotBefore, d.cert.NotAfter, now) >= 0.8 {
				renew(d)
				counts["renewals"]++
			}
		}
		check(rolled)
		rolled = false
		counts["steps"]++
	}
	for _, h := range Hierarchies {
		if counts["root rollovers "+h] < 2 || counts["intermediate rollovers "+h] < 5 {
			t.Errorf("%s: %d root and %d intermediate rollovers in twenty years", h, counts["root rollovers "+h], counts["intermediate rollovers "+h])
		}
	}
	retired := 0
	for _, g := range a.Generations() {
		if g.State == store.StateRetired {
			retired++
		}
	}
	t.Logf("twenty years in %d steps: %d x509 validations (%d of them on a chain found before and still valid), %d openssl validations, %d OCSP answers, %d CRL checks, %d renewals; "+
		"ECDSA %d root and %d intermediate rollovers, RSA %d and %d; %d generations, %d retired; failed validations: %d",
		counts["steps"], counts["x509 validations"], counts["x509 validations (chain kept)"], counts["openssl validations"], counts["OCSP answers"], counts["CRL checks"], counts["renewals"],
		counts["root rollovers ecdsa"], counts["intermediate rollovers ecdsa"], counts["root rollovers rsa"], counts["intermediate rollovers rsa"],
		len(a.Generations()), retired, failed)
}
