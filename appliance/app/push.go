package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
)

// pushState is the dns.push of the running configuration.
type pushState struct {
	pusher       *dns.Pusher // nil when pushing is off
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

// newPushState builds the pusher of cfg (nil when dns.push is off).
func newPushState(cfg *config.Config) (*pushState, error) {
	p, ok, err := pushOptions(cfg)
	if err != nil || !ok {
		return &pushState{}, err
	}
	pusher, err := dns.NewPusher(p)
	if err != nil {
		return nil, err
	}
	return &pushState{pusher: pusher, refresh: cfg.DNS.Push.Refresh.D(), removeOnStop: cfg.DNS.Push.RemoveOnStop}, nil
}

// pushRetry is how soon a failed push is tried again.
const pushRetry = time.Minute

// pushLoop sends the records at start, after each reload (pushNow), and
// every dns.push.refresh (a failed push again after a minute); at the
// end, with dns.push.remove_on_stop, it takes them back.
func (a *App) pushLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.withdrawPush()
			return
		case <-a.pushNow:
		case <-t.C:
		}
		st := a.push.Load()
		if st.pusher == nil {
			t.Reset(time.Hour) // off; a reload that turns it on wakes the loop
			continue
		}
		next := st.refresh
		if err := a.pushOnce(ctx, st); err != nil {
			next = min(pushRetry, st.refresh)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// pushOnce sends the running configuration's records.
func (a *App) pushOnce(ctx context.Context, st *pushState) error {
	a.reloadMu.Lock()
	cfg := a.cfg
	a.reloadMu.Unlock()
	o, err := dnsOptions(cfg)
	if err == nil {
		rrs, rerr := dns.PushRecords(o)
		if err = rerr; err == nil {
			err = st.pusher.Sync(ctx, rrs)
		}
	}
	if err != nil {
		a.pushMet.total.WithLabelValues("error").Inc()
		a.log.Warn("pushing the DNS-SD records to the facility's DNS server failed", "server", cfg.DNS.Push.Server, "zone", cfg.DNS.Push.Zone, "err", err)
		return err
	}
	a.pushMet.total.WithLabelValues("ok").Inc()
	a.pushMet.success.Set(float64(a.o.Clock().Unix()))
	a.log.Info("DNS-SD records pushed", "server", cfg.DNS.Push.Server, "zone", cfg.DNS.Push.Zone)
	return nil
}

// withdrawPush takes the records back at the end, when asked to.
func (a *App) withdrawPush() {
	st := a.push.Load()
	if st.pusher == nil || !st.removeOnStop {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.pusher.Withdraw(ctx); err != nil {
		a.log.Warn("taking the DNS-SD records back from the facility's DNS server failed", "err", err)
		return
	}
	a.log.Info("DNS-SD records taken back from the facility's DNS server")
}

// reloadPush applies a reloaded dns.push: the new pusher sends at once;
// when pushing was turned off, what was pushed is taken back.
func (a *App) reloadPush(ctx context.Context, st *pushState) {
	old := a.push.Swap(st)
	if old.pusher != nil && st.pusher == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := old.pusher.Withdraw(wctx); err != nil {
			a.log.Warn("taking the DNS-SD records back after dns.push was turned off failed", "err", err)
		}
	}
	select {
	case a.pushNow <- struct{}{}:
	default:
	}
}
