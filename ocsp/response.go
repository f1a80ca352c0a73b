package ocsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"
)

// The responses are encoded here rather than with ocsp.CreateResponse,
// which (in x/crypto v0.58) puts Response.ExtraExtensions into the
// singleExtensions of the SingleResponse, where RFC 8954 clients such as
// OpenSSL do not look for the nonce: it belongs in the responseExtensions
// of ResponseData (RFC 6960 4.2.1, 4.4.1). CreateResponse also stamps
// producedAt from the wall clock instead of our injected clock. Parsing
// and the status constants still come from x/crypto/ocsp.

var (
	oidOCSPBasic       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
)

// responderKey is what signs the answers for one issuer.
type responderKey struct {
	signer crypto.Signer
	// cert is the delegated responder certificate, sent with every
	// answer; nil when the issuer signs its own answers.
	cert *x509.Certificate
	// responderID is the DER of ResponderID: byKey [2] EXPLICIT KeyHash.
	responderID []byte
	// sigAlg is the DER of the signature AlgorithmIdentifier.
	sigAlg []byte
	hash   crypto.Hash
	// notAfter bounds nextUpdate; renewAt is when a delegated key is
	// replaced. Both are zero in issuer mode.
	notAfter, renewAt time.Time
}

// newResponderKey prepares signer (whose certificate is cert) for signing
// OCSP answers.
func newResponderKey(signer crypto.Signer, cert *x509.Certificate) (*responderKey, error) {
	k := &responderKey{signer: signer}
	var err error
	if k.sigAlg, k.hash, err = signatureAlgorithm(signer.Public()); err != nil {
		return nil, err
	}
	keyBits, err := publicKeyBits(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	keyHash := sha1.Sum(keyBits)
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(keyHash[:])
	})
	if k.responderID, err = b.Bytes(); err != nil {
		return nil, err
	}
	return k, nil
}

// signatureAlgorithm is the encoded AlgorithmIdentifier and the digest
// with which answers and CRLs are signed by a key: ECDSA with the
// digest of its curve's size (RFC 5758 3.2), RSA PKCS #1 v1.5 with
// SHA-256 and NULL parameters (RFC 4055 5), as crypto/x509 chooses.
func signatureAlgorithm(pub crypto.PublicKey) ([]byte, crypto.Hash, error) {
	var oid asn1.ObjectIdentifier
	var hash crypto.Hash
	_, isRSA := pub.(*rsa.PublicKey)
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			oid, hash = oidECDSAWithSHA256, crypto.SHA256
		case elliptic.P384():
			oid, hash = oidECDSAWithSHA384, crypto.SHA384
		case elliptic.P521():
			oid, hash = oidECDSAWithSHA512, crypto.SHA512
		default:
			return nil, 0, errors.New("unsupported elliptic curve")
		}
	case *rsa.PublicKey:
		oid, hash = oidSHA256WithRSA, crypto.SHA256
	default:
		return nil, 0, fmt.Errorf("unsupported key type %T", pub)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if isRSA {
			b.AddASN1NULL() // RFC 4055 2.1: NULL parameters for RSA
		}
	})
	alg, err := b.Bytes()
	return alg, hash, err
}

// publicKeyBits returns the subjectPublicKey BIT STRING's value from a
// SubjectPublicKeyInfo: the input of the KeyHash of RFC 6960 4.1.1.
func publicKeyBits(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	var bits []byte
	if !in.ReadASN1(&seq, casn1.SEQUENCE) || !seq.SkipASN1(casn1.SEQUENCE) || !seq.ReadASN1BitStringAsBytes(&bits) {
		return nil, errors.New("bad SubjectPublicKeyInfo")
	}
	return bits, nil
}

// status is the certificate status an answer states.
type status struct {
	code      int // xocsp.Good, xocsp.Revoked or xocsp.Unknown
	revokedAt time.Time
	reason    int // RFC 5280 CRLReason; 0 is left out
}

// certIDPrefix returns the DER of a CertID's hashAlgorithm, issuerNameHash
// and issuerKeyHash, to which only the serial number is added per answer.
func certIDPrefix(alg int, nameHash, keyHash []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(hashAlgs[alg].oid) })
		b.AddASN1NULL()
	})
	b.AddASN1OctetString(nameHash)
	b.AddASN1OctetString(keyHash)
	return b.Bytes()
}

// signResponse builds and signs a successful OCSPResponse holding one
// BasicOCSPResponse (RFC 6960 4.2.1) for the CertID made of idPrefix and
// serial (the INTEGER's content). A non-nil nonce (an extnValue) is
// echoed in responseExtensions.
func signResponse(k *responderKey, idPrefix, serial []byte, st status, producedAt, thisUpdate, nextUpdate time.Time, nonce []byte) ([]byte, error) {
	tbs := cryptobyte.NewBuilder(make([]byte, 0, 256))
	tbs.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseData
		// version v1 is the DEFAULT and is left out.
		b.AddBytes(k.responderID)
		b.AddASN1GeneralizedTime(producedAt.UTC())
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // responses
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
					b.AddBytes(idPrefix)
					b.AddASN1(casn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(serial) })
				})
				switch st.code {
				case xocsp.Good: // good [0] IMPLICIT NULL
					b.AddASN1(casn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {})
				case xocsp.Revoked: // revoked [1] IMPLICIT RevokedInfo
					b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(st.revokedAt.UTC())
						if st.reason != 0 {
							b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(st.reason)) })
						}
					})
				default: // unknown [2] IMPLICIT UnknownInfo (NULL)
					b.AddASN1(casn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {})
				}
				b.AddASN1GeneralizedTime(thisUpdate.UTC())
				b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1GeneralizedTime(nextUpdate.UTC()) })
			})
		})
		if nonce != nil {
			b.AddASN1(tagExplicit1, func(b *cryptobyte.Builder) { // responseExtensions
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oidNonce) })
						b.AddASN1OctetString(nonce)
					})
				})
			})
		}
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode response data: %w", err)
	}
	h := k.hash.New()
	h.Write(tbsDER)
	sig, err := k.signer.Sign(rand.Reader, h.Sum(nil), k.hash)
	if err != nil {
		return nil, fmt.Errorf("sign response: %w", err)
	}

	size := len(tbsDER) + len(sig) + 64
	if k.cert != nil {
		size += len(k.cert.Raw)
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, size))
	out.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPResponse
		b.AddASN1Enum(int64(xocsp.Success))
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseBytes
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1(casn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // BasicOCSPResponse
						b.AddBytes(tbsDER)
						b.AddBytes(k.sigAlg)
						b.AddASN1BitString(sig)
						if k.cert != nil {
							b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
								b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(k.cert.Raw) })
							})
						}
					})
				})
			})
		})
	})
	der, err := out.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return der, nil
}
