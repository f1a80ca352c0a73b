package app

import (
	"bytes"
	"context"
	"crypto"
	_ "crypto/sha1" // CertID hashes of the stapled requests
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// OCSP stapling of the appliance's own TLS certificates (BCP-003-01
// recommends it, and TLS clients that check revocation then need not ask
// the responder themselves). The answer comes from the appliance's own
// responder, asked in process through its HTTP handler exactly as a
// client would ask it, so the staple is the same signed response a
// client fetching the AIA URL gets. Staples are made whenever the server
// certificates are refreshed: at start, hourly, and at once when one of
// them is revoked (then the new certificate gets one). With the default
// OCSP validity of a day, a staple is never more than an hour old.

// staple returns a copy of c carrying a fresh OCSP response for its leaf,
// or an error (c is then served without a staple).
func staple(ctx context.Context, responder http.Handler, c *tls.Certificate, now time.Time) (*tls.Certificate, error) {
	if len(c.Certificate) < 2 {
		return nil, errors.New("no issuer certificate in the chain")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	issuer, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		return nil, err
	}
	der, err := askOCSP(ctx, responder, leaf, issuer)
	if err != nil {
		return nil, err
	}
	resp, err := xocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("the responder's answer: %w", err)
	}
	if resp.Status != xocsp.Good {
		return nil, fmt.Errorf("the responder says the certificate is %s", ocspStatusName(resp.Status))
	}
	if !resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate) {
		return nil, fmt.Errorf("the responder's answer expired at %s", resp.NextUpdate.Format(time.RFC3339))
	}
	out := *c
	out.Leaf = leaf
	out.OCSPStaple = der
	return &out, nil
}

func ocspStatusName(s int) string {
	switch s {
	case xocsp.Good:
		return "good"
	case xocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}

// askOCSP POSTs an OCSP request (SHA-1 CertID, the form clients send
// most) for leaf to the responder's handler and returns its answer.
func askOCSP(ctx context.Context, responder http.Handler, leaf, issuer *x509.Certificate) ([]byte, error) {
	reqDER, err := xocsp.CreateRequest(leaf, issuer, &xocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/ocsp", bytes.NewReader(reqDER))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	w := &memoryResponse{header: http.Header{}}
	responder.ServeHTTP(w, req)
	if w.code != 0 && w.code != http.StatusOK {
		return nil, fmt.Errorf("the responder answered %d", w.code)
	}
	if ct := w.header.Get("Content-Type"); ct != "application/ocsp-response" {
		return nil, fmt.Errorf("the responder answered %q", ct)
	}
	return w.body.Bytes(), nil
}

// memoryResponse is an http.ResponseWriter into memory.
type memoryResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (m *memoryResponse) Header() http.Header { return m.header }

func (m *memoryResponse) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
}

func (m *memoryResponse) Write(b []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	return m.body.Write(b)
}
