package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ocsp"
)

// ocspSource is the authority as the OCSP responder and CRL publisher
// see it (as the appliance connects them).
type ocspSource struct{ a *Authority }

func (s ocspSource) Issuers(context.Context) ([]ocsp.Issuer, error) {
	var out []ocsp.Issuer
	for _, is := range s.a.Issuers() {
		out = append(out, ocsp.Issuer{ID: is.ID, Cert: is.Cert, Signer: is.Signer})
	}
	return out, nil
}

func (s ocspSource) CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*store.Certificate, error) {
	return s.a.Store().CertificateStatus(ctx, issuerID, serial)
}

func (s ocspSource) Revocations(ctx context.Context, issuerID string, fn func(store.Revocation) error) error {
	return s.a.Store().Revocations(ctx, issuerID, fn)
}

func (s ocspSource) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	return s.a.Store().NextCRLNumber(ctx, issuerID)
}

func (s ocspSource) IssueResponderCert(ctx context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	return s.a.IssueResponderCert(ctx, issuerID, pub, notBefore, notAfter)
}

// statusChecker asks the appliance's own OCSP responder and CRL
// publisher, by the simulated clock, about a device's certificate.
type statusChecker struct {
	r *ocsp.Responder
	p *ocsp.Publisher
}

func newStatusChecker(t *testing.T, a *Authority, clock func() time.Time) *statusChecker {
	t.Helper()
	o := ocsp.Options{Source: ocspSource{a}, Clock: clock, Mode: "issuer", CRLValidity: 60 * 24 * time.Hour}
	r, err := ocsp.NewResponder(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ocsp.NewPublisher(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return &statusChecker{r: r, p: p}
}

// reload follows a change of the CA's generations, as the appliance's
// event feed makes it do.
func (s *statusChecker) reload(t *testing.T) {
	t.Helper()
	if err := s.r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.p.RebuildAll(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// ocspGood reports whether the responder answers good for cert, signed
// so that it verifies against issuer.
func (s *statusChecker) ocspGood(cert, issuer *x509.Certificate) error {
	req, err := xocsp.CreateRequest(cert, issuer, &xocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		return err
	}
	w := httptest.NewRecorder()
	s.r.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(req)))
	resp, err := xocsp.ParseResponseForCert(w.Body.Bytes(), cert, issuer)
	if err != nil {
		return err
	}
	if resp.Status != xocsp.Good {
		return errStatus(resp.Status)
	}
	return nil
}

type errStatus int

func (e errStatus) Error() string {
	return "OCSP status " + map[int]string{1: "revoked", 2: "unknown"}[int(e)]
}

// crlClean reports whether the issuer's CRL, fetched from the publisher
// at the URL the certificate names, verifies against issuer and does not
// list cert.
func (s *statusChecker) crlClean(cert, issuer *x509.Certificate, at time.Time) error {
	if len(cert.CRLDistributionPoints) == 0 {
		return errStatus(2)
	}
	u := cert.CRLDistributionPoints[0]
	w := httptest.NewRecorder()
	s.p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, u[strings.Index(u, "/crl/"):], nil))
	der, _ := io.ReadAll(w.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return err
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return err
	}
	if at.After(crl.NextUpdate) {
		return errStatus(2)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return errStatus(1)
		}
	}
	return nil
}
