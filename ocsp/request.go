package ocsp

import (
	"bytes"
	"crypto"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// hashAlgs are the CertID hash algorithms the responder understands, in
// the order used for the per-issuer tables.
var hashAlgs = [...]struct {
	hash crypto.Hash
	oid  []byte // DER contents of the OBJECT IDENTIFIER
}{
	{crypto.SHA1, []byte{0x2b, 0x0e, 0x03, 0x02, 0x1a}},                           // 1.3.14.3.2.26
	{crypto.SHA256, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}}, // 2.16.840.1.101.3.4.2.1
	{crypto.SHA384, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02}}, // 2.16.840.1.101.3.4.2.2
	{crypto.SHA512, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03}}, // 2.16.840.1.101.3.4.2.3
}

const numHashAlgs = len(hashAlgs)

// oidNonce is id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2 (RFC 8954).
var oidNonce = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02}

// Nonce length limits of RFC 8954 section 2.1.
const (
	minNonceLen = 1
	maxNonceLen = 32
)

// request is the part of an OCSPRequest the responder acts on. Its byte
// slices point into the parsed buffer.
type request struct {
	// alg indexes hashAlgs; -1 for a hash algorithm we do not know,
	// which no issuer can match.
	alg      int
	nameHash []byte
	keyHash  []byte
	// serial is the content of the DER INTEGER (two's complement,
	// minimal), which makes it a canonical cache key.
	serial []byte
	// nonce is the extnValue of the nonce extension (the DER of an
	// OCTET STRING), echoed as is; nil when the request has none.
	nonce []byte
}

// parseError says why a request is malformed; the text is for debug logs.
type parseError string

func (e parseError) Error() string { return "malformed OCSP request: " + string(e) }

var (
	tagExplicit0 = casn1.Tag(0).ContextSpecific().Constructed()
	tagExplicit1 = casn1.Tag(1).ContextSpecific().Constructed()
	tagExplicit2 = casn1.Tag(2).ContextSpecific().Constructed()
)

