package est

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
)

// rawCSR is a CSR with the DER subject given and no subjectAltName, as
// many embedded clients make it.
func rawCSR(t testing.TB, key crypto.Signer, rdns ...pkix.AttributeTypeAndValue) *x509.CertificateRequest {
	t.Helper()
	var seq pkix.RDNSequence
	for _, a := range rdns {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{a})
	}
	raw, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{RawSubject: raw}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestRenewWithEnrollmentSubject: a device whose CSR puts CN first and
// has no SAN gets its subject back as sent, and renews with a CSR of the
// same shape; the renewal is compared by meaning.
func TestRenewWithEnrollmentSubject(t *testing.T) {
	f := newFixture(t)
	name := "cam21." + testDomain
	shape := []pkix.AttributeTypeAndValue{{Type: oidCN, Value: name}, {Type: oidO, Value: "Acme"}, {Type: oidC, Value: "GB"}}
	key := ecKey()
	csr := rawCSR(t, key, shape...)
	cert, err := f.client(f.pki.devA).Enroll(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	if string(cert.RawSubject) != string(csr.RawSubject) {
		t.Fatalf("subject re-encoded: %s", policy.SubjectString(cert.RawSubject))
	}
	me := &issued{cert: cert, key: key, chain: []*x509.Certificate{f.pki.ecInt.cert}}
	// The same shape again: no SAN, though the certificate has one.
	k2 := ecKey()
	renewed, err := f.client(me).Reenroll(ctx(t), rawCSR(t, k2, shape...))
	if err != nil {
		t.Fatalf("renewal with the enrollment's subject: %v", err)
	}
	// The CN in capitals with a trailing dot, as a UTF8String, other
	// attributes in another order: the same subject by meaning.
	me2 := &issued{cert: renewed, key: k2, chain: []*x509.Certificate{f.pki.ecInt.cert}}
	k3 := ecKey()
	upper := pkix.AttributeTypeAndValue{Type: oidCN, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("CAM21." + strings.ToUpper(testDomain) + ".")}}
	third, err := f.client(me2).Reenroll(ctx(t), rawCSR(t, k3, shape[2], shape[1], upper))
	if err != nil {
		t.Fatalf("renewal with the subject in another order: %v", err)
	}
	// Another value is refused, and both subjects are shown in DER order.
	me3 := &issued{cert: third, key: k3, chain: []*x509.Certificate{f.pki.ecInt.cert}}
	_, err = f.client(me3).Reenroll(ctx(t), rawCSR(t, ecKey(), shape[0], pkix.AttributeTypeAndValue{Type: oidO, Value: "Other"}, shape[2]))
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), `"C=GB, O=Acme, CN=cam21.example.test"`) ||
		!strings.Contains(err.Error(), `"CN=cam21.example.test, O=Other, C=GB"`) {
		t.Fatalf("other subject: %v", err)
	}
	// A name the certificate lacks is refused.
	_, err = f.client(me3).Reenroll(ctx(t), newCSR(t, ecKey(), name, "cam22."+testDomain))
	if estStatus(err) != http.StatusForbidden {
		t.Fatalf("extra name: %v", err)
	}
}

// TestSameKeyRenewal: refused by default; when allowed, only on
// simplereenroll with the renewed certificate's own key.
func TestSameKeyRenewal(t *testing.T) {
	for _, allow := range []bool{false, true} {
		f := newFixture(t, func(o *Options) { o.AllowRenewalWithSameKey = allow })
		key := ecKey()
		cert, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, key, "cam30."+testDomain))
		if err != nil {
			t.Fatal(err)
		}
		me := &issued{cert: cert, key: key, chain: []*x509.Certificate{f.pki.ecInt.cert}}
		renewed, err := f.client(me).Reenroll(ctx(t), newCSR(t, key, "cam30."+testDomain))
		if !allow {
			if estStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "certified before") {
				t.Fatalf("same-key renewal refused by default: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("same-key renewal allowed: %v", err)
		}
		if !publicKeyEqual(renewed.PublicKey, key.Public()) || renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			t.Fatal("not a new certificate for the same key")
		}
		rec, err := f.ca.Certificate(ctx(t), renewed.SerialNumber)
		if err != nil || rec.Renews == nil || rec.Renews.Cmp(cert.SerialNumber) != 0 {
			t.Fatalf("record %+v, %v", rec, err)
		}
		// Enrollments still refuse the key, with either credential.
		if _, err := f.client(me).Enroll(ctx(t), newCSR(t, key, "cam30."+testDomain)); estStatus(err) != http.StatusBadRequest {
			t.Fatalf("simpleenroll with the same key: %v", err)
		}
		if _, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, key, "cam30."+testDomain)); estStatus(err) != http.StatusBadRequest {
			t.Fatalf("simpleenroll with the same key: %v", err)
		}
	}
}

