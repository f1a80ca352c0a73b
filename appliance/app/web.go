package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
)

type webGeneration struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	State       string    `json:"state"`
	Key         string    `json:"key"`
	NotAfter    time.Time `json:"not_after"`
	Issued      int       `json:"issued"`
	Fingerprint string    `json:"fingerprint"`
	LifeUsed    float64   `json:"life_used"`
	RolloverDue bool      `json:"rollover_due"`
}

type webPending struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Subject   string    `json:"subject"`
	Names     []string  `json:"names"`
	Client    string    `json:"client"`
}

type webCertificate struct {
	Serial   string    `json:"serial"`
	Status   string    `json:"status"`
	Issuer   string    `json:"issuer"`
	Key      string    `json:"key"`
	NotAfter time.Time `json:"not_after"`
	Names    []string  `json:"names"`
	Identity string    `json:"identity"`
}

type webStatus struct {
	Version      string           `json:"version"`
	Now          time.Time        `json:"now"`
	Generations  []webGeneration  `json:"generations"`
	Pending      []webPending     `json:"pending"`
	Certificates []webCertificate `json:"certificates"`
}

// webHandler is the operator UI (webroot) over this appliance: sign-in
// against the store's accounts, and its actions through the same calls
// and audit records as the CLI's.
func (a *App) webHandler() (*webroot.Server, error) {
	return webroot.New(webroot.Options{
		Accounts: a.store,
		Backend:  webBackend{a},
		Logger:   a.log.With("component", "web"),
		Clock:    a.o.Clock,
	})
}

type webBackend struct{ a *App }

func (b webBackend) Status(ctx context.Context) (any, error) { return b.a.status(ctx) }

func (b webBackend) Decide(ctx context.Context, id string, approve bool, actor, remote string) error {
	st := store.PendingDenied
	if approve {
		st = store.PendingApproved
	}
	// The audit record commits with the decision.
	ctx = store.WithAudit(ctx, &store.AuditRecord{At: b.a.o.Clock(), Actor: actor, Remote: remote, Action: "request_" + string(st)})
	_, err := b.a.store.DecidePending(ctx, id, st, actor, b.a.o.Clock())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no request %q: %w", id, webroot.ErrNotFound)
	}
	return err
}

func (b webBackend) Revoke(ctx context.Context, serialText, reasonName, actor, remote string) error {
	serial, err := store.ParseSerial(serialText)
	if err != nil {
		return fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
	}
	reason, err := ca.ParseReason(reasonName)
	if err != nil {
		return fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
	}
	name, _ := ca.ReasonName(reason)
	// The audit record commits with the revocation.
	ctx = store.WithAudit(ctx, &store.AuditRecord{At: b.a.o.Clock(), Actor: actor, Remote: remote, Action: "certificate_revoked", Detail: "reason " + name})
	_, err = b.a.ca.Revoke(ctx, serial, reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no certificate with serial %s: %w", store.SerialKey(serial), webroot.ErrNotFound)
	case errors.Is(err, store.ErrAlreadyRevoked):
		return fmt.Errorf("certificate %s was already revoked", store.SerialKey(serial))
	}
	return err
}

func (b webBackend) Certificate(ctx context.Context, serialText string) (*webroot.CertificateView, error) {
	serial, err := store.ParseSerial(serialText)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
	}
	c, err := b.a.store.Certificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no certificate with serial %s: %w", store.SerialKey(serial), webroot.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	v := &webroot.CertificateView{Serial: store.SerialKey(c.Serial), Status: "valid", Issuer: c.IssuerID, Subject: c.Subject, Names: nonNil(c.SANs),
		Key: c.KeyType, NotBefore: c.NotBefore, NotAfter: c.NotAfter, IssuedAt: c.IssuedAt, Identity: c.Identity, Holder: c.Holder, Profile: c.Profile}
	switch {
	case c.Revoked:
		v.Status = "revoked"
		at := c.RevokedAt
		v.RevokedAt = &at
		v.Reason, _ = ca.ReasonName(c.Reason)
	case !b.a.o.Clock().Before(c.NotAfter):
		v.Status = "expired"
	}
	block := func(der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	v.PEM, v.ChainPEM = block(c.DER), block(c.DER)
	if x, err := x509.ParseCertificate(c.DER); err == nil {
		for _, p := range b.a.ca.ChainFor(x) {
			v.ChainPEM += block(p.Raw)
		}
	}
	return v, nil
}

