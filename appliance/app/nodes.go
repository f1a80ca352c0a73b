package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot"
)

// nodeRegistry is a store that the appliances sharing it register in
// (store.Postgres): each says it is alive, and what it serves, every
// heartbeat; the others advertise it in their DNS-SD answers while it
// does, and drop it when it leaves or misses three heartbeats.
type nodeRegistry interface {
	Heartbeat(ctx context.Context, n store.Node) error
	Leave(ctx context.Context, hostname string) error
	Nodes(ctx context.Context, within time.Duration) ([]store.Node, error)
}

// defaultHeartbeat is how often an appliance registers itself.
const defaultHeartbeat = 5 * time.Second

// selfNode is this appliance as the others advertise it.
func selfNode(cfg *config.Config) store.Node {
	n := store.Node{Hostname: cfg.Hostname, Addresses: slices.Clone(cfg.Addresses)}
	for _, a := range cfg.DNS.Advertise {
		name := a.Instance
		if name == "" {
			name = config.DefaultInstance(cfg.Hostname, a)
		}
		n.Instances = append(n.Instances, store.NodeInstance{Instance: name, Port: a.Port, Pri: a.Pri, Weight: a.Weight, APISelector: a.APISelector})
	}
	return n
}

// livePeers turns the registered nodes into peers to advertise: every
// node but this one and those dns.peers names already (the configuration
// wins), each of its instances a peer held to the rules of dns.peers
// (config.CheckLivePeer). One that breaks them is left out, and said so
// in skipped.
func livePeers(cfg *config.Config, nodes []store.Node) (peers []config.Peer, skipped []string) {
	same := func(x, y string) bool {
		return strings.EqualFold(strings.TrimSuffix(x, "."), strings.TrimSuffix(y, "."))
	}
next:
	for _, n := range nodes {
		if same(n.Hostname, cfg.Hostname) {
			continue
		}
		for _, p := range cfg.DNS.Peers {
			if same(p.Hostname, n.Hostname) {
				continue next
			}
		}
		for _, i := range n.Instances {
			p := config.Peer{Hostname: n.Hostname, Addresses: n.Addresses, Port: i.Port, Pri: i.Pri,
				Weight: i.Weight, APISelector: i.APISelector, Instance: i.Instance}
			if err := cfg.CheckLivePeer(p, peers); err != nil {
				skipped = append(skipped, fmt.Sprintf("%s (instance %q): %v", n.Hostname, i.Instance, err))
				continue
			}
			peers = append(peers, p)
		}
	}
	return peers, skipped
}

// registerNode keeps this appliance registered in a shared store and the
// other live appliances in its DNS-SD answers and reserved names; on the
// way out it leaves. Nothing to do on a store of one appliance.
func (a *App) registerNode(ctx context.Context) {
	reg, ok := a.store.(nodeRegistry)
	if !ok {
		return
	}
	every := a.o.Heartbeat
	beat := func() string {
		a.reloadMu.Lock()
		cfg := a.cfg
		a.reloadMu.Unlock()
		if err := reg.Heartbeat(ctx, selfNode(cfg)); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("register this appliance in the store", "err", err)
			}
			return cfg.Hostname
		}
		nodes, err := reg.Nodes(ctx, 3*every)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("read the appliances registered in the store", "err", err)
			}
			return cfg.Hostname
		}
		a.setNodes(nodes)
		return cfg.Hostname
	}
	hostname := beat()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			leave, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := reg.Leave(leave, hostname); err != nil {
				a.log.Warn("leave the store's list of appliances", "err", err)
			}
			cancel()
			return
		case <-t.C:
			hostname = beat()
		}
	}
}

