package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// generation is one CA certificate with (usually) its key and a cfssl
// signer configured with the profiles it signs.
type generation struct {
	rec     *store.Generation
	cert    *x509.Certificate
	key     crypto.Signer
	parent  *generation
	signer  *local.Signer
	signing *config.Signing // the signer's profiles
}

const (
	cfProfileLeaf         = "leaf"
	cfProfileIntermediate = "intermediate"
)

// csrWhitelist copies only what the CSR is trusted to say: the subject
// and the key. Names come from the policy's checked list.
var csrWhitelist = &config.CSRWhitelist{Subject: true, PublicKeyAlgorithm: true, PublicKey: true, DNSNames: true}

func (g *generation) initSigner(a *Authority) error {
	id := g.rec.ID
	leafUsage := []string{"digital signature", "server auth", "client auth"}
	if g.rec.Hierarchy == RSA {
		leafUsage = append(leafUsage, "key encipherment")
	}
	pol := &config.Signing{
		Default: &config.SigningProfile{Usage: []string{"digital signature"}, Expiry: time.Hour},
		Profiles: map[string]*config.SigningProfile{
			cfProfileLeaf: {
				Usage:        leafUsage,
				Expiry:       a.o.LeafLifetime,
				OCSP:         a.ocspURL(),
				CRL:          a.crlURL(id),
				IssuerURL:    []string{a.issuerURL(id)},
				CSRWhitelist: csrWhitelist,
			},
			cfProfileIntermediate: {
				Usage:        []string{"cert sign", "crl sign"},
				Expiry:       a.o.IntermediateLifetime,
				CAConstraint: config.CAConstraint{IsCA: true, MaxPathLen: 0, MaxPathLenZero: true},
				OCSP:         a.ocspURL(),
				CRL:          a.crlURL(id),
				IssuerURL:    []string{a.issuerURL(id)},
				CSRWhitelist: &config.CSRWhitelist{Subject: true, PublicKeyAlgorithm: true, PublicKey: true},
			},
		},
	}
	s, err := local.NewSigner(g.key, g.cert, signer.DefaultSigAlgo(g.key), pol)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	g.signer, g.signing = s, pol
	return nil
}

func parsePEMCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("signer returned no certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// signLeaf certifies the key of req for hosts with the leaf profile.
//
// The caller has verified req's signature (the policy checks every CSR
// it is given; the appliance's own CSRs are made in process). cfssl's
// Sign would parse and verify the CSR again, then PEM-encode the
// certificate for signLeaf to decode, which is a good part of an
// enrollment's CPU time; so the template is built here with cfssl's own
// profile code (OverrideHosts, FillTemplate) from the fields the leaf
// profile's CSRWhitelist lets through, exactly as Sign builds it, and
// signed by the same key and CA certificate. TestSignLeafMatchesCFSSL
// holds the two to the same certificate.
func (g *generation) signLeaf(req *x509.CertificateRequest, hosts []string, subject []byte, issuedAt, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	tmpl, err := g.leafTemplate(req, hosts, subject, issuedAt, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	der, err := createCertificate(tmpl, g.cert, tmpl.PublicKey, g.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// leafTemplate is the certificate signLeaf signs: cfssl's leaf profile
// filled in for req, named hosts, with the DER subject given (the CSR's
// own RDN sequence, its common name normalised; nil: req's subject as
// crypto/x509 would encode it). Its serial number starts with issuedAt,
// the clock's reading when it is signed (see randomSerial).
func (g *generation) leafTemplate(req *x509.CertificateRequest, hosts []string, subject []byte, issuedAt, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	profile := g.signing.Profiles[cfProfileLeaf]
	tmpl := &x509.Certificate{
		RawSubject:         subject,
		Subject:            csrSubject(req.Subject),
		PublicKeyAlgorithm: req.PublicKeyAlgorithm,
		PublicKey:          req.PublicKey,
		DNSNames:           req.DNSNames,
	}
	local.OverrideHosts(tmpl, hosts)
	serial, err := randomSerial(issuedAt)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if err := signer.FillTemplate(tmpl, g.signing.Default, profile, notBefore, notAfter); err != nil {
		return nil, err
	}
	return tmpl, nil
}

// csrSubject is the subject cfssl takes from a CSR: the attributes
// crypto/x509 names, plus the others (such as emailAddress) as
// ExtraNames, so that none is lost.
func csrSubject(n pkix.Name) pkix.Name {
	out := n
	out.ExtraNames = nil
	for _, atv := range n.Names {
		t := atv.Type
		common := len(t) == 4 && t[0] == 2 && t[1] == 5 && t[2] == 4 && (t[3] == 3 || (t[3] >= 5 && t[3] <= 11) || t[3] == 17)
		if !common {
			out.ExtraNames = append(out.ExtraNames, atv)
		}
	}
	return out
}

var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// signResponder certifies a delegated OCSP responder key. cfssl's signer
// needs a CSR, which a key handed over without its private half cannot
// give, so this one profile is built with crypto/x509 directly.
func (g *generation) signResponder(pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial(notBefore)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: g.cert.Subject.CommonName + " OCSP Responder", Organization: g.cert.Subject.Organization},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
	return g.certify(tmpl, pub)
}

// certify signs tmpl for pub with g's key through crypto/x509: the
// certificates the appliance makes itself (OCSP responders, link and
// cross certificates), not leaves.
func (g *generation) certify(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, g.cert, pub, g.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial makes a certificate serial number: 20 octets, positive,
// of which the first 8 are the time (Unix nanoseconds, from now) and the
// last 12 come from crypto/rand. 96 random bits are more than the 64 the
// CA/Browser Forum asks for, so serials stay unguessable; the time in
// front makes them grow with issuance, so that the store's index on them
// takes each new one near its end instead of on a random page, which
// keeps a commit's writes few and the cost of issuing flat as the store
// grows. now is the clock as the certificate is signed, to the
// nanosecond, not its notBefore: notBefore has whole seconds, and the
// serials of one second would share their first 8 octets and land at
// random among the index's last pages, several pages a commit. The time
// tells little more than notBefore does (the fraction of its second).
func randomSerial(now time.Time) (*big.Int, error) {
	b := make([]byte, 20)
	binary.BigEndian.PutUint64(b, uint64(now.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1
	}
	return new(big.Int).SetBytes(b), nil
}

// newKey generates a CA key with cfssl's key request.
func newKey(algo string, size int) (crypto.Signer, error) {
	kr := &csr.KeyRequest{A: algo, S: size}
	k, err := kr.Generate()
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("generated key cannot sign")
	}
	return s, nil
}

func (a *Authority) genID(hier, role string, seq int) string {
	r := "int"
	if role == RoleRoot {
		r = "root"
	}
	return fmt.Sprintf("%s-%s-%d", hier, r, seq)
}

func (a *Authority) subject(hier, role string, seq int) *csr.CertificateRequest {
	kind := "Intermediate CA"
	if role == RoleRoot {
		kind = "Root CA"
	}
	return &csr.CertificateRequest{
		CN:    fmt.Sprintf("%s %s %s %d", a.o.Organization, strings.ToUpper(hier), kind, seq),
		Names: []csr.Name{{O: a.o.Organization}},
	}
}

// createHierarchy makes a new root and intermediate for hier. Keys are
// written (0600, atomically) before the records that point at them.
func (a *Authority) createHierarchy(ctx context.Context, hier string) error {
	now := a.o.Clock().Truncate(time.Second)
	root, err := a.newRoot(hier, 1, store.StateActive, now, nil)
	if err != nil {
		return err
	}
	inter, err := a.newIntermediate(root, 1, store.StateActive, now)
	if err != nil {
		return err
	}
	if err := a.persist(ctx, root, inter); err != nil {
		return err
	}
	a.o.Logger.Info("CA hierarchy created", "hierarchy", hier, "root", root.rec.ID, "intermediate", inter.rec.ID,
		"root_not_after", root.cert.NotAfter, "intermediate_not_after", inter.cert.NotAfter)
	return nil
}

// rootPathLen is the path length of the roots made here: an intermediate
// under the root, and a root rollover's link certificate between them
// (crypto/x509 counts self-issued link certificates; intermediates have
// path length 0, so the root alone can sign CAs).
var rootPathLen = 2 // a variable so that a test can make roots as earlier versions did

// newRoot makes a root of hier (ECDSA P-384, or RSA of rsa_root_bits),
// self-signed, ready to sign: its key is not written yet. The first root
// of a hierarchy is made through cfssl; a root rollover's new root
// (like: the root it succeeds) through crypto/x509, with like's name,
// so that the link certificates between them are self-issued (RFC 4210
// 4.4: the CA keeps its name, and its key changes).
func (a *Authority) newRoot(hier string, seq int, state store.GenerationState, now time.Time, like *x509.Certificate) (*generation, error) {
	algo, size := "ecdsa", 384
	if hier == RSA {
		algo, size = "rsa", a.o.RSARootBits
	}
	key, err := newKey(algo, size)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	id := a.genID(hier, RoleRoot, seq)
	var cert *x509.Certificate
	if like != nil {
		serial, err := randomSerial(now)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial, RawSubject: like.RawSubject,
			NotBefore: now.Add(-a.o.Backdate), NotAfter: now.Add(a.o.RootLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true, IsCA: true, MaxPathLen: rootPathLen,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, fmt.Errorf("self-sign root: %w", err)
		}
		if cert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
	} else {
		req, err := csr.Generate(key, a.subject(hier, RoleRoot, seq))
		if err != nil {
			return nil, fmt.Errorf("root CSR: %w", err)
		}
		self, err := local.NewSigner(key, nil, signer.DefaultSigAlgo(key), &config.Signing{
			Default: &config.SigningProfile{
				Usage:        []string{"cert sign", "crl sign"},
				Expiry:       a.o.RootLifetime,
				CAConstraint: config.CAConstraint{IsCA: true, MaxPathLen: rootPathLen},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("root signer: %w", err)
		}
		certPEM, err := self.Sign(signer.SignRequest{Request: string(req), NotBefore: now.Add(-a.o.Backdate), NotAfter: now.Add(a.o.RootLifetime)})
		if err != nil {
			return nil, fmt.Errorf("self-sign root: %w", err)
		}
		if cert, err = parsePEMCert(certPEM); err != nil {
			return nil, err
		}
	}
	g := &generation{
		rec:  &store.Generation{ID: id, Hierarchy: hier, Role: RoleRoot, Seq: seq, State: state, CertDER: cert.Raw, KeyFile: filepath.Join("ca", id+".key"), CreatedAt: now},
		cert: cert, key: key,
	}
	if err := g.initSigner(a); err != nil {
		return nil, err
	}
	return g, nil
}

// newIntermediate makes intermediate seq of root's hierarchy, signed by
// root through cfssl, valid for intermediate_lifetime but not past the
// root; its key is not written yet.
func (a *Authority) newIntermediate(root *generation, seq int, state store.GenerationState, now time.Time) (*generation, error) {
	hier := root.rec.Hierarchy
	algo, size := "ecdsa", 256
	if hier == RSA {
		algo, size = "rsa", a.o.RSAIntermediateBits
	}
	key, err := newKey(algo, size)
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	id := a.genID(hier, RoleIntermediate, seq)
	req, err := csr.Generate(key, a.subject(hier, RoleIntermediate, seq))
	if err != nil {
		return nil, fmt.Errorf("intermediate CSR: %w", err)
	}
	notAfter := now.Add(a.o.IntermediateLifetime)
	if notAfter.After(root.cert.NotAfter) {
		notAfter = root.cert.NotAfter
	}
	certPEM, err := root.signer.Sign(signer.SignRequest{Request: string(req), Profile: cfProfileIntermediate, NotBefore: now.Add(-a.o.Backdate), NotAfter: notAfter})
	if err != nil {
		return nil, fmt.Errorf("sign intermediate: %w", err)
	}
	cert, err := parsePEMCert(certPEM)
	if err != nil {
		return nil, err
	}
	return &generation{
		rec: &store.Generation{ID: id, Hierarchy: hier, Role: RoleIntermediate, Seq: seq, ParentID: root.rec.ID, State: state,
			CertDER: cert.Raw, KeyFile: filepath.Join("ca", id+".key"), CreatedAt: now},
		cert: cert, key: key, parent: root,
	}, nil
}

// persist writes the keys, then records the generations, then adds them
// to the authority.
func (a *Authority) persist(ctx context.Context, gens ...*generation) error {
	for _, g := range gens {
		if g.key != nil && g.rec.KeyFile != "" {
			if err := writeKey(filepath.Join(a.o.DataDir, g.rec.KeyFile), g.key); err != nil {
				return fmt.Errorf("write key of %s: %w", g.rec.ID, err)
			}
		}
	}
	for _, g := range gens {
		if err := a.o.Store.PutGeneration(ctx, g.rec); err != nil {
			return fmt.Errorf("record %s: %w", g.rec.ID, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = map[string]*generation{}
		a.active = map[string]*generation{}
	}
	for _, g := range gens {
		if g.signer == nil && g.key != nil {
			if err := g.initSigner(a); err != nil {
				return err
			}
		}
		a.gens = append(a.gens, g)
		a.byID[g.rec.ID] = g
		if g.rec.Role == RoleIntermediate && g.rec.State == store.StateActive {
			a.active[g.rec.Hierarchy] = g
		}
	}
	return nil
}

// importHierarchy takes an existing root and intermediate from PEM files.
func (a *Authority) importHierarchy(ctx context.Context, hier string, imp *Import) error {
	now := a.o.Clock().Truncate(time.Second)
	roots, err := readCerts(imp.RootCert)
	if err != nil {
		return fmt.Errorf("root_cert: %w", err)
	}
	ints, err := readCerts(imp.IntermediateCert)
	if err != nil {
		return fmt.Errorf("intermediate_cert: %w", err)
	}
	rootCert, intCert := roots[0], ints[0]
	for _, c := range []*x509.Certificate{rootCert, intCert} {
		if !c.IsCA || !c.BasicConstraintsValid {
			return fmt.Errorf("%q is not a CA certificate", c.Subject)
		}
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); ok != (hier == ECDSA) {
			return fmt.Errorf("%q does not have %s key", c.Subject, strings.ToUpper(hier))
		}
		if _, ok := c.PublicKey.(*rsa.PublicKey); ok != (hier == RSA) {
			return fmt.Errorf("%q does not have an %s key", c.Subject, strings.ToUpper(hier))
		}
	}
	if err := rootCert.CheckSignatureFrom(rootCert); err != nil {
		return fmt.Errorf("root_cert %q is not self-signed: %w", rootCert.Subject, err)
	}
	if err := intCert.CheckSignatureFrom(rootCert); err != nil {
		return fmt.Errorf("intermediate_cert %q is not signed by root_cert: %w", intCert.Subject, err)
	}
	if !now.Before(intCert.NotAfter) {
		return fmt.Errorf("intermediate_cert expired on %s", intCert.NotAfter.Format(time.RFC3339))
	}
	loadKey := func(path string, cert *x509.Certificate) (crypto.Signer, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &KeyFileError{Path: path, Err: err}
		}
		k, err := parseKey(path, data)
		if err != nil {
			return nil, err
		}
		if !publicKeysEqual(k.Public(), cert.PublicKey) {
			return nil, &KeyFileError{Path: path, Err: errors.New("does not match its certificate")}
		}
		return k, nil
	}
	intKey, err := loadKey(imp.IntermediateKey, intCert)
	if err != nil {
		return err
	}
	rootID, intID := a.genID(hier, RoleRoot, 1), a.genID(hier, RoleIntermediate, 1)
	root := &generation{
		rec:  &store.Generation{ID: rootID, Hierarchy: hier, Role: RoleRoot, Seq: 1, State: store.StateActive, CertDER: rootCert.Raw, CreatedAt: now},
		cert: rootCert,
	}
	if imp.RootKey != "" {
		if root.key, err = loadKey(imp.RootKey, rootCert); err != nil {
			return err
		}
		root.rec.KeyFile = filepath.Join("ca", rootID+".key")
	}
	inter := &generation{
		rec:  &store.Generation{ID: intID, Hierarchy: hier, Role: RoleIntermediate, Seq: 1, ParentID: rootID, State: store.StateActive, CertDER: intCert.Raw, KeyFile: filepath.Join("ca", intID+".key"), CreatedAt: now},
		cert: intCert, key: intKey, parent: root,
	}
	if err := a.persist(ctx, root, inter); err != nil {
		return err
	}
	a.o.Logger.Info("CA hierarchy imported", "hierarchy", hier, "root", rootID, "intermediate", intID, "root_key_held", root.key != nil)
	return nil
}
