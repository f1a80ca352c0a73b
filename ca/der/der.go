// Package der holds the few DER pieces that the authority's certificate
// encoder (ca.leafTBS) and the CRL encoder (ocsp.crlEncoder) both write
// with cryptobyte, to the bytes crypto/x509 writes.
package der

import (
	"encoding/asn1"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OID is the DER of an OBJECT IDENTIFIER, for the package variables
// that name the OIDs an encoder writes. It panics on an OID that cannot
// be encoded (fewer than two arcs), which only a typo in such a
// variable can be.
func OID(oid ...int) []byte {
	der, err := asn1.Marshal(asn1.ObjectIdentifier(oid))
	if err != nil {
		panic(err)
	}
	return der
}

// AddExtension adds an Extension (RFC 5280 4.1): oid is the DER of its
// OBJECT IDENTIFIER; criticality is written only when true (DER leaves
// out a DEFAULT FALSE); value writes the OCTET STRING's content.
func AddExtension(b *cryptobyte.Builder, oid []byte, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// AddTime adds a Time as RFC 5280 4.1.2.5 and 5.1.2.4 and crypto/x509
// write it: UTCTime for the years 1950 to 2049, GeneralizedTime
// otherwise, in UTC to the second.
func AddTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}