// setNodes takes a new list of the appliances registered in the store
// and advertises those alive, when that changes what is advertised.
func (a *App) setNodes(nodes []store.Node) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.nodes = nodes
	peers, skipped := livePeers(a.cfg, nodes)
	if slices.EqualFunc(peers, a.livePeers, samePeer) && slices.Equal(skipped, a.skippedPeers) {
		return
	}
	a.skippedPeers = skipped
	for _, s := range skipped {
		a.log.Warn("an appliance registered in the store is not advertised", "why", s)
	}
	if slices.EqualFunc(peers, a.livePeers, samePeer) {
		return
	}
	if a.dns != nil {
		opts, err := dnsOptionsWith(a.cfg, peers)
		if err == nil {
			err = a.dns.Reload(opts)
		}
		if err != nil {
			a.log.Error("advertise the appliances sharing the store", "err", err)
			return
		}
	}
	var names []string
	for _, p := range peers {
		if !slices.Contains(names, p.Hostname) {
			names = append(names, p.Hostname)
		}
	}
	a.livePeers = peers
	a.ca.SetNames(a.namesFor(a.cfg))
	a.log.Info("appliances sharing the store", "advertised", names)
}

func samePeer(x, y config.Peer) bool {
	return x.Hostname == y.Hostname && x.Instance == y.Instance && x.Port == y.Port && x.Pri == y.Pri &&
		x.Weight == y.Weight && x.APISelector == y.APISelector && slices.Equal(x.Addresses, y.Addresses)
}

// reloadPeers is the DNS options of next with the live appliances as
// next sees them, for a configuration reload, under reloadMu. Live
// appliances never fail a reload: should they not fit next after all, the
// reload goes on without them.
func (a *App) reloadPeers(next *config.Config) ([]config.Peer, dns.Options, error) {
	peers, _ := livePeers(next, a.nodes)
	opts, err := dnsOptionsWith(next, peers)
	if err != nil && len(peers) > 0 {
		a.log.Warn("the appliances sharing the store are not advertised with the new configuration", "err", err)
		peers = nil
		opts, err = dnsOptionsWith(next, nil)
	}
	return peers, opts, err
}

// namesFor is CANames(cfg) with the hostnames of the live appliances
// reserved too; under reloadMu.
func (a *App) namesFor(cfg *config.Config) ca.Names {
	n := CANames(cfg)
	seen := map[string]bool{}
	for _, p := range a.livePeers {
		if !seen[p.Hostname] {
			seen[p.Hostname] = true
			n.Reserved = append(n.Reserved, policy.Reserved{Pattern: p.Hostname,
				Rule: "the hostname of another appliance sharing the store"})
		}
	}
	return n
}

// applianceViews describes the appliances registered alive in the shared
// store, as last read, for the operator's dashboard; nil when the store
// is not shared.
func (a *App) applianceViews() []webroot.ApplianceView {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if len(a.nodes) == 0 {
		return nil
	}
	same := func(x, y string) bool {
		return strings.EqualFold(strings.TrimSuffix(x, "."), strings.TrimSuffix(y, "."))
	}
	var out []webroot.ApplianceView
	for _, n := range a.nodes {
		v := webroot.ApplianceView{Hostname: n.Hostname, Addresses: n.Addresses, LastSeen: n.LastSeen.UTC(), Self: same(n.Hostname, a.cfg.Hostname)}
		if v.Addresses == nil {
			v.Addresses = []string{}
		}
		for _, i := range n.Instances {
			v.Instances = append(v.Instances, fmt.Sprintf("%s (port %d, pri %d)", i.Instance, i.Port, i.Pri))
		}
		v.Advertised = v.Self || slices.ContainsFunc(a.livePeers, func(p config.Peer) bool { return same(p.Hostname, n.Hostname) }) ||
			slices.ContainsFunc(a.cfg.DNS.Peers, func(p config.Peer) bool { return same(p.Hostname, n.Hostname) })
		for _, why := range a.skippedPeers {
			if rest, ok := strings.CutPrefix(why, n.Hostname+" "); ok && !v.Advertised {
				v.Problem = rest
				break
			}
		}
		out = append(out, v)
	}
	return out
}
