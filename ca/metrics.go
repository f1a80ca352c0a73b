package ca

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

type metrics struct {
	issuedTotal  *prometheus.CounterVec
	refusedTotal *prometheus.CounterVec
	signSeconds  prometheus.Histogram
	rollovers    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, a *Authority) (*metrics, error) {
	m := &metrics{
		issuedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_ca_issued_total",
			Help: "Certificates issued, by key type (ecdsa, rsa) and profile (leaf, server, ocsp).",
		}, []string{"key_type", "profile"}),
		refusedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_ca_refused_total",
			Help: "Certificate requests refused by policy, by reason.",
		}, []string{"reason"}),
		signSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nmos_certs_ca_sign_duration_seconds",
			Help:    "Time to sign and durably record a certificate.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		rollovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_ca_rollovers_total",
			Help: "CA generations rolled over by this process, by hierarchy and level (intermediate, root).",
		}, []string{"hierarchy", "level"}),
	}
	expiry := prometheus.NewDesc("nmos_certs_ca_cert_expiry_timestamp_seconds",
		"notAfter of each CA certificate, as a Unix timestamp.", []string{"generation", "hierarchy", "role", "state"}, nil)
	collector := &expiryCollector{desc: expiry, a: a}
	for _, c := range []prometheus.Collector{m.issuedTotal, m.refusedTotal, m.signSeconds, m.rollovers, collector} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	for _, h := range Hierarchies {
		for _, p := range []string{ProfileLeaf, ProfileServer, ProfileOCSP} {
			m.issuedTotal.WithLabelValues(h, p)
		}
		m.rollovers.WithLabelValues(h, RoleIntermediate)
	}
	// A rate over a series that appears only with its first refusal sees
	// nothing: every reason is there at 0 from the start.
	for _, code := range policy.Codes {
		m.refusedTotal.WithLabelValues(code)
	}
	return m, nil
}

func (m *metrics) issued(hier, profile string, d time.Duration) {
	m.issuedTotal.WithLabelValues(hier, profile).Inc()
	if d > 0 {
		m.signSeconds.Observe(d.Seconds())
	}
}

// CountEvent counts in this process's metrics a certificate that another
// process sharing the store issued or refused (store.EventIssued,
// store.EventRefused), so that /metrics agrees with the records.
func (a *Authority) CountEvent(e store.Event) {
	switch e.Kind {
	case store.EventIssued:
		if hier, profile, ok := strings.Cut(e.Ref, "/"); ok && slices.Contains(Hierarchies, hier) &&
			slices.Contains([]string{ProfileLeaf, ProfileServer, ProfileOCSP}, profile) {
			a.metrics.issuedTotal.WithLabelValues(hier, profile).Inc()
		}
	case store.EventRefused:
		if e.Ref != "" && len(e.Ref) <= 32 {
			a.metrics.refusedTotal.WithLabelValues(e.Ref).Inc()
		}
	}
}

func (m *metrics) refused(err error) {
	var r *policy.Refusal
	if errors.As(err, &r) {
		m.refusedTotal.WithLabelValues(r.Code).Inc()
	}
}

type expiryCollector struct {
	desc *prometheus.Desc
	a    *Authority
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.a.Generations() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(g.Cert.NotAfter.Unix()),
			g.ID, g.Hierarchy, g.Role, string(g.State))
	}
}