func (b webBackend) Config(ctx context.Context) (*webroot.ConfigView, error) {
	a := b.a
	a.reloadMu.Lock()
	cfg, at, failed := a.cfg, a.lastReload, a.lastReloadErr
	a.reloadMu.Unlock()
	y, err := cfg.Redacted()
	if err != nil {
		return nil, err
	}
	return &webroot.ConfigView{Source: cfg.Source, YAML: y, ReloadOK: failed == "", ReloadAt: at, ReloadErr: failed,
		Reloadable: cfg.Source != config.EmbeddedSource}, nil
}

func (b webBackend) Reload(ctx context.Context, actor, remote string) error {
	a := b.a
	a.reloadMu.Lock()
	src := a.cfg.Source
	a.reloadMu.Unlock()
	if src == config.EmbeddedSource {
		return fmt.Errorf("the appliance serves the embedded default configuration: there is no file to reload")
	}
	err := a.ReloadFile(ctx, src)
	rec := &store.AuditRecord{At: a.o.Clock(), Actor: actor, Remote: remote, Action: "config_reloaded", Target: src, Detail: "applied"}
	if err != nil {
		rec.Action, rec.Detail = "config_reload_failed", err.Error()
	}
	if aerr := a.store.AddAudit(ctx, rec); aerr != nil && err == nil {
		return aerr
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
	}
	return nil
}

func (b webBackend) ReleaseName(ctx context.Context, name, actor, remote string) error {
	_, err := b.a.store.ReleaseName(ctx, name, actor, remote, b.a.o.Clock())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s is not bound: %w", name, webroot.ErrNotFound)
	}
	return err
}

// status is the dashboard's data.
func (a *App) status(ctx context.Context) (*webStatus, error) {
	now := a.o.Clock()
	counts, err := a.store.CountCertificates(ctx)
	if err != nil {
		return nil, err
	}
	s := webStatus{Version: Version, Now: now.UTC(), Generations: []webGeneration{}, Pending: []webPending{}, Certificates: []webCertificate{}}
	for _, g := range a.ca.Generations() {
		key, _, _ := policy.KeyType(g.Cert.PublicKey)
		used := ca.LifeUsed(g.Cert.NotBefore, g.Cert.NotAfter, now)
		due := g.State == "active" && ((g.Role == ca.RoleIntermediate && used >= a.rollAt) || (g.Role == ca.RoleRoot && used >= a.rootAt))
		s.Generations = append(s.Generations, webGeneration{ID: g.ID, Role: g.Role, State: string(g.State), Key: key,
			NotAfter: g.Cert.NotAfter.UTC(), Issued: counts[g.ID], Fingerprint: g.Fingerprint, LifeUsed: used, RolloverDue: due})
	}
	pending, err := a.store.ListPending(ctx, store.PendingWaiting)
	if err != nil {
		return nil, err
	}
	for _, p := range pending {
		s.Pending = append(s.Pending, webPending{ID: p.ID, Operation: p.Operation, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt,
			Subject: p.Subject, Names: nonNil(p.SANs), Client: p.Client})
	}
	certs, err := a.store.ListCertificates(ctx, store.ListOptions{Limit: 50})
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		status := "valid"
		switch {
		case c.Revoked:
			status = "revoked"
		case now.After(c.NotAfter):
			status = "expired"
		}
		s.Certificates = append(s.Certificates, webCertificate{Serial: store.SerialKey(c.Serial), Status: status, Issuer: c.IssuerID,
			Key: c.KeyType, NotAfter: c.NotAfter, Names: nonNil(c.SANs), Identity: c.Identity})
	}
	return &s, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
