package app

import (
	"context"
	"crypto/rsa"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca"
)

// healthHandler answers /healthz: the process is alive and serving HTTP.
func (a *App) healthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
}

// readyCheck is one thing /readyz looks at.
type readyCheck struct {
	name string
	err  error
}

// readiness checks every service: the listeners serve, the CA has an
// active issuer with its key for each hierarchy, the appliance has its
// TLS certificates, and the store takes a write.
func (a *App) readiness(ctx context.Context) []readyCheck {
	var out []readyCheck
	check := func(name string, err error) { out = append(out, readyCheck{name, err}) }

	serving := a.serving.Load()
	for _, name := range []string{"est", "http", "metrics", "web"} {
		if a.listeners[name] == nil {
			continue
		}
		var err error
		if !serving {
			err = fmt.Errorf("not serving")
		}
		check("listener "+name, err)
	}
	var dnsErr error
	if a.dns == nil || !a.dns.Addr().IsValid() {
		dnsErr = fmt.Errorf("not serving")
	}
	check("dns", dnsErr)

	active := map[string]bool{}
	for _, g := range a.ca.Generations() {
		if g.Role == ca.RoleIntermediate && g.State == "active" && g.KeyHeld && a.o.Clock().Before(g.Cert.NotAfter) {
			active[g.Hierarchy] = true
		}
	}
	var caErr error
	if p := a.caErr.Load(); p != nil {
		caErr = fmt.Errorf("the CA could not load the generations on record: %w", *p)
	}
	for _, h := range ca.Hierarchies {
		if !active[h] {
			caErr = fmt.Errorf("no valid active %s intermediate with its key", strings.ToUpper(h))
		}
	}
	check("ca", caErr)

	var tlsErr error
	if len(a.server.get()) == 0 {
		tlsErr = fmt.Errorf("no TLS certificate")
	}
	check("tls certificates", tlsErr)

	// An offline root's CRL, which only the root's key can sign again.
	for _, c := range a.offlineRootCRLs(ctx) {
		var crlErr error
		switch {
		case c.err != nil:
			crlErr = fmt.Errorf("no CRL is published for the offline root: sign one where its key is (ca crl-request, ca sign-crl, ca import-crl)")
		case c.next.Sub(a.o.Clock()) < offlineCRLWarning:
			crlErr = fmt.Errorf("CRL %d of the offline root expires %s: sign the next (ca crl-request, ca sign-crl, ca import-crl)", c.number, c.next.UTC().Format(time.RFC3339))
		}
		check("offline root CRL "+c.root, crlErr)
	}

	var storeErr error
	if w, ok := a.store.(interface{ CheckWritable(context.Context) error }); ok {
		storeErr = w.CheckWritable(ctx)
	}
	check("store", storeErr)
	return out
}

// readyHandler answers /readyz: 200 when every check passes, else 503;
// the body lists each check.
func (a *App) readyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		checks := a.readiness(ctx)
		status := http.StatusOK
		var b strings.Builder
		for _, c := range checks {
			if c.err != nil {
				status = http.StatusServiceUnavailable
				fmt.Fprintf(&b, "fail %s: %v\n", c.name, c.err)
			} else {
				fmt.Fprintf(&b, "ok %s\n", c.name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		fmt.Fprint(w, b.String())
	})
}

// ownCertsCollector reports when the appliance's own certificates
// expire: its TLS certificates (one per hierarchy) and the delegated OCSP
// responder certificates (one per issuer). Both are renewed by the
// appliance; an alert on these says the renewal is not happening.
type ownCertsCollector struct {
	a             *App
	tls, rsp, crl *prometheus.Desc
}

func newOwnCertsCollector(a *App) *ownCertsCollector {
	return &ownCertsCollector{
		a: a,
		tls: prometheus.NewDesc("nmos_certs_tls_cert_expiry_timestamp_seconds",
			"notAfter of the appliance's own TLS certificate of each hierarchy, as a Unix timestamp.", []string{"hierarchy"}, nil),
		rsp: prometheus.NewDesc("nmos_certs_ocsp_responder_cert_expiry_timestamp_seconds",
			"notAfter of the delegated OCSP responder certificate of each issuer, as a Unix timestamp.", []string{"issuer"}, nil),
		crl: prometheus.NewDesc("nmos_certs_offline_root_crl_next_update_timestamp_seconds",
			"nextUpdate of the CRL published for each root whose key is offline (signed with ca sign-crl), as a Unix timestamp.", []string{"root"}, nil),
	}
}

func (c *ownCertsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tls
	ch <- c.rsp
	ch <- c.crl
}

func (c *ownCertsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a.server != nil {
		for _, tc := range c.a.server.get() {
			if tc.Leaf == nil {
				continue
			}
			hier := ca.ECDSA
			if _, ok := tc.Leaf.PublicKey.(*rsa.PublicKey); ok {
				hier = ca.RSA
			}
			ch <- prometheus.MustNewConstMetric(c.tls, prometheus.GaugeValue, float64(tc.Leaf.NotAfter.Unix()), hier)
		}
	}
	if c.a.ca != nil {
		for _, crl := range c.a.offlineRootCRLs(context.Background()) {
			if crl.err == nil {
				ch <- prometheus.MustNewConstMetric(c.crl, prometheus.GaugeValue, float64(crl.next.Unix()), crl.root)
			}
		}
	}
	if c.a.ocsp != nil {
		for id, cert := range c.a.ocsp.ResponderCerts() {
			ch <- prometheus.MustNewConstMetric(c.rsp, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), id)
		}
	}
}
