package policy

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// A subject is kept as the device encoded it: the order of its RDNs, the
// string type of each value and any attribute crypto/x509 does not name
// travel into the certificate unchanged, so that a device can renew with
// the subject it enrolled with. Only the common name's value is
// normalised, in place (replaceCommonName).

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// attr is one attribute of a subject, in DER order.
type attr struct {
	oid   asn1.ObjectIdentifier
	tag   cbasn1.Tag
	value string // decoded text; the hex of the DER for non-string values
	raw   []byte // the whole AttributeTypeAndValue
}

// parseSubject reads a DER Name into its attributes, in order, and the
// RDN each belongs to.
func parseSubject(raw []byte) ([]attr, []int, error) {
	in := cryptobyte.String(raw)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, errors.New("not a DER Name")
	}
	var out []attr
	var rdnOf []int
	for rdn := 0; !seq.Empty(); rdn++ {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) {
			return nil, nil, errors.New("RDN is not a SET")
		}
		if set.Empty() {
			return nil, nil, errors.New("empty RDN")
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var whole cryptobyte.String
			if !set.ReadASN1Element(&whole, cbasn1.SEQUENCE) {
				return nil, nil, errors.New("attribute is not a SEQUENCE")
			}
			atv = whole
			var body cryptobyte.String
			atv.ReadASN1(&body, cbasn1.SEQUENCE)
			var a attr
			a.raw = whole
			if !body.ReadASN1ObjectIdentifier(&a.oid) {
				return nil, nil, errors.New("attribute type is not an OID")
			}
			var val cryptobyte.String
			if !body.ReadAnyASN1(&val, &a.tag) || !body.Empty() {
				return nil, nil, errors.New("attribute value cannot be read")
			}
			v, err := decodeString(a.tag, val)
			if err != nil {
				return nil, nil, fmt.Errorf("attribute %s: %w", a.oid, err)
			}
			a.value = v
			out = append(out, a)
			rdnOf = append(rdnOf, rdn)
		}
	}
	return out, rdnOf, nil
}

// decodeString decodes the directory string types; other values are
// kept as the hex of their bytes, tagged, so they compare exactly.
func decodeString(tag cbasn1.Tag, v []byte) (string, error) {
	switch tag {
	case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String, cbasn1.T61String:
		if !utf8.Valid(v) {
			if tag == cbasn1.T61String {
				r := make([]rune, len(v))
				for i, b := range v {
					r[i] = rune(b)
				}
				return string(r), nil
			}
			return "", errors.New("string is not valid UTF-8")
		}
		return string(v), nil
	case 30: // BMPString: UTF-16 big endian
		if len(v)%2 != 0 {
			return "", errors.New("BMPString of odd length")
		}
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		return string(utf16.Decode(u)), nil
	case 28: // UniversalString: UCS-4 big endian
		if len(v)%4 != 0 {
			return "", errors.New("UniversalString of bad length")
		}
		r := make([]rune, len(v)/4)
		for i := range r {
			r[i] = rune(uint32(v[4*i])<<24 | uint32(v[4*i+1])<<16 | uint32(v[4*i+2])<<8 | uint32(v[4*i+3]))
		}
		return string(r), nil
	}
	return fmt.Sprintf("#%02x:%x", uint8(tag), v), nil
}

// commonNames returns the values of the subject's commonName attributes.
func commonNames(raw []byte) ([]string, error) {
	attrs, _, err := parseSubject(raw)
	if err != nil {
		return nil, err
	}
	var cns []string
	for _, a := range attrs {
		if a.oid.Equal(oidCommonName) {
			cns = append(cns, a.value)
		}
	}
	return cns, nil
}

// replaceCommonName returns the DER subject raw with its commonName's
// value set to cn (ASCII, a normalised host name), every other byte as it
// was. The value keeps its string type where that type can hold cn;
// BMPString and UniversalString values become UTF8String.
func replaceCommonName(raw []byte, cn string) ([]byte, error) {
	attrs, rdnOf, err := parseSubject(raw)
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(raw)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for i := 0; i < len(attrs); {
			j := i
			for j < len(attrs) && rdnOf[j] == rdnOf[i] {
				j++
			}
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, a := range attrs[i:j] {
					if !a.oid.Equal(oidCommonName) {
						b.AddBytes(a.raw)
						continue
					}
					tag := a.tag
					switch tag {
					case cbasn1.UTF8String, cbasn1.PrintableString, cbasn1.IA5String, cbasn1.T61String:
					default:
						tag = cbasn1.UTF8String
					}
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(a.oid)
						b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(cn)) })
					})
				}
			})
			i = j
		}
	})
	return b.Bytes()
}

// SameSubject reports whether two DER subjects say the same thing: the
// same attributes with the same values, whatever their order and string
// types, common names compared in their normal form (NormalizeName).
func SameSubject(a, b []byte) bool {
	ka, err := subjectKey(a)
	if err != nil {
		return false
	}
	kb, err := subjectKey(b)
	return err == nil && slices.Equal(ka, kb)
}

func subjectKey(raw []byte) ([]string, error) {
	attrs, _, err := parseSubject(raw)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(attrs))
	for i, a := range attrs {
		v := a.value
		if a.oid.Equal(oidCommonName) {
			v, _ = NormalizeName(strings.TrimSpace(v))
		}
		out[i] = a.oid.String() + "=" + v
	}
	slices.Sort(out)
	return out, nil
}

// attrNames are the short names of common attributes (RFC 4514 and the
// others people meet in device certificates).
var attrNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
	"2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "title",
	"2.5.4.17": "postalCode", "2.5.4.42": "GN", "2.5.4.46": "dnQualifier", "1.2.840.113549.1.9.1": "emailAddress",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
}

// SubjectString writes a DER subject for people in its DER order (RFC
// 4514 strings run the other way), attributes of one RDN joined by "+".
// A subject that cannot be read is written as its hex.
func SubjectString(raw []byte) string {
	attrs, rdnOf, err := parseSubject(raw)
	if err != nil {
		var seq pkix.RDNSequence
		if _, err := asn1.Unmarshal(raw, &seq); err == nil {
			return fmt.Sprint(seq)
		}
		return fmt.Sprintf("%x", raw)
	}
	var sb strings.Builder
	for i, a := range attrs {
		if i > 0 {
			if rdnOf[i] == rdnOf[i-1] {
				sb.WriteString("+")
			} else {
				sb.WriteString(", ")
			}
		}
		name := attrNames[a.oid.String()]
		if name == "" {
			name = a.oid.String()
		}
		sb.WriteString(name + "=" + a.value)
	}
	return sb.String()
}
