package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// createCertificate is x509.CreateCertificate with one ECDSA verification
// fewer. CreateCertificate checks every signature its crypto.Signer
// returns, which guards against faulty hardware tokens; for a key held in
// this process by crypto/ecdsa or crypto/rsa that check costs an ECDSA
// verification (twice a signature) per certificate and finds nothing.
// So the TBSCertificate is encoded here (leafTBS, for the end-entity
// templates it covers) or by crypto/x509 (for the others: tbsCapture
// keeps it instead of signing), and the CA key signs it once. Keys of
// other kinds go through CreateCertificate unchanged.
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) ([]byte, error) {
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	}
	if tbs, algID, hash, ok := leafTBS(tmpl, parent, pub, key.Public()); ok {
		return signTBS(tbs, algID, key, hash)
	}
	capture := &tbsCapture{pub: key.Public()}
	_, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, capture)
	if !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("x509: certificate built without a signature")
		}
		return nil, err
	}
	algID, hash, err := tbsSignatureAlgorithm(capture.tbs)
	if err != nil {
		return nil, err
	}
	if hash == 0 {
		// An algorithm this path does not sign (RSASSA-PSS, say).
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	}
	return signTBS(capture.tbs, algID, key, hash)
}

// Signature algorithms whose signature is key.Sign over a digest
// (RFC 5758 3.2, RFC 4055 5).
var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
)

func digestFor(oid asn1.ObjectIdentifier) crypto.Hash {
	switch {
	case oid.Equal(oidECDSAWithSHA256), oid.Equal(oidSHA256WithRSA):
		return crypto.SHA256
	case oid.Equal(oidECDSAWithSHA384), oid.Equal(oidSHA384WithRSA):
		return crypto.SHA384
	case oid.Equal(oidECDSAWithSHA512), oid.Equal(oidSHA512WithRSA):
		return crypto.SHA512
	}
	return 0
}

var errTBSCaptured = errors.New("ca: TBSCertificate captured")

// tbsCapture stands in for the CA key inside x509.CreateCertificate: it
// has the key's public half, so the library picks the same algorithm and
// checks it against the issuer, and as a crypto.MessageSigner it is given
// the encoded TBSCertificate, which it keeps, ending CreateCertificate.
type tbsCapture struct {
	pub crypto.PublicKey
	tbs []byte
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }

func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("ca: tbsCapture signs messages, not digests")
}

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = append([]byte(nil), msg...)
	return nil, errTBSCaptured
}

// signTBS signs an encoded TBSCertificate with key and wraps it as a
// Certificate (RFC 5280 4.1): the TBS, the signature algorithm the TBS
// names (algID, encoded), and the signature as a BIT STRING.
func signTBS(tbs, algID []byte, key crypto.Signer, hash crypto.Hash) ([]byte, error) {
	h := hash.New()
	h.Write(tbs)
	sig, err := key.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(algID)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// tbsSignatureAlgorithm returns the encoded AlgorithmIdentifier of a
// TBSCertificate (its field after the optional [0] version and the
// serial number) and the digest its algorithm signs, or 0 when that is
// not one of the algorithms above.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, crypto.Hash, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, 0, errors.New("ca: malformed TBSCertificate")
	}
	if !body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !body.SkipASN1(cbasn1.INTEGER) {
		return nil, 0, errors.New("ca: malformed TBSCertificate version or serial")
	}
	var algID, alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !body.ReadASN1Element(&algID, cbasn1.SEQUENCE) {
		return nil, 0, errors.New("ca: malformed TBSCertificate signature algorithm")
	}
	rest := algID
	if !rest.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, 0, errors.New("ca: malformed TBSCertificate signature algorithm")
	}
	return algID, digestFor(oid), nil
}
