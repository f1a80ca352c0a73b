package est

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors. No label carries a
// serial, a name or an address.
type metrics struct {
	requests *prometheus.CounterVec   // operation, outcome
	duration *prometheus.HistogramVec // operation
	auth     *prometheus.CounterVec   // method, outcome
}

// Auth decision label values.
const (
	methodManufacturer = "manufacturer" // a manufacturer certificate
	methodIssued       = "issued"       // a certificate this CA issued
	methodManual       = "manual"       // manual approval by an operator
	methodNone         = "none"         // no usable credential

	decisionAccepted = "accepted"
	decisionRefused  = "refused"
	decisionPending  = "pending"
)

func newMetrics(reg prometheus.Registerer, pending func() (n, oldest float64)) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_est_requests_total",
			Help: "EST requests by operation and outcome.",
		}, []string{"operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nmos_certs_est_request_duration_seconds",
			Help:    "Time to answer EST requests, by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nmos_certs_est_auth_decisions_total",
			Help: "EST client authorization decisions by method (manufacturer, issued, manual, none) and outcome (accepted, refused, pending).",
		}, []string{"method", "outcome"}),
	}
	if reg == nil {
		return m
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	m.auth = register(reg, m.auth)
	// The series a dashboard or an alert reads exist at 0 from the start
	// (a rate over a series that appears only with its first event sees
	// nothing).
	for _, op := range []string{opCACerts, opCSRAttrs, opEnroll, opReenroll, opServerKeyGen} {
		for _, o := range []string{"ok", "pending", "bad_request", "unauthorized", "forbidden", "error"} {
			m.requests.WithLabelValues(op, o)
		}
		m.duration.WithLabelValues(op)
	}
	for _, method := range []string{methodManufacturer, methodIssued, methodManual, methodNone} {
		for _, d := range []string{decisionAccepted, decisionRefused, decisionPending} {
			m.auth.WithLabelValues(method, d)
		}
	}
	if pending != nil {
		g := &pendingCollector{
			count: prometheus.NewDesc("nmos_certs_est_pending_requests",
				"Enrollment requests waiting for an operator's approval.", nil, nil),
			oldest: prometheus.NewDesc("nmos_certs_est_pending_oldest_age_seconds",
				"How long the oldest request still waiting for an operator's approval has waited (0 when none waits).", nil, nil),
			read: pending,
		}
		// A server built again on reload takes the gauges over: the old
		// ones read the approvals of the configuration being replaced.
		if err := reg.Register(g); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				reg.Unregister(are.ExistingCollector)
				_ = reg.Register(g)
			}
		}
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same description so that a server rebuilt on reload keeps counting
// in the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// pendingCollector reports the approval queue's length and the age of its
// oldest request from one read of the queue per scrape.
type pendingCollector struct {
	count, oldest *prometheus.Desc
	read          func() (n, oldest float64)
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.count
	ch <- c.oldest
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	n, oldest := c.read()
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, n)
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest)
}
