package app

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
)

// Status is the dashboard.
func (b webBackend) Status(ctx context.Context) (*webroot.StatusView, error) {
	a := b.a
	now := a.o.Clock()
	s := &webroot.StatusView{Version: Version, Now: now.UTC(), Certificates: []webroot.CertificateRow{}}
	for _, c := range a.readiness(ctx) {
		h := webroot.HealthView{Name: c.name, OK: c.err == nil}
		if c.err != nil {
			h.Detail = c.err.Error()
		}
		s.Health = append(s.Health, h)
	}
	gens, err := b.generations(ctx)
	if err != nil {
		return nil, err
	}
	s.Generations = gens
	if s.Pending, err = b.Pending(ctx); err != nil {
		return nil, err
	}
	page, err := a.store.SearchCertificates(ctx, store.CertificateQuery{Limit: 10})
	if err != nil {
		return nil, err
	}
	for _, c := range page.Certificates {
		s.Certificates = append(s.Certificates, b.row(c, now))
	}
	if s.Issued24h, err = a.store.CountIssuedSince(ctx, now.Add(-24*time.Hour)); err != nil {
		return nil, err
	}
	if total, ok := a.refusedTotal(); ok {
		s.Refused24h, s.RefusedSince = a.refused.since(now.Add(-24*time.Hour), total)
	}
	s.CRLs = b.crls(ctx)
	for _, tc := range a.server.get() {
		if tc.Leaf != nil {
			use := "TLS (ECDSA)"
			if _, ok := tc.Leaf.PublicKey.(*rsa.PublicKey); ok {
				use = "TLS (RSA)"
			}
			s.OwnCertificates = append(s.OwnCertificates, webroot.OwnCertView{Use: use, Subject: tc.Leaf.Subject.String(), NotAfter: tc.Leaf.NotAfter})
		}
	}
	rsp := a.ocsp.ResponderCerts()
	ids := make([]string, 0, len(rsp))
	for id := range rsp {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s.OwnCertificates = append(s.OwnCertificates, webroot.OwnCertView{Use: "OCSP responder for " + id, Subject: rsp[id].Subject.String(), NotAfter: rsp[id].NotAfter})
	}
	s.RecentErrors = a.recent.list()
	s.Appliances = a.applianceViews()
	return s, nil
}

// generations describes every CA generation, with its leaves counted.
func (b webBackend) generations(ctx context.Context) ([]webroot.GenerationView, error) {
	a := b.a
	now := a.o.Clock()
	counts, err := a.store.CountCertificates(ctx)
	if err != nil {
		return nil, err
	}
	var out []webroot.GenerationView
	for _, g := range a.ca.Generations() {
		key, _, _ := policy.KeyType(g.Cert.PublicKey)
		used := ca.LifeUsed(g.Cert.NotBefore, g.Cert.NotAfter, now)
		due := g.State == store.StateActive && ((g.Role == ca.RoleIntermediate && used >= a.rollAt) || (g.Role == ca.RoleRoot && used >= a.rootAt))
		out = append(out, webroot.GenerationView{ID: g.ID, Hierarchy: g.Hierarchy, Role: g.Role, State: string(g.State), Key: key, KeyHeld: g.KeyHeld,
			Parent: g.ParentID, Subject: g.Cert.Subject.String(), NotBefore: g.Cert.NotBefore.UTC(), NotAfter: g.Cert.NotAfter.UTC(),
			Issued: counts[g.ID], Fingerprint: g.Fingerprint, LifeUsed: used, RolloverDue: due})
	}
	return out, nil
}

