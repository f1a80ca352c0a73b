package est

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// normName is a name as the policy compares it.
func normName(n string) string {
	out, _ := policy.NormalizeName(strings.TrimSpace(n))
	return out
}

// How a client authenticated (BCP-003-03 "EST Server - Client
// Authentication"):
//
//   - authManufacturer: a certificate that chains, for client
//     authentication, to a loaded manufacturer root and that no CRL of its
//     chain revokes. A certificate without extendedKeyUsage is accepted
//     (RFC 5280: no restriction); one whose EKU lacks clientAuth is not.
//     With AllowExpiredClientCerts the chain may be outside its validity
//     period.
//   - authIssued: a certificate that chains to our own CA (CA.Chains),
//     is in our records with the same DER, is not revoked and is within
//     its validity period.
//   - authNone: anything else; the request is refused, or queued for an
//     operator with ManualApproval, unless revoked is set: a revoked
//     certificate is always refused and never queued.
type authKind int

const (
	authNone authKind = iota
	authManufacturer
	authIssued
)

// clientAuth is what the server concluded about a client certificate.
type clientAuth struct {
	kind authKind
	// method is the metric label of the credential considered.
	method string
	leaf   *x509.Certificate
	// revoked: refused whatever the configuration.
	revoked bool
	// expired: accepted (manufacturer) although outside its validity.
	expired bool
	// reason says why the certificate is not trusted or was refused.
	reason string
	// holder is the identity names are bound to (see requester).
	holder string
}

// fingerprint is the SHA-256 of a certificate, in hex.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// LogValue describes the client certificate in logs, without key material.
func (a *clientAuth) LogValue() slog.Value {
	if a.leaf == nil {
		return slog.GroupValue(slog.Bool("present", false), slog.String("trust", a.method), slog.String("reason", a.reason))
	}
	attrs := []slog.Attr{
		slog.String("subject", a.leaf.Subject.String()),
		slog.String("issuer", a.leaf.Issuer.String()),
		slog.String("serial", a.leaf.SerialNumber.Text(16)),
		slog.String("sha256", fingerprint(a.leaf)),
		slog.String("trust", a.method),
	}
	if a.kind == authNone {
		attrs = append(attrs, slog.Bool("trusted", false))
	}
	if a.expired {
		attrs = append(attrs, slog.Bool("expired_accepted", true))
	}
	if a.revoked {
		attrs = append(attrs, slog.Bool("revoked", true))
	}
	if a.reason != "" {
		attrs = append(attrs, slog.String("reason", a.reason))
	}
	return slog.GroupValue(attrs...)
}

// describe is the operator-facing account of the client certificate.
func (a *clientAuth) describe() string {
	if a.leaf == nil {
		return "no client certificate"
	}
	s := fmt.Sprintf("client certificate subject %q, issuer %q, serial %s, valid %s to %s, SHA-256 %s",
		a.leaf.Subject.String(), a.leaf.Issuer.String(), a.leaf.SerialNumber.Text(16),
		a.leaf.NotBefore.UTC().Format(time.RFC3339), a.leaf.NotAfter.UTC().Format(time.RFC3339), fingerprint(a.leaf))
	if a.reason != "" {
		s += "; not trusted: " + a.reason
	}
	return s
}

// requester is who asks, for the authority: a description, and the
// holder the names are bound to. The holder of a manufacturer
// certificate is its issuer's name and its subject serialNumber (the
// device's serial, which stays the same when the manufacturer issues the
// device a new certificate), and the fingerprint of the root it chains
// to, so that another trusted manufacturer cannot claim a device by
// naming its CA alike; without a serialNumber, the certificate's
// fingerprint. A certificate this CA issued carries its holder over
// (renewals keep the names). An untrusted certificate queued for an
// operator is its fingerprint; no certificate at all is the request.
func (a *clientAuth) requester(remote, pendingID string) policy.Requester {
	r := policy.Requester{Identity: a.identity(remote), Holder: a.holder}
	if r.Holder == "" {
		switch {
		case a.leaf != nil:
			r.Holder = "client certificate sha256:" + fingerprint(a.leaf)
		case pendingID != "":
			r.Holder = "request " + pendingID
		}
	}
	return r
}

// manufacturerHolder is the holder of a manufacturer certificate whose
// chain ends at root (see requester).
func manufacturerHolder(leaf, root *x509.Certificate) string {
	sn := strings.TrimSpace(leaf.Subject.SerialNumber)
	if sn == "" {
		return "manufacturer certificate sha256:" + fingerprint(leaf)
	}
	rootID := ""
	if root != nil {
		sum := sha256.Sum256(root.RawSubjectPublicKeyInfo)
		rootID = " root-key " + hex.EncodeToString(sum[:8])
	}
	return fmt.Sprintf("manufacturer %q serialNumber %q%s", leaf.Issuer.String(), sn, rootID)
}

