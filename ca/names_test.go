package ca

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// bindingAuthority is an authority with reserved names and name binding
// on, as the appliance runs it by default, and a clock the test moves.
func bindingAuthority(t *testing.T) (*Authority, *time.Time) {
	t.Helper()
	a, now, _, _ := clockedAuthority(t, func(o *Options) {
		o.Names = Names{Bind: true, Grace: 7 * 24 * time.Hour, Reserved: []policy.Reserved{
			{Pattern: "est.studio.example.test", Rule: "the appliance's hostname"},
			{Pattern: "studio.example.test", Rule: "the zone apex"},
			{Pattern: "*.infra.studio.example.test", Rule: "ca.reserved_names"},
		}}
	})
	return a, now
}

// clockedAuthority creates an authority whose clock the test moves (the
// returned time), with options adjusted by configure.
func clockedAuthority(t *testing.T, configure func(*Options)) (*Authority, *time.Time, Options, string) {
	t.Helper()
	dir := t.TempDir()
	st := openStore(t, dir)
	t.Cleanup(func() { st.Close() })
	now := new(time.Time)
	*now = time.Now()
	o := testOptions(t, dir, st)
	o.Clock = func() time.Time { return *now }
	if configure != nil {
		configure(&o)
	}
	a, err := Open(context.Background(), o, true)
	if err != nil {
		t.Fatal(err)
	}
	return a, now, o, dir
}

func refusalCode(err error) string {
	var r *policy.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func TestReservedNames(t *testing.T) {
	a, _ := bindingAuthority(t)
	ctx := context.Background()
	dev := policy.Requester{Identity: "device", Holder: "device A"}
	for _, n := range []string{"est.studio.example.test", "studio.example.test", "sw1.infra.studio.example.test", "EST.Studio.Example.Test."} {
		_, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), n), dev)
		if refusalCode(err) != policy.CodeReserved {
			t.Errorf("%s: %v", n, err)
		}
		if _, err := a.CheckCSR(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "ok.studio.example.test", n), dev); refusalCode(err) != policy.CodeReserved {
			t.Errorf("CheckCSR %s: %v", n, err)
		}
	}
	// An operator may, explicitly.
	op := policy.Requester{Identity: "operator", Holder: "operator", AllowReserved: true}
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "sw1.infra.studio.example.test"), op); err != nil {
		t.Fatal(err)
	}
	// The appliance's own certificate is for its hostname.
	if _, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour); err != nil {
		t.Fatal(err)
	}
}

func TestNameBindingAuthority(t *testing.T) {
	a, now := bindingAuthority(t)
	ctx := context.Background()
	devA := policy.Requester{Identity: "device A", Holder: `issuer="CN=Acme Device CA" serialNumber="A1"`}
	devB := policy.Requester{Identity: "device B", Holder: `issuer="CN=Acme Device CA" serialNumber="B2"`}
	first, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devA)
	if err != nil {
		t.Fatal(err)
	}
	// B cannot take A's name, by CN or by SAN, in either case.
	for _, csr := range []*x509.CertificateRequest{
		deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"),
		deviceCSR(t, ecKey(t, elliptic.P256()), "cam2.studio.example.test", "CAM1.studio.example.test."),
	} {
		_, err := a.Issue(ctx, csr, devB)
		var r *policy.Refusal
		if !errors.As(err, &r) || r.Code != policy.CodeNameBound || r.Holder != devA.Holder || r.Name != "cam1.studio.example.test" {
			t.Fatalf("B took A's name: %v", err)
		}
		if !bytes.Contains([]byte(r.Msg), []byte("nmos-certs names release cam1.studio.example.test")) {
			t.Errorf("refusal does not say how to release: %s", r.Msg)
		}
		conflicts, err := a.CheckCSR(ctx, csr, devB)
		if refusalCode(err) != policy.CodeNameBound || len(conflicts) != 1 {
			t.Fatalf("CheckCSR: %v %v", conflicts, err)
		}
		list := devB
		list.ListConflicts = true
		if conflicts, err := a.CheckCSR(ctx, csr, list); err != nil || len(conflicts) != 1 || conflicts[0].Holder != devA.Holder {
			t.Fatalf("CheckCSR listing conflicts: %v %v", conflicts, err)
		}
		// A take-over covers the holder shown, no other.
		take := devB
		take.TakeOver = map[string]string{"cam1.studio.example.test": devA.Holder}
		if _, err := a.CheckCSR(ctx, csr, take); err != nil {
			t.Fatalf("CheckCSR with the conflict taken over: %v", err)
		}
		take.TakeOver = map[string]string{"cam1.studio.example.test": "someone else"}
		if _, err := a.CheckCSR(ctx, csr, take); refusalCode(err) != policy.CodeNameBound {
			t.Fatalf("take-over from another holder: %v", err)
		}
	}
	// A renews.
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devA); err != nil {
		t.Fatal(err)
	}
	// Revoking A's certificates does not free the name.
	if _, err := a.Revoke(ctx, first.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devB); refusalCode(err) != policy.CodeNameBound {
		t.Fatalf("after revocation: %v", err)
	}
	// Released by an operator: B may have it.
	if _, err := a.Store().ReleaseName(ctx, "cam1.studio.example.test", "operator", "cli", *now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devB); err != nil {
		t.Fatal(err)
	}
	// Expiry of all B's certificates frees the name after the grace.
	*now = now.Add(90*24*time.Hour + 6*24*time.Hour)
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devA); refusalCode(err) != policy.CodeNameBound {
		t.Fatalf("within the grace: %v", err)
	}
	*now = now.Add(2 * 24 * time.Hour)
	cert, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), devA)
	if err != nil {
		t.Fatalf("after the grace: %v", err)
	}
	rec, err := a.Certificate(ctx, cert.SerialNumber)
	if err != nil || rec.Holder != devA.Holder {
		t.Fatalf("holder recorded %q, %v", rec.Holder, err)
	}
}

