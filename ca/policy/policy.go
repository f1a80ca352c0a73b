// Package policy holds the pure checks every CSR must pass before the
// authority signs it: signature, hash, key type and size, and names. It
// does no I/O.
package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/idna"
)

// Refusal codes, used as metric labels and in logs.
const (
	CodeBadSignature  = "bad_signature"
	CodeWeakHash      = "weak_hash"
	CodeKeyType       = "key_type"
	CodeRSATooSmall   = "rsa_too_small"
	CodeCurve         = "curve"
	CodeNoNames       = "no_names"
	CodeWildcard      = "wildcard"
	CodeIPAddress     = "ip_address"
	CodeOutsideDomain = "outside_domain"
	CodeBadName       = "bad_name"
	CodeOtherNames    = "other_names"
	CodeKeyReused     = "key_reused"
	CodeNameMismatch  = "name_mismatch"
	CodeReserved      = "reserved_name"
	CodeNameBound     = "name_bound"
)

// Codes lists every refusal code, for series that exist before the first
// refusal of their kind.
var Codes = []string{CodeBadSignature, CodeWeakHash, CodeKeyType, CodeRSATooSmall, CodeCurve, CodeNoNames,
	CodeWildcard, CodeIPAddress, CodeOutsideDomain, CodeBadName, CodeOtherNames, CodeKeyReused, CodeNameMismatch,
	CodeReserved, CodeNameBound}

// Refusal is a CSR the authority will not sign, with a reason a person
// understands. It maps to HTTP 400 at the edge.
type Refusal struct {
	Code string
	Msg  string
	// Name and Holder are set on CodeNameBound refusals: the name asked
	// for and the identity it is bound to.
	Name, Holder string
}

func (r *Refusal) Error() string { return r.Msg }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Policy is the set of rules for device certificates.
type Policy struct {
	// Domain is the zone every name must be inside.
	Domain string
	// MinRSABits is the smallest RSA modulus accepted (2048 by default).
	MinRSABits int
	// Reserved are the names only the appliance itself may hold (see
	// CheckReserved); every label starting with "_" is reserved too.
	Reserved []Reserved
}

// Reserved is a name, or with Pattern "*.suffix" every name below
// suffix, that no device may be certified for, and the rule that
// reserves it (said in the refusal).
type Reserved struct {
	Pattern string
	Rule    string
}

// Requester is who asks for a certificate, as the authority needs to
// know it.
type Requester struct {
	// Identity describes the requester for logs and the records.
	Identity string
	// Holder is the identity that the certified names are bound to (see
	// docs/operations.md, "Name binding"): a manufacturer certificate's
	// issuer and subject serialNumber, its fingerprint, the holder carried
	// by a certificate this CA issued, or an operator. Empty: names are
	// not bound (the appliance's own certificates).
	Holder string
	// AllowReserved lets an operator certify a reserved name.
	AllowReserved bool
	// TakeOver maps names to the holders an operator agreed to move
	// them from: the request was approved with exactly these conflicts
	// shown. A name bound to anyone else is still refused.
	TakeOver map[string]string
	// ListConflicts makes CheckCSR report name conflicts without
	// refusing them (to queue the request for an operator).
	ListConflicts bool
	// DecidedBy is the operator who approved a take-over (audited).
	DecidedBy string
	// Renewing is the certificate being renewed when a renewal with the
	// same key is allowed: a CSR with that certificate's public key is
	// then certified again. nil: a reused key is refused.
	Renewing *x509.Certificate
}

// Names is the result of a successful check: the DNS names to certify
// (the CSR's SANs plus its CN when the CN was missing from them), all
// normalised, and the subject to certify.
type Names struct {
	// CommonName is the CSR's common name, normalised ("" when none).
	CommonName string
	DNSNames   []string
	// Subject is the DER subject to certify: the CSR's own RDN sequence
	// as the device sent it, with its common name normalised in place.
	Subject []byte
}

// NameBound is the refusal of a name another identity holds.
func NameBound(name, holder string) *Refusal {
	return &Refusal{
		Code: CodeNameBound, Name: name, Holder: holder,
		Msg: fmt.Sprintf("the name %q is bound to another identity (%s): the holder keeps it through its renewals; "+
			"an operator can release it with 'nmos-certs names release %s'", name, holder, name),
	}
}

