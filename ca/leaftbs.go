package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nmos-certs/nmos-certs/ca/der"
)

// leafTBS encodes the TBSCertificate (RFC 5280 4.1) that
// x509.CreateCertificate would encode for an end-entity template tmpl
// issued by parent, whose key's public half is issuerKey. It writes the
// same bytes with cryptobyte instead of encoding/asn1's reflection, which
// made that encoding cost as much CPU as the signature under EST load
// (go test -bench CreateCertificate ./ca/ has both). It also returns the
// encoded signature AlgorithmIdentifier and the digest to sign.
//
// It encodes what signLeaf's templates hold: serial, names, validity,
// the subject key, key usage, extended key usages from the table below,
// basic constraints of an end entity, key identifiers, authority
// information access, subject alternative names and CRL distribution
// points, signed with crypto/x509's default algorithm for an ECDSA
// (P-256, P-384, P-521) or RSA issuer key. For anything else (a CA,
// policies, name constraints, extra extensions, a chosen signature
// algorithm, an unknown extended key usage, a name crypto/x509 would
// refuse, no serial, an issuer key that is not the parent's) ok is false
// and the caller leaves the template to crypto/x509, which encodes it or
// says what is wrong. TestLeafTBSMatchesX509 holds the bytes to
// crypto/x509's.
func leafTBS(tmpl, parent *x509.Certificate, pub, issuerKey crypto.PublicKey) (tbs, algID []byte, hash crypto.Hash, ok bool) {
	if !leafTBSCovers(tmpl) {
		return nil, nil, 0, false
	}
	algID, hash = defaultSignatureAlgorithm(issuerKey)
	if algID == nil {
		return nil, nil, 0, false
	}
	if parent.PublicKey != nil {
		k, isKey := issuerKey.(interface{ Equal(crypto.PublicKey) bool })
		if !isKey || !k.Equal(parent.PublicKey) {
			return nil, nil, 0, false
		}
	}
	spki, err := marshalSPKI(pub)
	if err != nil {
		return nil, nil, 0, false
	}
	issuer, err := nameBytes(parent)
	if err != nil {
		return nil, nil, 0, false
	}
	subject, err := nameBytes(tmpl)
	if err != nil {
		return nil, nil, 0, false
	}
	// crypto/x509 takes the authority key identifier from the issuer
	// unless the certificate is self-issued.
	aki := tmpl.AuthorityKeyId
	if !bytes.Equal(issuer, subject) && len(parent.SubjectKeyId) > 0 {
		aki = parent.SubjectKeyId
	}

	b := cryptobyte.NewBuilder(make([]byte, 0, 1024))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddBytes(algID)
		b.AddBytes(issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			der.AddTime(b, tmpl.NotBefore)
			der.AddTime(b, tmpl.NotAfter)
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		exts := cryptobyte.NewBuilder(make([]byte, 0, 512))
		addLeafExtensions(exts, tmpl, aki, bytes.Equal(subject, emptyName))
		e, err := exts.Bytes()
		if err != nil {
			b.SetError(err)
			return
		}
		if len(e) > 0 {
			b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(e) })
			})
		}
	})
	tbs, err = b.Bytes()
	if err != nil {
		// A validity crypto/x509 would encode differently or refuse
		// (a year past 9999, say), or a length cryptobyte cannot write.
		return nil, nil, 0, false
	}
	return tbs, algID, hash, true
}