func TestNameBindingOff(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	for _, h := range []string{"A", "B"} {
		if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test"), policy.Requester{Holder: h}); err != nil {
			t.Fatalf("holder %s: %v", h, err)
		}
	}
}

// TestSubjectAsSent: a CSR whose subject puts CN first gets a certificate
// with that subject, byte for byte; a CN in capitals with a trailing dot
// is normalised in place.
func TestSubjectAsSent(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	raw, _ := asn1.Marshal(pkix.RDNSequence{
		{{Type: cn, Value: "node8.studio.example.test"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Cameras"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Acme"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "GB"}},
	})
	cert, err := a.Issue(ctx, makeCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{RawSubject: raw}), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.RawSubject, raw) {
		t.Fatalf("subject re-encoded: %s", policy.SubjectString(cert.RawSubject))
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "node8.studio.example.test" {
		t.Fatalf("names %v", cert.DNSNames)
	}
	upper, _ := asn1.Marshal(pkix.RDNSequence{
		{{Type: cn, Value: "NODE9.Studio.Example.Test."}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Acme"}},
	})
	cert, err = a.Issue(ctx, makeCSR(t, rsaKey(t, 2048), &x509.CertificateRequest{RawSubject: upper}), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := policy.SubjectString(cert.RawSubject); got != "CN=node9.studio.example.test, O=Acme" || cert.DNSNames[0] != "node9.studio.example.test" {
		t.Fatalf("subject %s, names %v", got, cert.DNSNames)
	}
}

func TestSameKeyRenewalAuthority(t *testing.T) {
	a, _ := newAuthority(t)
	ctx := context.Background()
	key := ecKey(t, elliptic.P256())
	first, err := a.Issue(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Issue(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Identity: "t"}); refusalCode(err) != policy.CodeKeyReused {
		t.Fatalf("reused key without Renewing: %v", err)
	}
	// Renewing another certificate does not allow this key.
	other, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam2.studio.example.test"), policy.Requester{Identity: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Issue(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Renewing: other}); refusalCode(err) != policy.CodeKeyReused {
		t.Fatalf("key of another certificate: %v", err)
	}
	if _, err := a.CheckCSR(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Renewing: first}); err != nil {
		t.Fatalf("CheckCSR of a same-key renewal: %v", err)
	}
	again, err := a.Issue(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Renewing: first})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.Certificate(ctx, again.SerialNumber)
	if err != nil || rec.Renews == nil || rec.Renews.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("renewal record %+v %v", rec, err)
	}
	// And the renewal may be renewed with the key again.
	if _, err := a.Issue(ctx, deviceCSR(t, key, "cam1.studio.example.test"), policy.Requester{Renewing: again}); err != nil {
		t.Fatal(err)
	}
}

// TestServerKeyTooOpen: the appliance's own TLS key readable by others
// is an error naming it, not a reason to make a new key.
func TestServerKeyTooOpen(t *testing.T) {
	a, dir := newAuthority(t)
	ctx := context.Background()
	first, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "server", "ecdsa.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour); err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("too-open server key: %v", err)
	}
	os.Chmod(key, 0o600)
	again, err := a.ServerCertificate(ctx, ECDSA, "est.studio.example.test", time.Hour)
	if err != nil || again.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatalf("after chmod 600: %v (same certificate: %v)", err, err == nil && again.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0)
	}
}

