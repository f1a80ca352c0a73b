package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// ErrRootKeyNotHeld is returned by RolloverIntermediate when the root
// that must sign the new intermediate is offline.
var ErrRootKeyNotHeld = errors.New("the root key is not held on this appliance (an offline root)")

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
		return nil, fmt.Errorf("%s: %w; the new intermediate must be signed where the root key is", root.rec.ID, ErrRootKeyNotHeld)
	}
	now := a.o.Clock().Truncate(time.Second)
	if !now.Before(root.cert.NotAfter) {
		return nil, fmt.Errorf("root %s expired at %s: roll the root over", root.rec.ID, root.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	seq++
	id := a.genID(hier, RoleIntermediate, seq)
	algo, size := "ecdsa", 256
	if hier == RSA {
		algo, size = "rsa", a.o.RSAIntermediateBits
	}
	key, err := newKey(algo, size)
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
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
	rec := &store.Generation{ID: id, Hierarchy: hier, Role: RoleIntermediate, Seq: seq, ParentID: root.rec.ID,
		State: store.StateActive, CertDER: cert.Raw, KeyFile: filepath.Join("ca", id+".key"), CreatedAt: now}
	if err := writeKey(filepath.Join(a.o.DataDir, rec.KeyFile), key); err != nil {
		return nil, fmt.Errorf("write key of %s: %w", id, err)
	}
	if err := a.o.Store.RollGeneration(ctx, rec, old.rec.ID, store.StateRetiring); err != nil {
		return nil, fmt.Errorf("record the rollover to %s: %w", id, err)
	}
	if err := a.Reload(ctx); err != nil {
		return nil, fmt.Errorf("load the new generation %s: %w", id, err)
	}
	r := &Rollover{Hierarchy: hier, Reason: reason}
	for _, g := range a.Generations() {
		switch g.ID {
		case old.rec.ID:
			r.Old = g
		case id:
			r.New = g
		}
	}
	a.metrics.rollovers.WithLabelValues(hier, RoleIntermediate).Inc()
	a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "CA intermediate rolled over",
		slog.String("hierarchy", hier), slog.String("reason", reason),
		slog.String("old", old.rec.ID), slog.String("old_sha256", r.Old.Fingerprint),
		slog.String("new", id), slog.String("new_sha256", r.New.Fingerprint),
		slog.Time("new_not_after", cert.NotAfter))
	return r, nil
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
	for _, g := range a.Generations() {
		if g.State != store.StateRetiring {
			continue
		}
		last, err := a.o.Store.LatestNotAfter(ctx, g.ID)
		if err != nil {
			return retired, err
		}
		if now.Before(last) {
			continue
		}
		if err := a.o.Store.SetGenerationState(ctx, g.ID, store.StateRetired); err != nil {
			return retired, err
		}
		retired = append(retired, g.ID)
		a.o.Logger.Info("CA generation retired: its last certificate expired", "generation", g.ID, "last_not_after", last)
	}
	if len(retired) > 0 {
		if err := a.Reload(ctx); err != nil {
			return retired, err
		}
	}
	return retired, nil
}
