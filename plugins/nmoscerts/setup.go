package nmoscerts

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/transfer"
)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	n, err := New(cfg)
	if err != nil {
		return plugin.Error(pluginName, err)
	}

	c.OnStartup(func() error {
		n.publishAdvertisements()
		// With zone transfers on, tell the secondaries that this zone (its
		// serial new at each start and reload) is there to fetch.
		if t, ok := dnsserver.GetConfig(c).Handler("transfer").(*transfer.Transfer); ok && t != nil {
			go func() { _ = t.Notify(n.Zone()) }()
		}
		return nil
	})
	c.OnRestart(func() error { n.withdrawAdvertisements(); return nil })
	c.OnRestartFailed(func() error { n.publishAdvertisements(); return nil })
	c.OnFinalShutdown(func() error { n.withdrawAdvertisements(); return nil })

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		n.Next = next
		return n
	})
	return nil
}

// parse reads the plugin's block:
//
//	nmoscerts [ZONE] {
//	    hostname NAME
//	    address IP...
//	    ttl SECONDS
//	    service TYPE {
//	        instance NAME
//	        target HOST [IP...]
//	        port PORT
//	        pri N
//	        weight N
//	        api_selector LABEL
//	        txt KEY[=VALUE]...
//	    }
//	    fallthrough
//	    prepacked
//	}
//
// Errors carry the position of the offending line. Checks that involve
// several services (duplicates, conflicting addresses) are done by New and
// name the position of the service block.
func parse(c *caddy.Controller) (Config, error) {
	var cfg Config
	i := 0
	for c.Next() {
		if i > 0 {
			return cfg, plugin.ErrOnce
		}
		i++

		args := c.RemainingArgs()
		zones := args
		if len(zones) == 0 {
			zones = plugin.OriginsFromArgsOrServerBlock(nil, c.ServerBlockKeys)
		}
		if len(zones) != 1 {
			return cfg, c.Errf("want exactly one zone, got %d", len(zones))
		}
		zone, err := checkZone(zones[0])
		if err != nil {
			return cfg, c.Errf("%v; name the DNS-SD zone after %s", err, pluginName)
		}
		cfg.Zone = zone

		seen := map[string]bool{}
		for c.NextBlock() {
			opt := c.Val()
			if opt != "address" && opt != "service" && seen[opt] {
				return cfg, c.Errf("%s is given twice", opt)
			}
			seen[opt] = true
			switch opt {
			case "hostname":
				v, err := oneArg(c)
				if err != nil {
					return cfg, err
				}
				host, err := checkHostname(v)
				if err != nil {
					return cfg, c.Errf("hostname: %v", err)
				}
				if !inZone(host, cfg.Zone) {
					return cfg, c.Errf("hostname %s is not inside zone %s", host, cfg.Zone)
				}
				cfg.Hostname = host
			case "address":
				addrs, err := addrArgs(c, c.RemainingArgs())
				if err != nil {
					return cfg, err
				}
				if len(addrs) == 0 {
					return cfg, c.ArgErr()
				}
				cfg.Addresses = append(cfg.Addresses, addrs...)
				if _, err := checkAddresses(cfg.Addresses); err != nil {
					return cfg, c.Errf("address: %v", err)
				}
			case "ttl":
				v, err := oneArg(c)
				if err != nil {
					return cfg, err
				}
				ttl, err := strconv.ParseUint(v, 10, 32)
				if err != nil || ttl == 0 || ttl > maxTTL {
					return cfg, c.Errf("ttl %q: want a number of seconds from 1 to %d", v, maxTTL)
				}
				cfg.TTL = uint32(ttl)
			case "serial":
				v, err := oneArg(c)
				if err != nil {
					return cfg, err
				}
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil || n == 0 {
					return cfg, c.Errf("serial %q: want a number from 1 to %d", v, uint32(math.MaxUint32))
				}
				cfg.Serial = uint32(n)
			case "service":
				s, err := parseService(c)
				if err != nil {
					return cfg, err
				}
				cfg.Services = append(cfg.Services, s)
			case "prepacked":
				if c.NextArg() {
					return cfg, c.ArgErr()
				}
				cfg.Prepacked = true
			case "fallthrough":
				if c.NextArg() {
					return cfg, c.Errf("fallthrough takes no arguments: it passes every query outside %s to the next plugin", cfg.Zone)
				}
				cfg.Fallthrough = true
			default:
				return cfg, c.Errf("unknown property '%s'", opt)
			}
		}
		if cfg.Hostname == "" {
			return cfg, c.Errf("%s %s: hostname is required", pluginName, cfg.Zone)
		}
		if len(cfg.Addresses) == 0 {
			return cfg, c.Errf("%s %s: address is required", pluginName, cfg.Zone)
		}
		if len(cfg.Services) == 0 {
			return cfg, c.Errf("%s %s: at least one service block is required", pluginName, cfg.Zone)
		}
	}
	return cfg, nil
}