// TestIssuedBefore: the very same request, moments later, finds the
// certificate issued for it; anything else about it differing, or the
// window passed, finds nothing and the key stays refused.
func TestIssuedBefore(t *testing.T) {
	a, now, _, _ := clockedAuthority(t, nil)
	a.SetNames(Names{Bind: true, Grace: 30 * 24 * time.Hour})
	ctx := context.Background()
	key := ecKey(t, elliptic.P256())
	holder := policy.Requester{Identity: "device 1 from 192.0.2.1:40000", Holder: "maker/SN-1"}
	csr := deviceCSR(t, key, "cam1.studio.example.test", "cam1.studio.example.test", "cam1-alt.studio.example.test")
	cert, err := a.Issue(ctx, csr, holder)
	if err != nil {
		t.Fatal(err)
	}
	found := func(csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error) {
		t.Helper()
		return a.IssuedBefore(ctx, csr, req)
	}
	// The same request, from another connection of the same holder and
	// with its names in another order and case: found.
	again := deviceCSR(t, key, "cam1.studio.example.test", "CAM1-ALT.studio.example.test", "cam1.studio.example.test")
	*now = now.Add(ResendWindow - time.Second)
	got, err := found(again, policy.Requester{Identity: "device 1 from 192.0.2.1:40001", Holder: "maker/SN-1"})
	if err != nil || !got.Equal(cert) {
		t.Fatalf("the same request again: %v (found it: %t)", err, got != nil && got.Equal(cert))
	}
	notFound := func(desc string, csr *x509.CertificateRequest, req policy.Requester) {
		t.Helper()
		if got, err := found(csr, req); !errors.Is(err, store.ErrNotFound) {
			if got != nil {
				t.Errorf("%s: found %s; want store.ErrNotFound", desc, store.SerialKey(got.SerialNumber))
			} else {
				t.Errorf("%s: %v; want store.ErrNotFound", desc, err)
			}
		}
	}
	notFound("another holder", again, policy.Requester{Holder: "maker/SN-2"})
	notFound("no holder", again, policy.Requester{})
	notFound("a name fewer", deviceCSR(t, key, "cam1.studio.example.test", "cam1.studio.example.test"), holder)
	notFound("another name", deviceCSR(t, key, "cam1.studio.example.test", "cam1.studio.example.test", "cam9.studio.example.test"), holder)
	notFound("another subject", makeCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cam1.studio.example.test", SerialNumber: "SN-0043", Organization: []string{"Acme"}},
		DNSNames: []string{"cam1.studio.example.test", "cam1-alt.studio.example.test"}}), holder)
	notFound("another key", deviceCSR(t, ecKey(t, elliptic.P256()), "cam1.studio.example.test", "cam1.studio.example.test", "cam1-alt.studio.example.test"), holder)
	*now = now.Add(2 * time.Second)
	notFound("after the window", again, holder)
	// Issued by an appliance whose clock runs ahead: the window counts
	// both ways.
	*now = now.Add(-ResendWindow - time.Second)
	if _, err := found(again, holder); err != nil {
		t.Fatalf("issued moments ahead of this clock: %v", err)
	}
	*now = now.Add(-ResendWindow - time.Second)
	notFound("issued too far ahead of this clock", again, holder)
	*now = now.Add(2*ResendWindow + time.Second)
	if _, err := a.Revoke(ctx, cert.SerialNumber, store.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	notFound("revoked", again, holder)
	// And the key itself stays refused for a new certificate.
	if _, err := a.Issue(ctx, again, holder); refusalCode(err) != policy.CodeKeyReused {
		t.Fatalf("issue with the key again: %v", err)
	}
	// A same-key renewal is found only by the same renewal asked again.
	k2 := ecKey(t, elliptic.P256())
	first, err := a.Issue(ctx, deviceCSR(t, k2, "cam3.studio.example.test"), holder)
	if err != nil {
		t.Fatal(err)
	}
	renewing := holder
	renewing.Renewing = first
	renewed, err := a.Issue(ctx, deviceCSR(t, k2, "cam3.studio.example.test"), renewing)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := found(deviceCSR(t, k2, "cam3.studio.example.test"), renewing); err != nil || !got.Equal(renewed) {
		t.Fatalf("the same renewal again: %v", err)
	}
	notFound("a same-key renewal's request, not renewing", deviceCSR(t, k2, "cam3.studio.example.test"), holder)
	// An operator moves cam3 to another holder: the renewal is not given
	// out again.
	other := policy.Requester{Holder: "maker/SN-9", TakeOver: map[string]string{"cam3.studio.example.test": holder.Holder}}
	if _, err := a.Issue(ctx, deviceCSR(t, ecKey(t, elliptic.P256()), "cam3.studio.example.test"), other); err != nil {
		t.Fatal(err)
	}
	notFound("a name another holder has taken since", deviceCSR(t, k2, "cam3.studio.example.test"), renewing)
}
