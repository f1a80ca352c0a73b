package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Defaults used by ApplyDefaults. They are the values documented in the
// example configuration.
const (
	DefaultDomain   = "studio.example.test"
	DefaultHostname = "est.studio.example.test"
	DefaultDataDir  = "./nmos-certs-data"
)

// ApplyDefaults fills every unset value with its default. It is explicit:
// nothing else in the program invents configuration values.
func (c *Config) ApplyDefaults() {
	if c.lines == nil {
		c.lines = map[string]int{}
	}
	// A key the file sets keeps its value, even a zero one, so that
	// Validate can refuse it; only absent keys get defaults.
	set := func(key string) bool { _, ok := c.lines[key]; return ok }
	setS := func(key string, p *string, v string) {
		if !set(key) && *p == "" {
			*p = v
		}
	}
	setD := func(key string, p *Duration, v time.Duration) {
		if !set(key) && *p == 0 {
			*p = Duration(v)
		}
	}
	setI := func(key string, p *int, v int) {
		if !set(key) && *p == 0 {
			*p = v
		}
	}
	setS("data_dir", &c.DataDir, DefaultDataDir)
	if !set("addresses") && !set("hostname") {
		c.Addresses = []string{"127.0.0.1"}
	}
	setS("domain", &c.Domain, DefaultDomain)
	setS("hostname", &c.Hostname, DefaultHostname)

	setS("listen.est", &c.Listen.EST, "127.0.0.1:8443")
	setS("listen.http", &c.Listen.HTTP, "127.0.0.1:8080")
	setS("listen.dns", &c.Listen.DNS, "127.0.0.1:5354")
	setS("listen.metrics", &c.Listen.Metrics, "127.0.0.1:9153")
	setS("listen.web", &c.Listen.Web, "127.0.0.1:8444")

	if c.DNS.Push.Server != "" && c.DNS.Push.Zone == "" {
		c.DNS.Push.Zone = c.Domain // empty, as the example writes it, is domain too
	}
	setD("dns.push.refresh", &c.DNS.Push.Refresh, time.Hour)
	setS("dns.push.tsig.algorithm", &c.DNS.Push.TSIG.Algorithm, "hmac-sha256")
	setS("dns.transfer.tsig.algorithm", &c.DNS.Transfer.TSIG.Algorithm, "hmac-sha256")

	setD("ca.leaf_lifetime", &c.CA.LeafLifetime, 90*24*time.Hour)
	setD("ca.backdate", &c.CA.Backdate, 5*time.Minute)
	setD("ca.root_lifetime", &c.CA.RootLifetime, 20*365*24*time.Hour)
	setD("ca.intermediate_lifetime", &c.CA.IntermediateLifetime, 5*365*24*time.Hour)
	setS("ca.organization", &c.CA.Organization, "nmos-certs")
	setS("ca.name_binding", &c.CA.NameBinding, NameBindingStrict)
	setI("est.max_pending", &c.EST.MaxPending, 1000)
	setI("est.max_pending_per_address", &c.EST.MaxPendingPerAddress, 20)
	setD("ca.name_binding_grace", &c.CA.NameBindingGrace, 30*24*time.Hour)
	setI("ca.intermediate_rollover_at", &c.CA.IntermediateRolloverAt, 80)
	setI("ca.root_rollover_at", &c.CA.RootRolloverAt, 80)
	setS("ca.root_key", &c.CA.RootKey, "online")
	setD("ca.root_rollover_overlap", &c.CA.RootRolloverOverlap, 30*24*time.Hour)
	setI("ca.rsa_root_bits", &c.CA.RSARootBits, 3072)
	setI("ca.rsa_intermediate_bits", &c.CA.RSAIntermediateBits, 2048)
	if !set("ca.base_url") {
		c.CA.BaseURL = "http://" + net.JoinHostPort(c.Hostname, strconv.Itoa(Port(c.Listen.HTTP)))
	}

	setD("est.retry_after", &c.EST.RetryAfter, 30*time.Second)
	setD("est.pending_lifetime", &c.EST.PendingLifetime, 7*24*time.Hour)
	setI("est.max_body_bytes", &c.EST.MaxBodyBytes, 64<<10)
	setD("est.hsts_max_age", &c.EST.HSTSMaxAge, 365*24*time.Hour)
	setD("est.server_cert_renew_before", &c.EST.ServerCertRenewBefore, 30*24*time.Hour)

	setD("dns.ttl", &c.DNS.TTL, 60*time.Second)
	if !set("dns.advertise") {
		c.DNS.Advertise = []Advertisement{{}}
	}
	estPort := Port(c.Listen.EST)
	for i := range c.DNS.Advertise {
		setI(fmt.Sprintf("dns.advertise[%d].port", i), &c.DNS.Advertise[i].Port, estPort)
	}
	// A peer serves EST on the port this appliance does, unless told.
	for i := range c.DNS.Peers {
		setI(fmt.Sprintf("dns.peers[%d].port", i), &c.DNS.Peers[i].Port, estPort)
	}

	setS("ocsp.signer", &c.OCSP.Signer, "delegated")
	setD("ocsp.validity", &c.OCSP.Validity, 24*time.Hour)
	setD("ocsp.responder_cert_lifetime", &c.OCSP.ResponderCertLifetime, 7*24*time.Hour)
	setD("crl.validity", &c.CRL.Validity, 7*24*time.Hour)

	setS("store.driver", &c.Store.Driver, "sqlite")
	setS("log.level", &c.Log.Level, "info")
	setS("log.format", &c.Log.Format, "text")
}
