package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
)

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
	c, err := b.a.ca.Revoke(ctx, serial, reason)
	if err == nil {
		// This process's OCSP answers change now, not at the event
		// watcher's next poll (which rebuilds the CRL, here and in any
		// process sharing the store).
		b.a.ocsp.Invalidate(c.IssuerID, serial)
	}
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
	v.OCSP = b.ocspAnswer(ctx, c.DER)
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
