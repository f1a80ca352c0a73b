package est

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Media types on the wire (RFC 7030 4, RFC 8951).
const (
	mediaPKCS10     = "application/pkcs10"
	mediaCertsOnly  = "application/pkcs7-mime; smime-type=certs-only"
	mediaServerKey  = "application/pkcs7-mime; smime-type=server-generated-key"
	mediaPKCS8      = "application/pkcs8"
	mediaCSRAttrs   = "application/csrattrs"
	mediaTextPlain  = "text/plain; charset=utf-8"
	base64LineWidth = 76
)

// Object identifiers used in CSRs, csrattrs answers and CMS.
var (
	oidData                    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidChallengePassword       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidDecryptKeyID            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 37}
	oidAsymmDecryptKeyID       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 54}
	oidECPublicKey             = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256r1               = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidECDSAWithSHA256         = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidRSAEncryption           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSubjectAltName          = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// decodeCSR turns a request body into a parsed PKCS#10 request. The body
// is base64 of DER (RFC 7030 4.2.1) with any whitespace, padding or not;
// a PEM-armoured CSR and, for clients that skip the base64 step, bare DER
// are accepted too. The self-signature is checked later by the policy.
func decodeCSR(body []byte) (*x509.CertificateRequest, error) {
	der, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, badRequest("the body is not a PKCS#10 certificate request: %v", err)
	}
	return csr, nil
}

// decodeBody returns the DER inside a request body.
func decodeBody(body []byte) ([]byte, error) {
	// A DER SEQUENCE with a long-form length starts 0x30 0x8N: the
	// second byte cannot be base64, so this is bare DER (and must not be
	// trimmed: its last bytes may look like whitespace).
	if len(body) > 1 && body[0] == 0x30 && body[1] >= 0x80 {
		return body, nil
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, badRequest("the request body is empty: send the base64-encoded DER of a PKCS#10 certificate request")
	}
	if bytes.HasPrefix(b, []byte("-----BEGIN ")) {
		blk, rest := pem.Decode(b)
		if blk == nil {
			return nil, badRequest("the body starts like PEM but is not a valid PEM block")
		}
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, badRequest("the PEM block is a %q, not a CERTIFICATE REQUEST", blk.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, badRequest("unexpected data after the PEM block: send one certificate request")
		}
		if len(blk.Bytes) == 0 {
			return nil, badRequest("the PEM block is empty")
		}
		return blk.Bytes, nil
	}
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n', '\f', '\v':
			continue
		}
		clean = append(clean, c)
	}
	// Padding is optional: drop it and decode without.
	for len(clean) > 0 && clean[len(clean)-1] == '=' {
		clean = clean[:len(clean)-1]
	}
	der := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(der, clean)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, badRequest("the body is not valid base64 (illegal data at byte %d, ignoring whitespace): EST bodies are base64-encoded DER", int64(ce))
		}
		return nil, badRequest("the body is not valid base64: %v", err)
	}
	if n == 0 {
		return nil, badRequest("the request body decodes to nothing")
	}
	return der[:n], nil
}

// base64Wrapped encodes der as base64 in lines of 76 characters, each
// ended by CRLF, which is what OpenSSL-based clients want.
func base64Wrapped(der []byte) []byte {
	enc := base64.StdEncoding
	n := enc.EncodedLen(len(der))
	lines := (n + base64LineWidth - 1) / base64LineWidth
	out := make([]byte, n+2*lines)
	tmp := out[len(out)-n:] // encode at the end, then move lines forward
	enc.Encode(tmp, der)
	w := 0
	for r := 0; r < n; r += base64LineWidth {
		end := min(r+base64LineWidth, n)
		w += copy(out[w:], tmp[r:end])
		out[w], out[w+1] = '\r', '\n'
		w += 2
	}
	return out[:w]
}

// certsOnly builds a degenerate CMS SignedData holding certificates and
// nothing else (RFC 5652 5.1, the RFC 7030 "certs-only" answer). The
// certificates are already DER; no parsing is done.
func certsOnly(certs ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
				b.AddASN1Int64(1)                                   // version
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // digestAlgorithms
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData) // encapContentInfo, no content
				})
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c)
					}
				})
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {}) // signerInfos
			})
		})
	})
	// Building can only fail on lengths beyond what cryptobyte encodes
	// (2^32), far above anything we hold in memory.
	return b.BytesOrPanic()
}

// csrAttributes are the CSR attributes this server acts on.
type csrAttributes struct {
	challengePassword    string
	hasChallengePassword bool
	// asymmKeyID is the AsymmetricDecryptKeyIdentifier (RFC 7030 4.4.1.2).
	asymmKeyID    []byte
	hasAsymmKeyID bool
	// decryptKeyID is the DecryptKeyIdentifier (RFC 7030 4.4.1.1): the
	// identifier of a symmetric key shared beforehand.
	decryptKeyID    []byte
	hasDecryptKeyID bool
}

