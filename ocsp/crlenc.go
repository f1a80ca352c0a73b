package ocsp

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nmos-certs/nmos-certs/ca/der"
)

// crlEncoder writes a CRL (RFC 5280 5.1) as its revocations arrive, with
// cryptobyte, to the bytes x509.CreateRevocationList writes for the same
// list. x509 needs the whole list as structs, copies it to another list
// of structs, and has encoding/asn1 marshal that by reflection into yet
// another buffer: at a million revocations a build allocated 1.2 GB and
// took the resident size to 1.3 GB (bench/crl). Here each revocation
// becomes its DER at once, so a build holds the encoded list, the CRL
// and its PEM, and little else.
type crlEncoder struct {
	entries *cryptobyte.Builder // the revokedCertificates' content
	n       int
	// reasonExts are the crlEntryExtensions of each reason code, made
	// once per CRL instead of once per entry.
	reasonExts [11][]byte
}

// crlEntryBytes is about what one revocation takes encoded: a 20-octet
// serial, a UTCTime and a reason code.
const crlEntryBytes = 56

// newCRLEncoder starts a CRL with room for about hint revocations.
func newCRLEncoder(hint int) *crlEncoder {
	return &crlEncoder{entries: cryptobyte.NewBuilder(make([]byte, 0, max(hint, 16)*crlEntryBytes))}
}

// oidReasonCode is id-ce-cRLReasons (RFC 5280 5.3.1).
var oidReasonCode = asn1.ObjectIdentifier{2, 5, 29, 21}

// add appends one revocation: serial, revocation time (written in UTC to
// the second) and reason code, of which unspecified (0) is written as no
// reason code, as RFC 5280 5.3.1 recommends.
func (e *crlEncoder) add(serial *big.Int, at time.Time, reason int) {
	var ext []byte
	if reason > 0 && reason < len(e.reasonExts) {
		if ext = e.reasonExts[reason]; ext == nil {
			b := cryptobyte.NewBuilder(make([]byte, 0, 16))
			addReasonExt(b, reason)
			ext, _ = b.Bytes() // an error leaves ext nil, and the entry makes its own
			e.reasonExts[reason] = ext
		}
	}
	e.entries.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(serial)
		der.AddTime(b, at)
		switch {
		case ext != nil:
			b.AddBytes(ext)
		case reason != 0:
			addReasonExt(b, reason)
		}
	})
	e.n++
}

// addReasonExt adds crlEntryExtensions holding one reasonCode.
func addReasonExt(b *cryptobyte.Builder, reason int) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidReasonCode)
			b.AddASN1(casn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(reason)) })
		})
	})
}

// crlParams is what a CRL says besides its revocations.
type crlParams struct {
	issuer                 *x509.Certificate
	signer                 crypto.Signer
	number                 *big.Int
	thisUpdate, nextUpdate time.Time
	// idp is the IssuingDistributionPoint extension's value, written
	// critical after the authority key identifier and the CRL number;
	// nil for none.
	idp []byte
}

// finish encodes the TBSCertList with the revocations added so far,
// signs it with p.signer and returns the CRL's DER. It refuses what
// x509.CreateRevocationList refuses: an issuer without the cRLSign key
// usage or a subject key identifier, a nextUpdate before thisUpdate, a
// CRL number that is missing, negative or longer than 20 octets.
func (e *crlEncoder) finish(p crlParams) ([]byte, error) {
	switch {
	case p.issuer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, errors.New("the issuer's certificate lacks the cRLSign key usage")
	case len(p.issuer.SubjectKeyId) == 0:
		return nil, errors.New("the issuer's certificate has no subject key identifier")
	case p.nextUpdate.Before(p.thisUpdate):
		return nil, errors.New("nextUpdate is before thisUpdate")
	case p.number == nil || p.number.Sign() < 0:
		return nil, errors.New("the CRL number is missing or negative")
	}
	if nb := p.number.Bytes(); len(nb) > 20 || len(nb) == 20 && nb[0]&0x80 != 0 {
		return nil, errors.New("the CRL number exceeds 20 octets")
	}
	algID, hash, err := signatureAlgorithm(p.signer.Public())
	if err != nil {
		return nil, fmt.Errorf("CRL signer: %w", err)
	}
	issuerName := p.issuer.RawSubject
	if len(issuerName) == 0 {
		if issuerName, err = asn1.Marshal(p.issuer.Subject.ToRDNSequence()); err != nil {
			return nil, err
		}
	}
	entries, err := e.entries.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode revoked certificates: %w", err)
	}
	e.entries = nil

	tbs := cryptobyte.NewBuilder(make([]byte, 0, len(entries)+len(issuerName)+len(p.idp)+256))
	tbs.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // version v2
		b.AddBytes(algID)
		b.AddBytes(issuerName)
		der.AddTime(b, p.thisUpdate)
		der.AddTime(b, p.nextUpdate)
		if e.n > 0 {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(entries) })
		}
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // crlExtensions
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				der.AddExtension(b, derOIDAuthorityKeyID, false, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(p.issuer.SubjectKeyId) })
					})
				})
				der.AddExtension(b, derOIDCRLNumber, false, func(b *cryptobyte.Builder) { b.AddASN1BigInt(p.number) })
				if p.idp != nil {
					der.AddExtension(b, derOIDIssuingDistributionPoint, true, func(b *cryptobyte.Builder) { b.AddBytes(p.idp) })
				}
			})
		})
	})
	entries = nil
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode TBSCertList: %w", err)
	}
	h := hash.New()
	h.Write(tbsDER)
	sig, err := p.signer.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	crl := cryptobyte.NewBuilder(make([]byte, 0, len(tbsDER)+len(algID)+len(sig)+16))
	crl.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddBytes(algID)
		b.AddASN1BitString(sig)
	})
	return crl.Bytes()
}

var (
	derOIDAuthorityKeyID           = der.OID(2, 5, 29, 35)
	derOIDCRLNumber                = der.OID(2, 5, 29, 20)
	derOIDIssuingDistributionPoint = der.OID(2, 5, 29, 28)
)
