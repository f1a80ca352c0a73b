package dns

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/nmos-certs/nmos-certs/plugins/nmoscerts"
)

// Push sends the DNS-SD records into a zone of the facility's own DNS
// server by RFC 2136 dynamic update, signed with TSIG (RFC 8945).
type Push struct {
	// Server is the zone's primary, "HOST:PORT".
	Server string
	// Zone is the zone updated; the records must be inside it.
	Zone string
	Key  TSIGKey
	// StateFile keeps the records last pushed, so that those the
	// appliance no longer serves are removed after a restart too.
	StateFile string
	// Timeout bounds one update (default 10 s).
	Timeout time.Duration
}

// Pusher keeps a zone of another server in step with the appliance's
// records. The SRV and TXT records of the appliance's instances are its
// own: their RRsets are replaced whole. Addresses and PTRs may be the
// facility's too (its record of the appliance's host, a service type its
// own registry shares): they are added one by one, and the appliance
// takes back only those that were not there before it added them. The
// state file lists what it owns.
type Pusher struct {
	p    Push
	name string // the key's name, as configured (the server answers with its case)
	mu   sync.Mutex
}

// NewPusher checks p.
func NewPusher(p Push) (*Pusher, error) {
	if _, _, err := net.SplitHostPort(p.Server); err != nil {
		return nil, fmt.Errorf("dns: push.server %q: want HOST:PORT", p.Server)
	}
	zone := strings.ToLower(dnsFqdn(p.Zone))
	if _, ok := mdns.IsDomainName(zone); !ok || zone == "." {
		return nil, fmt.Errorf("dns: push.zone %q is not a domain name", p.Zone)
	}
	if _, err := p.Key.check(); err != nil {
		return nil, fmt.Errorf("dns: push: %w", err)
	}
	if p.StateFile == "" {
		return nil, errors.New("dns: push: no state file")
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	p.Zone = zone
	return &Pusher{p: p, name: dnsFqdn(p.Key.Name)}, nil
}

// PushRecords are the records a push sends for o: those the appliance
// serves, less its zone's apex (SOA and NS, which the other zone has of
// its own) and the browse-domain PTRs (domain enumeration, RFC 6763 11,
// is the zone owner's to publish). The service-type enumeration PTRs
// (_services._dns-sd._udp) go, as other instances' types share them.
func PushRecords(o Options) ([]mdns.RR, error) {
	ttl, err := ttlSeconds(o.TTL)
	if err != nil {
		return nil, err
	}
	n, err := nmoscerts.New(pluginConfig(o, ttl))
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	var out []mdns.RR
	for _, rr := range n.Records() {
		h := rr.Header()
		switch {
		case h.Rrtype == mdns.TypeSOA, h.Rrtype == mdns.TypeNS:
		case h.Rrtype == mdns.TypePTR && browseDomain(h.Name):
		default:
			out = append(out, rr)
		}
	}
	return out, nil
}

// browseDomain says whether name is one of the browse-domain names of
// RFC 6763 11 (b, db, lb), whose PTRs say which domains to browse.
func browseDomain(name string) bool {
	first, _, _ := strings.Cut(strings.ToLower(name), ".")
	rest := strings.TrimPrefix(strings.ToLower(name), first+".")
	return (first == "b" || first == "db" || first == "lb") && strings.HasPrefix(rest, "_dns-sd._udp.")
}

// rrKey is a record by meaning: owner and rdata compared without case,
// TTL left out.
func rrKey(rr mdns.RR) string {
	c := mdns.Copy(rr)
	c.Header().Ttl = 0
	return strings.ToLower(c.String())
}

type rrset struct {
	name  string
	rtype uint16
}

// exclusive says whether the appliance's record of this type is the
// whole RRset: the SRV and TXT of its own instances.
func exclusive(rtype uint16) bool { return rtype == mdns.TypeSRV || rtype == mdns.TypeTXT }

// pushedTypes are the types a push sends; a state file naming another
// is not trusted for it.
var pushedTypes = map[uint16]bool{mdns.TypeA: true, mdns.TypeAAAA: true, mdns.TypePTR: true, mdns.TypeSRV: true, mdns.TypeTXT: true}

// Sync makes the zone hold recs, in one UPDATE: the RRsets of the
// appliance's instances are replaced, the records it owns and no longer
// serves are removed, and recs are added. Which addresses and PTRs it
// owns it learns by asking the server before adding them. The state file
// is written with every record that may be in the zone before the update
// goes out, and exactly after.
func (p *Pusher) Sync(ctx context.Context, recs []mdns.RR) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rr := range recs {
		if !mdns.IsSubDomain(p.p.Zone, strings.ToLower(rr.Header().Name)) {
			return fmt.Errorf("dns: push: %s is not inside zone %s", rr.Header().Name, p.p.Zone)
		}
	}
	old, err := p.ownedState(ctx)
	if err != nil {
		return err
	}
	oldKeys := map[string]bool{}
	for _, rr := range old {
		oldKeys[rrKey(rr)] = true
	}
	want := map[string]bool{}
	for _, rr := range recs {
		want[rrKey(rr)] = true
	}
	// Addresses and PTRs not owned yet: the server's present ones are
	// someone else's.
	present, err := p.present(ctx, recs, oldKeys)
	if err != nil {
		return err
	}
	var owned []mdns.RR
	for _, rr := range recs {
		k := rrKey(rr)
		if exclusive(rr.Header().Rrtype) || oldKeys[k] || !present[k] {
			owned = append(owned, rr)
		}
	}
	m := new(mdns.Msg)
	m.SetUpdate(p.p.Zone)
	sets := map[rrset]bool{}
	for _, rr := range append(slices.Clone(old), recs...) {
		h := rr.Header()
		k := rrset{strings.ToLower(h.Name), h.Rrtype}
		if exclusive(h.Rrtype) && !sets[k] {
			sets[k] = true
			m.Ns = append(m.Ns, &mdns.ANY{Hdr: mdns.RR_Header{Name: k.name, Rrtype: k.rtype, Class: mdns.ClassANY}})
		}
	}
	var gone []mdns.RR
	for _, rr := range old {
		if !exclusive(rr.Header().Rrtype) && !want[rrKey(rr)] {
			gone = append(gone, rr)
		}
	}
	if len(gone) > 0 {
		m.Remove(copies(gone))
	}
	m.Insert(copies(recs))
	// Until the answer says, the zone may hold the old records and the new.
	if err := p.writeState(append(slices.Clone(old), owned...)); err != nil {
		return err
	}
	if err := p.exchange(ctx, m); err != nil {
		return err
	}
	return p.writeState(owned)
}

