package app

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
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
// wins), each of its instances a peer. A node whose addresses do not parse
// is left out.
func livePeers(cfg *config.Config, nodes []store.Node) []config.Peer {
	var out []config.Peer
next:
	for _, n := range nodes {
		if n.Hostname == cfg.Hostname || len(n.Instances) == 0 {
			continue
		}
		for _, p := range cfg.DNS.Peers {
			if p.Hostname == n.Hostname {
				continue next
			}
		}
		for _, a := range n.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				continue next
			}
		}
		for _, i := range n.Instances {
			out = append(out, config.Peer{Hostname: n.Hostname, Addresses: n.Addresses, Port: i.Port, Pri: i.Pri,
				Weight: i.Weight, APISelector: i.APISelector, Instance: i.Instance})
		}
	}
	return out
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
		a.setLivePeers(livePeers(cfg, nodes))
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

// setLivePeers puts a new list of live appliances in the DNS-SD answers
// and the reserved names, when it differs from the one in force.
func (a *App) setLivePeers(peers []config.Peer) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if slices.EqualFunc(peers, a.livePeers, func(x, y config.Peer) bool {
		return x.Hostname == y.Hostname && x.Instance == y.Instance && x.Port == y.Port && x.Pri == y.Pri &&
			x.Weight == y.Weight && x.APISelector == y.APISelector && slices.Equal(x.Addresses, y.Addresses)
	}) {
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