// leafTBSCovers reports whether leafTBS encodes every field of tmpl that
// crypto/x509 would put in the certificate.
func leafTBSCovers(t *x509.Certificate) bool {
	switch {
	case t.SerialNumber == nil || t.SerialNumber.Sign() < 0,
		t.SignatureAlgorithm != x509.UnknownSignatureAlgorithm,
		t.IsCA, t.MaxPathLenZero, t.MaxPathLen != 0 && t.MaxPathLen != -1,
		len(t.ExtraExtensions) > 0, len(t.UnknownExtKeyUsage) > 0,
		len(t.Policies) > 0, len(t.PolicyIdentifiers) > 0,
		len(t.PermittedDNSDomains) > 0, len(t.ExcludedDNSDomains) > 0,
		len(t.PermittedIPRanges) > 0, len(t.ExcludedIPRanges) > 0,
		len(t.PermittedEmailAddresses) > 0, len(t.ExcludedEmailAddresses) > 0,
		len(t.PermittedURIDomains) > 0, len(t.ExcludedURIDomains) > 0:
		return false
	}
	for _, u := range t.ExtKeyUsage {
		if extKeyUsageOIDs[u] == nil {
			return false
		}
	}
	for _, list := range [][]string{t.DNSNames, t.EmailAddresses} {
		for _, s := range list {
			if !isASCII(s) {
				return false
			}
		}
	}
	for _, u := range t.URIs {
		if u == nil || !isASCII(u.String()) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// addLeafExtensions adds the extensions in crypto/x509's order.
func addLeafExtensions(b *cryptobyte.Builder, t *x509.Certificate, aki []byte, subjectEmpty bool) {
	if t.KeyUsage != 0 {
		der.AddExtension(b, oidKeyUsage, true, func(b *cryptobyte.Builder) {
			// The bits named by RFC 5280 4.2.1.3, first bit first, in
			// one octet or two, and the count of unused trailing bits.
			a := [2]byte{reverseBits(byte(t.KeyUsage)), reverseBits(byte(t.KeyUsage >> 8))}
			n := 1
			if a[1] != 0 {
				n = 2
			}
			used := n * 8
			for i := n - 1; i >= 0 && a[i] == 0; i-- {
				used -= 8
			}
			if used > 0 {
				last := a[used/8-1]
				for last&1 == 0 {
					last >>= 1
					used--
				}
			}
			b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(byte((8 - used%8) % 8))
				b.AddBytes(a[:n])
			})
		})
	}
	if len(t.ExtKeyUsage) > 0 {
		der.AddExtension(b, oidExtKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.ExtKeyUsage {
					b.AddBytes(extKeyUsageOIDs[u])
				}
			})
		})
	}
	if t.BasicConstraintsValid {
		// An end entity: cA FALSE and no path length, both defaults,
		// so an empty SEQUENCE.
		der.AddExtension(b, oidBasicConstraints, true, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		})
	}
	if len(t.SubjectKeyId) > 0 {
		der.AddExtension(b, oidSubjectKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(t.SubjectKeyId)
		})
	}
	if len(aki) > 0 {
		der.AddExtension(b, oidAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(aki) })
			})
		})
	}
	if len(t.OCSPServer) > 0 || len(t.IssuingCertificateURL) > 0 {
		der.AddExtension(b, oidAuthorityInfoAccess, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.OCSPServer {
					addAccessDescription(b, oidAccessOCSP, u)
				}
				for _, u := range t.IssuingCertificateURL {
					addAccessDescription(b, oidAccessCAIssuers, u)
				}
			})
		})
	}
	if len(t.DNSNames) > 0 || len(t.EmailAddresses) > 0 || len(t.IPAddresses) > 0 || len(t.URIs) > 0 {
		// Critical when the subject is empty (RFC 5280 4.2.1.6).
		der.AddExtension(b, oidSubjectAltName, subjectEmpty, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, n := range t.DNSNames {
					addGeneralName(b, 2, []byte(n))
				}
				for _, n := range t.EmailAddresses {
					addGeneralName(b, 1, []byte(n))
				}
				for _, ip := range t.IPAddresses {
					if v4 := ip.To4(); v4 != nil {
						ip = v4
					}
					addGeneralName(b, 7, ip)
				}
				for _, u := range t.URIs {
					addGeneralName(b, 6, []byte(u.String()))
				}
			})
		})
	}
	if len(t.CRLDistributionPoints) > 0 {
		der.AddExtension(b, oidCRLDistributionPoints, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.CRLDistributionPoints {
					// DistributionPoint { distributionPoint [0]
					// { fullName [0] { uniformResourceIdentifier } } }
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								addGeneralName(b, 6, []byte(u))
							})
						})
					})
				}
			})
		})
	}
}

func addAccessDescription(b *cryptobyte.Builder, method []byte, uri string) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(method)
		addGeneralName(b, 6, []byte(uri))
	})
}

// addGeneralName adds a GeneralName of a primitive, implicitly tagged
// choice: rfc822Name [1], dNSName [2], uniformResourceIdentifier [6],
// iPAddress [7].
func addGeneralName(b *cryptobyte.Builder, tag uint8, v []byte) {
	b.AddASN1(cbasn1.Tag(tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// nameBytes is the encoded subject of c, as crypto/x509 takes it: the raw
// bytes when c has them, else its Subject encoded.
func nameBytes(c *x509.Certificate) ([]byte, error) {
	if len(c.RawSubject) > 0 {
		return c.RawSubject, nil
	}
	return asn1.Marshal(c.Subject.ToRDNSequence())
}

// emptyName is an empty RDNSequence.
var emptyName = []byte{0x30, 0x00}

// marshalSPKI is x509.MarshalPKIXPublicKey, written directly for the
// ECDSA curves.
func marshalSPKI(pub crypto.PublicKey) ([]byte, error) {
	k, isECDSA := pub.(*ecdsa.PublicKey)
	if !isECDSA {
		return x509.MarshalPKIXPublicKey(pub)
	}
	curve := namedCurveOIDs[k.Curve]
	if curve == nil {
		return x509.MarshalPKIXPublicKey(pub)
	}
	point, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 32+len(point)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(oidECPublicKey)
			b.AddBytes(curve)
		})
		b.AddASN1BitString(point)
	})
	return b.Bytes()
}

