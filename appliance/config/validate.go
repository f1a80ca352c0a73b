package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Off disables an optional listener (metrics, web).
const Off = "off"

// Validate checks every value and returns all problems found, each naming
// its key and line. It has no side effects and touches no files.
func (c *Config) Validate() error {
	if c == nil {
		return &Error{Msg: "no configuration"}
	}
	var errs Errors
	add := func(key, format string, args ...any) { errs = append(errs, c.errorf(key, format, args...)) }

	if err := checkDNSName(c.Domain); err != nil {
		add("domain", "%v", err)
	}
	if err := checkDNSName(c.Hostname); err != nil {
		add("hostname", "%v", err)
	} else if !InDomain(c.Hostname, c.Domain) {
		add("hostname", "%q is not inside domain %q", c.Hostname, c.Domain)
	}
	if len(c.Addresses) == 0 {
		add("addresses", "at least one address is needed: BCP-003-03 requires an A record for the hostname")
	}
	for i, a := range c.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			add(fmt.Sprintf("addresses[%d]", i), "%q is not an IP address", a)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		add("data_dir", "must not be empty")
	}

	seen := map[string]string{}
	listen := []struct {
		key, val string
		optional bool
	}{
		{"listen.est", c.Listen.EST, false},
		{"listen.http", c.Listen.HTTP, false},
		{"listen.dns", c.Listen.DNS, false},
		{"listen.metrics", c.Listen.Metrics, true},
		{"listen.web", c.Listen.Web, true},
	}
	for _, l := range listen {
		if l.optional && l.val == Off {
			continue
		}
		if err := checkHostPort(l.val); err != nil {
			add(l.key, "%v", err)
			continue
		}
		if other, dup := seen[l.val]; dup && Port(l.val) != 0 {
			add(l.key, "%s is also used by %s", l.val, other)
		}
		seen[l.val] = l.key
	}

	positive := func(key string, d Duration) {
		if d <= 0 {
			add(key, "must be greater than zero")
		}
	}
	positive("ca.leaf_lifetime", c.CA.LeafLifetime)
	positive("ca.root_lifetime", c.CA.RootLifetime)
	positive("ca.intermediate_lifetime", c.CA.IntermediateLifetime)
	if c.CA.LeafLifetime >= c.CA.IntermediateLifetime {
		add("ca.leaf_lifetime", "%s must be shorter than ca.intermediate_lifetime (%s)", c.CA.LeafLifetime, c.CA.IntermediateLifetime)
	}
	if c.CA.IntermediateLifetime > c.CA.RootLifetime {
		add("ca.intermediate_lifetime", "%s must not exceed ca.root_lifetime (%s)", c.CA.IntermediateLifetime, c.CA.RootLifetime)
	}
	if c.CA.Backdate < 0 || c.CA.Backdate.D() > 24*time.Hour {
		add("ca.backdate", "must be between 0 and 24h")
	}
	if c.CA.RSARootBits < 3072 || c.CA.RSARootBits > 8192 {
		add("ca.rsa_root_bits", "must be between 3072 and 8192, got %d", c.CA.RSARootBits)
	}
	if c.CA.RSAIntermediateBits < 2048 || c.CA.RSAIntermediateBits > 8192 {
		add("ca.rsa_intermediate_bits", "must be between 2048 and 8192, got %d", c.CA.RSAIntermediateBits)
	}
	if u, err := url.Parse(c.CA.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		add("ca.base_url", "want an http:// or https:// URL with a host, got %q", c.CA.BaseURL)
	}
	switch c.CA.NameBinding {
	case NameBindingStrict, NameBindingApprove, NameBindingOff:
	default:
		add("ca.name_binding", "want strict, approve or off, got %q", c.CA.NameBinding)
	}
	if c.CA.IntermediateRolloverAt < 50 || c.CA.IntermediateRolloverAt > 95 {
		add("ca.intermediate_rollover_at", "must be a percentage between 50 and 95, got %d", c.CA.IntermediateRolloverAt)
	}
	if c.CA.RootKey != "online" && c.CA.RootKey != "offline" {
		add("ca.root_key", "want online or offline, got %q", c.CA.RootKey)
	}
	if c.CA.RootRolloverAt < 50 || c.CA.RootRolloverAt > 95 {
		add("ca.root_rollover_at", "must be a percentage between 50 and 95, got %d", c.CA.RootRolloverAt)
	}
	if c.CA.RootRolloverOverlap < 0 || c.CA.RootRolloverOverlap >= c.CA.RootLifetime {
		add("ca.root_rollover_overlap", "must be between 0 and ca.root_lifetime (%s)", c.CA.RootLifetime)
	}
	if c.CA.NameBindingGrace < 0 {
		add("ca.name_binding_grace", "must not be negative")
	}
	for i, n := range c.CA.ReservedNames {
		name := strings.TrimPrefix(n, "*.")
		if err := checkDNSName(name); err != nil {
			add(fmt.Sprintf("ca.reserved_names[%d]", i), "want a host name or *.suffix: %v", err)
		}
	}
	for _, h := range []struct {
		key string
		imp *Import
	}{{"ca.ecdsa.import", c.CA.ECDSA.Import}, {"ca.rsa.import", c.CA.RSA.Import}} {
		if h.imp == nil {
			continue
		}
		if h.imp.RootCert == "" {
			add(h.key+".root_cert", "is required when importing a hierarchy")
		}
		if h.imp.IntermediateCert == "" {
			add(h.key+".intermediate_cert", "is required when importing a hierarchy")
		}
		if h.imp.IntermediateKey == "" {
			add(h.key+".intermediate_key", "is required when importing a hierarchy")
		}
	}

	for i, r := range c.EST.TrustedClientRoots {
		if strings.TrimSpace(r) == "" {
			add(fmt.Sprintf("est.trusted_client_roots[%d]", i), "empty path")
		}
	}
	for i, r := range c.EST.ClientCRLs {
		key := fmt.Sprintf("est.client_crls[%d]", i)
		if strings.TrimSpace(r) == "" {
			add(key, "empty path")
		} else if strings.Contains(r, "://") {
			if u, err := url.Parse(r); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(key, "want a file path or an http(s) URL, got %q", r)
			}
		}
	}
	for i, p := range c.EST.ServerKeyGenKEKFiles {
		if strings.TrimSpace(p) == "" {
			add(fmt.Sprintf("est.serverkeygen_kek_files[%d]", i), "empty path")
		}
	}
	if c.EST.RetryAfter.D() < time.Second || c.EST.RetryAfter.D() > 24*time.Hour {
		add("est.retry_after", "must be between 1s and 24h")
	}
	positive("est.pending_lifetime", c.EST.PendingLifetime)
	if c.EST.MaxPending < 1 || c.EST.MaxPending > 1_000_000 {
		add("est.max_pending", "must be between 1 and 1000000, got %d", c.EST.MaxPending)
	}
	if c.EST.MaxPendingPerAddress < 1 || c.EST.MaxPendingPerAddress > c.EST.MaxPending {
		add("est.max_pending_per_address", "must be between 1 and est.max_pending (%d), got %d", c.EST.MaxPending, c.EST.MaxPendingPerAddress)
	}
	if c.EST.MaxBodyBytes < 4<<10 || c.EST.MaxBodyBytes > 16<<20 {
		add("est.max_body_bytes", "must be between 4096 and 16777216, got %d", c.EST.MaxBodyBytes)
	}
	if c.EST.HSTSMaxAge < 0 {
		add("est.hsts_max_age", "must not be negative")
	}
	positive("est.server_cert_renew_before", c.EST.ServerCertRenewBefore)
	if c.EST.ServerCertRenewBefore >= c.CA.LeafLifetime {
		add("est.server_cert_renew_before", "%s must be shorter than ca.leaf_lifetime (%s)", c.EST.ServerCertRenewBefore, c.CA.LeafLifetime)
	}

	if c.DNS.TTL < 0 || c.DNS.TTL.D() > 7*24*time.Hour {
		add("dns.ttl", "must be between 0 and 7d")
	}
	for i, f := range c.DNS.Forward {
		if err := checkHostPort(f); err != nil {
			add(fmt.Sprintf("dns.forward[%d]", i), "%v", err)
		} else if host, _, _ := net.SplitHostPort(f); net.ParseIP(host) == nil {
			add(fmt.Sprintf("dns.forward[%d]", i), "want an IP address and port, got %q", f)
		}
	}
	if p := c.DNS.Push; p.Server != "" {
		if err := checkHostPort(p.Server); err != nil {
			add("dns.push.server", "%v", err)
		} else if _, port, _ := net.SplitHostPort(p.Server); port == "0" {
			add("dns.push.server", "name the port of the facility's DNS server (53 as a rule), got %q", p.Server)
		}
		if err := checkDNSName(p.Zone); err != nil {
			add("dns.push.zone", "%v", err)
		} else if !InDomain(c.Domain, p.Zone) {
			add("dns.push.zone", "domain %q is not inside zone %q: the records would be out of the zone", c.Domain, p.Zone)
		}
		checkTSIG(add, "dns.push.tsig", p.TSIG)
		if p.Refresh.D() < time.Minute {
			add("dns.push.refresh", "%s is too often: at least 1m", p.Refresh)
		}
	} else if p.Zone != "" || p.TSIG.Name != "" || p.TSIG.SecretFile != "" || p.RemoveOnStop {
		add("dns.push.server", "dns.push is set up without a server to push to")
	}
	for i, to := range c.DNS.Transfer.To {
		if _, err := netip.ParseAddr(to); err == nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(to); err != nil || ap.Port() == 0 {
			add(fmt.Sprintf("dns.transfer.to[%d]", i), "want a secondary's IP address, or IP:port for its NOTIFY, got %q", to)
		}
	}
	if len(c.DNS.Transfer.To) > 0 {
		checkTSIG(add, "dns.transfer.tsig", c.DNS.Transfer.TSIG)
	} else if c.DNS.Transfer.TSIG.Name != "" || c.DNS.Transfer.TSIG.SecretFile != "" {
		add("dns.transfer.to", "dns.transfer has a key but no secondary: list them in to")
	}
	if len(c.DNS.Advertise) == 0 {
		add("dns.advertise", "at least one _nmos-certs._tcp advertisement is needed (BCP-003-03)")
	}
	instances := map[string]string{}
	for i, a := range c.DNS.Advertise {
		key := fmt.Sprintf("dns.advertise[%d]", i)
		checkSRV(add, key, a.Port, a.Pri, a.Weight)
		if a.APISelector != "" {
			if !labelRE.MatchString(a.APISelector) || estOps[a.APISelector] {
				add(key+".api_selector", "%q is not a usable EST label (letters, digits, '-', '_', '.', '~'; not an EST operation name)", a.APISelector)
			}
		}
		name := a.Instance
		if name == "" {
			name = DefaultInstance(c.Hostname, a)
		}
		checkInstance(add, key+".instance", name, "_nmos-certs._tcp", instances)
	}
	for i, p := range c.DNS.Peers {
		c.checkPeer(add, fmt.Sprintf("dns.peers[%d]", i), p, instances)
	}
	for i, s := range c.DNS.Services {
		key := fmt.Sprintf("dns.services[%d]", i)
		if !serviceRE.MatchString(s.Type) {
			add(key+".type", "want a DNS-SD service type such as _nmos-register._tcp, got %q", s.Type)
		}
		if s.Type == "_nmos-certs._tcp" {
			add(key+".type", "_nmos-certs._tcp instances are configured under dns.advertise")
		}
		if s.Instance == "" {
			add(key+".instance", "is required")
		} else {
			checkInstance(add, key+".instance", s.Instance, s.Type, instances)
		}
		if err := checkDNSName(s.Target); err != nil {
			add(key+".target", "%v", err)
		} else if t := strings.TrimSuffix(strings.ToLower(s.Target), "."); InDomain(t, c.Domain) && t != strings.ToLower(c.Hostname) && len(s.Addresses) == 0 {
			add(key+".addresses", "the target %s is inside domain %s, so the appliance serves its A/AAAA records: give its addresses", s.Target, c.Domain)
		}
		for j, a := range s.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				add(fmt.Sprintf("%s.addresses[%d]", key, j), "%q is not an IP address", a)
			}
		}
		checkSRV(add, key, s.Port, s.Pri, s.Weight)
		for j, t := range s.TXT {
			k, _, _ := strings.Cut(t, "=")
			if k == "" || len(t) > 255 {
				add(fmt.Sprintf("%s.txt[%d]", key, j), "want key=value of at most 255 bytes, got %q", t)
			}
		}
	}

	if c.OCSP.Signer != "delegated" && c.OCSP.Signer != "issuer" {
		add("ocsp.signer", "want delegated or issuer, got %q", c.OCSP.Signer)
	}
	positive("ocsp.validity", c.OCSP.Validity)
	positive("ocsp.responder_cert_lifetime", c.OCSP.ResponderCertLifetime)
	if c.OCSP.ResponderCertLifetime > 0 && c.OCSP.ResponderCertLifetime < c.OCSP.Validity {
		add("ocsp.responder_cert_lifetime", "%s must be at least ocsp.validity (%s)", c.OCSP.ResponderCertLifetime, c.OCSP.Validity)
	}
	positive("crl.validity", c.CRL.Validity)

	switch c.Store.Driver {
	case "sqlite":
		if c.Store.DSN != "" || c.Store.DSNFile != "" {
			add("store.dsn", "a DSN is for store.driver postgres; sqlite keeps its file in data_dir")
		}
	case "postgres":
		if (c.Store.DSN == "") == (c.Store.DSNFile == "") {
			add("store.dsn", "with store.driver postgres, give the database in dsn or in dsn_file (one of them)")
		}
	default:
		add("store.driver", "want sqlite or postgres, got %q", c.Store.Driver)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "want text or json, got %q", c.Log.Format)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