// identity is what Issue records as the requester.
func (a *clientAuth) identity(remote string) string {
	switch a.kind {
	case authManufacturer:
		s := fmt.Sprintf("manufacturer certificate %q (issuer %q, serial %s, SHA-256 %s) from %s",
			a.leaf.Subject.String(), a.leaf.Issuer.String(), a.leaf.SerialNumber.Text(16), fingerprint(a.leaf), remote)
		if a.expired {
			s += ", accepted outside its validity period"
		}
		return s
	case authIssued:
		return fmt.Sprintf("certificate %s issued by this CA (%q) from %s", a.leaf.SerialNumber.Text(16), a.leaf.Subject.String(), remote)
	}
	return a.describe() + " from " + remote
}

// authenticate looks at the TLS client certificate. Its errors are
// failures to consult the CA (500), never a verdict on the client.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*clientAuth, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return &clientAuth{method: methodNone, reason: "no client certificate presented"}, nil
	}
	leaf, presented := r.TLS.PeerCertificates[0], r.TLS.PeerCertificates[1:]
	now := s.now()
	a := &clientAuth{leaf: leaf, method: methodNone}

	ours, err := s.checkIssued(ctx, a, now)
	if err != nil || ours {
		return a, err
	}
	t := s.trust.Load()
	if t == nil {
		a.reason = "not issued by this CA, and no manufacturer roots are configured"
		return a, nil
	}
	v := t.check(leaf, presented, now)
	switch {
	case errors.Is(v.err, errCRLUnverifiable):
		a.method, a.reason = methodManufacturer, "manufacturer certificate whose revocation status is unknown: "+v.err.Error()
		return a, nil
	case v.chain == nil:
		a.reason = "not issued by this CA nor by a trusted manufacturer: " + verifyReason(v.err)
		return a, nil
	case v.revoked != nil:
		a.method, a.revoked, a.reason = methodManufacturer, true, v.revoked.String()
		return a, nil
	case v.expired && !s.o.AllowExpiredClientCerts:
		a.method, a.reason = methodManufacturer, "manufacturer certificate chain outside its validity period ("+verifyReason(v.err)+")"
		return a, nil
	}
	a.kind, a.method, a.expired = authManufacturer, methodManufacturer, v.expired
	a.holder = manufacturerHolder(leaf, v.chain[len(v.chain)-1])
	return a, nil
}

// checkIssued recognises a certificate of ours. It reports whether the
// certificate chains to our CA, in which case a is final.
func (s *Server) checkIssued(ctx context.Context, a *clientAuth, now time.Time) (bool, error) {
	st, err := s.caState(ctx)
	if err != nil {
		return false, err
	}
	opts := x509.VerifyOptions{
		Roots:         st.roots,
		Intermediates: st.inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	_, verr := a.leaf.Verify(opts)
	if verr != nil {
		if !isExpiry(verr) || verifyInPast(a.leaf, opts, nil) == nil {
			return false, nil
		}
	}
	a.method = methodIssued
	rec, err := s.o.CA.Certificate(ctx, a.leaf.SerialNumber)
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.reason = "signed by this CA but serial " + a.leaf.SerialNumber.Text(16) + " is not in its records"
		return true, nil
	case err != nil:
		return true, fmt.Errorf("look up client certificate %s: %w", a.leaf.SerialNumber.Text(16), err)
	case !bytes.Equal(rec.DER, a.leaf.Raw):
		a.reason = "signed by this CA but different from the certificate recorded with serial " + a.leaf.SerialNumber.Text(16)
		return true, nil
	case rec.Revoked:
		a.revoked = true
		a.reason = fmt.Sprintf("certificate %s was revoked by this CA at %s", a.leaf.SerialNumber.Text(16), rec.RevokedAt.UTC().Format(time.RFC3339))
		return true, nil
	case verr != nil:
		a.reason = fmt.Sprintf("certificate %s issued by this CA is outside its validity period (not after %s)",
			a.leaf.SerialNumber.Text(16), a.leaf.NotAfter.UTC().Format(time.RFC3339))
		return true, nil
	}
	a.kind = authIssued
	a.holder = rec.Holder
	if a.holder == "" {
		// Issued before names were bound: the certificate stands for
		// its holder from now on.
		a.holder = "certificate " + a.leaf.SerialNumber.Text(16)
	}
	return true, nil
}

// verifyReason turns a chain verification error into a short reason.
func verifyReason(err error) string {
	var ua x509.UnknownAuthorityError
	var ie x509.CertificateInvalidError
	switch {
	case err == nil:
		return "unknown"
	case errors.As(err, &ua):
		return "unknown issuer " + fmt.Sprintf("%q", issuerOf(ua.Cert))
	case errors.As(err, &ie) && ie.Reason == x509.IncompatibleUsage:
		return "the certificate is not valid for TLS client authentication (extendedKeyUsage)"
	}
	return err.Error()
}

func issuerOf(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Issuer.String()
}

