// Package dns runs the appliance's DNS server: CoreDNS, embedded in the
// process, with the nmoscerts plugin answering unicast DNS-SD queries for the
// EST server (BCP-003-03) and, when upstream resolvers are configured,
// forwarding every other query to them.
//
// CoreDNS is embedded the way its core/dnsserver package documents: an
// explicit directive list, the plugins imported here and nowhere else, a
// Corefile rendered from Options and handed to caddy.Start. Nothing here
// reads flags, traps signals or exits the process.
//
// CoreDNS's state (directives, the standard library logger it writes to) is
// process-wide; Start, Reload and Stop of all Servers are serialized.
package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	mdns "github.com/miekg/dns"

	// The plugins of the rendered Corefile, and only those.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/tsig"
	_ "github.com/nmos-certs/nmos-certs/plugins/nmoscerts"
)

// directives is the execution order of the plugins the Corefile may use:
// tsig checks a signed request before transfer answers AXFR and IXFR,
// which come to nmoscerts only when transfers are off (and are refused).
var directives = []string{"bind", metricsDirective, "errors", "tsig", "transfer", "nmoscerts", "forward"}

// Service is one DNS-SD advertisement.
type Service struct {
	// Type is the service type, e.g. "_nmos-certs._tcp" or "_nmos-register._tcp".
	Type string
	// Instance is the instance name (UTF-8, at most 63 bytes); empty derives
	// one from the target, port, priority and API selector.
	Instance string
	// Target is the SRV target host; empty means Options.Hostname.
	Target string
	// TargetAddresses are Target's addresses, needed when Target is inside
	// the zone and is not Options.Hostname, not allowed when it is outside.
	TargetAddresses []netip.Addr
	// Port is the service's port.
	Port int
	// Pri is the TXT "pri" value and the SRV priority; Weight the SRV weight.
	Pri, Weight int
	// APISelector, if set, is published as TXT "api_selector".
	APISelector string
	// TXT holds extra TXT strings, "key=value" or "key".
	TXT []string
}

// Options configures the DNS server.
type Options struct {
	// Zone is the DNS-SD zone the appliance is authoritative for.
	Zone string
	// Hostname is the appliance's name inside Zone, with Addresses.
	Hostname  string
	Addresses []netip.Addr
	// Listen is "IP:PORT" (or ":PORT" for every address), served on UDP and
	// TCP. Port 0 picks a port free on both; Server.Addr tells which.
	Listen string
	// TTL of the records, in whole seconds; 0 means 60s.
	TTL time.Duration
	// Services are the advertisements; at least one.
	Services []Service
	// Forward lists upstream resolvers, "IP" or "IP:PORT". Queries outside
	// Zone go to them; with none they are answered REFUSED.
	Forward []string
	// Transfer, when set, lets secondaries copy the zone (AXFR, IXFR).
	Transfer *Transfer
	// Serial is the zone's SOA serial; 0 means the time in seconds, or
	// one more than the last served if that is not older (SerialFile), so
	// that a secondary sees every change, even two in a second or a clock
	// set back.
	Serial uint32
	// SerialFile keeps the last serial served across restarts ("" for
	// none).
	SerialFile string
}

// nextSerial is the serial to serve after last: the time in seconds, or
// last+1 if that is not newer (RFC 1982 arithmetic).
func nextSerial(last uint32) uint32 {
	now := uint32(time.Now().Unix())
	if last != 0 && int32(now-last) <= 0 {
		return last + 1
	}
	return now
}

