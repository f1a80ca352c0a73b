package config

import (
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
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setD := func(p *Duration, v time.Duration) {
		if *p == 0 {
			*p = Duration(v)
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setS(&c.DataDir, DefaultDataDir)
	if len(c.Addresses) == 0 && c.Hostname == "" {
		c.Addresses = []string{"127.0.0.1"}
	}
	setS(&c.Domain, DefaultDomain)
	setS(&c.Hostname, DefaultHostname)

	setS(&c.Listen.EST, "127.0.0.1:8443")
	setS(&c.Listen.HTTP, "127.0.0.1:8080")
	setS(&c.Listen.DNS, "127.0.0.1:5354")
	setS(&c.Listen.Metrics, "127.0.0.1:9153")
	setS(&c.Listen.Web, "127.0.0.1:8444")

	setD(&c.CA.LeafLifetime, 90*24*time.Hour)
	setD(&c.CA.Backdate, 5*time.Minute)
	setD(&c.CA.RootLifetime, 20*365*24*time.Hour)
	setD(&c.CA.IntermediateLifetime, 5*365*24*time.Hour)
	setS(&c.CA.Organization, "nmos-certs")
	setI(&c.CA.RSARootBits, 3072)
	setI(&c.CA.RSAIntermediateBits, 2048)
	if c.CA.BaseURL == "" {
		c.CA.BaseURL = "http://" + net.JoinHostPort(c.Hostname, strconv.Itoa(Port(c.Listen.HTTP)))
	}

	setD(&c.EST.RetryAfter, 30*time.Second)
	setD(&c.EST.PendingLifetime, 7*24*time.Hour)
	setI(&c.EST.MaxBodyBytes, 64<<10)
	setD(&c.EST.HSTSMaxAge, 365*24*time.Hour)
	setD(&c.EST.ServerCertRenewBefore, 30*24*time.Hour)

	setD(&c.DNS.TTL, 60*time.Second)
	if len(c.DNS.Advertise) == 0 {
		c.DNS.Advertise = []Advertisement{{}}
	}
	estPort := Port(c.Listen.EST)
	for i := range c.DNS.Advertise {
		setI(&c.DNS.Advertise[i].Port, estPort)
	}

	setS(&c.OCSP.Signer, "delegated")
	setD(&c.OCSP.Validity, 24*time.Hour)
	setD(&c.OCSP.ResponderCertLifetime, 7*24*time.Hour)
	setD(&c.CRL.Validity, 7*24*time.Hour)

	setS(&c.Store.Driver, "sqlite")
	setS(&c.Log.Level, "info")
	setS(&c.Log.Format, "text")
}