// TestNameBindingEST: a name enrolled by one device is refused to
// another, kept through the holder's renewals, and, with conflicts
// queued (ca.name_binding: approve), moved by an operator's approval.
func TestNameBindingEST(t *testing.T) {
	f := newFixture(t)
	f.ca.bind = true
	f.ca.pol.Reserved = []policy.Reserved{{Pattern: "est." + testDomain, Rule: "the appliance's hostname"}}
	name := "cam40." + testDomain
	keyA := ecKey()
	certA, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, keyA, name))
	if err != nil {
		t.Fatal(err)
	}
	recA, _ := f.ca.Certificate(ctx(t), certA.SerialNumber)
	if !strings.HasPrefix(recA.Holder, "manufacturer certificate sha256:") {
		t.Fatalf("holder %q", recA.Holder)
	}
	_, err = f.client(f.pki.devA2).Enroll(ctx(t), newCSR(t, ecKey(), name))
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "nmos-certs names release "+name) || !strings.Contains(err.Error(), recA.Holder) {
		t.Fatalf("another device took the name: %v", err)
	}
	// The holder renews with its certificate: the holder carries over.
	meA := &issued{cert: certA, key: keyA, chain: []*x509.Certificate{f.pki.ecInt.cert}}
	renewed, err := f.client(meA).Reenroll(ctx(t), newCSR(t, ecKey(), name))
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.ca.Certificate(ctx(t), renewed.SerialNumber); rec.Holder != recA.Holder {
		t.Fatalf("renewal holder %q, want %q", rec.Holder, recA.Holder)
	}
	// The appliance's hostname is refused to every device.
	_, err = f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), "est."+testDomain))
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("reserved name: %v", err)
	}

	// Conflicts queued for an operator.
	g := newFixture(t, func(o *Options) { o.QueueNameConflicts = true })
	g.ca.bind = true
	if _, err := g.client(g.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), name)); err != nil {
		t.Fatal(err)
	}
	csrB := newCSR(t, ecKey(), name)
	_, err = g.client(g.pki.devA2).Enroll(ctx(t), csrB)
	if estStatus(err) != http.StatusAccepted {
		t.Fatalf("conflict not queued: %v", err)
	}
	p := g.pendingFor(csrB)
	if !strings.Contains(p.Client, "name-binding conflict: "+name+" is bound to manufacturer certificate sha256:") {
		t.Fatalf("pending request does not show the conflict: %s", p.Client)
	}
	// Waiting: 202 again.
	if _, err := g.client(g.pki.devA2).Enroll(ctx(t), csrB); estStatus(err) != http.StatusAccepted {
		t.Fatalf("retry while waiting: %v", err)
	}
	if _, err := g.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "carol", g.clock.Now()); err != nil {
		t.Fatal(err)
	}
	certB, err := g.client(g.pki.devA2).Enroll(ctx(t), csrB)
	if err != nil {
		t.Fatalf("approved: %v", err)
	}
	recB, _ := g.ca.Certificate(ctx(t), certB.SerialNumber)
	bs, _ := g.ca.st.NameBindings(ctx(t), store.BindingFilter{Name: name})
	if len(bs) != 1 || bs[0].Holder != recB.Holder {
		t.Fatalf("binding after approval %+v, holder %q", bs, recB.Holder)
	}
	audit, _ := g.ca.st.Audit(ctx(t), 1)
	if len(audit) != 1 || audit[0].Action != "name_transferred" || audit[0].Actor != "carol" {
		t.Fatalf("audit %+v", audit)
	}
	// Now the first device is the one queued.
	if _, err := g.client(g.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), name)); estStatus(err) != http.StatusAccepted {
		t.Fatalf("first device after the move: %v", err)
	}
}