var (
	labelRE   = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)
	serviceRE = regexp.MustCompile(`^_[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?\._(tcp|udp)$`)
	estOps    = map[string]bool{"cacerts": true, "simpleenroll": true, "simplereenroll": true, "serverkeygen": true, "csrattrs": true, "fullcmc": true}
)

// checkPeer checks another appliance's EST instance, p, against c; seen
// holds the _nmos-certs._tcp instances named so far.
func (c *Config) checkPeer(add func(string, string, ...any), key string, p Peer, seen map[string]string) {
	if err := checkDNSName(p.Hostname); err != nil {
		add(key+".hostname", "%v", err)
	} else if strings.EqualFold(strings.TrimSuffix(p.Hostname, "."), strings.TrimSuffix(c.Hostname, ".")) {
		add(key+".hostname", "%q is this appliance's own hostname: name another appliance", p.Hostname)
	} else if InDomain(p.Hostname, c.Domain) && len(p.Addresses) == 0 {
		add(key+".addresses", "%q is inside domain: give its addresses (BCP-003-03 wants an A record for every EST server)", p.Hostname)
	}
	for j, a := range p.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			add(fmt.Sprintf("%s.addresses[%d]", key, j), "%q is not an IP address", a)
		}
	}
	checkSRV(add, key, p.Port, p.Pri, p.Weight)
	if p.APISelector != "" && (!labelRE.MatchString(p.APISelector) || estOps[p.APISelector]) {
		add(key+".api_selector", "%q is not a usable EST label (letters, digits, '-', '_', '.', '~'; not an EST operation name)", p.APISelector)
	}
	name := p.Instance
	if name == "" {
		name = DefaultInstance(p.Hostname, Advertisement{Pri: p.Pri, APISelector: p.APISelector})
	}
	checkInstance(add, key+".instance", name, "_nmos-certs._tcp", seen)
}