// readSerial reads the serial kept in path (0 when there is none).
func readSerial(path string) uint32 {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// writeSerial keeps serial in path, atomically.
func writeSerial(path string, serial uint32) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(uint64(serial), 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Transfer says who may copy the zone: the addresses in To, with a
// request signed by the TSIG key (RFC 8945). They are sent a NOTIFY
// (RFC 1996) each time the zone is served anew (at start and reload).
type Transfer struct {
	// To are the secondaries, "IP" or "IP:PORT" (the port their NOTIFY
	// goes to; 53 by default).
	To  []string
	Key TSIGKey
}

// TSIGKey is a TSIG key: its name (a domain name), algorithm and secret.
type TSIGKey struct {
	Name string
	// Algorithm is hmac-sha256 (the default), hmac-sha384, hmac-sha512 or
	// hmac-sha224; HMAC-MD5 and SHA-1 are not accepted.
	Algorithm string
	Secret    []byte
}

// Server is a running DNS server.
type Server struct {
	inst       *caddy.Instance
	listen     string         // Options.Listen as asked for, perhaps with port 0
	resolved   string         // Options.Listen with port 0 replaced
	addr       netip.AddrPort // the address bound, on UDP and TCP
	corefile   string
	serial     uint32 // the SOA serial served
	serialFile string
	logger     *slog.Logger
}

// caddyMu serializes everything that touches CoreDNS's process-wide state.
var caddyMu sync.Mutex

// setupOnce selects the directives and registers the server type, once per process.
var setupOnce = sync.OnceValue(func() error {
	if err := dnsserver.SetDirectives(directives); err != nil {
		return err
	}
	if err := dnsserver.Register(); err != nil {
		return err
	}
	caddy.Quiet = true
	dnsserver.Quiet = true
	return nil
})

// Check renders o and builds its zone without serving it: what Start
// would refuse in the records, it refuses.
func Check(o Options) error {
	_, err := Render(o)
	return err
}

// Start renders o into a Corefile and starts CoreDNS with it. CoreDNS's log
// output goes to logger, with component=dns (nil means slog.Default()).
func Start(o Options, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "dns")
	if err := setupOnce(); err != nil {
		return nil, fmt.Errorf("dns: set up coredns: %w", err)
	}

	caddyMu.Lock()
	defer caddyMu.Unlock()
	routeLogs(logger)

	s := &Server{listen: o.Listen, logger: logger, serialFile: o.SerialFile}
	if o.Serial == 0 {
		o.Serial = nextSerial(readSerial(o.SerialFile))
	}
	// A port picked for "port 0" can be taken by someone else before CoreDNS
	// binds it: pick again a few times.
	for attempt := 0; ; attempt++ {
		resolved, err := resolveListen(o.Listen)
		if err != nil {
			return nil, err
		}
		o2 := o
		o2.Listen = resolved
		corefile, err := Render(o2)
		if err != nil {
			return nil, err
		}
		inst, err := caddy.Start(corefileInput(corefile))
		if err != nil {
			if inst != nil {
				// Startup callbacks may have run (forward starts its
				// proxies before the listeners are opened): undo them.
				_ = inst.ShutdownCallbacks()
			}
			if attempt < 3 && resolved != o.Listen && addrInUse(err) {
				continue
			}
			return nil, fmt.Errorf("dns: start coredns: %w", err)
		}
		s.inst, s.corefile, s.resolved, s.serial = inst, corefile, resolved, o.Serial
		break
	}
	if err := s.learnAddr(); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.waitReady(o.Zone); err != nil {
		s.stop()
		return nil, err
	}
	if err := writeSerial(s.serialFile, s.serial); err != nil {
		logger.Warn("keeping the zone's serial", "file", s.serialFile, "err", err)
	}
	logger.Info("dns server started", "listen", s.addr.String(), "zone", o.Zone, "services", len(o.Services), "forward", len(o.Forward))
	return s, nil
}

// Reload replaces the running configuration with o. On any error the old
// configuration keeps serving and the error is returned. Keeping Listen
// keeps the bound sockets, even when it asked for port 0.
func (s *Server) Reload(o Options) error {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	if s.inst == nil {
		return errors.New("dns: reload: server is stopped")
	}
	asked := o.Listen
	if asked == s.listen {
		o.Listen = s.resolved
	} else {
		resolved, err := resolveListen(asked)
		if err != nil {
			return fmt.Errorf("dns: reload: %w", err)
		}
		o.Listen = resolved
	}
	if o.Serial == 0 {
		o.Serial = nextSerial(s.serial)
	}
	corefile, err := Render(o)
	if err != nil {
		return fmt.Errorf("dns: reload: %w", err)
	}
	inst, err := s.inst.Restart(corefileInput(corefile))
	if err != nil {
		// caddy returns the old instance, still serving.
		return fmt.Errorf("dns: reload: %w", err)
	}
	s.inst, s.corefile, s.listen, s.resolved, s.serial = inst, corefile, asked, o.Listen, o.Serial
	if err := s.learnAddr(); err != nil {
		return fmt.Errorf("dns: reload: %w", err)
	}
	if err := s.waitReady(o.Zone); err != nil {
		return fmt.Errorf("dns: reload: %w", err)
	}
	if err := writeSerial(s.serialFile, s.serial); err != nil {
		s.logger.Warn("keeping the zone's serial", "file", s.serialFile, "err", err)
	}
	s.logger.Info("dns server reloaded", "listen", s.addr.String(), "zone", o.Zone, "services", len(o.Services), "forward", len(o.Forward))
	return nil
}

// Stop shuts the server down: it stops answering and releases its sockets.
// Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	if s.inst == nil {
		return nil
	}
	err := s.stop()
	if err != nil {
		return fmt.Errorf("dns: stop: %w", err)
	}
	s.logger.Info("dns server stopped", "listen", s.addr.String())
	return nil
}

