package nmoscerts

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// DefaultTTL is the TTL, in seconds, of every record when none is configured.
const DefaultTTL = 60

// maxTTL bounds the configurable TTL (one week); longer values only make
// configuration changes slow to reach clients.
const maxTTL = 7 * 24 * 3600

// ServiceCerts is the DNS-SD service type of the EST server (BCP-003-03).
const ServiceCerts = "_nmos-certs._tcp"

// Config is the plugin's configuration: one authoritative DNS-SD zone.
// Names are absolute or relative to nothing: a trailing dot is optional.
type Config struct {
	// Zone is the zone the plugin is authoritative for, e.g. "studio.example.test.".
	Zone string
	// Hostname is the appliance's host name. It must be inside Zone; it gets
	// the A/AAAA records of Addresses, is the zone's NS and SOA MNAME, and is
	// the default SRV target.
	Hostname string
	// Addresses of Hostname; at least one IPv4 address is required because
	// BCP-003-03 requires an A record for the EST server's host.
	Addresses []netip.Addr
	// TTL of every record in seconds; 0 means DefaultTTL.
	TTL uint32
	// Services are the DNS-SD advertisements, one instance each.
	Services []Service
	// Fallthrough passes queries for names outside Zone to the next plugin;
	// without it they are answered REFUSED.
	Fallthrough bool
	// Prepacked writes answers packed at setup, as bytes (ResponseWriter.Write),
	// instead of messages, falling back to messages when an answer needs
	// truncating or the query is TSIG-signed. It skips packing per query, but
	// plugins before this one that look at the response message (log, cache,
	// dnstap, rewrite) see no message; use it in chains without them.
	Prepacked bool
	// Serial is the SOA serial; 0 means the current time in seconds, so a
	// zone rebuilt on reload gets a newer serial.
	Serial uint32
}

// Service is one DNS-SD advertisement (RFC 6763): a PTR from its service type
// to the instance, and the instance's SRV and TXT records.
type Service struct {
	// Type is the service type relative to the zone, e.g. "_nmos-certs._tcp".
	Type string
	// Instance is the instance label as UTF-8 text (spaces, dots and other
	// characters are allowed and escaped on the wire). Empty derives one from
	// the target, port, priority and API selector.
	Instance string
	// Target is the host the SRV record points at; empty means Hostname.
	Target string
	// TargetAddresses are the addresses of Target when Target is inside the
	// zone and is not Hostname. They must be empty for a target outside the
	// zone, for which the plugin is not authoritative.
	TargetAddresses []netip.Addr
	// Port of the service, 1-65535.
	Port int
	// Priority is published as the TXT key "pri" and as the SRV priority.
	Priority int
	// Weight is the SRV weight.
	Weight int
	// APISelector, if set, is published as the TXT key "api_selector".
	APISelector string
	// TXT holds extra TXT strings, each "key=value" or a bare "key".
	TXT []string

	// pos is where the service was configured ("Corefile:12"), for errors.
	pos string
}

// where names a service in error messages.
func (s *Service) where(i int) string {
	if s.pos != "" {
		return fmt.Sprintf("%s: service %s", s.pos, s.Type)
	}
	return fmt.Sprintf("services[%d] %s", i, s.Type)
}

// reservedSelectors are the EST operation names; a label equal to one of them
// would make /.well-known/est/<label>/ read like an operation path.
var reservedSelectors = map[string]bool{
	"cacerts": true, "simpleenroll": true, "simplereenroll": true,
	"serverkeygen": true, "csrattrs": true, "fullcmc": true,
}

// checkZone validates a zone name and returns it lower-cased and fully qualified.
func checkZone(zone string) (string, error) {
	if zone == "" {
		return "", errors.New("zone is empty")
	}
	name, err := canonicalName(zone)
	if err != nil {
		return "", fmt.Errorf("zone %q: %w", zone, err)
	}
	if name == "." {
		return "", errors.New("the root zone cannot be served")
	}
	return strings.ToLower(name), nil
}

// checkHostname validates a host name (letters, digits and hyphens, RFC 952/1123)
// and returns it lower-cased and fully qualified.
func checkHostname(host string) (string, error) {
	if host == "" {
		return "", errors.New("host name is empty")
	}
	fq := dns.Fqdn(strings.ToLower(host))
	if fq == "." {
		return "", errors.New("host name is the root")
	}
	if len(fq) > 254 {
		return "", fmt.Errorf("host name %q is longer than 253 characters", host)
	}
	for _, label := range strings.Split(strings.TrimSuffix(fq, "."), ".") {
		if err := checkLDH(label); err != nil {
			return "", fmt.Errorf("host name %q: %w", host, err)
		}
	}
	return fq, nil
}

func checkLDH(label string) error {
	if label == "" {
		return errors.New("empty label")
	}
	if len(label) > 63 {
		return fmt.Errorf("label %q is longer than 63 characters", label)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has %q: only letters, digits and hyphens are allowed", label, c)
		}
	}
	return nil
}

