package est

import (
	"context"
	"crypto/x509"
	"net/http"
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
	s.decide(rl, who.method, decisionAccepted)
	resp, _, err := s.issue(ctx, op, csr, kd, who.identity(rl.remote), rl)
	return resp, err
}

// issue signs the request of an authorized client.
func (s *Server) issue(ctx context.Context, op string, csr *x509.CertificateRequest, kd *keyDelivery, identity string, rl *requestLog) (*response, *x509.Certificate, error) {
	if op == opServerKeyGen {
		return s.serverKeyGen(ctx, csr, kd, identity, rl)
	}
	cert, err := s.o.CA.Issue(ctx, csr, identity)
	if err != nil {
		return nil, nil, err
	}
	rl.serial = cert.SerialNumber.Text(16)
	return certResponse(cert), cert, nil
}