func (s *Server) stop() error {
	err := errors.Join(errors.Join(s.inst.ShutdownCallbacks()...), s.inst.Stop())
	s.inst.Wait()
	s.inst = nil
	return err
}

// Addr returns the address the server answers on, over UDP and TCP.
func (s *Server) Addr() netip.AddrPort {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	return s.addr
}

// Corefile returns the Corefile the server runs.
func (s *Server) Corefile() string {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	return s.corefile
}

// learnAddr reads the bound address back from CoreDNS and checks that UDP
// and TCP agree.
func (s *Server) learnAddr() error {
	servers := s.inst.Servers()
	if len(servers) == 0 {
		return errors.New("dns: coredns started no listener")
	}
	tcp, ok1 := servers[0].Addr().(*net.TCPAddr)
	udp, ok2 := servers[0].LocalAddr().(*net.UDPAddr)
	if !ok1 || !ok2 || tcp.Port != udp.Port {
		return fmt.Errorf("dns: coredns listens on %v (TCP) and %v (UDP)", servers[0].Addr(), servers[0].LocalAddr())
	}
	s.addr = tcp.AddrPort()
	s.addr = netip.AddrPortFrom(s.addr.Addr().Unmap(), s.addr.Port())
	return nil
}

// waitReady returns once the server answers over UDP and TCP. CoreDNS starts
// its listeners' serving loops in goroutines; until a loop runs, stopping the
// server cannot reach it, so Start and Reload return only after both answer.
func (s *Server) waitReady(zone string) error {
	target := s.addr
	if target.Addr().IsUnspecified() {
		lo := netip.IPv6Loopback()
		if target.Addr().Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		target = netip.AddrPortFrom(lo, target.Port())
	}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(zone), mdns.TypeSOA)
	deadline := time.Now().Add(5 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: network, Timeout: 250 * time.Millisecond}
		for {
			_, _, err := c.Exchange(q, target.String())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("dns: server on %s does not answer over %s: %w", target, network, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// resolveListen replaces port 0 with a port that is free for both UDP and
// TCP: CoreDNS would otherwise bind two different ports.
func resolveListen(listen string) (string, error) {
	host, port, err := splitListen(listen)
	if err != nil {
		return "", err
	}
	h := ""
	if host.IsValid() {
		h = host.String()
	}
	if port != 0 {
		return net.JoinHostPort(h, strconv.Itoa(int(port))), nil
	}
	var lastErr error
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(h, "0"))
		if err != nil {
			return "", fmt.Errorf("dns: listen %q: %w", listen, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(h, strconv.Itoa(p)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		pc.Close()
		return net.JoinHostPort(h, strconv.Itoa(p)), nil
	}
	return "", fmt.Errorf("dns: listen %q: no port free on both UDP and TCP: %w", listen, lastErr)
}

// addrInUse reports whether err is a bind failure on a busy address. caddy
// formats the listener errors with %v, so the error chain is lost.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), syscall.EADDRINUSE.Error())
}

func corefileInput(corefile string) caddy.Input {
	return caddy.CaddyfileInput{Filepath: "Corefile", Contents: []byte(corefile), ServerTypeName: "dns"}
}
