package nmoscerts

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// reply is a precomputed answer to one (name, type) question: everything but
// the header ID and the question, which are copied from the query.
type reply struct {
	rcode  int
	answer []dns.RR
	ns     []dns.RR
	extra  []dns.RR

	// negative replies (NXDOMAIN, NODATA) serve any name; wire holds their
	// authority section. Positive replies serve one question; wire holds
	// the whole message and qend is where its question's name ends.
	negative bool
	wire     []byte
	qend     int
}

// node is a name that exists in the zone. An empty non-terminal (such as
// _tcp.<zone>) has no replies: every type gets NODATA.
type node struct {
	replies map[uint16]*reply
}

// zone is the precomputed, read-only data of one plugin instance. It is built
// once at setup and shared by all queries without locking.
type zone struct {
	origin   string           // lower-case, canonical, fully qualified
	nodes    map[string]*node // keyed by lower-case canonical owner name
	nodata   *reply           // NOERROR, SOA in authority
	nxdomain *reply           // NXDOMAIN, SOA in authority
	records  []dns.RR         // every record served, in a stable order
	counts   map[string]int   // advertisements per service type
}

// rrset groups the records of one owner name and type, in configuration order.
type rrset struct {
	owner string // lower-case key
	rtype uint16
	rrs   []dns.RR
}

// builder accumulates records while the zone is built.
type builder struct {
	sets  map[string]map[uint16]*rrset
	order []*rrset
	hosts map[string][]netip.Addr // in-zone host name -> addresses
}

func (b *builder) add(rr dns.RR) {
	h := rr.Header()
	key := strings.ToLower(h.Name)
	byType := b.sets[key]
	if byType == nil {
		byType = map[uint16]*rrset{}
		b.sets[key] = byType
	}
	s := byType[h.Rrtype]
	if s == nil {
		s = &rrset{owner: key, rtype: h.Rrtype}
		byType[h.Rrtype] = s
		b.order = append(b.order, s)
	}
	s.rrs = append(s.rrs, rr)
}

func (b *builder) get(owner string, t uint16) []dns.RR {
	if s := b.sets[strings.ToLower(owner)][t]; s != nil {
		return s.rrs
	}
	return nil
}