// parseService reads "service TYPE { ... }"; the cursor is on "service".
func parseService(c *caddy.Controller) (Service, error) {
	s := Service{pos: fmt.Sprintf("%s:%d", c.File(), c.Line())}
	args := c.RemainingArgs()
	if len(args) != 1 {
		return s, c.ArgErr()
	}
	st, err := checkServiceType(args[0])
	if err != nil {
		return s, c.Errf("%v", err)
	}
	s.Type = st
	if !c.NextArg() || c.Val() != "{" {
		return s, c.Errf("service %s: want '{' at the end of the line to open its block", st)
	}

	seen := map[string]bool{}
	hasPort := false
	for {
		if !c.Next() {
			return s, c.Errf("service %s: the block is not closed", st)
		}
		opt := c.Val()
		if opt == "}" {
			break
		}
		if opt != "txt" && seen[opt] {
			return s, c.Errf("service %s: %s is given twice", st, opt)
		}
		seen[opt] = true
		switch opt {
		case "instance":
			v, err := oneArg(c)
			if err != nil {
				return s, err
			}
			if err := checkInstance(v); err != nil {
				return s, c.Errf("service %s: %v", st, err)
			}
			s.Instance = v
		case "target":
			vals := c.RemainingArgs()
			if len(vals) == 0 {
				return s, c.ArgErr()
			}
			if _, err := checkHostname(vals[0]); err != nil {
				return s, c.Errf("service %s: target: %v", st, err)
			}
			s.Target = vals[0]
			addrs, err := addrArgs(c, vals[1:])
			if err != nil {
				return s, err
			}
			if _, err := checkAddresses(addrs); err != nil {
				return s, c.Errf("service %s: target %s: %v", st, vals[0], err)
			}
			s.TargetAddresses = addrs
		case "port", "pri", "weight":
			v, err := oneArg(c)
			if err != nil {
				return s, err
			}
			lo := 0
			if opt == "port" {
				lo = 1
			}
			n, err := parseUint16(opt, v, lo)
			if err != nil {
				return s, c.Errf("service %s: %v", st, err)
			}
			switch opt {
			case "port":
				s.Port, hasPort = n, true
			case "pri":
				s.Priority = n
			case "weight":
				s.Weight = n
			}
		case "api_selector":
			v, err := oneArg(c)
			if err != nil {
				return s, err
			}
			if err := checkAPISelector(v); err != nil {
				return s, c.Errf("service %s: %v", st, err)
			}
			s.APISelector = v
		case "txt":
			vals := c.RemainingArgs()
			if len(vals) == 0 {
				return s, c.ArgErr()
			}
			s.TXT = append(s.TXT, vals...)
			if err := checkTXT(s.TXT); err != nil {
				return s, c.Errf("service %s: %v", st, err)
			}
		default:
			return s, c.Errf("service %s: unknown property '%s'", st, opt)
		}
	}
	if !hasPort {
		return s, c.Errf("service %s: port is required", st)
	}
	return s, nil
}

// oneArg returns the single argument of the current line.
func oneArg(c *caddy.Controller) (string, error) {
	args := c.RemainingArgs()
	if len(args) != 1 {
		return "", c.ArgErr()
	}
	return args[0], nil
}

func addrArgs(c *caddy.Controller, args []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(args))
	for _, a := range args {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, c.Errf("%q is not an IP address", a)
		}
		out = append(out, ip)
	}
	return out, nil
}