// TestApprovalTakesOnlyWhatWasShown: an approval moves only the names
// whose conflicts the operator was shown, to the holder the request was
// queued for, whoever collects the certificate; a name bound since is
// refused; an approval not collected by the request's expiry lapses.
func TestApprovalTakesOnlyWhatWasShown(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.QueueNameConflicts, o.ManualApproval = true, true })
	f.ca.bind = true
	name := "late." + testDomain
	// No certificate: queued, no conflict yet, approved.
	csr := newCSR(t, ecKey(), name)
	if _, err := f.client(nil).Enroll(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("queued: %v", err)
	}
	p := f.pendingFor(csr)
	if p.Holder != "request "+p.ID || len(p.Conflicts) != 0 {
		t.Fatalf("pending holder %q, conflicts %v", p.Holder, p.Conflicts)
	}
	if _, err := f.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "erin", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	// Meanwhile device A enrolls the name.
	if _, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), name)); err != nil {
		t.Fatal(err)
	}
	// The approval, collected by another device, does not take it.
	_, err := f.client(f.pki.devA2).Enroll(ctx(t), csr)
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "bound to another identity") {
		t.Fatalf("approval collected after the name was bound: %v", err)
	}
	bs, _ := f.ca.st.NameBindings(ctx(t), store.BindingFilter{Name: name})
	if len(bs) != 1 || !strings.HasPrefix(bs[0].Holder, "manufacturer certificate sha256:") || strings.Contains(bs[0].Holder, fingerprint(f.pki.devA2.cert)) {
		t.Fatalf("binding %+v", bs)
	}
	// Another approved request, collected by device A2: bound to the
	// request, not to A2.
	other := newCSR(t, ecKey(), "free."+testDomain)
	if _, err := f.client(nil).Enroll(ctx(t), other); estStatus(err) != http.StatusAccepted {
		t.Fatal(err)
	}
	q := f.pendingFor(other)
	f.ca.st.DecidePending(ctx(t), q.ID, store.PendingApproved, "erin", f.clock.Now())
	cert, err := f.client(f.pki.devA2).Enroll(ctx(t), other)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.ca.Certificate(ctx(t), cert.SerialNumber); rec.Holder != "request "+q.ID {
		t.Fatalf("holder %q, want the request's", rec.Holder)
	}
	// An approval not collected in time lapses: the retry queues anew.
	third := newCSR(t, ecKey(), "slow."+testDomain)
	f.client(nil).Enroll(ctx(t), third)
	r := f.pendingFor(third)
	f.ca.st.DecidePending(ctx(t), r.ID, store.PendingApproved, "erin", f.clock.Now())
	f.clock.Advance(8 * 24 * time.Hour)
	defer f.clock.Advance(-8 * 24 * time.Hour)
	if _, err := f.client(nil).Enroll(ctx(t), third); estStatus(err) != http.StatusAccepted {
		t.Fatalf("lapsed approval: %v", err)
	}
	if again := f.pendingFor(third); again.ID == r.ID || again.State != store.PendingWaiting {
		t.Fatalf("lapsed approval not queued anew: %+v", again)
	}
	// A retry whose CSR does not prove possession of the key is refused.
	parsed, err := x509.ParseCertificateRequest(corruptSignature(third.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client(nil).Enroll(ctx(t), parsed); estStatus(err) != http.StatusBadRequest {
		t.Fatalf("retry with a bad signature: %v", err)
	}
}