// defaultSignatureAlgorithm is the AlgorithmIdentifier, encoded, and the
// digest crypto/x509 uses for an issuer key when the template names none
// (RFC 5758 3.2 for ECDSA, RFC 4055 5 for RSA, with its NULL parameters),
// or nil for other keys.
func defaultSignatureAlgorithm(issuerKey crypto.PublicKey) ([]byte, crypto.Hash) {
	switch k := issuerKey.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algECDSAWithSHA256, crypto.SHA256
		case elliptic.P384():
			return algECDSAWithSHA384, crypto.SHA384
		case elliptic.P521():
			return algECDSAWithSHA512, crypto.SHA512
		}
	case *rsa.PublicKey:
		return algSHA256WithRSA, crypto.SHA256
	}
	return nil, 0
}

func reverseBits(b byte) byte {
	b = b>>4 | b<<4
	b = b>>2&0x33 | b<<2&0xcc
	return b>>1&0x55 | b<<1&0xaa
}

// algorithmID is the DER of an AlgorithmIdentifier, with NULL parameters
// when null is true.
func algorithmID(null bool, oid ...int) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(der.OID(oid...))
		if null {
			b.AddASN1NULL()
		}
	})
	return b.BytesOrPanic()
}

var (
	oidSubjectKeyID          = der.OID(2, 5, 29, 14)
	oidKeyUsage              = der.OID(2, 5, 29, 15)
	oidSubjectAltName        = der.OID(2, 5, 29, 17)
	oidBasicConstraints      = der.OID(2, 5, 29, 19)
	oidCRLDistributionPoints = der.OID(2, 5, 29, 31)
	oidAuthorityKeyID        = der.OID(2, 5, 29, 35)
	oidExtKeyUsage           = der.OID(2, 5, 29, 37)
	oidAuthorityInfoAccess   = der.OID(1, 3, 6, 1, 5, 5, 7, 1, 1)
	oidAccessOCSP            = der.OID(1, 3, 6, 1, 5, 5, 7, 48, 1)
	oidAccessCAIssuers       = der.OID(1, 3, 6, 1, 5, 5, 7, 48, 2)
	oidECPublicKey           = der.OID(1, 2, 840, 10045, 2, 1)

	algECDSAWithSHA256 = algorithmID(false, oidECDSAWithSHA256...)
	algECDSAWithSHA384 = algorithmID(false, oidECDSAWithSHA384...)
	algECDSAWithSHA512 = algorithmID(false, oidECDSAWithSHA512...)
	algSHA256WithRSA   = algorithmID(true, oidSHA256WithRSA...)

	namedCurveOIDs = map[elliptic.Curve][]byte{
		elliptic.P256(): der.OID(1, 2, 840, 10045, 3, 1, 7),
		elliptic.P384(): der.OID(1, 3, 132, 0, 34),
		elliptic.P521(): der.OID(1, 3, 132, 0, 35),
	}

	// extKeyUsageOIDs are the extended key usages of RFC 5280 4.2.1.12.
	extKeyUsageOIDs = map[x509.ExtKeyUsage][]byte{
		x509.ExtKeyUsageAny:             der.OID(2, 5, 29, 37, 0),
		x509.ExtKeyUsageServerAuth:      der.OID(1, 3, 6, 1, 5, 5, 7, 3, 1),
		x509.ExtKeyUsageClientAuth:      der.OID(1, 3, 6, 1, 5, 5, 7, 3, 2),
		x509.ExtKeyUsageCodeSigning:     der.OID(1, 3, 6, 1, 5, 5, 7, 3, 3),
		x509.ExtKeyUsageEmailProtection: der.OID(1, 3, 6, 1, 5, 5, 7, 3, 4),
		x509.ExtKeyUsageTimeStamping:    der.OID(1, 3, 6, 1, 5, 5, 7, 3, 8),
		x509.ExtKeyUsageOCSPSigning:     der.OID(1, 3, 6, 1, 5, 5, 7, 3, 9),
	}
)
