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
// records: the address, SRV and TXT records of the names only the
// appliance has are replaced whole; the PTR records of service types,
// which other instances share, are added and removed one by one.
type Pusher struct {
	p    Push
	name string // the key's name, canonical
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
	name, err := p.Key.check()
	if err != nil {
		return nil, fmt.Errorf("dns: push: %w", err)
	}
	if p.StateFile == "" {
		return nil, errors.New("dns: push: no state file")
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	p.Zone = zone
	return &Pusher{p: p, name: name}, nil
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

// Sync makes the zone hold recs: one UPDATE replaces the RRsets of names
// only the appliance has (with those of the last push), removes the PTRs
// pushed before and not now, and adds recs. The records pushed are then
// kept in the state file.
func (p *Pusher) Sync(ctx context.Context, recs []mdns.RR) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rr := range recs {
		if !mdns.IsSubDomain(p.p.Zone, strings.ToLower(rr.Header().Name)) {
			return fmt.Errorf("dns: push: %s is not inside zone %s", rr.Header().Name, p.p.Zone)
		}
	}
	old, err := p.readState()
	if err != nil {
		return err
	}
	m := new(mdns.Msg)
	m.SetUpdate(p.p.Zone)
	sets := map[rrset]bool{}
	var order []rrset
	want := map[string]bool{}
	for _, rr := range recs {
		want[rrKey(rr)] = true
	}
	var gone []mdns.RR
	for _, rr := range append(slices.Clone(old), recs...) {
		h := rr.Header()
		if h.Rrtype == mdns.TypePTR {
			continue
		}
		k := rrset{strings.ToLower(h.Name), h.Rrtype}
		if !sets[k] {
			sets[k] = true
			order = append(order, k)
		}
	}
	for _, rr := range old {
		if rr.Header().Rrtype == mdns.TypePTR && !want[rrKey(rr)] {
			gone = append(gone, rr)
		}
	}
	for _, k := range order {
		m.Ns = append(m.Ns, &mdns.ANY{Hdr: mdns.RR_Header{Name: k.name, Rrtype: k.rtype, Class: mdns.ClassANY}})
	}
	if len(gone) > 0 {
		m.Remove(gone)
	}
	m.Insert(recs)
	if err := p.exchange(ctx, m); err != nil {
		return err
	}
	return p.writeState(recs)
}

// Withdraw removes from the zone every record the last push sent, and
// forgets them.
func (p *Pusher) Withdraw(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, err := p.readState()
	if err != nil || len(old) == 0 {
		return err
	}
	m := new(mdns.Msg)
	m.SetUpdate(p.p.Zone)
	m.Remove(old)
	if err := p.exchange(ctx, m); err != nil {
		return err
	}
	if err := os.Remove(p.p.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// exchange sends a signed update over TCP and checks the signed answer.
func (p *Pusher) exchange(ctx context.Context, m *mdns.Msg) error {
	m.SetTsig(p.name, p.p.Key.algorithm(), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", Timeout: p.p.Timeout,
		TsigSecret: map[string]string{p.name: base64.StdEncoding.EncodeToString(p.p.Key.Secret)}}
	ctx, cancel := context.WithTimeout(ctx, p.p.Timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, p.p.Server)
	if errors.Is(err, mdns.ErrAuth) || errors.Is(err, mdns.ErrSig) {
		// The server's answer failed our check of its TSIG: it did not
		// take our key (it signs its BADSIG with a key it has by that
		// name), or something between changed the answer.
		return fmt.Errorf("dns: update of %s at %s refused: TSIG: the server does not hold key %s with this secret (%v)", p.p.Zone, p.p.Server, p.name, err)
	}
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
	if r.IsTsig() == nil {
		return fmt.Errorf("dns: update of %s at %s: the answer is not signed", p.p.Zone, p.p.Server)
	}
	return nil
}

// readState reads the records last pushed (none before the first).
func (p *Pusher) readState() ([]mdns.RR, error) {
	f, err := os.Open(p.p.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mdns.RR
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if t := strings.TrimSpace(sc.Text()); t == "" || strings.HasPrefix(t, ";") {
			continue
		}
		rr, err := mdns.NewRR(sc.Text())
		if err != nil || rr == nil {
			return nil, fmt.Errorf("dns: push state %s line %d: %v (delete the file to start over)", p.p.StateFile, line, err)
		}
		out = append(out, rr)
	}
	return out, sc.Err()
}

// writeState replaces the state file, atomically.
func (p *Pusher) writeState(recs []mdns.RR) error {
	var b strings.Builder
	b.WriteString("; records pushed to " + p.p.Zone + " at " + p.p.Server + " by nmos-certs\n")
	for _, rr := range recs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
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
