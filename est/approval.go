package est

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// manual handles a request without a trusted client certificate when
// manual approval is on (BCP-003-03, RFC 7030 4.2.3). Requests are found
// again by the SHA-256 of the CSR's public key, so a client retries by
// sending a CSR for the same key (it may be a new CSR, e.g. with a new
// channel binding, but it must ask for the same subject and names).
//
//   - no request for the key, or an expired one: check the CSR against
//     the policy (a refusal is a 400 and nothing is stored), queue it, 202;
//   - waiting: 202 with Retry-After;
//   - approved: issue the stored (approved) CSR, mark it issued, 200;
//   - issued: the same certificate again, for a client that lost it
//     (not for serverkeygen: the key was delivered once and not kept);
//   - denied: 403.
func (s *Server) manual(ctx context.Context, op, label string, csr *x509.CertificateRequest, kd *keyDelivery, who *clientAuth, rl *requestLog) (*response, error) {
	// Whatever the request's state, the retry must prove possession of
	// the key it is found by.
	if err := policy.CheckSignature(csr); err != nil {
		return nil, err
	}
	spki := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	defer s.manualLocks.lock(spki)()

	now := s.now()
	p, err := s.o.Approvals.PendingByKey(ctx, spki[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s.queue(ctx, op, label, csr, spki[:], who, rl)
	case err != nil:
		return nil, fmt.Errorf("look up pending request: %w", err)
	}
	rl.pendingID = p.ID
	switch p.State {
	case store.PendingExpired:
		return s.queue(ctx, op, label, csr, spki[:], who, rl)
	case store.PendingWaiting:
		if !now.Before(p.ExpiresAt) {
			return s.queue(ctx, op, label, csr, spki[:], who, rl)
		}
		s.decide(rl, methodManual, decisionPending)
		return s.accepted(p, now), nil
	case store.PendingApproved:
		if !now.Before(p.ExpiresAt) {
			// Not collected in time: the approval lapsed.
			return s.queue(ctx, op, label, csr, spki[:], who, rl)
		}
	case store.PendingDenied:
		s.decide(rl, methodManual, decisionRefused)
		by := ""
		if p.DecidedBy != "" {
			by = " by " + p.DecidedBy
		}
		return nil, forbidden("request %s was denied%s: generate a new key pair to ask again", p.ID, by)
	}
	if p.Operation != op {
		s.decide(rl, methodManual, decisionRefused)
		return nil, errorf(http.StatusConflict, "request %s for this key was made with %s, not %s", p.ID, p.Operation, op)
	}
	approved, err := x509.ParseCertificateRequest(p.CSR)
	if err != nil {
		return nil, fmt.Errorf("pending request %s holds an unreadable CSR: %w", p.ID, err)
	}
	if !sameRequest(csr, approved) {
		s.decide(rl, methodManual, decisionRefused)
		return nil, forbidden("request %s was for subject %q and names %v: this CSR asks for %q and %v", p.ID,
			approved.Subject.String(), csrNames(approved), csr.Subject.String(), csrNames(csr))
	}
	switch p.State {
	case store.PendingApproved:
		s.decide(rl, methodManual, decisionAccepted)
		return s.issueApproved(ctx, op, approved, kd, p, rl)
	case store.PendingIssued:
		if op == opServerKeyGen {
			s.decide(rl, methodManual, decisionRefused)
			return nil, errorf(http.StatusConflict, "request %s was issued and its server-generated key delivered, which is not kept: ask again with a new key", p.ID)
		}
		return s.reissued(ctx, p, rl)
	}
	return nil, fmt.Errorf("pending request %s is in unknown state %q", p.ID, p.State)
}

// queue records a new request for the operator and answers 202.
func (s *Server) queue(ctx context.Context, op, label string, csr *x509.CertificateRequest, spki []byte, who *clientAuth, rl *requestLog) (*response, error) {
	// The queue is bounded, as a whole and per client address: requests
	// without a trusted certificate cost nothing to send, and each one
	// stored is a row and a line in the operator's list.
	host := remoteHost(rl.remote)
	if wait, ok := s.queued.allow(rateKey(host), s.o.MaxPendingPerAddress, s.now()); !ok {
		s.decide(rl, methodManual, decisionRefused)
		e := errorf(http.StatusServiceUnavailable, "%s has queued %d requests for approval in the last hour, the most this server takes from one address: retry later", host, s.o.MaxPendingPerAddress)
		e.retryAfter = max(int(wait/time.Second), 1)
		return nil, e
	}
	if n, err := s.o.Approvals.CountPending(ctx, store.PendingWaiting); err != nil {
		return nil, fmt.Errorf("count pending requests: %w", err)
	} else if n >= s.o.MaxPending {
		s.decide(rl, methodManual, decisionRefused)
		e := errorf(http.StatusServiceUnavailable, "%d requests are waiting for an operator, the most this server queues: retry later", n)
		e.retryAfter = max(int(s.o.RetryAfter/time.Second), 1)
		return nil, e
	}
	id, err := newPendingID()
	if err != nil {
		return nil, err
	}
	// Only what the policy accepts is shown to an operator, with the
	// names other identities hold when they may be taken over
	// (ca.name_binding: approve).
	req := s.requester(op, who, rl, id)
	req.ListConflicts = s.o.QueueNameConflicts
	conflicts, err := s.o.CA.CheckCSR(ctx, csr, req)
	if err != nil {
		return nil, err
	}
	shown := make([]string, 0, len(conflicts))
	for _, c := range conflicts {
		shown = append(shown, c.Name+"\t"+c.Holder)
	}
	now := s.now()
	sans := make([]string, 0, len(csr.DNSNames)+len(csr.IPAddresses))
	sans = append(sans, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	p := &store.Pending{
		ID:        id,
		Operation: op,
		Label:     label,
		CSR:       csr.Raw,
		SPKIHash:  spki,
		Subject:   csr.Subject.String(),
		SANs:      sans,
		Client:    who.describe() + "; from " + rl.remote + describeConflicts(conflicts),
		Remote:    host,
		Holder:    req.Holder,
		Conflicts: shown,
		State:     store.PendingWaiting,
		CreatedAt: now,
		ExpiresAt: now.Add(s.o.PendingLifetime),
	}
	if err := s.o.Approvals.PutPending(ctx, p); err != nil {
		return nil, fmt.Errorf("queue request for approval: %w", err)
	}
	s.queued.add(rateKey(host), now)
	rl.pendingID = id
	s.decide(rl, methodManual, decisionPending)
	return s.accepted(p, now), nil
}

// accepted is the 202 answer for a waiting request.
func (s *Server) accepted(p *store.Pending, now time.Time) *response {
	secs := max(int(s.o.RetryAfter/time.Second), 1)
	resp := textResponse(http.StatusAccepted, fmt.Sprintf(
		"request %s is waiting for an operator's approval until %s: retry after %d seconds with a CSR for the same key",
		p.ID, p.ExpiresAt.UTC().Format(time.RFC3339), secs))
	resp.retryAfter = secs
	return resp
}

// issueApproved issues an approved request and marks it issued.
func (s *Server) issueApproved(ctx context.Context, op string, csr *x509.CertificateRequest, kd *keyDelivery, p *store.Pending, rl *requestLog) (*response, error) {
	by := p.DecidedBy
	if by == "" {
		by = "an operator"
	}
	// The names go to the holder the request was queued for, whoever
	// collects the certificate, and only the conflicts the operator was
	// shown may be taken over: a name bound to anyone else since is
	// refused.
	req := s.requester(op, rl.who, rl, p.ID)
	req.Identity = fmt.Sprintf("approved request %s by %s (%s)", p.ID, by, req.Identity)
	if p.Holder != "" {
		req.Holder = p.Holder
	}
	req.DecidedBy = by
	for _, c := range p.Conflicts {
		if name, holder, ok := strings.Cut(c, "\t"); ok {
			if req.TakeOver == nil {
				req.TakeOver = map[string]string{}
			}
			req.TakeOver[name] = holder
		}
	}
	resp, cert, err := s.issue(ctx, op, csr, kd, req, rl)
	if err != nil {
		// Another process sharing the store may have issued it first.
		var ref *policy.Refusal
		if op != opServerKeyGen && (errors.As(err, &ref) && ref.Code == policy.CodeKeyReused || errors.Is(err, store.ErrKeyReused)) {
			if q, qerr := s.o.Approvals.PendingByKey(ctx, p.SPKIHash); qerr == nil && q.ID == p.ID && q.State == store.PendingIssued {
				return s.reissued(ctx, q, rl)
			}
		}
		return nil, err
	}
	if err := s.o.Approvals.SetPendingIssued(ctx, p.ID, cert.SerialNumber); err != nil {
		// The certificate is durable and the client gets it; the request
		// stays "approved" in the queue.
		s.log.ErrorContext(ctx, "issued an approved request but could not mark it issued",
			"pending_id", p.ID, "serial", rl.serial, "error", err)
	}
	return resp, nil
}

// reissued answers an already issued request with its certificate.
func (s *Server) reissued(ctx context.Context, p *store.Pending, rl *requestLog) (*response, error) {
	if p.Serial == nil {
		return nil, fmt.Errorf("pending request %s is issued without a serial", p.ID)
	}
	rec, err := s.o.CA.Certificate(ctx, p.Serial)
	if err != nil {
		return nil, fmt.Errorf("certificate %s of request %s: %w", p.Serial.Text(16), p.ID, err)
	}
	rl.serial = p.Serial.Text(16)
	if rec.Revoked {
		s.decide(rl, methodManual, decisionRefused)
		return nil, forbidden("the certificate issued for request %s was revoked: ask again with a new key", p.ID)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("certificate %s of request %s: %w", p.Serial.Text(16), p.ID, err)
	}
	s.decide(rl, methodManual, decisionAccepted)
	return certResponse(cert), nil
}

// sameRequest reports whether two CSRs ask for the same subject and names.
func sameRequest(a, b *x509.CertificateRequest) bool {
	return sameSubject(a.RawSubject, b.RawSubject) && slices.Equal(
		sanSet(a.DNSNames, a.IPAddresses, a.EmailAddresses, uriStrings(a.URIs...)),
		sanSet(b.DNSNames, b.IPAddresses, b.EmailAddresses, uriStrings(b.URIs...)))
}

// describeConflicts tells the operator which names of a request other
// identities hold.
func describeConflicts(cs []*store.NameBinding) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "; name-binding conflict: %s is bound to %s since %s (approving moves it to this requester)",
			c.Name, c.Holder, c.Since.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// remoteHost is the address part of a host:port.
func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// rateKey is the part of a client address the per-address limit counts
// by: the address, or for IPv6 its /64, which one host may hold whole.
func rateKey(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil || a.Is4() || a.Is4In6() {
		return host
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// addressWindow counts, per client address, the requests queued in the
// last hour. Its size is bounded: addresses whose hour has passed are
// dropped as they are looked at, and past maxAddresses tracked at once,
// others are dropped to make room (a flood from that many addresses is
// bounded by MaxPending anyway).
type addressWindow struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

const (
	queueWindow  = time.Hour
	maxAddresses = 100_000
)

// allow reports whether host may queue another request at now, and if
// not, how long until it may.
func (w *addressWindow) allow(host string, limit int, now time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.prune(host, now)
	if len(ts) < limit {
		return 0, true
	}
	return ts[0].Add(queueWindow).Sub(now), false
}

// add records a request queued by host at now.
func (w *addressWindow) add(host string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.times == nil {
		w.times = map[string][]time.Time{}
	}
	if _, ok := w.times[host]; !ok && len(w.times) >= maxAddresses {
		// Full: one address, any, makes room.
		for h := range w.times {
			delete(w.times, h)
			break
		}
	}
	w.times[host] = append(w.prune(host, now), now)
}

// prune drops host's times older than the window and returns the rest.
func (w *addressWindow) prune(host string, now time.Time) []time.Time {
	ts := w.times[host]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-queueWindow)) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(w.times, host)
		return nil
	}
	w.times[host] = ts
	return ts
}

// newPendingID returns a random URL-safe identifier that starts with a
// letter or digit, so that a command line never takes it for an option.
func newPendingID() (string, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("pending request id: %w", err)
		}
		// The first character is the top six bits of b[0]: 62 and 63
		// are "-" and "_".
		if b[0]>>2 < 62 {
			return base64.RawURLEncoding.EncodeToString(b[:]), nil
		}
	}
}

// keyLocks serialises the manual-approval bookkeeping of one public key
// in this process, so that concurrent retries neither queue a key twice
// nor issue an approved request twice, without making requests for other
// keys wait (a server-generated RSA key takes a while).
type keyLocks struct {
	mu    sync.Mutex
	locks map[[32]byte]*keyLock
}

type keyLock struct {
	mu    sync.Mutex
	users int
}

// lock locks key and returns the unlock function.
func (k *keyLocks) lock(key [32]byte) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[[32]byte]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
