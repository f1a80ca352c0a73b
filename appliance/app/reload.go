package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/est"
)

// restartKeys are the settings a running appliance cannot change: they
// decide what is bound, where the data lives and what the CA is.
func restartKeys(old, next *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("domain", old.Domain, next.Domain)
	diff("hostname", old.Hostname, next.Hostname)
	diff("data_dir", old.DataDir, next.DataDir)
	diff("listen", old.Listen, next.Listen)
	// The name settings are reloadable; the rest of the CA is not.
	oldCA, nextCA := old.CA, next.CA
	oldCA.ReservedNames, oldCA.NameBinding, oldCA.NameBindingGrace = nil, "", 0
	nextCA.ReservedNames, nextCA.NameBinding, nextCA.NameBindingGrace = nil, "", 0
	diff("ca", oldCA, nextCA)
	diff("ocsp", old.OCSP, next.OCSP)
	diff("crl", old.CRL, next.CRL)
	diff("store", old.Store, next.Store)
	diff("log.format", old.Log.Format, next.Log.Format)
	diff("est.server_cert_renew_before", old.EST.ServerCertRenewBefore, next.EST.ServerCertRenewBefore)
	return keys
}

// estHandler serves the current EST server; a reload swaps it.
type estHandler struct{ p atomic.Pointer[est.Server] }

func (h *estHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.p.Load().ServeHTTP(w, r) }

type reloadMetrics struct {
	ok   prometheus.Gauge
	last prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nmos_certs_config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded (1) or failed (0).",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nmos_certs_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully.",
		}),
	}
	reg.MustRegister(m.ok, m.last)
	m.ok.Set(1)
	m.last.Set(float64(time.Now().Unix()))
	return m
}

// ErrRestartNeeded is returned by Reload when the new configuration
// changes settings that only a restart applies.
var ErrRestartNeeded = errors.New("restart needed")

// ReloadFile reads the configuration file at path, checks it and the
// files it names, and applies it with Reload. A file that cannot be read,
// parsed or validated is a failed reload like any other: the running
// configuration stays, the error is logged and
// nmos_certs_config_last_reload_successful drops to 0.
func (a *App) ReloadFile(ctx context.Context, path string) error {
	next, err := config.LoadFile(path)
	if err == nil {
		err = next.CheckFiles()
	}
	if err != nil {
		a.reloadMu.Lock()
		defer a.reloadMu.Unlock()
		a.reloads.ok.Set(0)
		a.lastReload, a.lastReloadErr = a.o.Clock(), err.Error()
		a.log.Error("configuration reload failed; the running configuration is unchanged", "err", err)
		return err
	}
	return a.Reload(ctx, next)
}

// Reload applies a new configuration to the running appliance: the EST
// section (manufacturer roots and CRLs, manual approval and the other
// enrollment settings), the reserved names and name binding, the DNS-SD
// records and the log level. It is a
// transaction: everything new is built first, then swapped in; on any
// error the running configuration stays as it was and the error says why.
func (a *App) Reload(ctx context.Context, next *config.Config) (err error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	defer func() {
		a.lastReload, a.lastReloadErr = a.o.Clock(), ""
		if err != nil {
			a.lastReloadErr = err.Error()
			a.reloads.ok.Set(0)
			a.log.Error("configuration reload failed; the running configuration is unchanged", "err", err)
			return
		}
		a.reloads.ok.Set(1)
		a.reloads.last.Set(float64(a.o.Clock().Unix()))
		a.log.Info("configuration reloaded", "source", next.Source)
	}()
	if keys := restartKeys(a.cfg, next); len(keys) > 0 {
		return fmt.Errorf("%s changed: %w to apply", strings.Join(keys, ", "), ErrRestartNeeded)
	}
	old := a.cfg
	a.cfg = next
	estSrv, trust, err := a.newEST(ctx)
	if err != nil {
		a.cfg = old
		return err
	}
	push, err := newPushState(next)
	if err != nil {
		a.cfg = old
		return fmt.Errorf("dns.push: %w", err)
	}
	live, _ := livePeers(next, a.nodes)
	if a.dns != nil {
		var opts dns.Options
		live, opts, err = a.reloadPeers(next)
		if err == nil {
			err = a.dns.Reload(opts)
		}
		if err != nil {
			a.cfg = old
			return fmt.Errorf("dns: %w", err)
		}
	}
	a.livePeers = live
	a.reloadPush(push)
	a.estHandler.p.Store(estSrv)
	a.ca.SetNames(a.namesFor(next))
	a.swapTrust(trust)
	if a.o.LogLevel != nil {
		_ = a.o.LogLevel.UnmarshalText([]byte(next.Log.Level))
	}
	return nil
}

// swapTrust replaces the manufacturer trust and its CRL refresh loop.
func (a *App) swapTrust(t *est.Trust) {
	a.trustMu.Lock()
	defer a.trustMu.Unlock()
	if a.trustStop != nil {
		a.trustStop()
		a.trustStop = nil
	}
	a.trust = t
	if t != nil && a.runCtx != nil {
		ctx, cancel := context.WithCancel(a.runCtx)
		a.trustStop = cancel
		a.wg.Add(1)
		go func() { defer a.wg.Done(); t.Run(ctx) }()
	}
}
