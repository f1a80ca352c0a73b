package app

import (
	"context"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
)

// pushState is the dns.push of the running configuration, and the
// records it sends.
type pushState struct {
	pusher       *dns.Pusher // nil when pushing is off
	recs         []mdns.RR
	server, zone string
	refresh      time.Duration
	removeOnStop bool
}

type pushMetrics struct {
	total   *prometheus.CounterVec
	success prometheus.Gauge
}

func newPushMetrics(reg prometheus.Registerer) *pushMetrics {
	m := &pushMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_dns_push_total",
			Help: "RFC 2136 updates sent to the facility's DNS server (dns.push), by result (ok, error).",
		}, []string{"result"}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nmos_certs_dns_push_last_success_timestamp_seconds",
			Help: "When the facility's DNS server last took the appliance's records, as a Unix timestamp (0: never since the start).",
		}),
	}
	m.total.WithLabelValues("ok")
	m.total.WithLabelValues("error")
	reg.MustRegister(m.total, m.success)
	return m
}

// newPushState builds the pusher of cfg (nil when dns.push is off) and
// the records it sends.
func newPushState(cfg *config.Config) (*pushState, error) {
	p, ok, err := pushOptions(cfg)
	if err != nil || !ok {
		return &pushState{}, err
	}
	pusher, err := dns.NewPusher(p)
	if err != nil {
		return nil, err
	}
	o, err := dnsOptions(cfg)
	if err != nil {
		return nil, err
	}
	recs, err := dns.PushRecords(o)
	if err != nil {
		return nil, err
	}
	return &pushState{pusher: pusher, recs: recs, server: p.Server, zone: p.Zone,
		refresh: cfg.DNS.Push.Refresh.D(), removeOnStop: cfg.DNS.Push.RemoveOnStop}, nil
}

// pushRetry is how soon a failed push is tried again.
const pushRetry = time.Minute

// pushLoop does all the work of dns.push, one thing at a time: it sends
// the records at start, after each reload (pushNow) and every
// dns.push.refresh (a failed push again after a minute); when a reload
// turns pushing off it takes back what was pushed; at the end, with
// dns.push.remove_on_stop, too. (A reload that moves the push to another
// server or zone: the next push takes the records back from the old one.)
func (a *App) pushLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	var last *pushState
	for {
		select {
		case <-ctx.Done():
			if last != nil && last.pusher != nil && last.removeOnStop {
				a.withdrawPush(last, "the appliance stops")
			}
			return
		case <-a.pushNow:
		case <-t.C:
		}
		st := a.push.Load()
		if st.pusher == nil {
			if last != nil && last.pusher != nil {
				a.withdrawPush(last, "dns.push was turned off")
			}
			last = st
			t.Reset(time.Hour) // off; a reload that turns it on wakes the loop
			continue
		}
		last = st
		next := st.refresh
		if err := a.pushOnce(ctx, st); err != nil {
			next = min(pushRetry, st.refresh)
		}
		t.Reset(next)
	}
}

// pushOnce sends st's records.
func (a *App) pushOnce(ctx context.Context, st *pushState) error {
	if err := st.pusher.Sync(ctx, st.recs); err != nil {
		a.pushMet.total.WithLabelValues("error").Inc()
		a.log.Warn("pushing the DNS-SD records to the facility's DNS server failed", "server", st.server, "zone", st.zone, "err", err)
		return err
	}
	a.pushMet.total.WithLabelValues("ok").Inc()
	a.pushMet.success.Set(float64(a.o.Clock().Unix()))
	a.log.Info("DNS-SD records pushed", "server", st.server, "zone", st.zone, "records", len(st.recs))
	return nil
}

// withdrawPush takes back the records st pushed.
func (a *App) withdrawPush(st *pushState, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.pusher.Withdraw(ctx); err != nil {
		a.log.Warn("taking the DNS-SD records back from the facility's DNS server failed", "why", why, "server", st.server, "err", err)
		return
	}
	a.log.Info("DNS-SD records taken back from the facility's DNS server", "why", why, "server", st.server)
}

// reloadPush applies a reloaded dns.push: pushLoop sends at once (or
// takes the records back when pushing was turned off).
func (a *App) reloadPush(st *pushState) {
	a.push.Store(st)
	select {
	case a.pushNow <- struct{}{}:
	default:
	}
}
