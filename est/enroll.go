package est

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// enroll serves simpleenroll, simplereenroll and serverkeygen.
//
// The order matters: what needs no body (content type, client
// certificate) is refused first; then the CSR is decoded and bound to the
// TLS connection; then a certificate of ours is held to its own names;
// then the request is issued, or queued for an operator.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request, op, label string, rl *requestLog) (*response, error) {
	ctx := r.Context()
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	who, err := s.authenticate(ctx, r)
	if err != nil {
		return nil, err
	}
	rl.who = who
	if err := s.preAuthorize(op, who, rl); err != nil {
		// Refused whatever the CSR says; still, note the names asked for
		// in the log when the body says them.
		if body, rerr := readBody(w, r, s.o.MaxBodyBytes); rerr == nil {
			if csr, derr := decodeCSR(body); derr == nil {
				rl.names = csrNames(csr)
			}
		}
		return nil, err
	}
	body, err := readBody(w, r, s.o.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	csr, err := decodeCSR(body)
	if err != nil {
		return nil, err
	}
	rl.names = csrNames(csr)
	attrs, err := parseCSRAttributes(csr)
	if err != nil {
		return nil, err
	}
	if err := s.checkChannelBinding(r.TLS, attrs); err != nil {
		return nil, err
	}
	if who.kind == authIssued {
		if err := checkRenewalNames(csr, who.leaf, op == opReenroll); err != nil {
			s.decide(rl, methodIssued, decisionRefused)
			return nil, err
		}
	}
	var kd *keyDelivery
	if op == opServerKeyGen {
		if kd, err = s.planKeyDelivery(attrs, who.leaf); err != nil {
			return nil, err
		}
	}
	if who.kind == authNone {
		return s.manual(ctx, op, label, csr, kd, who, rl)
	}
	req := s.requester(op, who, rl, "")
	if s.o.QueueNameConflicts {
		// ca.name_binding: approve. A request that asks for names another
		// identity holds waits for an operator, and is found again by its
		// key when the device retries.
		spki := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
		p, err := s.o.Approvals.PendingByKey(ctx, spki[:])
		switch {
		case err == nil && p.Operation == op && p.State != store.PendingExpired && p.State != store.PendingIssued:
			return s.manual(ctx, op, label, csr, kd, who, rl)
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("look up pending request: %w", err)
		}
		list := req
		list.ListConflicts = true
		conflicts, err := s.o.CA.CheckCSR(ctx, csr, list)
		if err != nil {
			return s.resend(ctx, op, csr, req, rl, err)
		}
		if len(conflicts) > 0 {
			return s.manual(ctx, op, label, csr, kd, who, rl)
		}
	}
	s.decide(rl, who.method, decisionAccepted)
	resp, _, err := s.issue(ctx, op, csr, kd, req, rl)
	return resp, err
}

// requester is who asks, as the authority needs to know it. pendingID
// names the request an operator approved, if any.
func (s *Server) requester(op string, who *clientAuth, rl *requestLog, pendingID string) policy.Requester {
	req := who.requester(rl.remote, pendingID)
	if s.o.AllowRenewalWithSameKey && op == opReenroll && who.kind == authIssued {
		req.Renewing = who.leaf
	}
	return req
}

// issue signs the request of an authorized client.
func (s *Server) issue(ctx context.Context, op string, csr *x509.CertificateRequest, kd *keyDelivery, req policy.Requester, rl *requestLog) (*response, *x509.Certificate, error) {
	if op == opServerKeyGen {
		return s.serverKeyGen(ctx, csr, kd, req, rl)
	}
	cert, err := s.o.CA.Issue(ctx, csr, req)
	if err != nil {
		resp, err := s.resend(ctx, op, csr, req, rl, err)
		return resp, nil, err
	}
	rl.serial = cert.SerialNumber.Text(16)
	return certResponse(cert), cert, nil
}

// resend answers a request refused because its key was certified before
// with the certificate issued for that very request moments ago, if there
// is one (see ca.ResendWindow): the device's first answer was lost. Any
// other refusal, or none found, returns err as it was.
func (s *Server) resend(ctx context.Context, op string, csr *x509.CertificateRequest, req policy.Requester, rl *requestLog, err error) (*response, error) {
	var ref *policy.Refusal
	if op == opServerKeyGen || !(errors.As(err, &ref) && ref.Code == policy.CodeKeyReused || errors.Is(err, store.ErrKeyReused)) {
		return nil, err
	}
	cert, lerr := s.o.CA.IssuedBefore(ctx, csr, req)
	if lerr != nil {
		if !errors.Is(lerr, store.ErrNotFound) {
			s.log.WarnContext(ctx, "could not look for the certificate of a repeated request", "error", lerr)
		}
		return nil, err
	}
	if rl.who != nil && rl.who.leaf != nil && rl.who.leaf.Equal(cert) {
		// The client holds that certificate (it signed in with it): its
		// answer was not lost, and a renewal with its key stays refused.
		return nil, err
	}
	rl.serial, rl.sentAgain = cert.SerialNumber.Text(16), true
	return certResponse(cert), nil
}
