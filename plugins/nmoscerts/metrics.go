package nmoscerts

import (
	"sync/atomic"

	"github.com/coredns/coredns/plugin"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// requestCount counts the queries the plugin answered (or refused), by
	// query type and response code.
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Counter of queries answered by the nmoscerts plugin, by query type and response code.",
	}, []string{"type", "rcode"})

	// advertisements is the number of advertised service instances.
	advertisements = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "advertisements",
		Help:      "Number of DNS-SD service instances advertised, by zone and service type.",
	}, []string{"zone", "service"})
)

// The type label takes a few values only, so that a client cannot create
// series at will; everything else is "other".
var typeLabels = [...]string{"other", "A", "AAAA", "ANY", "NS", "PTR", "SOA", "SRV", "TXT"}

func typeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 1
	case dns.TypeAAAA:
		return 2
	case dns.TypeANY:
		return 3
	case dns.TypeNS:
		return 4
	case dns.TypePTR:
		return 5
	case dns.TypeSOA:
		return 6
	case dns.TypeSRV:
		return 7
	case dns.TypeTXT:
		return 8
	}
	return 0
}

// The response codes the plugin produces.
var rcodeLabels = [...]string{"NOERROR", "NXDOMAIN", "REFUSED", "NOTIMP", "FORMERR"}

func rcodeIndex(rc int) int {
	switch rc {
	case dns.RcodeNameError:
		return 1
	case dns.RcodeRefused:
		return 2
	case dns.RcodeNotImplemented:
		return 3
	case dns.RcodeFormatError:
		return 4
	}
	return 0
}

// counters caches the children of requestCount, so that counting a query
// neither hashes label values nor allocates. A slot is filled on first use,
// so only label pairs that occur are exported.
var counters [len(typeLabels) * len(rcodeLabels)]atomic.Pointer[prometheus.Counter]

func countRequest(qtype uint16, rcode int) {
	ti, ri := typeIndex(qtype), rcodeIndex(rcode)
	slot := &counters[ti*len(rcodeLabels)+ri]
	c := slot.Load()
	if c == nil {
		// Concurrent first uses store the same child: WithLabelValues
		// returns the existing one.
		child := requestCount.WithLabelValues(typeLabels[ti], rcodeLabels[ri])
		c = &child
		slot.Store(c)
	}
	(*c).Inc()
}

// publishAdvertisements sets the advertisements gauge for the zone.
func (n *NMOSCerts) publishAdvertisements() {
	for service, count := range n.zone.counts {
		advertisements.WithLabelValues(n.zone.origin, service).Set(float64(count))
	}
}

// withdrawAdvertisements removes the zone's series from the gauge.
func (n *NMOSCerts) withdrawAdvertisements() {
	advertisements.DeletePartialMatch(prometheus.Labels{"zone": n.zone.origin})
}
