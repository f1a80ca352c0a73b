// Package ca is the certificate authority: it creates or imports the RSA
// and ECDSA hierarchies, checks CSRs against policy, signs with cfssl,
// records every certificate in the store before returning it, and
// revokes. It knows nothing of HTTP or DNS.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cflog "github.com/cloudflare/cfssl/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

func init() {
	// cfssl logs through a package-level logger; its messages would
	// duplicate ours (and some mention serials), so keep it quiet.
	cflog.Level = cflog.LevelFatal
}

// Hierarchies are the two key algorithms the authority signs with.
const (
	ECDSA = "ecdsa"
	RSA   = "rsa"
)

// Hierarchies lists the hierarchies in the order they are presented.
var Hierarchies = []string{ECDSA, RSA}

// Roles of a generation.
const (
	RoleRoot         = "root"
	RoleIntermediate = "intermediate"
	// RoleLink is a root rollover's link certificate (RFC 4210 4.4):
	// OldWithNew (the old root's key certified by the new root) or
	// NewWithOld (the new root's key certified by the old root).
	RoleLink = "link"
	// RoleCross is a root rollover's new intermediate certified by the
	// old root as well, made when the old root's path length (1, as
	// roots made before link certificates) leaves no room for NewWithOld
	// between it and the intermediate in verifiers that count
	// self-issued certificates (crypto/x509 does).
	RoleCross = "cross"
)

// Profiles recorded with issued certificates.
const (
	ProfileLeaf   = "leaf"
	ProfileServer = "server"
	ProfileOCSP   = "ocsp"
	// ProfileCA is a CA certificate recorded to be revoked by its root.
	ProfileCA = "ca"
)

// Import names an existing hierarchy's PEM files.
type Import struct {
	RootCert, RootKey, IntermediateCert, IntermediateKey string
}