// present asks the server which of recs' addresses and PTRs, of those
// not owned already, it holds now.
func (p *Pusher) present(ctx context.Context, recs []mdns.RR, owned map[string]bool) (map[string]bool, error) {
	out := map[string]bool{}
	asked := map[rrset]bool{}
	for _, rr := range recs {
		h := rr.Header()
		k := rrset{strings.ToLower(h.Name), h.Rrtype}
		if exclusive(h.Rrtype) || owned[rrKey(rr)] || asked[k] {
			continue
		}
		asked[k] = true
		q := new(mdns.Msg)
		q.SetQuestion(k.name, k.rtype)
		q.RecursionDesired = false
		r, err := p.send(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("dns: push: reading %s %s at %s, to tell the zone's own records from the appliance's: %w", k.name, mdns.TypeToString[k.rtype], p.p.Server, err)
		}
		if r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError {
			return nil, fmt.Errorf("dns: push: reading %s %s at %s: %s", k.name, mdns.TypeToString[k.rtype], p.p.Server, mdns.RcodeToString[r.Rcode])
		}
		for _, a := range r.Answer {
			out[rrKey(a)] = true
		}
	}
	return out, nil
}

// Withdraw removes from the zone every record the appliance owns there,
// and forgets them.
func (p *Pusher) Withdraw(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.readState()
	if err != nil {
		return err
	}
	if len(st.recs) > 0 {
		target := p
		if st.zone != p.p.Zone || st.server != p.p.Server {
			target = p.at(st.zone, st.server)
		}
		m := new(mdns.Msg)
		m.SetUpdate(target.p.Zone)
		m.Remove(copies(st.recs))
		if err := target.exchange(ctx, m); err != nil {
			return err
		}
	}
	if err := os.Remove(p.p.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// at is p for another zone and server (where an earlier configuration
// pushed), with the same key.
func (p *Pusher) at(zone, server string) *Pusher {
	o := p.p
	o.Zone, o.Server = zone, server
	return &Pusher{p: o, name: p.name}
}

// ownedState is what the state file says the appliance owns in this
// zone on this server. Records pushed by an earlier configuration to
// another zone or server are taken back from there first (and left, with
// a warning in the error, if that fails).
func (p *Pusher) ownedState(ctx context.Context) ([]mdns.RR, error) {
	st, err := p.readState()
	if err != nil {
		return nil, err
	}
	if st.zone == p.p.Zone && st.server == p.p.Server {
		return st.recs, nil
	}
	if len(st.recs) > 0 {
		m := new(mdns.Msg)
		m.SetUpdate(st.zone)
		m.Remove(copies(st.recs))
		if err := p.at(st.zone, st.server).exchange(ctx, m); err != nil {
			return nil, fmt.Errorf("dns: push: taking back the records pushed to %s at %s before: %w (or delete %s to leave them there)", st.zone, st.server, err, p.p.StateFile)
		}
	}
	return nil, nil
}

// send signs q, sends it over TCP and checks the signed answer.
func (p *Pusher) send(ctx context.Context, q *mdns.Msg) (*mdns.Msg, error) {
	q.SetTsig(p.name, p.p.Key.algorithm(), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", Timeout: p.p.Timeout,
		TsigSecret: map[string]string{p.name: base64.StdEncoding.EncodeToString(p.p.Key.Secret)}}
	ctx, cancel := context.WithTimeout(ctx, p.p.Timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, q, p.p.Server)
	if errors.Is(err, mdns.ErrAuth) || errors.Is(err, mdns.ErrSig) || errors.Is(err, mdns.ErrSecret) {
		// The server's answer failed our check of its TSIG: it did not
		// take our key (it signs its BADSIG with a key it has by that
		// name), or something between changed the answer.
		return nil, fmt.Errorf("refused: TSIG: the server does not hold key %s with this secret (%v)", p.name, err)
	}
	if err != nil {
		return nil, err
	}
	if r.IsTsig() == nil && r.Rcode == mdns.RcodeSuccess {
		return nil, errors.New("the answer is not signed")
	}
	return r, nil
}

// exchange sends a signed update and checks that it was taken.
func (p *Pusher) exchange(ctx context.Context, m *mdns.Msg) error {
	r, err := p.send(ctx, m)
	if err != nil {
		return fmt.Errorf("dns: update of %s at %s: %w", p.p.Zone, p.p.Server, err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		why := mdns.RcodeToString[r.Rcode]
		if t := r.IsTsig(); t != nil && t.Error != 0 {
			why += " (TSIG " + mdns.RcodeToString[int(t.Error)] + ")"
		}
		return fmt.Errorf("dns: update of %s at %s refused: %s", p.p.Zone, p.p.Server, why)
	}
	return nil
}

// copies copies rrs: Msg.Remove and Insert change the records' class
// and TTL in place.
func copies(rrs []mdns.RR) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = mdns.Copy(rr)
	}
	return out
}

// pushState is the state file: where the records went, and which.
type pushState struct {
	zone, server string
	recs         []mdns.RR
}

const stateHeader = "; nmos-certs dns.push state:"

// readState reads the state file (empty before the first push). Only
// records of the types a push sends, inside the zone it names, are taken:
// anything else in the file is left alone, in the file and in the zone.
func (p *Pusher) readState() (pushState, error) {
	st := pushState{zone: p.p.Zone, server: p.p.Server}
	f, err := os.Open(p.p.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(t, stateHeader); ok {
			if f := strings.Fields(rest); len(f) == 4 && f[0] == "zone" && f[2] == "server" {
				st.zone, st.server = f[1], f[3]
			}
			continue
		}
		if t == "" || strings.HasPrefix(t, ";") {
			continue
		}
		rr, err := mdns.NewRR(t)
		if err != nil || rr == nil {
			return st, fmt.Errorf("dns: push state %s line %d: %v (delete the file to start over)", p.p.StateFile, line, err)
		}
		h := rr.Header()
		if pushedTypes[h.Rrtype] && h.Class == mdns.ClassINET && mdns.IsSubDomain(st.zone, strings.ToLower(h.Name)) {
			st.recs = append(st.recs, rr)
		}
	}
	return st, sc.Err()
}

// writeState replaces the state file, atomically.
func (p *Pusher) writeState(recs []mdns.RR) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s zone %s server %s\n", stateHeader, p.p.Zone, p.p.Server)
	seen := map[string]bool{}
	for _, rr := range recs {
		if k := rrKey(rr); !seen[k] {
			seen[k] = true
			b.WriteString(rr.String())
			b.WriteByte('\n')
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.p.StateFile), ".dns-push-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p.p.StateFile)
}