// KeyReused is the refusal of a public key certified before.
func KeyReused() *Refusal {
	return &Refusal{Code: CodeKeyReused, Msg: "this public key was certified before: generate a new key pair for every CSR (BCP-003-03)"}
}

// KeyType describes a public key as "ECDSA P-256" or "RSA 2048", and
// reports which hierarchy signs it.
func KeyType(pub any) (desc string, hierarchy string, err error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name, "ecdsa", nil
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen()), "rsa", nil
	}
	return "", "", refuse(CodeKeyType, "public key type %T is not supported: use RSA or ECDSA", pub)
}

// Check validates a parsed CSR and returns the names to certify.
func (p Policy) Check(csr *x509.CertificateRequest) (*Names, error) {
	if err := p.CheckKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := CheckSignature(csr); err != nil {
		return nil, err
	}
	return p.CheckNames(csr)
}

// CheckSignature refuses CSRs whose self-signature does not verify or
// uses MD5, SHA-0 or SHA-1 (BCP-003-03).
func CheckSignature(csr *x509.CertificateRequest) error {
	switch csr.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		return refuse(CodeWeakHash, "CSR is signed with %s: MD5, SHA-0 and SHA-1 are not accepted, use SHA-256 or stronger", csr.SignatureAlgorithm)
	case x509.UnknownSignatureAlgorithm:
		return refuse(CodeWeakHash, "CSR signature algorithm is unknown or not accepted: use SHA-256 or stronger with RSA or ECDSA")
	}
	if err := csr.CheckSignature(); err != nil {
		return refuse(CodeBadSignature, "CSR signature does not verify: %v", err)
	}
	return nil
}

// CheckKey refuses key types and sizes that are not allowed.
func (p Policy) CheckKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		min := p.MinRSABits
		if min == 0 {
			min = 2048
		}
		if k.N.BitLen() < min {
			return refuse(CodeRSATooSmall, "RSA key of %d bits is too small: at least %d bits are required", k.N.BitLen(), min)
		}
		if k.N.BitLen() > 8192 {
			return refuse(CodeKeyType, "RSA key of %d bits is larger than the 8192 bits accepted", k.N.BitLen())
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return refuse(CodeCurve, "ECDSA curve %s is not accepted: use P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	_, _, err := KeyType(pub)
	return err
}

// CheckNames validates the subject and SANs: at least one DNS name, no
// wildcards, no IP addresses, every name inside the domain, and no email
// or URI names. Every name, the common name too, is normalised once:
// lower case, no trailing dot, internationalised labels as checked
// A-labels. Reserved names are not looked at (see CheckReserved).
func (p Policy) CheckNames(csr *x509.CertificateRequest) (*Names, error) {
	if len(csr.IPAddresses) > 0 {
		return nil, refuse(CodeIPAddress, "IP address %s in subjectAltName: certificates name hosts by DNS name only (BCP-003-01)", csr.IPAddresses[0])
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, refuse(CodeOtherNames, "email and URI subjectAltNames are not accepted: use DNS names")
	}
	cns, err := commonNames(csr.RawSubject)
	if err != nil {
		return nil, refuse(CodeBadName, "CSR subject cannot be read: %v", err)
	}
	if len(cns) > 1 {
		return nil, refuse(CodeBadName, "CSR subject has %d common names: put one host name in the common name and the others in subjectAltName", len(cns))
	}
	if len(cns) == 1 && cns[0] != csr.Subject.CommonName {
		// A string type crypto/x509 does not read (UniversalString, or
		// not a string at all): every reader of the request must see the
		// same name, or a check made on one view passes what another
		// certifies.
		return nil, refuse(CodeBadName, "CSR common name is of a string type that is not accepted: use UTF8String or PrintableString")
	}
	names := make([]string, 0, len(csr.DNSNames)+1)
	seen := map[string]bool{}
	for _, raw := range csr.DNSNames {
		n, err := p.checkName(raw, "subjectAltName")
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	out := &Names{Subject: csr.RawSubject}
	if len(cns) == 1 && strings.TrimSpace(cns[0]) != "" {
		raw := cns[0]
		cn, err := p.checkName(strings.TrimSpace(raw), "common name")
		if err != nil {
			return nil, err
		}
		if !seen[cn] {
			names = append([]string{cn}, names...)
		}
		out.CommonName = cn
		if cn != raw {
			if out.Subject, err = replaceCommonName(csr.RawSubject, cn); err != nil {
				return nil, refuse(CodeBadName, "CSR subject cannot be rewritten with the normalised common name: %v", err)
			}
		}
	}
	if len(names) == 0 {
		return nil, refuse(CodeNoNames, "CSR names no host: put the device's DNS name in the common name and subjectAltName")
	}
	out.DNSNames = names
	return out, nil
}

// CheckReserved refuses names only the appliance may hold: those of
// p.Reserved and any with a label starting with "_" (DNS-SD service and
// protocol labels). The refusal names the rule.
func (p Policy) CheckReserved(names []string) error {
	for _, n := range names {
		if rule := p.ReservedRule(n); rule != "" {
			return refuse(CodeReserved, "the name %q is reserved (%s): no device is certified for it", n, rule)
		}
	}
	return nil
}

// ReservedRule returns why the normalised name n is reserved, or "".
func (p Policy) ReservedRule(n string) string {
	if rule := serviceLabelRule(n); rule != "" {
		return rule
	}
	for _, r := range p.Reserved {
		pat := strings.TrimSuffix(strings.ToLower(r.Pattern), ".")
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			if strings.HasSuffix(n, "."+suffix) {
				return r.Rule + ": every name below " + suffix
			}
		} else if n == pat {
			return r.Rule
		}
	}
	return ""
}

// serviceLabelRule is the rule that reserves names with a label starting
// with "_", or "" for other names.
func serviceLabelRule(n string) string {
	for _, l := range strings.Split(n, ".") {
		if strings.HasPrefix(l, "_") {
			return "a label starting with \"_\" names a DNS-SD service or protocol, not a host"
		}
	}
	return ""
}

// idnaProfile checks internationalised names as a resolver looks them up
// (UTS #46 mapping, bidi and label rules, DNS lengths), leaving the
// host-name character rules to checkName.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.ValidateLabels(true),
	idna.VerifyDNSLength(true), idna.StrictDomainName(false), idna.Transitional(false))