// preAuthorize refuses, before the body is read, what no CSR can make
// acceptable.
func (s *Server) preAuthorize(op string, a *clientAuth, rl *requestLog) error {
	switch {
	case a.revoked:
		s.decide(rl, a.method, decisionRefused)
		return forbidden("the client certificate is refused: %s", a.reason)
	case op == opReenroll && a.kind != authIssued:
		s.decide(rl, a.method, decisionRefused)
		switch {
		case a.leaf == nil:
			return errorf(http.StatusUnauthorized, "simplereenroll needs the certificate being renewed as the TLS client certificate")
		case a.kind == authManufacturer:
			return forbidden("simplereenroll renews a certificate issued by this CA: present that certificate, or use simpleenroll with the manufacturer certificate")
		}
		return forbidden("the client certificate cannot be renewed: %s", a.reason)
	case a.kind == authNone && !s.o.ManualApproval:
		s.decide(rl, a.method, decisionRefused)
		if a.leaf == nil {
			return errorf(http.StatusUnauthorized, "a TLS client certificate is required: present the manufacturer-issued certificate or one issued by this CA")
		}
		return forbidden("the client certificate is not trusted: %s", a.reason)
	}
	return nil
}

// decide records an authorization decision (metric and log fields).
func (s *Server) decide(rl *requestLog, method, outcome string) {
	rl.authMethod, rl.authOutcome = method, outcome
	s.m.auth.WithLabelValues(method, outcome).Inc()
}

// checkRenewalNames enforces what a certificate of ours may ask for. On
// simplereenroll (exact) the CSR's subject and subjectAltName must be the
// certificate's (RFC 7030 4.2.2), compared by meaning: the same
// attributes with the same values whatever their order and string types,
// and the same names once normalised, counting the name the appliance
// put in the subjectAltName from the common name (a CSR that leaves it
// out, as the device's first one did, asks for the same names). On
// simpleenroll and serverkeygen the CSR may ask for some of the
// certificate's names, not others: a device renews itself, it does not
// get certificates for other hosts.
func checkRenewalNames(csr *x509.CertificateRequest, cert *x509.Certificate, exact bool) error {
	have := map[string]bool{}
	for _, n := range certNames(cert) {
		have[normName(n)] = true
	}
	want := map[string]bool{}
	for _, n := range csrNames(csr) {
		want[normName(n)] = true
	}
	if exact {
		same := len(csr.IPAddresses) == 0 && len(csr.EmailAddresses) == 0 && len(csr.URIs) == 0 && len(want) == len(have)
		for n := range want {
			same = same && have[n]
		}
		if !policy.SameSubject(csr.RawSubject, cert.RawSubject) || !same {
			csrSAN := sanSet(csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, uriStrings(csr.URIs...))
			return forbidden("simplereenroll: the CSR's subject and names must be those of the certificate being renewed (RFC 7030 4.2.2): the certificate has subject %q and names %v, the CSR subject %q and names %v",
				policy.SubjectString(cert.RawSubject), cert.DNSNames, policy.SubjectString(csr.RawSubject), csrSAN)
		}
		return nil
	}
	for _, n := range csrNames(csr) {
		if !have[normName(n)] {
			return forbidden("authenticated with this CA's certificate for %v, which cannot ask for %q: use the manufacturer certificate to enroll other names", certNames(cert), n)
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return forbidden("authenticated with this CA's certificate for %v, which cannot ask for email or URI names", certNames(cert))
	}
	return nil
}

func uriStrings[T fmt.Stringer](us ...T) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// Channel binding labels and sizes (RFC 9266).
const (
	exporterLabel = "EXPORTER-Channel-Binding"
	exporterLen   = 32
)

// checkChannelBinding verifies the challengePassword of a CSR against the
// TLS connection (RFC 7030 3.5): base64 of tls-unique on TLS 1.2, of
// tls-exporter (RFC 9266) on TLS 1.3 (and on TLS 1.2 with the extended
// master secret, for clients that prefer it). Any challengePassword is
// taken as channel binding: this server has no passwords.
func (s *Server) checkChannelBinding(cs *tls.ConnectionState, attrs *csrAttributes) error {
	if !attrs.hasChallengePassword {
		if s.o.RequireChannelBinding {
			return badRequest("this server requires the CSR to carry the TLS channel binding in challengePassword (RFC 7030 3.5): base64 of tls-unique on TLS 1.2, of tls-exporter (RFC 9266) on TLS 1.3")
		}
		return nil
	}
	if cs == nil {
		return badRequest("the CSR carries a challengePassword but the request did not come over TLS: no channel binding to check")
	}
	got := []byte(strings.TrimSpace(attrs.challengePassword))
	var want [][]byte
	if cs.Version <= tls.VersionTLS12 && len(cs.TLSUnique) > 0 {
		want = append(want, []byte(base64.StdEncoding.EncodeToString(cs.TLSUnique)))
	}
	if ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLen); err == nil {
		want = append(want, []byte(base64.StdEncoding.EncodeToString(ekm)))
	}
	if len(want) == 0 {
		return badRequest("the CSR carries a challengePassword but this TLS session has no channel binding (a resumed TLS 1.2 session without extended master secret): start a full handshake")
	}
	for _, w := range want {
		if subtle.ConstantTimeCompare(got, w) == 1 {
			return nil
		}
	}
	return badRequest("the CSR's challengePassword does not match this TLS connection's channel binding (RFC 7030 3.5: tls-unique on TLS 1.2, tls-exporter on TLS 1.3): build the CSR on the connection that sends it")
}
