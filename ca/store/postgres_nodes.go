package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
)

// Node is an appliance sharing the database, as it registers itself: its
// hostname, addresses and EST instances, for the others to advertise in
// their DNS-SD answers while it is alive.
type Node struct {
	Hostname  string         `json:"-"`
	Addresses []string       `json:"addresses"`
	Instances []NodeInstance `json:"instances"`
	// LastSeen is the database's time of the node's last heartbeat.
	LastSeen time.Time `json:"-"`
}

// NodeInstance is one _nmos-certs._tcp instance of a node.
type NodeInstance struct {
	Instance    string `json:"instance"`
	Port        int    `json:"port"`
	Pri         int    `json:"pri"`
	Weight      int    `json:"weight"`
	APISelector string `json:"api_selector,omitempty"`
}

// Heartbeat records that n is alive, now by the database's clock (the
// appliances' clocks are not compared with each other), with what it
// serves.
func (p *Postgres) Heartbeat(ctx context.Context, n Node) error {
	info, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = p.pool.Exec(ctx, `INSERT INTO nodes (hostname, info, last_seen) VALUES ($1, $2, now())
		ON CONFLICT (hostname) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen`, n.Hostname, string(info))
	return err
}

// Leave removes a node that stops, so that the others stop advertising it
// at once rather than when its heartbeat is missed.
func (p *Postgres) Leave(ctx context.Context, hostname string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM nodes WHERE hostname = $1`, hostname)
	return err
}

// Nodes lists the nodes whose last heartbeat is more recent than within
// ago, by hostname. A row whose description does not parse is left out.
func (p *Postgres) Nodes(ctx context.Context, within time.Duration) ([]Node, error) {
	rows, err := p.pool.Query(ctx, `SELECT hostname, info, last_seen FROM nodes
		WHERE last_seen > now() - make_interval(secs => $1) ORDER BY hostname`, within.Seconds())
	if err != nil {
		return nil, err
	}
	var out []Node
	var n Node
	var info string
	_, err = pgx.ForEachRow(rows, []any{&n.Hostname, &info, &n.LastSeen}, func() error {
		var x Node
		if json.Unmarshal([]byte(info), &x) != nil {
			return nil // not one this program wrote: not a node to advertise
		}
		x.Hostname, x.LastSeen = n.Hostname, n.LastSeen
		out = append(out, x)
		return nil
	})
	return out, err
}
