package ocsp

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Labels of nmos_certs_ocsp_responses_total, indexed by the answer kinds
// below.
var responseLabels = [...]string{"good", "revoked", "unknown", "unauthorized", "malformed", "internal_error"}

// Answer kinds; the first three equal the x/crypto/ocsp status codes.
const (
	kindGood = iota
	kindRevoked
	kindUnknown
	kindUnauthorized
	kindMalformed
	kindInternalError
)

type responderMetrics struct {
	responses   [len(responseLabels)]prometheus.Counter
	cacheHits   prometheus.Counter
	signSeconds prometheus.Histogram
}

func newResponderMetrics(reg prometheus.Registerer) (*responderMetrics, error) {
	responses, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nmos_certs_ocsp_responses_total",
		Help: "OCSP answers sent, by status.",
	}, []string{"status"}))
	if err != nil {
		return nil, err
	}
	m := &responderMetrics{}
	for i, l := range responseLabels {
		// Resolved once so that counting an answer is one atomic add.
		m.responses[i] = responses.WithLabelValues(l)
	}
	if m.cacheHits, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nmos_certs_ocsp_cache_hits_total",
		Help: "OCSP requests answered from the cache of signed answers.",
	})); err != nil {
		return nil, err
	}
	if m.signSeconds, err = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nmos_certs_ocsp_sign_duration_seconds",
		Help:    "Time to build and sign one OCSP answer.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	})); err != nil {
		return nil, err
	}
	return m, nil
}

type crlMetrics struct {
	number, bytes, thisUpdate, nextUpdate *prometheus.GaugeVec
}

func newCRLMetrics(reg prometheus.Registerer) (*crlMetrics, error) {
	gauge := func(name, help string) (*prometheus.GaugeVec, error) {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"issuer"}))
	}
	m := &crlMetrics{}
	var err error
	if m.number, err = gauge("nmos_certs_crl_number", "CRL Number of the CRL being served."); err != nil {
		return nil, err
	}
	if m.bytes, err = gauge("nmos_certs_crl_bytes", "Size of the DER CRL being served."); err != nil {
		return nil, err
	}
	if m.thisUpdate, err = gauge("nmos_certs_crl_this_update_timestamp_seconds", "thisUpdate of the CRL being served."); err != nil {
		return nil, err
	}
	if m.nextUpdate, err = gauge("nmos_certs_crl_next_update_timestamp_seconds", "nextUpdate of the CRL being served."); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *crlMetrics) forget(issuerID string) {
	for _, g := range []*prometheus.GaugeVec{m.number, m.bytes, m.thisUpdate, m.nextUpdate} {
		g.DeleteLabelValues(issuerID)
	}
}

// register registers c with reg (when not nil). A collector registered
// before, by an earlier Responder or Publisher on the same registry
// (after a configuration reload), is reused.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old, nil
			}
		}
		return c, err
	}
	return c, nil
}