// crls are the CRLs the appliance publishes: those it builds and the
// offline roots' imported ones.
func (b webBackend) crls(ctx context.Context) []webroot.CRLView {
	a := b.a
	now := a.o.Clock()
	url := func(id string) string { return strings.TrimSuffix(a.cfg.CA.BaseURL, "/") + "/crl/" + id + ".crl" }
	var out []webroot.CRLView
	for _, c := range a.crl.Published() {
		half := c.ThisUpdate.Add(c.NextUpdate.Sub(c.ThisUpdate) / 2)
		out = append(out, webroot.CRLView{Issuer: c.IssuerID, Number: c.Number, Entries: c.Entries, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate,
			Stale: !now.Before(half), URL: url(c.IssuerID)})
	}
	for _, c := range a.offlineRootCRLs(ctx) {
		if c.err == nil {
			out = append(out, webroot.CRLView{Issuer: c.root + " (offline root)", Number: c.number, NextUpdate: c.next,
				Stale: c.next.Sub(now) < offlineCRLWarning, URL: url(c.root)})
		}
	}
	return out
}

func (b webBackend) row(c *store.Certificate, now time.Time) webroot.CertificateRow {
	return webroot.CertificateRow{Serial: store.SerialKey(c.Serial), Status: certStatus(c, now), Issuer: c.IssuerID, Key: c.KeyType,
		Subject: c.Subject, NotAfter: c.NotAfter, Names: nonNil(c.SANs), Identity: c.Identity}
}

func certStatus(c *store.Certificate, now time.Time) string {
	switch {
	case c.Revoked:
		return "revoked"
	case !now.Before(c.NotAfter):
		return "expired"
	}
	return "valid"
}

// Pending lists the waiting requests with what the operator decides on.
func (b webBackend) Pending(ctx context.Context) ([]webroot.PendingView, error) {
	list, err := b.a.store.ListPending(ctx, store.PendingWaiting)
	if err != nil {
		return nil, err
	}
	out := []webroot.PendingView{}
	for _, p := range list {
		v := webroot.PendingView{ID: p.ID, Operation: p.Operation, CreatedAt: p.CreatedAt, ExpiresAt: p.ExpiresAt, Subject: p.Subject,
			Names: nonNil(p.SANs), Client: p.Client, Remote: p.Remote, Holder: p.Holder, KeyFingerprint: hex.EncodeToString(p.SPKIHash),
			Conflicts: []webroot.ConflictView{}}
		if csr, err := x509.ParseCertificateRequest(p.CSR); err == nil {
			v.Key, _, _ = policy.KeyType(csr.PublicKey)
			sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
			v.KeyFingerprint = hex.EncodeToString(sum[:])
		}
		for _, c := range p.Conflicts {
			name, holder, _ := strings.Cut(c, "\t")
			v.Conflicts = append(v.Conflicts, webroot.ConflictView{Name: name, Holder: holder})
		}
		out = append(out, v)
	}
	return out, nil
}

// Certificates is a page of the operator's search.
func (b webBackend) Certificates(ctx context.Context, q webroot.CertificateSearch) (*webroot.CertificateList, error) {
	now := b.a.o.Clock()
	sq := store.CertificateQuery{Name: q.Name, Identity: q.Identity, IssuerID: q.Issuer, Status: q.Status, Now: now, Limit: q.Limit}
	if q.Serial != "" {
		serial, err := store.ParseSerial(q.Serial)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
		}
		sq.Serial = store.SerialKey(serial)
	}
	sq.After = q.Before
	page, err := b.a.store.SearchCertificates(ctx, sq)
	if errors.Is(err, store.ErrBadQuery) {
		return nil, fmt.Errorf("%v: %w", err, webroot.ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	out := &webroot.CertificateList{Certificates: []webroot.CertificateRow{}}
	for _, c := range page.Certificates {
		out.Certificates = append(out.Certificates, b.row(c, now))
	}
	out.Next = page.Next
	return out, nil
}

// ocspAnswer asks the appliance's own responder about c, as a client
// would, and reads its answer.
func (b webBackend) ocspAnswer(ctx context.Context, der []byte) *webroot.OCSPView {
	v := &webroot.OCSPView{}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		v.Error = "the certificate does not parse: " + err.Error()
		return v
	}
	chain := b.a.ca.ChainFor(leaf)
	if len(chain) == 0 {
		v.Error = "its issuer is not known here"
		return v
	}
	body, err := askOCSP(ctx, b.a.ocsp, leaf, chain[0])
	if err != nil {
		v.Error = err.Error()
		return v
	}
	resp, err := xocsp.ParseResponseForCert(body, leaf, chain[0])
	if err != nil {
		v.Error = "the answer does not verify: " + err.Error()
		return v
	}
	v.Status, v.ProducedAt, v.NextUpdate = ocspStatusName(resp.Status), resp.ProducedAt, resp.NextUpdate
	if resp.Status == xocsp.Revoked {
		v.Reason, _ = ca.ReasonName(resp.RevocationReason)
	}
	return v
}

