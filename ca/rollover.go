package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// ErrRootKeyNotHeld is returned by RolloverIntermediate when the root
// that must sign the new intermediate is offline.
var ErrRootKeyNotHeld = errors.New("the root key is not held on this appliance (an offline root)")

// ErrRootRolloverUnderWay is returned by RolloverRoot when the hierarchy's
// last root rollover is still in its overlap.
var ErrRootRolloverUnderWay = errors.New("already under way")

// Rollover describes an intermediate rollover: the generation that
// became active and the one that became retiring.
type Rollover struct {
	Hierarchy string
	Reason    string
	Old, New  GenerationInfo
}

// RolloverIntermediate makes a new intermediate for hier, signed by the
// hierarchy's active root, and makes it the active one; the intermediate
// that was active becomes retiring: it issues nothing new, and its OCSP
// answers and CRL go on until its last certificate expires (see
// RetireExpired). The new key is written (0600, atomically) before the
// record that names it; the new record and the old one's state change are
// one transaction with one event, which the other processes sharing the
// store follow. reason is recorded in the log ("scheduled",
// "keyCompromise", "operator", ...).
func (a *Authority) RolloverIntermediate(ctx context.Context, hier, reason string) (*Rollover, error) {
	a.rollMu.Lock()
	defer a.rollMu.Unlock()
	// Another process may have rolled over meanwhile.
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	a.mu.RLock()
	old := a.active[hier]
	seq := 0
	for _, g := range a.gens {
		if g.rec.Hierarchy == hier && g.rec.Role == RoleIntermediate && g.rec.Seq > seq {
			seq = g.rec.Seq
		}
	}
	a.mu.RUnlock()
	if old == nil {
		return nil, fmt.Errorf("no active %s intermediate to roll over", strings.ToUpper(hier))
	}
	root := old.parent
	if root == nil {
		return nil, fmt.Errorf("the root of %s is not known", old.rec.ID)
	}
	if root.key == nil || root.signer == nil {
		return nil, fmt.Errorf("%s: %w; make the new intermediate in the offline-root ceremony: 'nmos-certs ca rollover intermediate --hierarchy %s --csr-out FILE' here, 'nmos-certs ca sign-intermediate' where the root key is, then 'nmos-certs ca import-intermediate --in FILE' here", root.rec.ID, ErrRootKeyNotHeld, hier)
	}
	now := a.o.Clock().Truncate(time.Second)
	if !now.Before(root.cert.NotAfter) {
		return nil, fmt.Errorf("root %s expired at %s: roll the root over", root.rec.ID, root.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	next, err := a.newIntermediate(root, seq+1, store.StateActive, now)
	if err != nil {
		return nil, err
	}
	if reason == "scheduled" && !next.cert.NotAfter.Before(root.cert.NotAfter) && !next.cert.NotAfter.After(old.cert.NotAfter) {
		// Cut short by the root's own end, a new intermediate would not
		// outlive the one it replaces, and the schedule would roll it
		// over again and again: the root rolls over instead. (An
		// operator's rollover, for a compromise say, is made anyway.)
		return nil, fmt.Errorf("root %s expires %s, before a new intermediate could outlive %s: roll the root over (nmos-certs ca rollover root --hierarchy %s)",
			root.rec.ID, root.cert.NotAfter.UTC().Format(time.RFC3339), old.rec.ID, hier)
	}
	rec, key, cert, id := next.rec, next.key, next.cert, next.rec.ID
	if err := writeNewKey(filepath.Join(a.o.DataDir, rec.KeyFile), key); err != nil {
		return nil, fmt.Errorf("write key of %s: %w", id, err)
	}
	if err := a.shareKey(ctx, id, cert, key); err != nil {
		return nil, err
	}
	step("intermediate key written")
	// With a compromised key, the root revokes the old intermediate in
	// the same transaction, so that its CRL and OCSP say so: a crash
	// cannot leave the rollover made and the revocation not.
	if err := a.o.Store.RollGeneration(ctx, rec, old.rec.ID, store.StateRetiring, compromised(old, root, reason, now)); err != nil {
		return nil, fmt.Errorf("record the rollover to %s: %w", id, err)
	}
	step("intermediate recorded")
	if err := a.Reload(ctx); err != nil {
		return nil, fmt.Errorf("load the new generation %s: %w", id, err)
	}
	r := a.rolloverOf(hier, reason, old.rec.ID, id)
	a.metrics.rollovers.WithLabelValues(hier, RoleIntermediate).Inc()
	a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "CA intermediate rolled over",
		slog.String("hierarchy", hier), slog.String("reason", reason),
		slog.String("old", old.rec.ID), slog.String("old_sha256", r.Old.Fingerprint),
		slog.String("new", id), slog.String("new_sha256", r.New.Fingerprint),
		slog.Time("new_not_after", cert.NotAfter))
	return r, nil
}

// stepHook, when set (by tests), is called at each step of a rollover
// that leaves something on disk, to stop the process there.
var stepHook func(step string)

func step(name string) {
	if stepHook != nil {
		stepHook(name)
	}
}

// orphanAge is how old a key file no generation names must be before
// Open sets it aside: a rollover in another process writes its key a
// moment before it records it.
const orphanAge = 10 * time.Minute

// setAsideOrphanKeys moves the key files of data_dir/ca that no
// generation names (a rollover stopped between writing its key and
// recording it) to data_dir/ca/orphaned/, so that the key directory holds
// the keys of the generations on record and nothing else. They are moved,
// not deleted, and said in the log.
func (a *Authority) setAsideOrphanKeys(recs []*store.Generation) {
	named := map[string]bool{}
	for _, r := range recs {
		if r.KeyFile != "" {
			named[filepath.Base(r.KeyFile)] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(a.keyDir(), "*.key"))
	for _, f := range files {
		base := filepath.Base(f)
		fi, err := os.Stat(f)
		if named[base] || err != nil || time.Since(fi.ModTime()) < orphanAge {
			continue
		}
		// Read the records again just before: another process may have
		// recorded the key since they were read.
		if fresh, err := a.o.Store.Generations(context.Background()); err != nil {
			continue
		} else if slices.ContainsFunc(fresh, func(r *store.Generation) bool { return filepath.Base(r.KeyFile) == base }) {
			continue
		}
		dst := filepath.Join(a.keyDir(), "orphaned", base+"."+fi.ModTime().UTC().Format("20060102T150405Z"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
			err = os.Rename(f, dst)
			if err == nil {
				a.o.Logger.Warn("a CA key file no generation names was set aside (a rollover stopped before it was recorded)", "file", f, "moved_to", dst)
				continue
			}
		}
		a.o.Logger.Warn("a CA key file no generation names could not be set aside", "file", f, "err", err)
	}
}

// compromised is, for a compromise reason (keyCompromise, cACompromise),
// old's CA certificate as its root revokes it at now; nil otherwise.
func compromised(old, root *generation, reason string, now time.Time) *store.Certificate {
	code, err := ParseReason(reason)
	if err != nil || (code != 1 && code != 2) {
		return nil
	}
	c := caRecord(old, root)
	c.Revoked, c.RevokedAt, c.Reason = true, now, code
	return c
}

// rolloverOf describes, once reloaded, the rollover from oldID to newID.
func (a *Authority) rolloverOf(hier, reason, oldID, newID string) *Rollover {
	r := &Rollover{Hierarchy: hier, Reason: reason}
	for _, g := range a.Generations() {
		switch g.ID {
		case oldID:
			r.Old = g
		case newID:
			r.New = g
		}
	}
	return r
}

// caRecord is the CA certificate of g as a certificate its root issued
// (profile "ca"), to be revoked on the root's CRL.
func caRecord(g, root *generation) *store.Certificate {
	return &store.Certificate{
		Serial: g.cert.SerialNumber, IssuerID: root.rec.ID, Subject: g.cert.Subject.String(), KeyType: keyTypeOf(g.cert),
		SPKIHash: spkiHash(g.cert.RawSubjectPublicKeyInfo), NotBefore: g.cert.NotBefore, NotAfter: g.cert.NotAfter,
		IssuedAt: g.rec.CreatedAt, Identity: "appliance: CA generation " + g.rec.ID, Profile: ProfileCA, DER: g.cert.Raw,
	}
}

func keyTypeOf(c *x509.Certificate) string {
	d, _, err := policy.KeyType(c.PublicKey)
	if err != nil {
		return c.PublicKeyAlgorithm.String()
	}
	return d
}

// DestroyKey deletes the key of a retired generation: the record first
// says the key is gone, then the file is removed (a crash between leaves
// a file no record names, which Open sets aside). The certificate stays
// on record.
func (a *Authority) DestroyKey(ctx context.Context, id string) error {
	var path string
	for _, g := range a.Generations() {
		if g.ID != id {
			continue
		}
		if g.State != store.StateRetired {
			return fmt.Errorf("%s is %s: only a retired generation's key may be destroyed", id, g.State)
		}
	}
	recs, err := a.o.Store.Generations(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.ID == id {
			if r.KeyFile == "" {
				return fmt.Errorf("%s holds no key", id)
			}
			path = filepath.Join(a.o.DataDir, r.KeyFile)
		}
	}
	if path == "" {
		return fmt.Errorf("no CA generation %q", id)
	}
	if err := a.o.Store.DropGenerationKey(ctx, id, a.o.Clock()); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	a.o.Logger.Warn("CA key destroyed", "generation", id, "file", path)
	return a.Reload(ctx)
}

// LifeUsed is the share of its validity period a certificate has used at
// now, from 0 to 1.
func LifeUsed(notBefore, notAfter, now time.Time) float64 {
	total := notAfter.Sub(notBefore)
	if total <= 0 {
		return 1
	}
	used := float64(now.Sub(notBefore)) / float64(total)
	return min(max(used, 0), 1)
}

// IntermediateLifeUsed is the share of its life the active intermediate
// of hier has used.
func (a *Authority) IntermediateLifeUsed(hier string) float64 {
	a.mu.RLock()
	g := a.active[hier]
	a.mu.RUnlock()
	if g == nil {
		return 1
	}
	return LifeUsed(g.cert.NotBefore, g.cert.NotAfter, a.o.Clock())
}

// RetireExpired moves to retired every retiring generation whose
// certificates have all expired (and that has expired itself or issued
// nothing that is still valid): its OCSP answers and CRLs stop, its key
// is no longer loaded. It returns the generations retired.
func (a *Authority) RetireExpired(ctx context.Context) ([]string, error) {
	now := a.o.Clock()
	var retired []string
	retire := func(id, why string) error {
		if err := a.o.Store.SetGenerationState(ctx, id, store.StateRetired); err != nil {
			return err
		}
		retired = append(retired, id)
		a.o.Logger.Info("CA generation retired", "generation", id, "why", why)
		return nil
	}
	gens := a.Generations()
	// Intermediates (and leaves' other issuers) first: a root retires
	// once its intermediates have.
	for _, g := range gens {
		switch {
		case (g.Role == RoleLink || g.Role == RoleCross) && g.State != store.StateRetired && !now.Before(g.Cert.NotAfter):
			if err := retire(g.ID, "the link or cross certificate expired"); err != nil {
				return retired, err
			}
		case g.Role == RoleIntermediate && g.State == store.StateRetiring:
			last, err := a.o.Store.LatestNotAfter(ctx, g.ID)
			if err != nil {
				return retired, err
			}
			if now.Before(last) {
				continue
			}
			if err := retire(g.ID, "its last certificate expired "+last.UTC().Format(time.RFC3339)); err != nil {
				return retired, err
			}
		}
	}
	gone := map[string]bool{}
	for _, id := range retired {
		gone[id] = true
	}
	for _, g := range gens {
		if g.Role != RoleRoot || g.State != store.StateRetiring {
			continue
		}
		live := false
		for _, c := range gens {
			if c.Role == RoleIntermediate && c.ParentID == g.ID && c.State != store.StateRetired && !gone[c.ID] {
				live = true
			}
		}
		// Its CRL goes on while a CA certificate it revoked is valid.
		last, err := a.o.Store.LatestNotAfter(ctx, g.ID)
		if err != nil {
			return retired, err
		}
		if !live && !now.Before(last) {
			if err := retire(g.ID, "its intermediates are retired"); err != nil {
				return retired, err
			}
		}
	}
	if len(retired) > 0 {
		if err := a.Reload(ctx); err != nil {
			return retired, err
		}
	}
	return retired, nil
}

// RootRollover describes a root rollover (RFC 4210 4.4): the new root
// (NewWithNew), the two link certificates, and the new root's first
// intermediate, which become active at ActiveFrom.
type RootRollover struct {
	Hierarchy              string
	OldRoot, NewRoot       GenerationInfo
	OldWithNew, NewWithOld GenerationInfo
	NewIntermediate        GenerationInfo
	ActiveFrom             time.Time
}

// RolloverRoot starts a root rollover of hier: a new root, self-signed
// (NewWithNew); OldWithNew, the old root's key certified by the new root,
// and NewWithOld, the new root's key certified by the old root, each
// valid until the old root expires (RFC 4210 4.4); and an intermediate
// under the new root. The link certificates are published at once (in
// /cacerts), so that devices fetching the CA certificates learn the new
// root while they still trust the old; the new root and intermediate are
// "next" until overlap has passed, then become active and the old ones
// retiring (ActivateDue). With overlap 0 the new hierarchy is active at
// once. Keys are written before the records; the records are one
// transaction.
func (a *Authority) RolloverRoot(ctx context.Context, hier string, overlap time.Duration) (*RootRollover, error) {
	a.rollMu.Lock()
	defer a.rollMu.Unlock()
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	a.mu.RLock()
	var old *generation
	rootSeq, intSeq := 0, 0
	pending := false
	for _, g := range a.gens {
		if g.rec.Hierarchy != hier {
			continue
		}
		switch {
		case g.rec.State == store.StateNext:
			pending = true
		case g.rec.Role == RoleRoot && g.rec.State == store.StateActive:
			old = g
		}
		if g.rec.Role == RoleRoot {
			rootSeq = max(rootSeq, g.rec.Seq)
		}
		if g.rec.Role == RoleIntermediate {
			intSeq = max(intSeq, g.rec.Seq)
		}
	}
	a.mu.RUnlock()
	switch {
	case pending:
		return nil, fmt.Errorf("a %s root rollover is %w: its new root becomes active at the end of its overlap", strings.ToUpper(hier), ErrRootRolloverUnderWay)
	case old == nil:
		return nil, fmt.Errorf("no active %s root", strings.ToUpper(hier))
	case old.key == nil:
		return nil, fmt.Errorf("%s: %w; NewWithOld must be signed with it", old.rec.ID, ErrRootKeyNotHeld)
	}
	now := a.o.Clock().Truncate(time.Second)
	if !now.Before(old.cert.NotAfter) {
		return nil, fmt.Errorf("root %s expired at %s: the link certificates cannot outlive it; create a new hierarchy instead", old.rec.ID, old.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	// The old hierarchy must be able to issue until the overlap ends:
	// the overlap ends a leaf's lifetime before its intermediate or root
	// would, if it was to end later.
	activeFrom := now.Add(overlap)
	a.mu.RLock()
	if cur := a.active[hier]; cur != nil {
		for _, end := range []time.Time{cur.cert.NotAfter, old.cert.NotAfter} {
			if limit := end.Add(-a.o.LeafLifetime); activeFrom.After(limit) {
				activeFrom = limit
			}
		}
	}
	a.mu.RUnlock()
	if activeFrom.Before(now) {
		activeFrom = now
	}
	root, err := a.newRoot(hier, rootSeq+1, store.StateNext, now, old.cert)
	if err != nil {
		return nil, err
	}
	root.rec.ActiveFrom = activeFrom
	inter, err := a.newIntermediate(root, intSeq+1, store.StateNext, now)
	if err != nil {
		return nil, err
	}
	inter.rec.ActiveFrom = activeFrom
	var cross *generation
	if pl := old.cert.MaxPathLen; old.cert.BasicConstraintsValid && (pl > 0 || old.cert.MaxPathLenZero) && pl < 2 {
		if cross, err = a.crossCertificate(inter, old, now); err != nil {
			return nil, fmt.Errorf("cross-certificate of %s: %w", inter.rec.ID, err)
		}
	}
	oldWithNew, err := a.linkCertificate(old, root, now)
	if err != nil {
		return nil, fmt.Errorf("OldWithNew: %w", err)
	}
	newWithOld, err := a.linkCertificate(root, old, now)
	if err != nil {
		return nil, fmt.Errorf("NewWithOld: %w", err)
	}
	for i, g := range []*generation{root, inter} {
		if err := writeNewKey(filepath.Join(a.o.DataDir, g.rec.KeyFile), g.key); err != nil {
			return nil, fmt.Errorf("write key of %s: %w", g.rec.ID, err)
		}
		if err := a.shareKey(ctx, g.rec.ID, g.cert, g.key); err != nil {
			return nil, err
		}
		step(fmt.Sprintf("root rollover key %d written", i+1))
	}
	recs := []*store.Generation{root.rec, newWithOld.rec, oldWithNew.rec, inter.rec}
	if cross != nil {
		recs = append(recs, cross.rec)
	}
	if err := a.o.Store.PutGenerations(ctx, recs...); err != nil {
		return nil, fmt.Errorf("record the root rollover: %w", err)
	}
	step("root rollover recorded")
	if overlap <= 0 {
		if err := a.o.Store.ActivateHierarchy(ctx, hier, now); err != nil {
			return nil, err
		}
	}
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	r := &RootRollover{Hierarchy: hier, ActiveFrom: activeFrom}
	for _, g := range a.Generations() {
		switch g.ID {
		case old.rec.ID:
			r.OldRoot = g
		case root.rec.ID:
			r.NewRoot = g
		case oldWithNew.rec.ID:
			r.OldWithNew = g
		case newWithOld.rec.ID:
			r.NewWithOld = g
		case inter.rec.ID:
			r.NewIntermediate = g
		}
	}
	a.metrics.rollovers.WithLabelValues(hier, RoleRoot).Inc()
	a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "CA root rollover started",
		slog.String("hierarchy", hier), slog.String("old_root", old.rec.ID), slog.String("old_sha256", r.OldRoot.Fingerprint),
		slog.String("new_root", root.rec.ID), slog.String("new_sha256", r.NewRoot.Fingerprint),
		slog.String("new_intermediate", inter.rec.ID), slog.Time("active_from", activeFrom))
	return r, nil
}

// linkCertificate certifies subject's root key with issuer's root key
// (RFC 4210 4.4): OldWithNew when subject is the old root, NewWithOld
// when it is the new. It keeps the subject root's name, key identifier
// and constraints, and is valid from the subject root's own notBefore
// (OldWithNew: the old root's whole validity; NewWithOld: from the new
// root's notBefore) until the older root expires.
// Made with crypto/x509, as every new kind of certificate here.
func (a *Authority) linkCertificate(subject, issuer *generation, now time.Time) (*generation, error) {
	notAfter := subject.cert.NotAfter
	if issuer.cert.NotAfter.Before(notAfter) {
		notAfter = issuer.cert.NotAfter
	}
	serial, err := randomSerial(now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            subject.cert.RawSubject,
		NotBefore:             subject.cert.NotBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            subject.cert.MaxPathLen,
		MaxPathLenZero:        subject.cert.MaxPathLenZero,
		SubjectKeyId:          subject.cert.SubjectKeyId,
		// crypto/x509 leaves out the authority key identifier of a
		// self-issued certificate; a link certificate needs it, or
		// verifiers take it for a self-signed one.
		AuthorityKeyId: issuer.cert.SubjectKeyId,
	}
	cert, err := issuer.certify(tmpl, subject.cert.PublicKey)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s-root-%d-by-%d", subject.rec.Hierarchy, subject.rec.Seq, issuer.rec.Seq)
	return &generation{
		rec: &store.Generation{ID: id, Hierarchy: subject.rec.Hierarchy, Role: RoleLink, Seq: subject.rec.Seq, ParentID: issuer.rec.ID,
			State: store.StateActive, CertDER: cert.Raw, CreatedAt: now},
		cert: cert, parent: issuer,
	}, nil
}

// crossCertificate certifies inter's key, under inter's name, with the
// old root (see RoleCross), valid as long as both inter and the old root.
func (a *Authority) crossCertificate(inter, oldRoot *generation, now time.Time) (*generation, error) {
	notAfter := inter.cert.NotAfter
	if oldRoot.cert.NotAfter.Before(notAfter) {
		notAfter = oldRoot.cert.NotAfter
	}
	serial, err := randomSerial(now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, RawSubject: inter.cert.RawSubject,
		NotBefore: now.Add(-a.o.Backdate), NotAfter: notAfter,
		KeyUsage: inter.cert.KeyUsage, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		SubjectKeyId:          inter.cert.SubjectKeyId,
		OCSPServer:            []string{a.ocspURL()},
		CRLDistributionPoints: []string{a.crlURL(oldRoot.rec.ID)},
		IssuingCertificateURL: []string{a.issuerURL(oldRoot.rec.ID)},
	}
	cert, err := oldRoot.certify(tmpl, inter.cert.PublicKey)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s-int-%d-by-root-%d", inter.rec.Hierarchy, inter.rec.Seq, oldRoot.rec.Seq)
	return &generation{
		rec: &store.Generation{ID: id, Hierarchy: inter.rec.Hierarchy, Role: RoleCross, Seq: inter.rec.Seq, ParentID: oldRoot.rec.ID,
			State: store.StateActive, CertDER: cert.Raw, CreatedAt: now},
		cert: cert, parent: oldRoot,
	}, nil
}

// ActivateDue ends the overlap of every root rollover whose time has
// come: the new root and intermediate become active, the old ones
// retiring. It returns the hierarchies activated.
func (a *Authority) ActivateDue(ctx context.Context) ([]string, error) {
	now := a.o.Clock()
	due := map[string]bool{}
	for _, g := range a.Generations() {
		if g.State == store.StateNext && !now.Before(g.ActiveFrom) {
			due[g.Hierarchy] = true
		}
	}
	var done []string
	for _, h := range Hierarchies {
		if !due[h] {
			continue
		}
		if err := a.o.Store.ActivateHierarchy(ctx, h, now); err != nil && !errors.Is(err, store.ErrConflict) {
			return done, err
		}
		done = append(done, h)
		a.o.Logger.Warn("CA root rollover: the new hierarchy is active", "hierarchy", h)
	}
	if len(done) > 0 {
		return done, a.Reload(ctx)
	}
	return nil, nil
}

// RootLifeUsed is the share of its life the active root of hier has used.
func (a *Authority) RootLifeUsed(hier string) float64 {
	for _, g := range a.Generations() {
		if g.Hierarchy == hier && g.Role == RoleRoot && g.State == store.StateActive {
			return LifeUsed(g.Cert.NotBefore, g.Cert.NotAfter, a.o.Clock())
		}
	}
	return 0
}
