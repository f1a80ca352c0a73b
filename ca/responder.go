package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"regexp"
)

// issuerIDPattern is what a generation ID may be when it names files.
var issuerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// responderPaths gives the key and certificate files of the delegated
// OCSP responder of generation issuerID: data_dir/ocsp/<id>.key, .crt.
func (a *Authority) responderPaths(issuerID string) (keyPath, certPath string, err error) {
	if !issuerIDPattern.MatchString(issuerID) {
		return "", "", fmt.Errorf("issuer ID %q cannot name a file", issuerID)
	}
	dir := filepath.Join(a.o.DataDir, "ocsp")
	return filepath.Join(dir, issuerID+".key"), filepath.Join(dir, issuerID+".crt"), nil
}

// LoadResponderKey returns the delegated OCSP responder key and
// certificate kept for generation issuerID, so that a restart neither
// makes a new key nor certifies one. It returns an error wrapping
// fs.ErrNotExist when none are kept, and another error when the files
// cannot be used: a key file readable by others, a key that is not the
// certificate's, or a certificate this authority has no record of, did
// not issue as an OCSP responder of issuerID, or revoked. The caller
// checks validity and signature.
func (a *Authority) LoadResponderKey(ctx context.Context, issuerID string) (crypto.Signer, *x509.Certificate, error) {
	keyPath, certPath, err := a.responderPaths(issuerID)
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, nil, err
	}
	cert := certs[0]
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s: not the certificate of %s", keyPath, certPath)
	}
	rec, err := a.o.Store.Certificate(ctx, cert.SerialNumber)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: serial %s not in the store: %w", certPath, cert.SerialNumber.Text(16), err)
	}
	switch {
	case !bytes.Equal(rec.DER, cert.Raw):
		return nil, nil, fmt.Errorf("%s: differs from the certificate recorded under its serial", certPath)
	case rec.Profile != ProfileOCSP || rec.IssuerID != issuerID:
		return nil, nil, fmt.Errorf("%s: not issued as the OCSP responder of %s", certPath, issuerID)
	case rec.Revoked:
		return nil, nil, fmt.Errorf("%s: revoked", certPath)
	}
	return key, cert, nil
}

// SaveResponderKey keeps the delegated OCSP responder key (PKCS#8 PEM,
// mode 0600) and certificate of generation issuerID in the data
// directory, each written atomically. LoadResponderKey refuses a pair
// left mismatched by a crash between the two writes.
func (a *Authority) SaveResponderKey(_ context.Context, issuerID string, key crypto.Signer, cert *x509.Certificate) error {
	keyPath, certPath, err := a.responderPaths(issuerID)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return fmt.Errorf("write responder key: %w", err)
	}
	if err := WriteFileAtomic(certPath, PEM(cert), 0o644); err != nil {
		return fmt.Errorf("write responder certificate: %w", err)
	}
	return nil
}