// CA lists the generations by hierarchy, and the CRLs.
func (b webBackend) CA(ctx context.Context) (*webroot.CAView, error) {
	gens, err := b.generations(ctx)
	if err != nil {
		return nil, err
	}
	v := &webroot.CAView{CRLs: b.crls(ctx)}
	for _, h := range ca.Hierarchies {
		hv := webroot.HierarchyView{Name: h}
		for _, g := range gens {
			if g.Hierarchy == h {
				hv.Generations = append(hv.Generations, g)
			}
		}
		v.Hierarchies = append(v.Hierarchies, hv)
	}
	return v, nil
}

// RolloverPlan says what a rollover would do, from the generations as
// they are.
func (b webBackend) RolloverPlan(ctx context.Context, hier, kind string) (*webroot.RolloverPlan, error) {
	a := b.a
	if !slices.Contains(ca.Hierarchies, hier) {
		return nil, fmt.Errorf("hierarchy %q: want %s: %w", hier, strings.Join(ca.Hierarchies, " or "), webroot.ErrInvalid)
	}
	plan := &webroot.RolloverPlan{Hierarchy: hier, Kind: kind, Possible: true}
	var root, inter *ca.GenerationInfo
	next := false
	for _, g := range a.ca.Generations() {
		if g.Hierarchy != hier {
			continue
		}
		g := g
		switch {
		case g.State == store.StateNext:
			next = true
		case g.State == store.StateActive && g.Role == ca.RoleRoot:
			root = &g
		case g.State == store.StateActive && g.Role == ca.RoleIntermediate:
			inter = &g
		}
	}
	if root == nil || inter == nil {
		plan.Possible, plan.Why = false, "the hierarchy has no active root and intermediate"
		return plan, nil
	}
	switch kind {
	case "intermediate":
		plan.From = inter.ID
		plan.Steps = []string{
			fmt.Sprintf("A new key and intermediate certificate are made under the root %s, and the new intermediate issues every certificate from then on.", root.ID),
			fmt.Sprintf("%s stops issuing and retires when its last certificate expires; until then OCSP and its CRL keep answering for what it issued.", inter.ID),
			"Devices keep their certificates: they chain to the same root. They receive the new intermediate with their next certificate and in /cacerts.",
			"The appliance's own TLS and OCSP responder certificates move to the new intermediate.",
		}
		if !root.KeyHeld {
			plan.Possible = false
			plan.Why = fmt.Sprintf("the key of %s is offline: make the new intermediate in the offline-root ceremony (nmos-certs ca rollover intermediate --hierarchy %s --csr-out FILE, then ca sign-intermediate where the root key is, then ca import-intermediate)", root.ID, hier)
		}
	case "root":
		plan.From = root.ID
		overlap := a.rootOverlap
		plan.Steps = []string{
			fmt.Sprintf("A new root is made for the %s hierarchy, with the link certificates NewWithOld and OldWithNew (RFC 4210 4.4) valid until %s expires, and an intermediate under the new root.", hier, root.ID),
			"The new root and the link certificates are published in /cacerts at once, so that devices learn the new root while they still trust the old.",
			fmt.Sprintf("After the overlap (ca.root_rollover_overlap, %s) the new hierarchy issues; %s and %s retire with their last certificates.", overlap, root.ID, inter.ID),
			"Devices must trust the new root before their next certificate comes from it: they fetch /cacerts when they renew.",
		}
		if next {
			plan.Possible, plan.Why = false, "a root rollover of this hierarchy is already under way"
		}
		if !root.KeyHeld {
			plan.Possible, plan.Why = false, fmt.Sprintf("the key of %s is offline: a root rollover needs the old root's key to certify the new one", root.ID)
		}
	default:
		return nil, fmt.Errorf("kind %q: want intermediate or root: %w", kind, webroot.ErrInvalid)
	}
	return plan, nil
}