// Options configure an Authority.
type Options struct {
	Store   store.Store
	DataDir string
	// Domain bounds the names the authority certifies.
	Domain string
	// BaseURL is the plain-HTTP base of the OCSP, CRL and CA certificate URLs.
	BaseURL string

	LeafLifetime         time.Duration
	Backdate             time.Duration
	RootLifetime         time.Duration
	IntermediateLifetime time.Duration
	Organization         string
	RSARootBits          int
	RSAIntermediateBits  int
	// Import, per hierarchy, uses existing CA files instead of creating.
	Import map[string]*Import
	// Names are the reserved names and the name binding in force; a
	// reload changes them with SetNames.
	Names Names

	Clock      func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Authority issues and revokes certificates.
type Authority struct {
	o       Options
	policy  atomic.Pointer[namePolicy]
	metrics *metrics

	rollMu sync.Mutex // one rollover at a time in this process
	mu     sync.RWMutex
	gens   []*generation          // oldest first
	active map[string]*generation // hierarchy -> active intermediate
	byID   map[string]*generation

	onRevoke []func(*store.Certificate)
}

// ErrNoCA is returned by Open when the store holds no CA yet.
var ErrNoCA = errors.New("no CA has been created yet: run 'nmos-certs ca init' or start the appliance")

// Open loads the authority from the store and the key files in the data
// directory. When the store has no CA and create is true, both
// hierarchies are created (or imported); otherwise ErrNoCA. A missing or
// corrupt key file is an error naming the file: the authority never
// creates a new CA over an existing one.
func Open(ctx context.Context, o Options, create bool) (*Authority, error) {
	if o.Store == nil {
		return nil, errors.New("ca: no store")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	a := &Authority{o: o}
	a.SetNames(o.Names)
	m, err := newMetrics(o.Registerer, a)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	recs, err := o.Store.Generations(ctx)
	if err != nil {
		return nil, fmt.Errorf("load CA generations: %w", err)
	}
	if len(recs) == 0 {
		if !create {
			return nil, ErrNoCA
		}
		if err := a.checkNoStrayKeys(); err != nil {
			return nil, err
		}
		for _, h := range Hierarchies {
			if imp := o.Import[h]; imp != nil {
				err = a.importHierarchy(ctx, h, imp)
			} else {
				err = a.createHierarchy(ctx, h)
			}
			if err != nil {
				return nil, fmt.Errorf("create %s hierarchy: %w", strings.ToUpper(h), err)
			}
		}
	} else if err := a.load(ctx, recs); err != nil {
		return nil, err
	} else {
		a.setAsideOrphanKeys(recs)
	}
	if err := a.prepareSharing(ctx, create); err != nil {
		return nil, err
	}
	for _, h := range Hierarchies {
		if a.active[h] == nil {
			return nil, fmt.Errorf("the %s hierarchy has no active intermediate", strings.ToUpper(h))
		}
	}
	return a, nil
}

// Reload re-reads the generations from the store (after another process
// changed them).
func (a *Authority) Reload(ctx context.Context) error {
	recs, err := a.o.Store.Generations(ctx)
	if err != nil {
		return err
	}
	return a.load(ctx, recs)
}

func (a *Authority) keyDir() string { return filepath.Join(a.o.DataDir, "ca") }

func (a *Authority) checkNoStrayKeys() error {
	ents, err := os.ReadDir(a.keyDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".key") {
			return fmt.Errorf("%s holds CA key files (%s) but the database has no CA records: refusing to create a new CA over them; restore the database or move the keys away",
				a.keyDir(), e.Name())
		}
	}
	return nil
}

// load parses the generation records and their key files.
func (a *Authority) load(ctx context.Context, recs []*store.Generation) error {
	gens := make([]*generation, 0, len(recs))
	byID := map[string]*generation{}
	active := map[string]*generation{}
	for _, r := range recs {
		cert, err := x509.ParseCertificate(r.CertDER)
		if err != nil {
			return fmt.Errorf("CA generation %s: stored certificate: %w", r.ID, err)
		}
		g := &generation{rec: r, cert: cert}
		if r.KeyFile == "" {
			a.removeReleasedKey(r.ID)
		}
		if r.KeyFile != "" && r.State != store.StateRetired {
			path := filepath.Join(a.o.DataDir, r.KeyFile)
			key, err := readKey(path)
			if errors.Is(err, fs.ErrNotExist) {
				// Made by another appliance sharing the store?
				key, err = a.fetchKey(ctx, r, cert, path, err)
			}
			if err != nil {
				return fmt.Errorf("CA generation %s: %w", r.ID, err)
			}
			if !publicKeysEqual(key.Public(), cert.PublicKey) {
				return fmt.Errorf("CA generation %s: %w", r.ID, &KeyFileError{Path: path, Err: errors.New("does not match the CA certificate")})
			}
			g.key = key
		}
		if p := byID[r.ParentID]; p != nil {
			g.parent = p
		}
		gens = append(gens, g)
		byID[r.ID] = g
	}
	for _, g := range gens {
		if g.rec.Role == RoleIntermediate && g.rec.State == store.StateActive {
			if g.key == nil {
				return fmt.Errorf("CA generation %s is active but its key is not held", g.rec.ID)
			}
			active[g.rec.Hierarchy] = g
		}
		if g.key != nil {
			if err := g.initSigner(a); err != nil {
				return fmt.Errorf("CA generation %s: %w", g.rec.ID, err)
			}
		}
	}
	a.mu.Lock()
	a.gens, a.byID, a.active = gens, byID, active
	a.mu.Unlock()
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// OnRevoke registers fn to be called after every revocation made through
// this Authority.
func (a *Authority) OnRevoke(fn func(*store.Certificate)) {
	a.mu.Lock()
	a.onRevoke = append(a.onRevoke, fn)
	a.mu.Unlock()
}

// Store returns the authority's store.
func (a *Authority) Store() store.Store { return a.o.Store }

// Names are the settings that decide who may hold which name.
type Names struct {
	// Reserved are the names only the appliance itself may hold, besides
	// every name with a label starting with "_" (policy.Policy.Reserved).
	Reserved []policy.Reserved
	// Bind binds every name a device is issued to its holder and refuses
	// it to other holders (ca.name_binding strict or approve).
	Bind bool
	// Grace is how long after the last of its holder's certificates for
	// a name expired the binding lapses.
	Grace time.Duration
}

// namePolicy is the policy and name settings in force, replaced whole.
type namePolicy struct {
	policy.Policy
	bind  bool
	grace time.Duration
}

// SetNames puts new name settings in force (a configuration reload).
func (a *Authority) SetNames(n Names) {
	a.policy.Store(&namePolicy{
		Policy: policy.Policy{Domain: a.o.Domain, MinRSABits: 2048, Reserved: slices.Clone(n.Reserved)},
		bind:   n.Bind, grace: n.Grace,
	})
}

// Policy returns the CSR policy in force.
func (a *Authority) Policy() policy.Policy { return a.policy.Load().Policy }

func spkiHash(raw []byte) []byte {
	h := sha256.Sum256(raw)
	return h[:]
}

// CheckCSR runs the issuance policy for req without issuing: names,
// key, signature, reserved names, key reuse (a same-key renewal of
// req.Renewing aside) and name bindings. It returns the bindings of other
// holders that the CSR's names conflict with; unless req.ListConflicts,
// the first of them that req.TakeOver does not name refuses the CSR
// (policy.CodeNameBound).
func (a *Authority) CheckCSR(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) ([]*store.NameBinding, error) {
	names, err := a.checkPolicy(csr, req)
	if err != nil {
		return nil, err
	}
	if !a.sameKeyRenewal(csr, req) {
		used, err := a.o.Store.KeyUsed(ctx, spkiHash(csr.RawSubjectPublicKeyInfo))
		if err != nil {
			return nil, fmt.Errorf("check key reuse: %w", err)
		}
		if used {
			return nil, a.refused(policy.KeyReused())
		}
	}
	conflicts, err := a.Conflicts(ctx, names.DNSNames, req.Holder)
	if err != nil {
		return nil, err
	}
	if !req.ListConflicts {
		for _, c := range conflicts {
			if req.TakeOver[c.Name] != c.Holder {
				return conflicts, a.refused(policy.NameBound(c.Name, c.Holder))
			}
		}
	}
	return conflicts, nil
}

// Conflicts returns the bindings, to holders other than holder, of those
// names that have not lapsed. None when names are not bound or holder is
// empty.
func (a *Authority) Conflicts(ctx context.Context, names []string, holder string) ([]*store.NameBinding, error) {
	np := a.policy.Load()
	if !np.bind || holder == "" {
		return nil, nil
	}
	lapsed := a.o.Clock().Add(-np.grace)
	var out []*store.NameBinding
	for _, n := range names {
		bs, err := a.o.Store.NameBindings(ctx, store.BindingFilter{Name: n})
		if err != nil {
			return nil, fmt.Errorf("look up name bindings: %w", err)
		}
		for _, b := range bs {
			if b.Holder != holder && !b.Expires.Before(lapsed) {
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// checkPolicy is the part of the policy that needs no store.
func (a *Authority) checkPolicy(csr *x509.CertificateRequest, req policy.Requester) (*policy.Names, error) {
	np := a.policy.Load()
	names, err := np.Check(csr)
	if err != nil {
		return nil, a.refused(err)
	}
	if !req.AllowReserved {
		if err := np.CheckReserved(names.DNSNames); err != nil {
			return nil, a.refused(err)
		}
	}
	return names, nil
}

func (a *Authority) refused(err error) error {
	a.metrics.refused(err)
	return err
}

// sameKeyRenewal reports whether csr renews req.Renewing with its key.
func (a *Authority) sameKeyRenewal(csr *x509.CertificateRequest, req policy.Requester) bool {
	return req.Renewing != nil && bytes.Equal(req.Renewing.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo)
}

// Issue checks csr against policy and signs it with the active
// intermediate of the matching hierarchy (ECDSA keys by the ECDSA chain,
// RSA keys by the RSA chain), with the CSR's own subject (its common name
// normalised) and names. The certificate is durable in the store, and its
// names bound to req.Holder, before Issue returns. Refusals are
// *policy.Refusal.
func (a *Authority) Issue(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error) {
	// Key reuse and name bindings are not looked up first: the store
	// checks both in the transaction that records the certificate, and
	// sign turns what it refuses into the same refusals. The certificate
	// signed meanwhile is dropped unseen. This saves reads on every
	// enrollment, and two racing requests cannot both win.
	//
	// The store hears now that a certificate is coming, so that a commit
	// starting meanwhile can wait for it (see store.SQLite.Expect).
	done := a.expect()
	defer done()
	names, err := a.checkPolicy(csr, req)
	if err != nil {
		return nil, err
	}
	_, hier, err := policy.KeyType(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	return a.sign(ctx, hier, csr, names, req, ProfileLeaf, a.o.LeafLifetime, done)
}

// ResendWindow is how long after issuing a certificate the authority
// answers the very same request with it again, rather than refusing its
// key as certified before. A device whose answer was lost (the appliance
// died, or the connection dropped, between the commit and the response)
// asks again with the same CSR, at this appliance or at the next one by
// DNS-SD priority, and gets the certificate on record.
const ResendWindow = 10 * time.Minute

// IssuedBefore returns the certificate issued within ResendWindow for the
// same request as csr: its public key, subject and DNS names (compared
// as the authority would certify them), to the same holder (and, for a
// same-key renewal, renewing the same certificate), neither revoked nor
// expired, whose names no other holder has taken since. store.ErrNotFound when there is none: the key
// reuse refusal then stands. A certificate is public, so answering it
// again gives nothing away; a request that differs in anything is still
// refused, and so is one from another holder or after the window.
func (a *Authority) IssuedBefore(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error) {
	if req.Holder == "" {
		return nil, store.ErrNotFound
	}
	names, err := a.policy.Load().Check(csr)
	if err != nil {
		return nil, store.ErrNotFound
	}
	rec, err := a.o.Store.CertificateByKey(ctx, spkiHash(csr.RawSubjectPublicKeyInfo))
	if err != nil {
		return nil, err
	}
	// The window counts both ways: the certificate may have been issued
	// by another appliance, whose clock runs ahead of this one's.
	now := a.o.Clock()
	age := now.Sub(rec.IssuedAt)
	if rec.Holder != req.Holder || rec.Profile != ProfileLeaf || rec.Revoked ||
		age > ResendWindow || age < -ResendWindow || !now.Before(rec.NotAfter) {
		return nil, store.ErrNotFound
	}
	// A same-key renewal was asked for by the holder of the certificate
	// it renews: only the same renewal, asked again, finds it.
	if rec.Renews != nil && (req.Renewing == nil || req.Renewing.SerialNumber.Cmp(rec.Renews) != 0) {
		return nil, store.ErrNotFound
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("certificate %s on record: %w", store.SerialKey(rec.Serial), err)
	}
	if !bytes.Equal(cert.RawSubject, names.Subject) || !sameNames(cert.DNSNames, names.DNSNames) {
		return nil, store.ErrNotFound
	}
	// A name taken over by another holder since (an operator moved it)
	// is not given out again, whichever refusal came first.
	conflicts, err := a.Conflicts(ctx, names.DNSNames, req.Holder)
	if err != nil {
		return nil, err
	}
	if len(conflicts) > 0 {
		return nil, store.ErrNotFound
	}
	return cert, nil
}

// sameNames says whether two lists hold the same DNS names, in any order
// and case.
func sameNames(a, b []string) bool {
	norm := func(l []string) []string {
		out := make([]string, len(l))
		for i, n := range l {
			out[i] = strings.ToLower(strings.TrimSuffix(n, "."))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

// expect announces a certificate to a store that batches commits.
func (a *Authority) expect() (done func()) {
	if e, ok := a.o.Store.(interface{ Expect() func() }); ok {
		return e.Expect()
	}
	return func() {}
}

// sign signs and stores; the caller has checked the CSR.
// announced, when not nil, withdraws the certificate's announcement to the
// store just before it is handed over.
func (a *Authority) sign(ctx context.Context, hier string, csr *x509.CertificateRequest, names *policy.Names, req policy.Requester, profile string, lifetime time.Duration, announced func()) (*x509.Certificate, error) {
	a.mu.RLock()
	g := a.active[hier]
	a.mu.RUnlock()
	if g == nil {
		return nil, fmt.Errorf("no active %s issuer", hier)
	}
	now := a.o.Clock()
	notBefore := now.Add(-a.o.Backdate).Truncate(time.Second)
	notAfter := now.Add(lifetime).Truncate(time.Second)
	if notAfter.After(g.cert.NotAfter) {
		notAfter = g.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the %s issuer %s expired at %s: roll it over", hier, g.rec.ID, g.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	start := time.Now()
	cert, err := g.signLeaf(csr, names.DNSNames, names.Subject, now, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	keyDesc, _, _ := policy.KeyType(cert.PublicKey)
	rec := &store.Certificate{
		Serial:    cert.SerialNumber,
		IssuerID:  g.rec.ID,
		Subject:   cert.Subject.String(),
		SANs:      cert.DNSNames,
		KeyType:   keyDesc,
		SPKIHash:  spkiHash(cert.RawSubjectPublicKeyInfo),
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		IssuedAt:  now,
		Identity:  req.Identity,
		Profile:   profile,
		DER:       cert.Raw,
		Holder:    req.Holder,
	}
	if a.sameKeyRenewal(csr, req) {
		rec.Renews = req.Renewing.SerialNumber
	}
	if np := a.policy.Load(); np.bind && req.Holder != "" {
		rec.Bind = &store.Binding{Lapsed: now.Add(-np.grace), TakeOver: req.TakeOver, Actor: req.DecidedBy}
	}
	if announced != nil {
		announced()
	}
	if err := a.o.Store.PutCertificate(ctx, rec); err != nil {
		var nb *store.NameBoundError
		switch {
		case errors.Is(err, store.ErrKeyReused):
			return nil, a.refused(policy.KeyReused())
		case errors.As(err, &nb):
			return nil, a.refused(policy.NameBound(nb.Name, nb.Holder))
		}
		return nil, fmt.Errorf("record certificate: %w", err)
	}
	a.metrics.issued(hier, profile, time.Since(start))
	a.o.Logger.LogAttrs(ctx, slog.LevelInfo, "certificate issued",
		slog.String("serial", store.SerialKey(cert.SerialNumber)), slog.String("issuer", g.rec.ID),
		slog.String("subject", rec.Subject), slog.Any("names", cert.DNSNames), slog.String("key", keyDesc),
		slog.String("profile", profile), slog.String("identity", req.Identity), slog.String("holder", req.Holder),
		slog.Time("not_after", cert.NotAfter))
	return cert, nil
}

// Certificate returns a certificate the authority issued.
func (a *Authority) Certificate(ctx context.Context, serial *big.Int) (*store.Certificate, error) {
	return a.o.Store.Certificate(ctx, serial)
}

// Revoke marks a certificate revoked with an RFC 5280 reason code.
func (a *Authority) Revoke(ctx context.Context, serial *big.Int, reason int) (*store.Certificate, error) {
	if _, ok := ReasonName(reason); !ok || reason == 8 {
		return nil, fmt.Errorf("reason %d is not a revocation reason this authority uses", reason)
	}
	c, err := a.o.Store.Revoke(ctx, serial, a.o.Clock(), reason)
	if err != nil {
		return c, err
	}
	name, _ := ReasonName(reason)
	a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "certificate revoked",
		slog.String("serial", store.SerialKey(serial)), slog.String("issuer", c.IssuerID),
		slog.String("subject", c.Subject), slog.String("reason", name))
	a.mu.RLock()
	hooks := a.onRevoke
	a.mu.RUnlock()
	for _, fn := range hooks {
		fn(c)
	}
	return c, nil
}

var reasons = []string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 7: "",
	8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonName names an RFC 5280 CRLReason code.
func ReasonName(code int) (string, bool) {
	if code < 0 || code >= len(reasons) || reasons[code] == "" {
		return "", false
	}
	return reasons[code], true
}

// ParseReason accepts an RFC 5280 reason name (case-insensitive) or code.
func ParseReason(s string) (int, error) {
	for code, name := range reasons {
		if name != "" && code != 8 && strings.EqualFold(name, s) {
			return code, nil
		}
	}
	var names []string
	for code, name := range reasons {
		if name != "" && code != 8 {
			names = append(names, name)
		}
	}
	return 0, fmt.Errorf("unknown revocation reason %q: want one of %s", s, strings.Join(names, ", "))
}

// GenerationInfo describes one CA generation for status displays.
type GenerationInfo struct {
	ID, Hierarchy, Role string
	State               store.GenerationState
	Cert                *x509.Certificate
	KeyHeld             bool
	Fingerprint         string // SHA-256 of the certificate, hex
	ParentID            string
	ActiveFrom          time.Time // when a "next" generation becomes active
}

// Generations lists every CA generation, oldest first.
func (a *Authority) Generations() []GenerationInfo {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]GenerationInfo, 0, len(a.gens))
	for _, g := range a.gens {
		fp := sha256.Sum256(g.cert.Raw)
		out = append(out, GenerationInfo{
			ID: g.rec.ID, Hierarchy: g.rec.Hierarchy, Role: g.rec.Role, State: g.rec.State,
			Cert: g.cert, KeyHeld: g.key != nil, Fingerprint: hex.EncodeToString(fp[:]),
			ParentID: g.rec.ParentID, ActiveFrom: g.rec.ActiveFrom,
		})
	}
	return out
}

// Issuer is a generation that signs: its certificate and key.
type Issuer struct {
	ID     string
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// Issuers returns every non-retired generation whose key is held: the
// ones that answer OCSP and publish CRLs for what they signed.
func (a *Authority) Issuers() []Issuer {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []Issuer
	for _, g := range a.gens {
		if g.key != nil && g.rec.State != store.StateRetired {
			out = append(out, Issuer{ID: g.rec.ID, Cert: g.cert, Signer: g.key})
		}
	}
	return out
}

// CACerts returns the certificates for EST /cacerts: the intermediates
// first (active, then retiring, then the next one of a root rollover),
// then the roots (the active one, OldWithOld; then a rollover's new one,
// NewWithNew, or the retiring old one), then the link certificates
// (NewWithOld, then OldWithNew), as RFC 7030 4.1.3 and RFC 4210 4.4
// describe; within each group the ECDSA hierarchy before the RSA one.
// See docs/operations.md, "/cacerts".
func (a *Authority) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	rank := func(g *generation) int {
		r := map[string]int{RoleIntermediate: 0, RoleCross: 3, RoleRoot: 100, RoleLink: 200}[g.rec.Role]
		switch g.rec.State {
		case store.StateRetiring:
			r++
		case store.StateNext:
			r += 2
		}
		if g.rec.Role == RoleLink && g.parent != nil && g.parent.rec.Seq > g.rec.Seq {
			r++ // OldWithNew after NewWithOld
		}
		if g.rec.Hierarchy != ECDSA {
			r += 50
		}
		return r
	}
	var gens []*generation
	for _, g := range a.gens {
		if g.rec.State != store.StateRetired {
			gens = append(gens, g)
		}
	}
	sort.SliceStable(gens, func(i, j int) bool { return rank(gens[i]) < rank(gens[j]) })
	out := make([]*x509.Certificate, 0, len(gens))
	for _, g := range gens {
		out = append(out, g.cert)
	}
	return out, nil
}

// Chains returns the roots and intermediates of every non-retired
// generation, to verify certificates the authority issued.
func (a *Authority) Chains(ctx context.Context) (roots, intermediates []*x509.Certificate, err error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, g := range a.gens {
		if g.rec.State == store.StateRetired {
			continue
		}
		if g.rec.Role == RoleRoot {
			roots = append(roots, g.cert)
		} else {
			intermediates = append(intermediates, g.cert)
		}
	}
	return roots, intermediates, nil
}

// ChainFor returns the issuing chain of a certificate the active
// generations signed (intermediate, then root), or nil.
func (a *Authority) ChainFor(cert *x509.Certificate) []*x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, g := range a.gens {
		if g.rec.Role != RoleLink && g.rec.Role != RoleCross && cert.CheckSignatureFrom(g.cert) == nil {
			chain := []*x509.Certificate{g.cert}
			for p := g.parent; p != nil; p = p.parent {
				chain = append(chain, p.cert)
			}
			return chain
		}
	}
	return nil
}

// BridgesFor returns the certificates that lead from the other root of a
// root rollover to the chain issuer -> root: the link certificate that
// certifies root's key under the other root, and a cross-certificate of
// issuer under it. A device that trusts only one of the two roots
// validates a chain that carries them.
func (a *Authority) BridgesFor(issuer, root *x509.Certificate) []*x509.Certificate {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*x509.Certificate
	for _, g := range a.gens {
		if g.rec.State == store.StateRetired {
			continue
		}
		switch {
		case g.rec.Role == RoleCross && publicKeysEqual(g.cert.PublicKey, issuer.PublicKey):
			out = append(out, g.cert)
		case g.rec.Role == RoleLink && publicKeysEqual(g.cert.PublicKey, root.PublicKey):
			out = append(out, g.cert)
		}
	}
	return out
}

// CACertificate returns the certificate of a generation by ID.
func (a *Authority) CACertificate(id string) (*x509.Certificate, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	g := a.byID[id]
	if g == nil {
		return nil, false
	}
	return g.cert, true
}

// IssueResponderCert certifies pub as a delegated OCSP responder of the
// generation issuerID: EKU OCSPSigning and id-pkix-ocsp-nocheck.
func (a *Authority) IssueResponderCert(ctx context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	a.mu.RLock()
	g := a.byID[issuerID]
	a.mu.RUnlock()
	if g == nil || g.key == nil {
		return nil, fmt.Errorf("no issuer %q with a key", issuerID)
	}
	if notAfter.After(g.cert.NotAfter) {
		notAfter = g.cert.NotAfter
	}
	cert, err := g.signResponder(pub, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("sign OCSP responder certificate: %w", err)
	}
	keyDesc, _, _ := policy.KeyType(cert.PublicKey)
	rec := &store.Certificate{
		Serial: cert.SerialNumber, IssuerID: issuerID, Subject: cert.Subject.String(), KeyType: keyDesc,
		SPKIHash: spkiHash(cert.RawSubjectPublicKeyInfo), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		IssuedAt: a.o.Clock(), Identity: "appliance: OCSP responder", Profile: ProfileOCSP, DER: cert.Raw,
	}
	if err := a.o.Store.PutCertificate(ctx, rec); err != nil {
		return nil, fmt.Errorf("record OCSP responder certificate: %w", err)
	}
	a.metrics.issued(g.rec.Hierarchy, ProfileOCSP, 0)
	return cert, nil
}

// The appliance's URLs under its plain-HTTP base: the OCSP responder,
// and the CRL and certificate of generation id. The offline ceremony
// (SignIntermediate) names them from the base it is given.
func ocspURLAt(base string) string { return strings.TrimSuffix(base, "/") + "/ocsp" }
func crlURLAt(base, id string) string {
	return strings.TrimSuffix(base, "/") + "/crl/" + id + ".crl"
}
func issuerURLAt(base, id string) string {
	return strings.TrimSuffix(base, "/") + "/ca/" + id + ".crt"
}

func (a *Authority) ocspURL() string            { return ocspURLAt(a.o.BaseURL) }
func (a *Authority) crlURL(id string) string    { return crlURLAt(a.o.BaseURL, id) }
func (a *Authority) issuerURL(id string) string { return issuerURLAt(a.o.BaseURL, id) }

// CRLURL is the URL where the CRL of generation id is published.
func (a *Authority) CRLURL(id string) string { return a.crlURL(id) }

// PEM encodes certificates as PEM.
func PEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}
