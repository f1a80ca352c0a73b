package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

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
