package app

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca"
)

// maintainCA rolls over, per hierarchy, an active intermediate that has
// used ca.intermediate_rollover_at of its life, and retires the retiring
// generations whose last certificate expired: at start, then hourly, by
// the injected clock. The change reaches the EST, OCSP and CRL services
// through the store's event feed, as a rollover made by the CLI does.
func (a *App) maintainCA(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		a.once(ctx, "ca-maintenance", a.caChecks)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// once runs a periodic job here, or, with a store that appliances share,
// only when none of the others runs it now (the job's lock goes with an
// appliance that dies, so another takes the job at its next turn).
func (a *App) once(ctx context.Context, job string, fn func(context.Context)) {
	if l, ok := a.store.(interface {
		Lead(context.Context, string, func(context.Context)) (bool, error)
	}); ok {
		if _, err := l.Lead(ctx, job, fn); err != nil && ctx.Err() == nil {
			a.log.Warn("taking a periodic job", "job", job, "err", err)
		}
		return
	}
	fn(ctx)
}

func (a *App) caChecks(ctx context.Context) {
	if done, err := a.ca.ActivateDue(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("activate the new hierarchy of a root rollover", "err", err)
	} else if len(done) > 0 {
		a.log.Info("root rollover overlap ended: the new hierarchy issues", "hierarchies", done)
	}
	for _, h := range ca.Hierarchies {
		used := a.ca.RootLifeUsed(h)
		if used < a.rootAt {
			continue
		}
		if a.autoRoot {
			r, err := a.ca.RolloverRoot(ctx, h, a.rootOverlap)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, ca.ErrRootRolloverUnderWay) {
					a.log.Error("automatic root rollover failed", "hierarchy", h, "err", err)
				}
				continue
			}
			a.log.Warn("root rolled over automatically", "hierarchy", h, "new_root", r.NewRoot.ID, "active_from", r.ActiveFrom)
			continue
		}
		if a.rootAnnounced[h].IsZero() || a.o.Clock().Sub(a.rootAnnounced[h]) >= 24*time.Hour {
			a.rootAnnounced[h] = a.o.Clock()
			a.log.Warn("a root rollover is due: run 'nmos-certs ca rollover root --hierarchy "+h+"' (or set ca.auto_root_rollover)",
				"hierarchy", h, "life_used", used)
		}
	}
	at := a.rollAt
	for _, h := range ca.Hierarchies {
		if used := a.ca.IntermediateLifeUsed(h); used >= at {
			r, err := a.ca.RolloverIntermediate(ctx, h, "scheduled")
			if err != nil {
				if ctx.Err() == nil {
					a.log.Error("scheduled intermediate rollover failed", "hierarchy", h, "life_used", used, "err", err)
				}
				continue
			}
			a.log.Info("intermediate rolled over on schedule", "hierarchy", h, "old", r.Old.ID, "new", r.New.ID)
		}
	}
	a.checkOfflineCRLs(ctx)
	if counts, err := a.store.ValidCounts(ctx, a.o.Clock()); err == nil {
		a.validLeaves.Store(&counts)
	} else if ctx.Err() == nil {
		a.log.Warn("count the valid certificates of each generation", "err", err)
	}
	if _, err := a.ca.RetireExpired(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("retire expired CA generations", "err", err)
	}
}

// rolloverCollector says, per hierarchy and level, whether a rollover is
// due (the active intermediate, or the root, has used its share of life)
// and how much of its life each generation has used.
type rolloverCollector struct {
	a                *App
	due, used, valid *prometheus.Desc
}

func newRolloverCollector(a *App) *rolloverCollector {
	return &rolloverCollector{
		a: a,
		due: prometheus.NewDesc("nmos_certs_ca_rollover_due",
			"1 when the active generation of a hierarchy at a level (intermediate, root) has used its share of life before rollover (ca.intermediate_rollover_at; 80 % for roots).",
			[]string{"hierarchy", "level"}, nil),
		used: prometheus.NewDesc("nmos_certs_ca_cert_life_used_ratio",
			"Share of its validity period each CA certificate has used, 0 to 1.",
			[]string{"generation", "hierarchy", "role", "state"}, nil),
		valid: prometheus.NewDesc("nmos_certs_ca_valid_certificates",
			"Certificates each CA generation issued that are still valid (not expired, not revoked), counted hourly.",
			[]string{"generation", "state"}, nil),
	}
}