// Rollover makes the rollover the plan describes, audited as the CLI's.
func (b webBackend) Rollover(ctx context.Context, hier, kind, from, actor, remote string) (string, error) {
	a := b.a
	// One rollover at a time: the plan is read and acted on under one
	// lock, so a second press of the button finds the generation it
	// names replaced and does nothing.
	a.rolloverMu.Lock()
	defer a.rolloverMu.Unlock()
	plan, err := b.RolloverPlan(ctx, hier, kind)
	if err != nil {
		return "", err
	}
	if !plan.Possible {
		return "", fmt.Errorf("%s", plan.Why)
	}
	if from == "" {
		return "", fmt.Errorf("say which generation the rollover replaces (from; now %s): %w", plan.From, webroot.ErrInvalid)
	}
	if from != plan.From {
		return "", fmt.Errorf("%s is no longer the active %s of %s (%s is): the rollover was made already", from, kind, hier, plan.From)
	}
	rec := &store.AuditRecord{At: a.o.Clock(), Actor: actor, Remote: remote}
	var msg string
	switch kind {
	case "intermediate":
		r, err := a.ca.RolloverIntermediate(ctx, hier, "superseded")
		if err != nil {
			return "", err
		}
		rec.Action, rec.Target = "intermediate_rollover", r.New.ID
		rec.Detail = fmt.Sprintf("%s replaces %s (reason superseded); old SHA-256 %s, new SHA-256 %s", r.New.ID, r.Old.ID, r.Old.Fingerprint, r.New.Fingerprint)
		msg = fmt.Sprintf("%s is active; %s is retiring", r.New.ID, r.Old.ID)
	case "root":
		r, err := a.ca.RolloverRoot(ctx, hier, a.rootOverlap)
		if err != nil {
			return "", err
		}
		rec.Action, rec.Target = "root_rollover", r.NewRoot.ID
		rec.Detail = fmt.Sprintf("%s succeeds %s from %s; new SHA-256 %s; links %s, %s; intermediate %s", r.NewRoot.ID, r.OldRoot.ID,
			r.ActiveFrom.UTC().Format(time.RFC3339), r.NewRoot.Fingerprint, r.NewWithOld.ID, r.OldWithNew.ID, r.NewIntermediate.ID)
		msg = fmt.Sprintf("new root %s issues from %s", r.NewRoot.ID, r.ActiveFrom.UTC().Format(time.RFC3339))
	}
	if err := a.store.AddAudit(ctx, rec); err != nil {
		a.log.Warn("recording a rollover in the audit", "err", err)
	}
	// The store recorded the rollover with an event: this process and
	// any other sharing the store load the new generations from it.
	return msg, nil
}

// refusedSamples keeps the refused-requests counter every ten minutes
// for a day, so the dashboard can say how many were refused in the last
// 24 hours.
type refusedSamples struct {
	mu      sync.Mutex
	samples []refusedSample
}

type refusedSample struct {
	at    time.Time
	total float64
}

func (r *refusedSamples) add(at time.Time, total float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, refusedSample{at, total})
	// Keep the newest sample older than a day, and all after it.
	for len(r.samples) > 2 && at.Sub(r.samples[1].at) > 24*time.Hour {
		r.samples = r.samples[1:]
	}
}

