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
)

// Refusal is a CSR the authority will not sign, with a reason a person
// understands. It maps to HTTP 400 at the edge.
type Refusal struct {
	Code string
	Msg  string
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
}

// Names is the result of a successful check: the DNS names to certify
// (the CSR's SANs plus its CN when the CN was missing from them).
type Names struct {
	CommonName string
	DNSNames   []string
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
// or URI names.
func (p Policy) CheckNames(csr *x509.CertificateRequest) (*Names, error) {
	if len(csr.IPAddresses) > 0 {
		return nil, refuse(CodeIPAddress, "IP address %s in subjectAltName: certificates name hosts by DNS name only (BCP-003-01)", csr.IPAddresses[0])
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, refuse(CodeOtherNames, "email and URI subjectAltNames are not accepted: use DNS names")
	}
	cn := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(csr.Subject.CommonName)), ".")
	names := make([]string, 0, len(csr.DNSNames)+1)
	seen := map[string]bool{}
	for _, raw := range csr.DNSNames {
		n := strings.TrimSuffix(strings.ToLower(raw), ".")
		if err := p.checkName(raw, n, "subjectAltName"); err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if cn != "" {
		if err := p.checkName(csr.Subject.CommonName, cn, "common name"); err != nil {
			return nil, err
		}
		if !seen[cn] {
			names = append([]string{cn}, names...)
		}
	}
	if len(names) == 0 {
		return nil, refuse(CodeNoNames, "CSR names no host: put the device's DNS name in the common name and subjectAltName")
	}
	return &Names{CommonName: csr.Subject.CommonName, DNSNames: names}, nil
}

func (p Policy) checkName(raw, n, where string) error {
	if net.ParseIP(n) != nil {
		return refuse(CodeIPAddress, "%s %q is an IP address: certificates name hosts by DNS name only (BCP-003-01)", where, raw)
	}
	if strings.Contains(n, "*") {
		return refuse(CodeWildcard, "%s %q is a wildcard: wildcard certificates are not issued (BCP-003-01)", where, raw)
	}
	if !validHostname(n) {
		return refuse(CodeBadName, "%s %q is not a valid DNS host name", where, raw)
	}
	d := strings.TrimSuffix(strings.ToLower(p.Domain), ".")
	if n != d && !strings.HasSuffix(n, "."+d) {
		return refuse(CodeOutsideDomain, "%s %q is outside the domain %q this appliance certifies", where, raw, p.Domain)
	}
	return nil
}

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
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