// parseRequest decodes an OCSPRequest (RFC 6960 4.1.1) holding exactly
// one Request. It does not allocate; p's slices alias der.
//
//	OCSPRequest ::= SEQUENCE {
//	    tbsRequest              TBSRequest,
//	    optionalSignature   [0] EXPLICIT Signature OPTIONAL }
//	TBSRequest ::= SEQUENCE {
//	    version             [0] EXPLICIT Version DEFAULT v1,
//	    requestorName       [1] EXPLICIT GeneralName OPTIONAL,
//	    requestList             SEQUENCE OF Request,
//	    requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
//	Request ::= SEQUENCE {
//	    reqCert                     CertID,
//	    singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//	CertID ::= SEQUENCE {
//	    hashAlgorithm       AlgorithmIdentifier,
//	    issuerNameHash      OCTET STRING,
//	    issuerKeyHash       OCTET STRING,
//	    serialNumber        CertificateSerialNumber }
func parseRequest(der []byte, p *request) error {
	*p = request{alg: -1}
	in := cryptobyte.String(der)
	var outer, tbs cryptobyte.String
	if !in.ReadASN1(&outer, casn1.SEQUENCE) || !in.Empty() {
		return parseError("not a DER SEQUENCE")
	}
	if !outer.ReadASN1(&tbs, casn1.SEQUENCE) {
		return parseError("no tbsRequest")
	}
	// A signature on the request is allowed and ignored: the responder
	// answers anyone.
	if !outer.SkipOptionalASN1(tagExplicit0) || !outer.Empty() {
		return parseError("bad optionalSignature")
	}

	var version cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, tagExplicit0) {
		return parseError("bad version")
	}
	if hasVersion {
		var v int64
		if !version.ReadASN1Integer(&v) || !version.Empty() || v != 0 {
			return parseError("unsupported version")
		}
	}
	if !tbs.SkipOptionalASN1(tagExplicit1) {
		return parseError("bad requestorName")
	}
	var list, one cryptobyte.String
	if !tbs.ReadASN1(&list, casn1.SEQUENCE) {
		return parseError("no requestList")
	}
	if !list.ReadASN1(&one, casn1.SEQUENCE) {
		return parseError("empty requestList")
	}
	if !list.Empty() {
		return parseError("more than one request")
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, tagExplicit2) || !tbs.Empty() {
		return parseError("bad requestExtensions")
	}

	var certID cryptobyte.String
	if !one.ReadASN1(&certID, casn1.SEQUENCE) {
		return parseError("no CertID")
	}
	var singleExts cryptobyte.String
	var hasSingleExts bool
	if !one.ReadOptionalASN1(&singleExts, &hasSingleExts, tagExplicit0) || !one.Empty() {
		return parseError("bad singleRequestExtensions")
	}
	if err := parseCertID(certID, p); err != nil {
		return err
	}
	if hasSingleExts {
		// No single request extension is understood; a critical one
		// makes the request unanswerable.
		if err := walkExtensions(singleExts, nil); err != nil {
			return err
		}
	}
	if hasExts {
		if err := walkExtensions(exts, func(id, value []byte) (bool, error) {
			if !bytes.Equal(id, oidNonce) {
				return false, nil
			}
			if p.nonce != nil {
				return true, parseError("two nonce extensions")
			}
			// RFC 8954: extnValue holds the DER of Nonce ::= OCTET STRING
			// (SIZE(1..32)).
			v := cryptobyte.String(value)
			var n cryptobyte.String
			if !v.ReadASN1(&n, casn1.OCTET_STRING) || !v.Empty() {
				return true, parseError("nonce is not an OCTET STRING")
			}
			if len(n) < minNonceLen || len(n) > maxNonceLen {
				return true, parseError("nonce length out of 1..32")
			}
			p.nonce = value
			return true, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func parseCertID(certID cryptobyte.String, p *request) error {
	var algID, oid cryptobyte.String
	if !certID.ReadASN1(&algID, casn1.SEQUENCE) || !algID.ReadASN1(&oid, casn1.OBJECT_IDENTIFIER) {
		return parseError("bad hashAlgorithm")
	}
	// Parameters are NULL or absent for the SHA family.
	if !algID.Empty() {
		var null cryptobyte.String
		if !algID.ReadASN1(&null, casn1.NULL) || len(null) != 0 || !algID.Empty() {
			return parseError("bad hashAlgorithm parameters")
		}
	}
	for i := range hashAlgs {
		if bytes.Equal(oid, hashAlgs[i].oid) {
			p.alg = i
			break
		}
	}
	var nameHash, keyHash, serial cryptobyte.String
	if !certID.ReadASN1(&nameHash, casn1.OCTET_STRING) || !certID.ReadASN1(&keyHash, casn1.OCTET_STRING) {
		return parseError("bad issuer hashes")
	}
	if !certID.ReadASN1(&serial, casn1.INTEGER) || !certID.Empty() {
		return parseError("bad serialNumber")
	}
	if !minimalInteger(serial) {
		return parseError("serialNumber is not a minimal DER INTEGER")
	}
	p.nameHash, p.keyHash, p.serial = nameHash, keyHash, serial
	return nil
}

// minimalInteger reports whether b is the content of a DER INTEGER.
func minimalInteger(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
		return false
	}
	return true
}

// walkExtensions parses Extensions ::= SEQUENCE OF Extension and hands
// each to fn, which reports whether it understood it. Unknown critical
// extensions are an error (RFC 5280 4.2, which RFC 6960 4.4 follows).
func walkExtensions(s cryptobyte.String, fn func(id, value []byte) (bool, error)) error {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, casn1.SEQUENCE) || !s.Empty() {
		return parseError("bad Extensions")
	}
	for !seq.Empty() {
		var ext, id, value cryptobyte.String
		var critical bool
		if !seq.ReadASN1(&ext, casn1.SEQUENCE) ||
			!ext.ReadASN1(&id, casn1.OBJECT_IDENTIFIER) ||
			!ext.ReadOptionalASN1Boolean(&critical, casn1.BOOLEAN, false) ||
			!ext.ReadASN1(&value, casn1.OCTET_STRING) || !ext.Empty() {
			return parseError("bad Extension")
		}
		known := false
		if fn != nil {
			var err error
			if known, err = fn(id, value); err != nil {
				return err
			}
		}
		if critical && !known {
			return parseError("unknown critical extension")
		}
	}
	return nil
}

var errTooLarge = errors.New("request too large")