// buildZone validates cfg and builds the zone's records and replies.
func buildZone(cfg Config) (*zone, error) {
	origin, err := checkZone(cfg.Zone)
	if err != nil {
		return nil, err
	}
	host, err := checkHostname(cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if !inZone(host, origin) {
		return nil, fmt.Errorf("hostname %s is not inside zone %s", host, origin)
	}
	addrs, err := checkAddresses(cfg.Addresses)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	if !slices.ContainsFunc(addrs, netip.Addr.Is4) {
		return nil, errors.New("address: at least one IPv4 address is required (BCP-003-03 requires an A record for the EST server)")
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl > maxTTL {
		return nil, fmt.Errorf("ttl %d is more than %d seconds", ttl, maxTTL)
	}
	if len(cfg.Services) == 0 {
		return nil, errors.New("no service configured")
	}

	b := &builder{sets: map[string]map[uint16]*rrset{}, hosts: map[string][]netip.Addr{host: addrs}}
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}

	// Zone apex: SOA and NS. The SOA minimum is the negative-caching TTL.
	serial := cfg.Serial
	if serial == 0 {
		serial = uint32(time.Now().Unix())
	}
	soa := &dns.SOA{
		Hdr: hdr(origin, dns.TypeSOA), Ns: host, Mbox: "hostmaster." + origin,
		Serial: serial, Refresh: 7200, Retry: 1800, Expire: 1209600, Minttl: ttl,
	}
	b.add(soa)
	b.add(&dns.NS{Hdr: hdr(origin, dns.TypeNS), Ns: host})

	// Browse domains (RFC 6763 section 11): this zone is the one to browse.
	for _, l := range []string{"b", "db", "lb"} {
		b.add(&dns.PTR{Hdr: hdr(l+"._dns-sd._udp."+origin, dns.TypePTR), Ptr: origin})
	}

	// Resolve targets and their addresses first, so that SRV records can be
	// checked against known hosts.
	targets := make([]string, len(cfg.Services))
	for i := range cfg.Services {
		s := &cfg.Services[i]
		t := host
		if s.Target != "" {
			if t, err = checkHostname(s.Target); err != nil {
				return nil, fmt.Errorf("%s: target: %w", s.where(i), err)
			}
		}
		targets[i] = t
		if len(s.TargetAddresses) == 0 {
			continue
		}
		if !inZone(t, origin) {
			return nil, fmt.Errorf("%s: target %s is outside zone %s, so it cannot have addresses here", s.where(i), t, origin)
		}
		ta, err := checkAddresses(s.TargetAddresses)
		if err != nil {
			return nil, fmt.Errorf("%s: target %s: %w", s.where(i), t, err)
		}
		if prev, ok := b.hosts[t]; ok && !sameAddrs(prev, ta) {
			return nil, fmt.Errorf("%s: target %s has other addresses elsewhere in the configuration", s.where(i), t)
		}
		b.hosts[t] = ta
	}
	for i, t := range targets {
		if _, ok := b.hosts[t]; !ok && inZone(t, origin) {
			return nil, fmt.Errorf("%s: target %s is inside zone %s but has no address", cfg.Services[i].where(i), t, origin)
		}
	}

	// Addresses of the in-zone hosts, the appliance's own first.
	hostNames := []string{host}
	for _, t := range targets {
		if t != host && !slices.Contains(hostNames, t) && len(b.hosts[t]) > 0 {
			hostNames = append(hostNames, t)
		}
	}
	for _, h := range hostNames {
		for _, a := range b.hosts[h] {
			if a.Is4() {
				b.add(&dns.A{Hdr: hdr(h, dns.TypeA), A: net.IP(a.AsSlice())})
			} else {
				b.add(&dns.AAAA{Hdr: hdr(h, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
			}
		}
	}

	// Advertisements: PTR type -> instance, SRV and TXT at the instance.
	var types []string
	counts := map[string]int{}
	instances := map[string]string{} // lower-case instance owner -> where
	tuples := map[string]string{}    // derived-name inputs -> where
	for i := range cfg.Services {
		s := &cfg.Services[i]
		st, err := checkServiceType(s.Type)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		if err := checkUint16("port", s.Port, 1); err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		if err := checkUint16("pri", s.Priority, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		if err := checkUint16("weight", s.Weight, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		if s.APISelector != "" {
			if err := checkAPISelector(s.APISelector); err != nil {
				return nil, fmt.Errorf("%s: %w", s.where(i), err)
			}
		}
		if err := checkTXT(s.TXT); err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		tuple := fmt.Sprintf("%s %s %d %d %s", st, targets[i], s.Port, s.Priority, s.APISelector)
		if prev, ok := tuples[tuple]; ok {
			return nil, fmt.Errorf("%s: same type, target, port, pri and api_selector as %s", s.where(i), prev)
		}
		tuples[tuple] = s.where(i)

		label := s.Instance
		if label == "" {
			label = defaultInstance(targets[i], s.Port, s.Priority, s.APISelector)
		}
		if err := checkInstance(label); err != nil {
			return nil, fmt.Errorf("%s: %w", s.where(i), err)
		}
		typeName := st + "." + origin
		owner, err := canonicalName(escapeLabel(label) + "." + typeName)
		if err != nil {
			return nil, fmt.Errorf("%s: instance %q: %w", s.where(i), label, err)
		}
		if prev, ok := instances[strings.ToLower(owner)]; ok {
			return nil, fmt.Errorf("%s: instance %q is already used by %s", s.where(i), label, prev)
		}
		instances[strings.ToLower(owner)] = s.where(i)

		if !slices.Contains(types, typeName) {
			types = append(types, typeName)
		}
		counts[st]++
		b.add(&dns.PTR{Hdr: hdr(typeName, dns.TypePTR), Ptr: owner})
		b.add(&dns.SRV{Hdr: hdr(owner, dns.TypeSRV), Priority: uint16(s.Priority), Weight: uint16(s.Weight), Port: uint16(s.Port), Target: targets[i]})
		txt := []string{"pri=" + strconv.Itoa(s.Priority)}
		if s.APISelector != "" {
			txt = append(txt, "api_selector="+s.APISelector)
		}
		for _, p := range s.TXT {
			txt = append(txt, escapeTXT(p))
		}
		b.add(&dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: txt})
	}

	// Service type enumeration (RFC 6763 section 9).
	for _, t := range types {
		b.add(&dns.PTR{Hdr: hdr("_services._dns-sd._udp."+origin, dns.TypePTR), Ptr: t})
	}

	return b.compile(origin, soa, counts)
}

// compile turns the record sets into replies, with the additional records
// RFC 6763 section 12 recommends, and adds the empty non-terminals.
func (b *builder) compile(origin string, soa *dns.SOA, counts map[string]int) (*zone, error) {
	z := &zone{origin: origin, nodes: map[string]*node{}, counts: counts}

	addrsOf := func(host string) []dns.RR {
		return append(slices.Clone(b.get(host, dns.TypeA)), b.get(host, dns.TypeAAAA)...)
	}
	targetsOf := func(srvs []dns.RR, extra []dns.RR) []dns.RR {
		var seen []string
		for _, rr := range srvs {
			t := strings.ToLower(rr.(*dns.SRV).Target)
			if !slices.Contains(seen, t) {
				seen = append(seen, t)
				extra = append(extra, addrsOf(t)...)
			}
		}
		return extra
	}

	for _, s := range b.order {
		var extra []dns.RR
		switch s.rtype {
		case dns.TypePTR:
			// A service type's PTR carries each instance's SRV and TXT and
			// the targets' addresses (RFC 6763 section 12.1).
			var srvs []dns.RR
			for _, rr := range s.rrs {
				inst := rr.(*dns.PTR).Ptr
				srv := b.get(inst, dns.TypeSRV)
				srvs = append(srvs, srv...)
				extra = append(extra, srv...)
				extra = append(extra, b.get(inst, dns.TypeTXT)...)
			}
			extra = targetsOf(srvs, extra)
		case dns.TypeSRV:
			extra = targetsOf(s.rrs, nil) // RFC 6763 section 12.2
		case dns.TypeNS:
			extra = addrsOf(strings.ToLower(s.rrs[0].(*dns.NS).Ns))
		}
		n := z.node(s.owner)
		n.replies[s.rtype] = &reply{rcode: dns.RcodeSuccess, answer: slices.Clip(s.rrs), extra: slices.Clip(extra)}
		z.records = append(z.records, s.rrs...)
	}

	// ANY gets every record set of the name, without additional records.
	all := map[string][]dns.RR{}
	for _, s := range b.order {
		all[s.owner] = append(all[s.owner], s.rrs...)
	}
	for name, rrs := range all {
		z.nodes[name].replies[dns.TypeANY] = &reply{rcode: dns.RcodeSuccess, answer: slices.Clip(rrs)}
	}

	// Every ancestor of an owner name, down to the apex, exists (RFC 8020):
	// it answers NODATA rather than NXDOMAIN.
	for name := range b.sets {
		if name == origin {
			continue
		}
		for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
			parent := name[off:]
			if !inZone(parent, origin) {
				return nil, fmt.Errorf("record %s is outside zone %s", name, origin)
			}
			if _, ok := z.nodes[parent]; !ok {
				z.nodes[parent] = &node{}
			}
			if parent == origin {
				break
			}
		}
	}

	// Negative answers carry the SOA, with the negative TTL (RFC 2308 section 5).
	neg := dns.Copy(soa).(*dns.SOA)
	neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	z.nodata = &reply{rcode: dns.RcodeSuccess, ns: []dns.RR{neg}, negative: true}
	z.nxdomain = &reply{rcode: dns.RcodeNameError, ns: []dns.RR{neg}, negative: true}

	// The same replies, packed, for the prepacked mode.
	for _, r := range []*reply{z.nodata, z.nxdomain} {
		if err := r.packNegative(); err != nil {
			return nil, fmt.Errorf("pack negative reply: %w", err)
		}
	}
	for name, n := range z.nodes {
		for qtype, r := range n.replies {
			if err := r.pack(name, qtype); err != nil {
				return nil, fmt.Errorf("pack reply for %s %s: %w", name, dns.TypeToString[qtype], err)
			}
		}
	}
	return z, nil
}

func (z *zone) node(name string) *node {
	n := z.nodes[name]
	if n == nil || n.replies == nil {
		n = &node{replies: map[uint16]*reply{}}
		z.nodes[name] = n
	}
	return n
}

// lookup returns the precomputed reply for a lower-case canonical name in the zone.
func (z *zone) lookup(name string, qtype uint16) *reply {
	n, ok := z.nodes[name]
	if !ok {
		return z.nxdomain
	}
	if r := n.replies[qtype]; r != nil {
		return r
	}
	return z.nodata
}

// defaultInstance derives an instance label from what makes an advertisement
// distinct, e.g. "est 8443 pri 10" or "est 8443 pri 10 lab".
func defaultInstance(target string, port, pri int, selector string) string {
	first, _, _ := strings.Cut(target, ".")
	s := fmt.Sprintf("%s %d pri %d", first, port, pri)
	if selector != "" {
		s += " " + selector
	}
	return s
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