// checkServiceType validates a DNS-SD service type such as "_nmos-certs._tcp"
// (RFC 6763 section 7, service names per RFC 6335) and returns it lower-cased.
func checkServiceType(t string) (string, error) {
	t = strings.ToLower(strings.TrimSuffix(t, "."))
	name, proto, ok := strings.Cut(t, ".")
	if !ok || (proto != "_tcp" && proto != "_udp") {
		return "", fmt.Errorf("service type %q: want _<name>._tcp or _<name>._udp", t)
	}
	if !strings.HasPrefix(name, "_") {
		return "", fmt.Errorf("service type %q: the service name must start with '_'", t)
	}
	name = name[1:]
	if name == "" || len(name) > 15 {
		return "", fmt.Errorf("service type %q: the service name must be 1 to 15 characters", t)
	}
	letter := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(name)-1 || name[i-1] == '-' {
				return "", fmt.Errorf("service type %q: misplaced hyphen in the service name", t)
			}
		default:
			return "", fmt.Errorf("service type %q: the service name has %q: only letters, digits and hyphens are allowed", t, c)
		}
	}
	if !letter {
		return "", fmt.Errorf("service type %q: the service name needs a letter", t)
	}
	if t == "_dns-sd._udp" {
		return "", fmt.Errorf("service type %q is reserved for DNS-SD itself", t)
	}
	return t, nil
}

// checkInstance validates a DNS-SD instance name (RFC 6763 section 4.1.1):
// UTF-8 text of at most 63 bytes without control characters.
func checkInstance(s string) error {
	switch {
	case s == "":
		return errors.New("instance name is empty")
	case len(s) > 63:
		return fmt.Errorf("instance name %q is %d bytes, more than 63", s, len(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("instance name %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("instance name %q contains a control character", s)
		}
	}
	return nil
}

// checkAPISelector validates the api_selector label: it becomes a path segment
// of the EST URL (/.well-known/est/<label>/), so it is limited to RFC 3986
// unreserved characters.
func checkAPISelector(s string) error {
	if s == "" {
		return errors.New("api_selector is empty")
	}
	if len(s) > 200 {
		return fmt.Errorf("api_selector %q is longer than 200 characters", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("api_selector %q is not a usable path segment", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return fmt.Errorf("api_selector %q has %q: only letters, digits and - . _ ~ are allowed", s, c)
		}
	}
	if reservedSelectors[strings.ToLower(s)] {
		return fmt.Errorf("api_selector %q is an EST operation name", s)
	}
	return nil
}

// checkTXT validates extra TXT strings (RFC 6763 section 6): each is "key" or
// "key=value", the key printable ASCII without '=', unique ignoring case, and
// not one the plugin sets itself (pri, api_selector); each string fits 255 bytes.
func checkTXT(pairs []string) error {
	seen := map[string]bool{"pri": true, "api_selector": true}
	for _, p := range pairs {
		key, _, _ := strings.Cut(p, "=")
		if key == "" {
			return fmt.Errorf("txt %q has no key", p)
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				return fmt.Errorf("txt key %q: keys are printable ASCII", key)
			}
		}
		if len(p) > 255 {
			return fmt.Errorf("txt %q is longer than 255 bytes", p)
		}
		lk := strings.ToLower(key)
		if lk == "pri" || lk == "api_selector" {
			return fmt.Errorf("txt key %q is set by the pri and api_selector options", key)
		}
		if seen[lk] {
			return fmt.Errorf("txt key %q is given twice", key)
		}
		seen[lk] = true
	}
	return nil
}

// checkUint16 checks that v fits a 16-bit field.
func checkUint16(what string, v, min int) error {
	if v < min || v > 65535 {
		return fmt.Errorf("%s %d is out of range %d-65535", what, v, min)
	}
	return nil
}

// parseUint16 parses a decimal 16-bit field of a Corefile.
func parseUint16(what, s string, min int) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	}
	return v, checkUint16(what, v, min)
}

// checkAddresses validates a host's addresses: no zones, no unspecified,
// multicast or duplicate addresses. IPv4-mapped IPv6 addresses are taken as IPv4.
func checkAddresses(addrs []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if !a.IsValid() {
			return nil, errors.New("invalid address")
		}
		a = a.Unmap()
		if a.Zone() != "" {
			return nil, fmt.Errorf("address %s has a zone", a)
		}
		if a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("address %s is not a host address", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("address %s is given twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// canonicalName returns name in the presentation form miekg/dns produces when
// it unpacks a message, so it can be compared with query names.
func canonicalName(name string) (string, error) {
	var buf [256]byte
	off, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("not a valid domain name: %w", err)
	}
	out, _, err := dns.UnpackDomainName(buf[:off], 0)
	if err != nil {
		return "", fmt.Errorf("not a valid domain name: %w", err)
	}
	return out, nil
}

// escapeLabel turns raw label bytes into a presentation-format label.
func escapeLabel(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x21 || c > 0x7e:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// escapeTXT turns a raw TXT string into miekg/dns's presentation form, in
// which only the backslash is special when packing.
func escapeTXT(raw string) string { return strings.ReplaceAll(raw, `\`, `\\`) }

// inZone reports whether the lower-case name q is origin or below it.
func inZone(q, origin string) bool {
	if len(q) < len(origin) || q[len(q)-len(origin):] != origin {
		return false
	}
	if len(q) == len(origin) {
		return true
	}
	i := len(q) - len(origin) - 1
	if q[i] != '.' {
		return false
	}
	// The dot must not be escaped: count the backslashes before it.
	n := 0
	for j := i - 1; j >= 0 && q[j] == '\\'; j-- {
		n++
	}
	return n%2 == 0
}