// CheckLivePeer says what keeps p, an appliance that registered itself in
// a shared store, from being advertised beside c's own instances,
// dns.peers and taken (the live peers accepted before it): nil when
// nothing does. It holds p to the rules of dns.peers.
func (c *Config) CheckLivePeer(p Peer, taken []Peer) error {
	seen := map[string]string{}
	ignore := func(string, string, ...any) {}
	for _, a := range c.DNS.Advertise {
		name := a.Instance
		if name == "" {
			name = DefaultInstance(c.Hostname, a)
		}
		checkInstance(ignore, "dns.advertise", name, "_nmos-certs._tcp", seen)
	}
	for i, q := range append(slices.Clone(c.DNS.Peers), taken...) {
		name := q.Instance
		if name == "" {
			name = DefaultInstance(q.Hostname, Advertisement{Pri: q.Pri, APISelector: q.APISelector})
		}
		checkInstance(ignore, fmt.Sprintf("peer %d", i), name, "_nmos-certs._tcp", seen)
	}
	var problems []string
	c.checkPeer(func(key, format string, args ...any) {
		problems = append(problems, strings.TrimPrefix(key+": ", "peer.")+fmt.Sprintf(format, args...))
	}, "peer", p, seen)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// DefaultInstance is the DNS-SD instance name used for an advertisement
// that does not name one.
func DefaultInstance(hostname string, a Advertisement) string {
	first, _, _ := strings.Cut(hostname, ".")
	name := fmt.Sprintf("%s pri %d", first, a.Pri)
	if a.APISelector != "" {
		name += " " + a.APISelector
	}
	return name
}

func checkInstance(add func(string, string, ...any), key, name, typ string, seen map[string]string) {
	if len(name) == 0 || len(name) > 63 {
		add(key, "instance name must be 1 to 63 bytes, got %d", len(name))
		return
	}
	full := strings.ToLower(name) + "." + typ
	if other, dup := seen[full]; dup {
		add(key, "instance %q of %s is also defined by %s (set a distinct instance name)", name, typ, other)
	}
	seen[full] = key
}

func checkSRV(add func(string, string, ...any), key string, port, pri, weight int) {
	if port < 1 || port > 65535 {
		add(key+".port", "must be between 1 and 65535, got %d", port)
	}
	if pri < 0 || pri > 65535 {
		add(key+".pri", "must be between 0 and 65535, got %d", pri)
	}
	if weight < 0 || weight > 65535 {
		add(key+".weight", "must be between 0 and 65535, got %d", weight)
	}
}

// checkTSIG checks a TSIG key's name and algorithm, and that a secret
// file is named (its content is read at start: config check reads it).
func checkTSIG(add func(key, format string, args ...any), key string, k TSIGKey) {
	if err := checkKeyName(k.Name); err != nil {
		add(key+".name", "want the key's name, as the DNS server knows it: %v", err)
	}
	switch strings.ToLower(k.Algorithm) {
	case "hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224":
	default:
		add(key+".algorithm", "%q: want hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha224 (MD5 and SHA-1 are not taken)", k.Algorithm)
	}
	if k.SecretFile == "" {
		add(key+".secret_file", "name the file with the key's secret (tsig-keygen writes one)")
	}
}

// checkKeyName checks a TSIG key's name: a domain name (RFC 8945 4.2),
// often of one label (nmos-certs-update), of printable characters.
func checkKeyName(name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return errors.New("must not be empty")
	}
	if len(n) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q has an empty label or one over 63 characters", name)
		}
		for _, r := range l {
			if r <= ' ' || r > '~' || r == '"' || r == ';' || r == '\\' {
				return fmt.Errorf("%q: letters, digits and punctuation other than quotes, ';' and '\\' only", name)
			}
		}
	}
	return nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port in %q", s)
	}
	if host != "" && net.ParseIP(host) == nil {
		if err := checkDNSName(host); err != nil && host != "localhost" {
			return fmt.Errorf("bad host in %q", s)
		}
	}
	return nil
}

var ldhLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// checkDNSName accepts a fully qualified host name (without the final dot)
// made of letter-digit-hyphen labels.
func checkDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("must not be empty")
	}
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	if len(n) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", name)
	}
	if net.ParseIP(n) != nil {
		return fmt.Errorf("%q is an IP address, want a DNS name", name)
	}
	labels := strings.Split(n, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified name", name)
	}
	for _, l := range labels {
		if !ldhLabel.MatchString(l) {
			return fmt.Errorf("%q is not a valid DNS name (label %q)", name, l)
		}
	}
	return nil
}

// InDomain reports whether name equals domain or lies below it.
func InDomain(name, domain string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	return n == d || strings.HasSuffix(n, "."+d)
}
