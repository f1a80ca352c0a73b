package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
)

// ServerCertificate returns the appliance's own TLS certificate for
// hostname from hierarchy hier (ECDSA or RSA), with its chain. A
// certificate kept in the data directory is reused while it is valid for
// more than renewBefore, was issued by the active generation and is not
// revoked; otherwise a new key and certificate are made, recorded and
// written (key 0600, atomically).
func (a *Authority) ServerCertificate(ctx context.Context, hier, hostname string, renewBefore time.Duration) (*tls.Certificate, error) {
	dir := filepath.Join(a.o.DataDir, "server")
	keyPath, certPath := filepath.Join(dir, hier+".key"), filepath.Join(dir, hier+".crt")
	if c, err := a.loadServerCert(ctx, keyPath, certPath, hostname, renewBefore); err == nil {
		return c, nil
	} else if errors.Is(err, fs.ErrPermission) {
		// A key others may read is exposed: say so, never replace it
		// quietly.
		return nil, err
	} else if !errors.Is(err, os.ErrNotExist) {
		a.o.Logger.Info("renewing server certificate", "hierarchy", hier, "why", err.Error())
	}

	var key crypto.Signer
	var err error
	if hier == RSA {
		key, err = rsa.GenerateKey(rand.Reader, max(2048, a.o.RSAIntermediateBits))
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: hostname, Organization: []string{a.o.Organization}},
		DNSNames: []string{hostname},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("server CSR: %w", err)
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	names := &policy.Names{CommonName: hostname, DNSNames: []string{hostname}, Subject: req.RawSubject}
	cert, err := a.sign(ctx, hier, req, names, policy.Requester{Identity: "appliance: TLS server"}, ProfileServer, a.o.LeafLifetime, nil)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: %w", err)
	}
	chain := append([]*x509.Certificate{cert}, a.ChainFor(cert)...)
	if len(chain) > 2 {
		// The root is not sent; during and after a root rollover the
		// certificates that lead to it from the other root are, so that a
		// device trusting either root can authenticate the appliance.
		root := chain[len(chain)-1]
		chain = append(chain[:len(chain)-1], a.BridgesFor(chain[1], root)...)
	} else if len(chain) > 1 {
		chain = chain[:len(chain)-1]
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, fmt.Errorf("write server key: %w", err)
	}
	if err := WriteFileAtomic(certPath, PEM(chain...), 0o644); err != nil {
		return nil, fmt.Errorf("write server certificate: %w", err)
	}
	return tlsCert(chain, key), nil
}

func tlsCert(chain []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func (a *Authority) loadServerCert(ctx context.Context, keyPath, certPath, hostname string, renewBefore time.Duration) (*tls.Certificate, error) {
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err // matches os.ErrNotExist when there is no key file
	}
	chain, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !publicKeysEqual(key.Public(), leaf.PublicKey) {
		return nil, errors.New("key does not match certificate")
	}
	if leaf.VerifyHostname(hostname) != nil {
		return nil, fmt.Errorf("certificate is not for %s", hostname)
	}
	if a.o.Clock().Add(renewBefore).After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate expires %s", leaf.NotAfter.Format(time.RFC3339))
	}
	a.mu.RLock()
	g := a.active[hierOf(leaf)]
	a.mu.RUnlock()
	if g == nil || leaf.CheckSignatureFrom(g.cert) != nil {
		return nil, errors.New("certificate is not from the active intermediate")
	}
	rec, err := a.o.Store.Certificate(ctx, leaf.SerialNumber)
	if err != nil {
		return nil, fmt.Errorf("certificate not in store: %w", err)
	}
	if rec.Revoked {
		return nil, errors.New("certificate was revoked")
	}
	return tlsCert(chain, key), nil
}

func hierOf(c *x509.Certificate) string {
	if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
		return RSA
	}
	return ECDSA
}
