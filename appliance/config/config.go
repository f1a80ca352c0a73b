// Package config defines the appliance's one configuration file: its types,
// strict loading with line-accurate errors, explicit defaults and a
// side-effect-free Validate.
package config

import (
	"net"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// EmbeddedSource is the Source of the embedded default configuration.
const EmbeddedSource = "embedded default"

// Config is the whole configuration file.
type Config struct {
	// Domain is the DNS zone the appliance serves; every certificate name
	// it issues must be inside it.
	Domain string `yaml:"domain"`
	// Hostname is the appliance's own name, used for its TLS certificates,
	// SRV targets and the OCSP, CRL and CA certificate URLs.
	Hostname string `yaml:"hostname"`
	// Addresses are published as the A/AAAA records of Hostname.
	Addresses []string `yaml:"addresses"`
	// DataDir holds the database, the CA keys and the server keys.
	DataDir string `yaml:"data_dir"`

	Listen Listen `yaml:"listen"`
	CA     CA     `yaml:"ca"`
	EST    EST    `yaml:"est"`
	DNS    DNS    `yaml:"dns"`
	OCSP   OCSP   `yaml:"ocsp"`
	CRL    CRL    `yaml:"crl"`
	Store  Store  `yaml:"store"`
	Log    Log    `yaml:"log"`

	// lines maps a key path such as "est.retry_after" to the line it was
	// found on, so that Validate can name the line of a bad value.
	lines map[string]int
	// Source names where the configuration came from (a file path, or
	// "embedded default").
	Source string `yaml:"-"`
}

// Listen holds the listening addresses of every service. An empty address
// disables that listener where that is allowed (metrics, web).
type Listen struct {
	EST     string `yaml:"est"`
	HTTP    string `yaml:"http"`
	DNS     string `yaml:"dns"`
	Metrics string `yaml:"metrics"`
	Web     string `yaml:"web"`
}

// CA configures the certificate authority.
type CA struct {
	// LeafLifetime is the validity of issued device certificates.
	LeafLifetime Duration `yaml:"leaf_lifetime"`
	// Backdate moves notBefore of issued certificates back a little to
	// absorb clock skew between devices.
	Backdate Duration `yaml:"backdate"`
	// RootLifetime and IntermediateLifetime are used when the appliance
	// creates its own hierarchies.
	RootLifetime         Duration `yaml:"root_lifetime"`
	IntermediateLifetime Duration `yaml:"intermediate_lifetime"`
	// Organization is put in the subject of the CA certificates created here.
	Organization string `yaml:"organization"`
	// BaseURL is the plain-HTTP base put in issued certificates for OCSP,
	// CRLs and CA certificates. Default: http://<hostname>:<listen.http port>.
	BaseURL string `yaml:"base_url"`
	// RSABits is the size of RSA keys the appliance generates for its own
	// RSA hierarchy (root and intermediate) and for server-side key generation.
	RSARootBits         int `yaml:"rsa_root_bits"`
	RSAIntermediateBits int `yaml:"rsa_intermediate_bits"`
	// ECDSA and RSA optionally import existing hierarchies instead of
	// creating new ones.
	ECDSA Hierarchy `yaml:"ecdsa"`
	RSA   Hierarchy `yaml:"rsa"`
	// ReservedNames are names (or "*.suffix" patterns) no device may be
	// certified for, besides the appliance's hostname, the zone apex,
	// the targets of dns.services and every "_" label.
	ReservedNames []string `yaml:"reserved_names"`
	// NameBinding is strict (a name issued to one identity is refused to
	// others), approve (such requests wait for an operator) or off.
	NameBinding string `yaml:"name_binding"`
	// NameBindingGrace is how long a name stays bound after the last of
	// its holder's certificates for it expired.
	NameBindingGrace Duration `yaml:"name_binding_grace"`
	// IntermediateRolloverAt is the share of its life, in percent, after
	// which the active intermediate is rolled over.
	IntermediateRolloverAt int `yaml:"intermediate_rollover_at"`
	// RootRolloverAt is the share of its life, in percent, after which a
	// root rollover is announced (and made, with AutoRootRollover).
	RootRolloverAt int `yaml:"root_rollover_at"`
	// RootRolloverOverlap is how long a root rollover publishes the new
	// root and the link certificates before the new hierarchy issues.
	RootRolloverOverlap Duration `yaml:"root_rollover_overlap"`
	// AutoRootRollover rolls a root over when it is due, without an
	// operator.
	AutoRootRollover bool `yaml:"auto_root_rollover"`
	// RootKey is online (the roots' keys may be on the appliance) or
	// offline (they must not be: the appliance refuses to start with one).
	RootKey string `yaml:"root_key"`
}

// Name binding modes.
const (
	NameBindingStrict  = "strict"
	NameBindingApprove = "approve"
	NameBindingOff     = "off"
)

// Hierarchy imports an existing root and intermediate from PEM files.
type Hierarchy struct {
	Import *Import `yaml:"import"`
}

// Import names PEM files of an existing hierarchy. The root key is optional:
// an offline root stays offline.
type Import struct {
	RootCert         string `yaml:"root_cert"`
	RootKey          string `yaml:"root_key"`
	IntermediateCert string `yaml:"intermediate_cert"`
	IntermediateKey  string `yaml:"intermediate_key"`
}

// EST configures the enrollment server.
type EST struct {
	// TrustedClientRoots are PEM files of manufacturer root CAs whose
	// client certificates may enroll.
	TrustedClientRoots []string `yaml:"trusted_client_roots"`
	// ClientCRLs are CRLs (files or http URLs) published by manufacturers.
	ClientCRLs []string `yaml:"client_crls"`
	// AllowExpiredClientCerts accepts expired (never revoked) manufacturer
	// certificates, as BCP-003-03 allows.
	AllowExpiredClientCerts bool `yaml:"allow_expired_client_certs"`
	// ManualApproval stores requests without a trusted client certificate
	// for an operator to approve, answering 202 with Retry-After.
	ManualApproval bool `yaml:"manual_approval"`
	// AllowRenewalWithSameKey certifies simplereenroll CSRs that keep the
	// key of the certificate being renewed (RFC 7030 4.2.2 allows it;
	// BCP-003-03 asks for a new key).
	AllowRenewalWithSameKey bool `yaml:"allow_renewal_with_same_key"`
	// RetryAfter is sent with 202 answers.
	RetryAfter Duration `yaml:"retry_after"`
	// PendingLifetime is how long an undecided request waits.
	PendingLifetime Duration `yaml:"pending_lifetime"`
	// MaxPending bounds the requests waiting for an operator.
	MaxPending int `yaml:"max_pending"`
	// MaxPendingPerAddress bounds the requests one client address may
	// queue in an hour.
	MaxPendingPerAddress int `yaml:"max_pending_per_address"`
	// RequireChannelBinding refuses CSRs without tls-unique/tls-exporter
	// proof of possession in challengePassword.
	RequireChannelBinding bool `yaml:"require_channel_binding"`
	// MaxBodyBytes caps request bodies (413 beyond).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// HSTSMaxAge is the Strict-Transport-Security max-age.
	HSTSMaxAge Duration `yaml:"hsts_max_age"`
	// ServerCertRenewBefore renews the appliance's own TLS certificates
	// this long before they expire.
	ServerCertRenewBefore Duration `yaml:"server_cert_renew_before"`
	// ServerKeyGenKEKFiles name files each holding one symmetric key
	// (and its identifier) shared with clients, under which /serverkeygen
	// encrypts the generated key for a CSR carrying that identifier in a
	// DecryptKeyIdentifier attribute (RFC 7030 4.4.1.1).
	ServerKeyGenKEKFiles []string `yaml:"serverkeygen_kek_files"`
}

// DNS configures the unicast DNS-SD server.
type DNS struct {
	TTL Duration `yaml:"ttl"`
	// Forward lists upstream resolvers (host:port) for names outside the
	// zone; empty means such queries are refused.
	Forward []string `yaml:"forward"`
	// Advertise lists the _nmos-certs._tcp instances, one per entry.
	Advertise []Advertisement `yaml:"advertise"`
	// Services lists further DNS-SD services (IS-04 registry, IS-10 ...).
	Services []Service `yaml:"services"`
	// Peers are the other appliances sharing the store, each advertised
	// as an _nmos-certs._tcp instance of its own, so that a device that
	// cannot reach one tries the next by pri.
	Peers []Peer `yaml:"peers"`
	// Push sends the records into the facility's own DNS server (RFC 2136).
	Push DNSPush `yaml:"push"`
	// Transfer lets listed secondaries copy the zone (AXFR, IXFR).
	Transfer DNSTransfer `yaml:"transfer"`
}

// Peer is another appliance's EST server.
type Peer struct {
	Hostname string `yaml:"hostname"`
	// Addresses are served as the hostname's A/AAAA records; required
	// when it is inside domain.
	Addresses   []string `yaml:"addresses"`
	Port        int      `yaml:"port"`
	Pri         int      `yaml:"pri"`
	Weight      int      `yaml:"weight"`
	APISelector string   `yaml:"api_selector"`
	Instance    string   `yaml:"instance"`
}

// DNSPush sends the DNS-SD records into a zone of another DNS server by
// dynamic update (RFC 2136) signed with TSIG; off while Server is empty.
type DNSPush struct {
	Server string `yaml:"server"`
	// Zone is the zone updated; default domain.
	Zone string  `yaml:"zone"`
	TSIG TSIGKey `yaml:"tsig"`
	// Refresh is how often the records are sent again.
	Refresh Duration `yaml:"refresh"`
	// RemoveOnStop takes the records back when the appliance stops.
	RemoveOnStop bool `yaml:"remove_on_stop"`
}

// DNSTransfer lets secondaries copy the zone; off while To is empty.
type DNSTransfer struct {
	To   []string `yaml:"to"`
	TSIG TSIGKey  `yaml:"tsig"`
}

// TSIGKey names a TSIG key (RFC 8945) and the file that holds its secret.
type TSIGKey struct {
	Name      string `yaml:"name"`
	Algorithm string `yaml:"algorithm"`
	// SecretFile holds the secret: a key clause as tsig-keygen writes it,
	// or the base64 secret alone.
	SecretFile string `yaml:"secret_file"`
}

// Advertisement is one _nmos-certs._tcp instance.
type Advertisement struct {
	Instance    string `yaml:"instance"`
	Port        int    `yaml:"port"`
	Pri         int    `yaml:"pri"`
	Weight      int    `yaml:"weight"`
	APISelector string `yaml:"api_selector"`
}

// Service is one further DNS-SD service instance.
type Service struct {
	Type     string `yaml:"type"`
	Instance string `yaml:"instance"`
	Target   string `yaml:"target"`
	// Addresses are published as the target's A/AAAA records; required
	// when the target is inside domain (and not hostname).
	Addresses []string `yaml:"addresses"`
	Port      int      `yaml:"port"`
	Pri       int      `yaml:"pri"`
	Weight    int      `yaml:"weight"`
	TXT       []string `yaml:"txt"`
}

// OCSP configures the responder.
type OCSP struct {
	// Signer is "delegated" (a short-lived responder certificate per
	// issuer) or "issuer" (the CA key signs responses itself).
	Signer string `yaml:"signer"`
	// Validity is the span between thisUpdate and nextUpdate.
	Validity Duration `yaml:"validity"`
	// ResponderCertLifetime is the validity of delegated responder certificates.
	ResponderCertLifetime Duration `yaml:"responder_cert_lifetime"`
}

// CRL configures the CRL publisher.
type CRL struct {
	// Validity is the span between thisUpdate and nextUpdate.
	Validity Duration `yaml:"validity"`
}

// Store selects the database.
type Store struct {
	// Driver is "sqlite" (the database file in data_dir) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection string (URI or key=value), or
	// DSNFile a private file holding it, so that its password is not in
	// the configuration.
	DSN     string `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a time.Duration written as Go does ("90s", "2160h") or in
// days ("90d").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes the duration as the file would ("90d", "30s").
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

// ParseDuration accepts Go durations and a whole number of days ("90d").
func ParseDuration(s string) (Duration, error) {
	if n := len(s); n > 1 && s[n-1] == 'd' {
		days, err := strconv.ParseUint(s[:n-1], 10, 31)
		if err == nil {
			return Duration(time.Duration(days) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return Duration(d), nil
}

// Line returns the line where key (a dotted path such as "listen.est" or
// "dns.advertise[1].pri") was set, or 0 when it came from defaults.
func (c *Config) Line(key string) int {
	if c == nil || c.lines == nil {
		return 0
	}
	return c.lines[key]
}

// Port returns the numeric port of a host:port listen address.
func Port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// secretKey matches the keys whose values Redacted hides.
var secretKey = regexp.MustCompile(`(?i)(password|passphrase|secret|token|dsn|private)`)

// Redacted returns the configuration as YAML, with the value of every key
// that may hold a secret (a password, a DSN, a token) replaced, for pages
// and logs.
func (c *Config) Redacted() (string, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return "", err
	}
	redact(&n)
	b, err := yaml.Marshal(&n)
	return string(b), err
}

func redact(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; secretKey.MatchString(k.Value) && v.Kind == yaml.ScalarNode && v.Value != "" {
				v.Value, v.Tag, v.Style = "(redacted)", "!!str", 0
			}
		}
	}
	for _, c := range n.Content {
		redact(c)
	}
}