func (c *rolloverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.due
	ch <- c.used
	ch <- c.valid
}

func (c *rolloverCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.a.o.Clock()
	due := map[[2]string]float64{}
	for _, h := range ca.Hierarchies {
		due[[2]string{h, ca.RoleIntermediate}] = 0
		due[[2]string{h, ca.RoleRoot}] = 0
	}
	for _, g := range c.a.ca.Generations() {
		used := ca.LifeUsed(g.Cert.NotBefore, g.Cert.NotAfter, now)
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, used, g.ID, g.Hierarchy, g.Role, string(g.State))
		if counts := c.a.validLeaves.Load(); counts != nil && g.Role != ca.RoleLink && g.Role != ca.RoleCross {
			ch <- prometheus.MustNewConstMetric(c.valid, prometheus.GaugeValue, float64((*counts)[g.ID]), g.ID, string(g.State))
		}
		if g.State != "active" {
			continue
		}
		threshold := c.a.rollAt
		if g.Role == ca.RoleRoot {
			threshold = c.a.rootAt
		}
		if used >= threshold {
			due[[2]string{g.Hierarchy, g.Role}] = 1
		}
	}
	for k, v := range due {
		ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, v, k[0], k[1])
	}
}

// crlHandler publishes each generation's CRL: the one the appliance
// builds, or for a root whose key is offline the one last imported
// (ca import-crl), which nothing here can sign again.
func (a *App) crlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/crl/")
		id, ext, _ := strings.Cut(name, ".")
		held := false
		for _, is := range a.ca.Issuers() {
			held = held || is.ID == id
		}
		if !held && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if der, _, _, err := a.store.StaticCRL(r.Context(), id); err == nil {
				body, ctype := der, "application/pkix-crl"
				if ext == "pem" {
					body, ctype = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), "application/x-pem-file"
				} else if ext != "crl" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", ctype)
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				if r.Method == http.MethodGet {
					_, _ = w.Write(body)
				}
				return
			}
		}
		a.crl.ServeHTTP(w, r)
	})
}

// offlineCRLWarning is how long before an offline root's CRL expires the
// appliance asks for the next (log, /readyz): only the root's key can
// sign it.
const offlineCRLWarning = 30 * 24 * time.Hour

// offlineRootCRL is the CRL published for a root whose key is offline.
type offlineRootCRL struct {
	root   string
	number int64
	next   time.Time // zero when none is published
	err    error     // why none could be read
}

// offlineRootCRLs returns the CRL of each root, not retired, whose key is
// offline.
func (a *App) offlineRootCRLs(ctx context.Context) []offlineRootCRL {
	var out []offlineRootCRL
	for _, g := range a.ca.Generations() {
		if g.Role != ca.RoleRoot || g.KeyHeld || g.State == "retired" {
			continue
		}
		c := offlineRootCRL{root: g.ID}
		if _, c.number, c.next, c.err = a.store.StaticCRL(ctx, g.ID); c.err != nil {
			c.next = time.Time{} // none: as urgent as an expired one
		}
		out = append(out, c)
	}
	return out
}

// checkOfflineCRLs warns, daily, about an offline root's CRL that
// expires within offlineCRLWarning.
func (a *App) checkOfflineCRLs(ctx context.Context) {
	for _, c := range a.offlineRootCRLs(ctx) {
		if c.next.Sub(a.o.Clock()) < offlineCRLWarning && a.o.Clock().Sub(a.crlWarned[c.root]) >= 24*time.Hour {
			a.crlWarned[c.root] = a.o.Clock()
			a.log.Warn("the offline root's CRL expires soon: sign the next where the root key is (ca crl-request, ca sign-crl, ca import-crl)",
				"root", c.root, "number", c.number, "next_update", c.next)
		}
	}
}
