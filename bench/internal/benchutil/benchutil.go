// Package benchutil holds what several of the benchmark tools under
// bench/ do alike: make throwaway ECDSA certificates, and hash an issuer
// for an OCSP CertID.
package benchutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha1" // CertID hashes
	_ "crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// NewCert makes a key on curve and a certificate for it from tmpl, signed
// by parent with parentKey, or self-signed when parent is nil. tmpl
// carries the serial number.
func NewCert(curve elliptic.Curve, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// IssuerHashes are the hashes of issuer's name and of its public key (the
// bit string alone, without the algorithm) that an OCSP CertID carries
// (RFC 6960 section 4.1.1), made with hash (SHA-1 or SHA-256).
func IssuerHashes(issuer *x509.Certificate, hash crypto.Hash) (name, key []byte, err error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, nil, err
	}
	h := hash.New()
	h.Write(issuer.RawSubject)
	name = h.Sum(nil)
	h.Reset()
	h.Write(spki.PublicKey.RightAlign())
	return name, h.Sum(nil), nil
}