// since counts what was refused from the newest sample at or before
// from (or the oldest sample, if none is that old) to total, and says
// from when it counted.
func (r *refusedSamples) since(from time.Time, total float64) (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return int(total), time.Time{}
	}
	base := r.samples[0]
	for _, s := range r.samples {
		if s.at.After(from) {
			break
		}
		base = s
	}
	return int(total - base.total), base.at
}

// refusedTotal reads the CA's refused-requests counter from the
// registry; ok is false when it could not be read.
func (a *App) refusedTotal() (total float64, ok bool) {
	mfs, err := a.reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() == "nmos_certs_ca_refused_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			ok = true
		}
	}
	return total, ok
}

// sampleRefused samples the refused counter every interval.
func (a *App) sampleRefused(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if total, ok := a.refusedTotal(); ok {
				a.refused.add(a.o.Clock(), total)
			}
		}
	}
}

// recentLog keeps the last warnings and errors logged, for the
// dashboard: the message and the component that logged it for everyone,
// the attributes for admins. A message repeated in a row is counted, not
// kept again.
type recentLog struct {
	mu   sync.Mutex
	max  int
	recs []webroot.LogView
}

func (l *recentLog) list() []webroot.LogView {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]webroot.LogView, len(l.recs))
	for i, r := range l.recs {
		out[len(l.recs)-1-i] = r // newest first
	}
	return out
}

func (l *recentLog) add(v webroot.LogView) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.recs); n > 0 && l.recs[n-1].Message == v.Message && l.recs[n-1].Component == v.Component && l.recs[n-1].Level == v.Level {
		last := &l.recs[n-1]
		last.At, last.Detail, last.Count = v.At, v.Detail, last.Count+1
		return
	}
	v.Count = 1
	l.recs = append(l.recs, v)
	if len(l.recs) > l.max {
		l.recs = l.recs[len(l.recs)-l.max:]
	}
}

// recentHandler passes records on to the logger's handler and keeps the
// warnings and errors in log.
type recentHandler struct {
	next      slog.Handler
	log       *recentLog
	component string
	attrs     []slog.Attr
	group     string
}

func (h recentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// maxDetail bounds the attributes kept of one record.
const maxDetail = 600

func (h recentHandler) Handle(ctx context.Context, r slog.Record) error {
	// CoreDNS's errors plugin logs each failed query, with names that any
	// host on the network chooses: not the appliance's own trouble.
	if r.Level >= slog.LevelWarn && !(h.component == "dns" && strings.HasPrefix(r.Message, "plugin/errors")) {
		var b strings.Builder
		write := func(prefix string, a slog.Attr) {
			a.Value = a.Value.Resolve() // a LogValuer says what it shows
			if a.Key == "" {
				return
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s%s=%s", prefix, a.Key, a.Value)
		}
		for _, a := range h.attrs {
			write("", a)
		}
		prefix := ""
		if h.group != "" {
			prefix = h.group + "."
		}
		r.Attrs(func(a slog.Attr) bool {
			write(prefix, a)
			return true
		})
		detail := b.String()
		if len(detail) > maxDetail {
			detail = strings.ToValidUTF8(detail[:maxDetail], "") + "…"
		}
		h.log.add(webroot.LogView{At: r.Time, Level: r.Level.String(), Component: h.component, Message: r.Message, Detail: detail})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h recentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := h
	out.next = h.next.WithAttrs(as)
	out.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	if h.group == "" {
		for _, a := range as {
			if a.Key == "component" {
				out.component = a.Value.String()
			}
		}
	}
	return out
}

func (h recentHandler) WithGroup(name string) slog.Handler {
	out := h
	out.next = h.next.WithGroup(name)
	if h.group != "" {
		name = h.group + "." + name
	}
	out.group = name
	return out
}
