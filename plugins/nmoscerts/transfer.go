package nmoscerts

import (
	"strings"

	"github.com/coredns/coredns/plugin/transfer"

	"github.com/miekg/dns"
)

// Transfer implements transfer.Transferer: the zone for AXFR, or for an
// IXFR from a secondary that has this serial already, its SOA alone (the
// transfer plugin answers it as up to date); any older serial gets the
// whole zone (RFC 1995 4: a server may answer IXFR with the full zone).
// Who may transfer, and with which TSIG key, the transfer and tsig
// plugins before this one decide.
func (n *NMOSCerts) Transfer(zone string, serial uint32) (<-chan []dns.RR, error) {
	if !strings.EqualFold(dns.Fqdn(zone), n.zone.origin) {
		return nil, transfer.ErrNotAuthoritative
	}
	recs := n.Records()
	soa := recs[0].(*dns.SOA) // the zone's records start with its SOA
	ch := make(chan []dns.RR, 2)
	if serial != 0 && !serialNewer(soa.Serial, serial) {
		ch <- []dns.RR{soa}
		close(ch)
		return ch, nil
	}
	ch <- recs
	ch <- []dns.RR{dns.Copy(soa)}
	close(ch)
	return ch, nil
}

// serialNewer says whether serial a is newer than b in RFC 1982 serial
// number arithmetic.
func serialNewer(a, b uint32) bool { return a != b && int32(a-b) > 0 }
