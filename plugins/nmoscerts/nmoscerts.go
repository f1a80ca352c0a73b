// Package nmoscerts is a CoreDNS plugin that serves a unicast DNS-SD zone
// (RFC 6763) advertising an AMWA BCP-003-03 EST server (_nmos-certs._tcp) and,
// optionally, other NMOS services.
//
// Every answer is computed once, when the plugin is set up; a query costs a
// map lookup and one message write, or, in the prepacked mode, a copy of
// bytes packed at setup. Multicast DNS is never used.
package nmoscerts

import (
	"context"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/tsig"

	"github.com/miekg/dns"
)

const pluginName = "nmoscerts"

// NMOSCerts is the plugin handler. It is authoritative for one zone.
type NMOSCerts struct {
	// Next is the next plugin in the chain.
	Next plugin.Handler
	// Fall passes queries outside the zone to Next instead of refusing them.
	Fall bool
	// Prepacked writes answers packed at setup with Write instead of
	// WriteMsg; see Config.Prepacked.
	Prepacked bool

	zone *zone
}

// New validates cfg and precomputes every answer of the zone. The returned
// handler has no Next plugin; set Next to chain it.
func New(cfg Config) (*NMOSCerts, error) {
	z, err := buildZone(cfg)
	if err != nil {
		return nil, err
	}
	return &NMOSCerts{zone: z, Fall: cfg.Fallthrough, Prepacked: cfg.Prepacked}, nil
}

// ServeDNS implements the plugin.Handler interface.
func (n *NMOSCerts) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) != 1 {
		// The server drops such messages before any plugin sees them; this
		// keeps the handler safe when it is called directly.
		countRequest(0, dns.RcodeFormatError)
		return dns.RcodeFormatError, nil
	}
	q := r.Question[0]
	qname := strings.ToLower(q.Name) // no allocation when already lower case
	if q.Qclass != dns.ClassINET || !inZone(qname, n.zone.origin) {
		if n.Fall {
			return plugin.NextOrFailure(n.Name(), n.Next, ctx, w, r)
		}
		countRequest(q.Qtype, dns.RcodeRefused)
		return dns.RcodeRefused, nil
	}
	if r.Opcode != dns.OpcodeQuery {
		countRequest(q.Qtype, dns.RcodeNotImplemented)
		return dns.RcodeNotImplemented, nil
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// No zone transfers: a NOERROR with the SOA alone would look
		// to a secondary like an empty zone (RFC 5936 2.2.1, REFUSED).
		countRequest(q.Qtype, dns.RcodeRefused)
		return dns.RcodeRefused, nil
	}

	rep := n.zone.lookup(qname, q.Qtype)
	// A request the tsig plugin checked comes without its TSIG record, and
	// its answer is signed as a message goes out: no packed bytes then.
	if _, signed := tsig.ValidatedKeyName(ctx); n.Prepacked && !signed && writePacked(w, r, q, qname, rep) {
		countRequest(q.Qtype, rep.rcode)
		return dns.RcodeSuccess, nil
	}
	m := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:               r.Id,
			Response:         true,
			Opcode:           dns.OpcodeQuery,
			Authoritative:    true,
			RecursionDesired: r.RecursionDesired,
			CheckingDisabled: r.CheckingDisabled,
			Rcode:            rep.rcode,
		},
		// Compress stays false: the server's writer turns compression on only
		// when the message does not fit uncompressed, and a writer that
		// measures the message first (the metrics recorder) does not pay
		// for a compression map.
		// The precomputed slices are shared by all queries. They have no
		// spare capacity, so a writer that appends (the OPT record, for one)
		// gets its own copy; nothing writes into them.
		Question: r.Question[:1:1],
		Answer:   rep.answer,
		Ns:       rep.ns,
		Extra:    rep.extra,
	}
	// The server's response writer fits the message to the client's buffer,
	// setting TC when it has to drop records, and adds the OPT record.
	w.WriteMsg(m)
	countRequest(q.Qtype, rep.rcode)
	return dns.RcodeSuccess, nil
}

// Name implements the plugin.Handler interface.
func (n *NMOSCerts) Name() string { return pluginName }

// Zone returns the zone the handler is authoritative for.
func (n *NMOSCerts) Zone() string { return n.zone.origin }

// Records returns a copy of every record the handler serves, in a stable
// order: apex, browse domains, host addresses, then the advertisements.
func (n *NMOSCerts) Records() []dns.RR {
	out := make([]dns.RR, len(n.zone.records))
	for i, rr := range n.zone.records {
		out[i] = dns.Copy(rr)
	}
	return out
}
