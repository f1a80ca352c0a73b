package est

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gsest "github.com/globalsign/est"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func manualFixture(t *testing.T) *fixture {
	return newFixture(t, func(o *Options) {
		o.ManualApproval = true
		o.RetryAfter = 90 * time.Second
		o.PendingLifetime = 24 * time.Hour
	})
}

// pendingFor returns the queued request for a CSR's key.
func (f *fixture) pendingFor(csr *x509.CertificateRequest) *store.Pending {
	f.t.Helper()
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	p, err := f.ca.st.PendingByKey(ctx(f.t), sum[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// TestManualApproval walks a request without a client certificate through
// the queue: 202, approval, certificate, the same certificate again.
func TestManualApproval(t *testing.T) {
	f := manualFixture(t)
	c := f.client(nil)
	key := ecKey()
	csr := newCSR(t, key, "new-cam."+testDomain)

	_, err := c.Enroll(ctx(t), csr)
	var ee gsest.Error
	if !errors.As(err, &ee) || ee.StatusCode() != http.StatusAccepted || ee.RetryAfter() != 90 {
		t.Fatalf("first request: %v", err)
	}
	p := f.pendingFor(csr)
	if p.State != store.PendingWaiting || p.Operation != opEnroll || p.Subject != "CN=new-cam."+testDomain ||
		!strings.Contains(p.Client, "no client certificate") || !strings.Contains(p.Client, "127.0.0.1") ||
		!p.ExpiresAt.Equal(p.CreatedAt.Add(24*time.Hour)) {
		t.Fatalf("pending %+v", p)
	}
	if !strings.Contains(ee.Error(), p.ID) {
		t.Fatalf("202 body %q does not name the request", ee.Error())
	}
	if got := testutil.ToFloat64(f.srv.m.auth.WithLabelValues(methodManual, decisionPending)); got != 1 {
		t.Fatalf("pending decisions %v", got)
	}
	if n, err := testutil.GatherAndCount(f.reg, "nmos_certs_est_pending_requests"); err != nil || n != 1 {
		t.Fatalf("pending gauge: %d series, %v", n, err)
	}

	// Retrying, even with a new CSR for the same key, waits for the same
	// request.
	_, err = c.Enroll(ctx(t), newCSR(t, key, "new-cam."+testDomain))
	if estStatus(err) != http.StatusAccepted {
		t.Fatalf("retry: %v", err)
	}
	if again := f.pendingFor(csr); again.ID != p.ID {
		t.Fatalf("retry queued a new request %s", again.ID)
	}
	if f.ca.count(t) != 0 {
		t.Fatal("certificate issued before approval")
	}
	// Asking for other names with the same key is refused.
	if _, err := c.Enroll(ctx(t), newCSR(t, key, "other-cam."+testDomain)); estStatus(err) != http.StatusAccepted {
		// Still waiting: the request is not approved, so it is not issued
		// either; the names are compared once approved.
		t.Fatalf("other names while waiting: %v", err)
	}

	if _, err := f.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "alice", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx(t), newCSR(t, key, "other-cam."+testDomain)); estStatus(err) != http.StatusForbidden {
		t.Fatalf("other names after approval: %v", err)
	}
	cert, err := c.Enroll(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.ca.Certificate(ctx(t), cert.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Identity, "approved request "+p.ID+" by alice (") || rec.Holder != "request "+p.ID {
		t.Fatalf("identity %q, holder %q", rec.Identity, rec.Holder)
	}
	if q := f.pendingFor(csr); q.State != store.PendingIssued || q.Serial.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("pending after issue %+v", q)
	}
	// A client that lost the answer gets the same certificate.
	again, err := c.Enroll(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(cert) || f.ca.count(t) != 1 {
		t.Fatal("retry after issue did not return the same certificate")
	}
	// Unless it was revoked since.
	if _, err := f.ca.st.Revoke(ctx(t), cert.SerialNumber, f.clock.Now(), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusForbidden {
		t.Fatalf("revoked: %v", err)
	}
}

func TestManualApprovalDenied(t *testing.T) {
	f := manualFixture(t)
	c := f.client(f.pki.rogueDev) // untrusted certificate
	csr := newCSR(t, ecKey(), "cam3."+testDomain)
	if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("first: %v", err)
	}
	p := f.pendingFor(csr)
	// What the operator decides on: the certificate's subject, issuer,
	// serial, validity and why it was not trusted.
	leaf := f.pki.rogueDev.cert
	if !strings.Contains(p.Client, "maker-a-0001") || !strings.Contains(p.Client, "not trusted") || !strings.Contains(p.Client, leaf.Issuer.String()) ||
		!strings.Contains(p.Client, "serial "+leaf.SerialNumber.Text(16)) || !strings.Contains(p.Client, "valid "+leaf.NotBefore.UTC().Format(time.RFC3339)+" to "+leaf.NotAfter.UTC().Format(time.RFC3339)) {
		t.Fatalf("client description %q", p.Client)
	}
	if _, err := f.ca.st.DecidePending(ctx(t), p.ID, store.PendingDenied, "bob", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := c.Enroll(ctx(t), csr)
	if estStatus(err) != http.StatusForbidden || !strings.Contains(err.Error(), "denied by bob") {
		t.Fatalf("denied: %v", err)
	}
	if f.ca.count(t) != 0 {
		t.Fatal("certificate stored for a denied request")
	}
}

// TestManualApprovalExpiry: a request not decided in time is queued again.
func TestManualApprovalExpiry(t *testing.T) {
	f := manualFixture(t)
	c := f.client(nil)
	csr := newCSR(t, ecKey(), "cam4."+testDomain)
	c.Enroll(ctx(t), csr)
	first := f.pendingFor(csr)
	f.clock.Advance(25 * time.Hour)
	if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("after expiry: %v", err)
	}
	second := f.pendingFor(csr)
	if second.ID == first.ID || second.State != store.PendingWaiting {
		t.Fatalf("expired request not replaced: %+v", second)
	}
	// Expired by the store's sweep: also replaced.
	if _, err := f.ca.st.ExpirePending(ctx(t), f.clock.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.Enroll(ctx(t), csr)
	if third := f.pendingFor(csr); third.ID == second.ID {
		t.Fatal("swept request not replaced")
	}
}

// TestManualApprovalRefusals: a policy refusal or a revoked certificate
// queues nothing.
func TestManualApprovalRefusals(t *testing.T) {
	f := manualFixture(t)
	csr := newCSR(t, ecKey(), "cam.outside.test")
	_, err := f.client(nil).Enroll(ctx(t), csr)
	if estStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "outside the domain") {
		t.Fatalf("policy: %v", err)
	}
	csr2 := newCSR(t, ecKey(), "cam5."+testDomain)
	if _, err := f.client(f.pki.devBRevoked).Enroll(ctx(t), csr2); estStatus(err) != http.StatusForbidden {
		t.Fatalf("revoked: %v", err)
	}
	if list, _ := f.ca.st.ListPending(ctx(t), ""); len(list) != 0 {
		t.Fatalf("%d requests queued", len(list))
	}
	// simplereenroll is never queued.
	if _, err := f.client(nil).Reenroll(ctx(t), csr2); estStatus(err) != http.StatusUnauthorized {
		t.Fatalf("reenroll: %v", err)
	}
}

// TestManualApprovalServerKeyGen: an approved serverkeygen request gets a
// key once.
func TestManualApprovalServerKeyGen(t *testing.T) {
	f := manualFixture(t)
	c := f.client(nil)
	csr := newCSR(t, ecKey(), "kg2."+testDomain)
	if _, _, err := c.ServerKeyGen(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("first: %v", err)
	}
	p := f.pendingFor(csr)
	if p.Operation != opServerKeyGen {
		t.Fatalf("operation %q", p.Operation)
	}
	// The same key at simpleenroll is another operation.
	if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("enroll while waiting: %v", err)
	}
	f.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "carol", f.clock.Now())
	if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusConflict {
		t.Fatalf("enroll for an approved serverkeygen: %v", err)
	}
	cert, key, err := c.ServerKeyGen(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := x509.ParsePKCS8PrivateKey(key); err != nil || !publicKeyEqual(cert.PublicKey, k.(crypto.Signer).Public()) {
		t.Fatalf("key %v", err)
	}
	if _, _, err := c.ServerKeyGen(ctx(t), csr); estStatus(err) != http.StatusConflict {
		t.Fatalf("second delivery: %v", err)
	}
}

// staleApprovals answers the first lookup with an "approved" copy of a
// request another process has issued meanwhile.
type staleApprovals struct {
	*store.SQLite
	stale atomic.Bool
}

func (s *staleApprovals) PendingByKey(ctx context.Context, h []byte) (*store.Pending, error) {
	p, err := s.SQLite.PendingByKey(ctx, h)
	if err == nil && s.stale.CompareAndSwap(true, false) {
		q := *p
		q.State, q.Serial = store.PendingApproved, nil
		return &q, nil
	}
	return p, err
}

// TestManualApprovalIssuedElsewhere: when another process sharing the
// store issued the approved request first, the client gets that
// certificate.
func TestManualApprovalIssuedElsewhere(t *testing.T) {
	var sa *staleApprovals
	f := newFixture(t, func(o *Options) {
		o.ManualApproval = true
		sa = &staleApprovals{SQLite: o.Approvals.(*store.SQLite)}
		o.Approvals = sa
	})
	c := f.client(nil)
	csr := newCSR(t, ecKey(), "elsewhere."+testDomain)
	c.Enroll(ctx(t), csr)
	p := f.pendingFor(csr)
	f.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "dave", f.clock.Now())
	// The other process.
	other, err := f.ca.Issue(ctx(t), csr, policy.Requester{Identity: "approved request " + p.ID + " by dave"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.st.SetPendingIssued(ctx(t), p.ID, other.SerialNumber); err != nil {
		t.Fatal(err)
	}
	sa.stale.Store(true)
	cert, err := c.Enroll(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(other) || f.ca.count(t) != 1 {
		t.Fatal("did not return the certificate issued elsewhere")
	}
}

// TestPendingQueueBounded: the approval queue takes at most MaxPending
// waiting requests and MaxPendingPerAddress an hour from one address;
// beyond either, 503 with Retry-After, and nothing is stored.
func TestPendingQueueBounded(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ManualApproval, o.MaxPendingPerAddress, o.MaxPending = true, 2, 3 })
	c := f.client(nil)
	var first *x509.CertificateRequest
	for i := range 2 {
		csr := newCSR(t, ecKey(), "q"+itoa(i)+"."+testDomain)
		if _, err := c.Enroll(ctx(t), csr); estStatus(err) != http.StatusAccepted {
			t.Fatalf("request %d: %v", i, err)
		}
		if first == nil {
			first = csr
		}
	}
	_, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "q2."+testDomain))
	var ra interface{ RetryAfter() int }
	if estStatus(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "127.0.0.1 has queued 2 requests") ||
		!errors.As(err, &ra) || ra.RetryAfter() < 3500 {
		t.Fatalf("third request from one address: %v", err)
	}
	if n, _ := f.ca.st.CountPending(ctx(t), store.PendingWaiting); n != 2 {
		t.Fatalf("%d waiting after a refusal", n)
	}
	// A retry of a queued request is not a new request.
	if _, err := c.Enroll(ctx(t), first); estStatus(err) != http.StatusAccepted {
		t.Fatalf("retry of a queued request: %v", err)
	}
	// An hour later the address may queue again, up to MaxPending.
	f.clock.Advance(61 * time.Minute)
	if _, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "q3."+testDomain)); estStatus(err) != http.StatusAccepted {
		t.Fatalf("an hour later: %v", err)
	}
	_, err = c.Enroll(ctx(t), newCSR(t, ecKey(), "q4."+testDomain))
	if estStatus(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "3 requests are waiting") {
		t.Fatalf("queue full: %v", err)
	}
	p, _ := f.ca.st.ListPending(ctx(t), store.PendingWaiting)
	if len(p) != 3 || p[0].Remote != "127.0.0.1" {
		t.Fatalf("waiting %d, remote %q", len(p), p[0].Remote)
	}
}

// TestPendingIDsNeverLookLikeOptions: no request ID starts with "-" (or
// "_"), so that "requests deny ID" never reads one as an option.
func TestPendingIDsNeverLookLikeOptions(t *testing.T) {
	for range 20000 {
		id, err := newPendingID()
		if err != nil {
			t.Fatal(err)
		}
		if id[0] == '-' || id[0] == '_' || len(id) != 22 {
			t.Fatalf("request ID %q", id)
		}
	}
}

func TestRateKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "::ffff:192.0.2.7",
		"not an address":       "not an address",
		"fe80::1%eth0":         "fe80::/64",
	} {
		if got := rateKey(in); got != want {
			t.Errorf("rateKey(%q) = %q, want %q", in, got, want)
		}
	}
}