// NormalizeName is a DNS name as this CA compares and certifies it:
// lower case, without a trailing dot, with internationalised labels as
// A-labels ("xn--..."), which are checked to decode. ok is false for a
// name that is not valid IDNA.
func NormalizeName(raw string) (n string, ok bool) {
	n = strings.TrimSuffix(strings.ToLower(raw), ".")
	ascii := isASCII(n)
	if ascii && !strings.Contains(n, "xn--") {
		return n, true
	}
	if ascii && strings.Contains(n, "*") {
		return n, true // refused as a wildcard, with its own reason
	}
	a, err := idnaProfile.ToASCII(n)
	if err != nil {
		return n, false
	}
	if _, err := idnaProfile.ToUnicode(a); err != nil {
		return n, false
	}
	return strings.ToLower(a), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkName normalises and checks one name, returning its normal form.
func (p Policy) checkName(raw, where string) (string, error) {
	n, ok := NormalizeName(raw)
	if net.ParseIP(n) != nil {
		return "", refuse(CodeIPAddress, "%s %q is an IP address: certificates name hosts by DNS name only (BCP-003-01)", where, raw)
	}
	if strings.Contains(n, "*") {
		return "", refuse(CodeWildcard, "%s %q is a wildcard: wildcard certificates are not issued (BCP-003-01)", where, raw)
	}
	if !ok {
		return "", refuse(CodeBadName, "%s %q is not a valid internationalised domain name (IDNA)", where, raw)
	}
	if rule := serviceLabelRule(n); rule != "" {
		// Never a host name, whoever asks.
		return "", refuse(CodeReserved, "%s %q is reserved (%s): no device is certified for it", where, raw, rule)
	}
	if !validHostname(n) {
		return "", refuse(CodeBadName, "%s %q is not a valid DNS host name: labels of letters, digits and inner hyphens, at most 63 characters each", where, raw)
	}
	d := strings.TrimSuffix(strings.ToLower(p.Domain), ".")
	if n != d && !strings.HasSuffix(n, "."+d) {
		return "", refuse(CodeOutsideDomain, "%s %q is outside the domain %q this appliance certifies", where, raw, p.Domain)
	}
	return n, nil
}

// validHostname reports whether n (lower case) is a host name (RFC 952,
// RFC 1123 2.1): labels of letters, digits and inner hyphens.
func validHostname(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