// parseCSRAttributes reads the attributes of a CSR. Go's parser keeps only
// the extension-request shaped ones, so the TBS is walked here.
func parseCSRAttributes(csr *x509.CertificateRequest) (*csrAttributes, error) {
	bad := func(what string) error {
		return badRequest("malformed CSR attributes: %s", what)
	}
	in := cryptobyte.String(csr.RawTBSCertificateRequest)
	var tbs cryptobyte.String
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.INTEGER) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) {
		return nil, bad("certificationRequestInfo")
	}
	var attrs cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&attrs, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, bad("attributes")
	}
	out := &csrAttributes{}
	for !attrs.Empty() {
		var attr, values cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) ||
			!attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.ReadASN1(&values, cbasn1.SET) {
			return nil, bad("attribute")
		}
		switch {
		case oid.Equal(oidChallengePassword):
			if out.hasChallengePassword {
				return nil, badRequest("the CSR has more than one challengePassword attribute")
			}
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !values.ReadAnyASN1(&v, &tag) || !values.Empty() {
				return nil, badRequest("the challengePassword attribute must hold exactly one value")
			}
			s, ok := directoryString(tag, v)
			if !ok {
				return nil, badRequest("the challengePassword attribute is not a string")
			}
			out.challengePassword, out.hasChallengePassword = s, true
		case oid.Equal(oidAsymmDecryptKeyID):
			var v cryptobyte.String
			if !values.ReadASN1(&v, cbasn1.OCTET_STRING) || !values.Empty() {
				return nil, badRequest("the AsymmetricDecryptKeyIdentifier attribute must hold one OCTET STRING")
			}
			out.asymmKeyID, out.hasAsymmKeyID = []byte(v), true
		case oid.Equal(oidDecryptKeyID):
			// DecryptKeyIdentifier ::= KeyIdentifier ::= OCTET STRING
			// (RFC 4108 2.2.5).
			if out.hasDecryptKeyID {
				return nil, badRequest("the CSR has more than one DecryptKeyIdentifier attribute")
			}
			var v cryptobyte.String
			if !values.ReadASN1(&v, cbasn1.OCTET_STRING) || !values.Empty() {
				return nil, badRequest("the DecryptKeyIdentifier attribute must hold one OCTET STRING")
			}
			if len(v) == 0 {
				return nil, badRequest("the DecryptKeyIdentifier attribute is empty: it must name a symmetric key")
			}
			out.decryptKeyID, out.hasDecryptKeyID = []byte(v), true
		}
	}
	return out, nil
}

// directoryString decodes the string types a DirectoryString may use.
func directoryString(tag cbasn1.Tag, v []byte) (string, bool) {
	switch tag {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String, cbasn1.T61String:
		return string(v), true
	case cbasn1.Tag(30): // BMPString: UTF-16BE
		if len(v)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}

// sameSubject reports whether two encoded Names are the same name: the
// same attributes in the same order with the same values, whatever
// string types encode them.
func sameSubject(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ra, rb pkix.RDNSequence
	if rest, err := asn1.Unmarshal(a, &ra); err != nil || len(rest) != 0 {
		return false
	}
	if rest, err := asn1.Unmarshal(b, &rb); err != nil || len(rest) != 0 {
		return false
	}
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if len(ra[i]) != len(rb[i]) {
			return false
		}
		for j := range ra[i] {
			x, y := ra[i][j], rb[i][j]
			if !x.Type.Equal(y.Type) || fmt.Sprint(x.Value) != fmt.Sprint(y.Value) {
				return false
			}
		}
	}
	return true
}

// sanSet is a comparable form of a subjectAltName.
func sanSet(dns []string, ips []net.IP, emails []string, uris []string) []string {
	out := make([]string, 0, len(dns)+len(ips)+len(emails)+len(uris))
	for _, d := range dns {
		out = append(out, "dns:"+strings.TrimSuffix(strings.ToLower(d), "."))
	}
	for _, ip := range ips {
		out = append(out, "ip:"+ip.String())
	}
	for _, e := range emails {
		out = append(out, "email:"+e)
	}
	for _, u := range uris {
		out = append(out, "uri:"+u)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// csrNames lists the host names a CSR asks for (CN first), for logs and
// reasons.
func csrNames(csr *x509.CertificateRequest) []string {
	names := make([]string, 0, len(csr.DNSNames)+1)
	if csr.Subject.CommonName != "" {
		names = append(names, csr.Subject.CommonName)
	}
	for _, n := range csr.DNSNames {
		if !strings.EqualFold(n, csr.Subject.CommonName) {
			names = append(names, n)
		}
	}
	for _, ip := range csr.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// certNames lists the host names a certificate holds (CN first).
func certNames(c *x509.Certificate) []string {
	names := make([]string, 0, len(c.DNSNames)+1)
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	for _, n := range c.DNSNames {
		if !strings.EqualFold(n, c.Subject.CommonName) {
			names = append(names, n)
		}
	}
	return names
}

// sanExtension returns the CSR's requested subjectAltName extension.
func sanExtension(csr *x509.CertificateRequest) (pkix.Extension, bool) {
	for _, e := range csr.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}
