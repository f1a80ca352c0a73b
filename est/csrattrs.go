package est

import (
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// csrAttrsDER is the /csrattrs answer (RFC 7030 4.5.2 with the ASN.1 of
// RFC 8951 4): a SEQUENCE of AttrOrOID saying what CSRs should carry.
//
//   - challengePassword, when channel binding is required (RFC 7030 3.5);
//   - an EC key on P-256 (the ecPublicKey attribute whose value is the
//     curve), signed with ecdsa-with-SHA256;
//   - or an RSA key, signed with sha256WithRSAEncryption.
//
// BCP-003-03 asks devices for one CSR per algorithm they support, so both
// key types are listed; other sizes and curves the policy accepts are
// still accepted.
func csrAttrsDER(channelBinding bool) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if channelBinding {
			b.AddASN1ObjectIdentifier(oidChallengePassword)
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECPublicKey)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidSecp256r1)
			})
		})
		b.AddASN1ObjectIdentifier(oidECDSAWithSHA256)
		b.AddASN1ObjectIdentifier(oidRSAEncryption)
		b.AddASN1ObjectIdentifier(oidSHA256WithRSAEncryption)
	})
	return b.BytesOrPanic()
}
