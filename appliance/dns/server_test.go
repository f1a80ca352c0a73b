package dns

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const zone = "studio.example.test."

func testOptions() Options {
	return Options{
		Zone:      "studio.example.test",
		Hostname:  "est.studio.example.test",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		Listen:    "127.0.0.1:0",
		TTL:       30 * time.Second,
		Services: []Service{
			{Type: "_nmos-certs._tcp", Instance: "nmos-certs 1", Port: 8443, Pri: 10},
			{Type: "_nmos-certs._tcp", Port: 8443, Pri: 20, Weight: 5, APISelector: "lab"},
			{
				Type: "_nmos-register._tcp", Instance: "Registry", Target: "registry.studio.example.test",
				TargetAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, Port: 443, Pri: 0,
				TXT: []string{"api_proto=https", "api_ver=v1.3", "api_auth=true"},
			},
		},
	}
}

// syncBuffer collects log output written from CoreDNS's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t *testing.T, o Options) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Start(o, logger)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s, logs
}

func ask(t *testing.T, network string, addr netip.AddrPort, name string, qtype uint16, edit ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, e := range edit {
		e(m)
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, addr.String())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if resp.Id != m.Id {
		t.Fatalf("response ID %d, query ID %d", resp.Id, m.Id)
	}
	return resp
}

func rrStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

func wantRRs(t *testing.T, what string, got []dns.RR, want ...string) {
	t.Helper()
	slices.Sort(want)
	if g := rrStrings(got); !slices.Equal(g, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, g, want)
	}
}

func TestEndToEnd(t *testing.T) {
	s, _ := startServer(t, testOptions())
	addr := s.Addr()
	if !addr.Addr().IsLoopback() || addr.Port() == 0 {
		t.Fatalf("Addr() = %v", addr)
	}

	const (
		certs = "_nmos-certs._tcp." + zone
		inst1 = `nmos-certs\ 1.` + certs
		inst2 = `est\ 8443\ pri\ 20\ lab.` + certs
		reg   = "_nmos-register._tcp." + zone
	)
	var (
		estA    = "est." + zone + "\t30\tIN\tA\t127.0.0.1"
		estAAAA = "est." + zone + "\t30\tIN\tAAAA\t::1"
		srv1    = inst1 + "\t30\tIN\tSRV\t10 0 8443 est." + zone
		srv2    = inst2 + "\t30\tIN\tSRV\t20 5 8443 est." + zone
		txt1    = inst1 + "\t30\tIN\tTXT\t\"pri=10\""
		txt2    = inst2 + "\t30\tIN\tTXT\t\"pri=20\" \"api_selector=lab\""
		soa     = zone + "\t30\tIN\tSOA\test." + zone + " hostmaster." + zone
	)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := ask(t, network, addr, certs, dns.TypePTR)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.Truncated {
				t.Errorf("PTR header: %v", r.MsgHdr)
			}
			wantRRs(t, "PTR answer", r.Answer, certs+"\t30\tIN\tPTR\t"+inst1, certs+"\t30\tIN\tPTR\t"+inst2)
			wantRRs(t, "PTR additional", r.Extra, srv1, srv2, txt1, txt2, estA, estAAAA)

			r = ask(t, network, addr, inst1, dns.TypeSRV)
			wantRRs(t, "SRV", r.Answer, srv1)
			wantRRs(t, "SRV additional", r.Extra, estA, estAAAA)
			wantRRs(t, "TXT", ask(t, network, addr, inst2, dns.TypeTXT).Answer, txt2)
			wantRRs(t, "A", ask(t, network, addr, "est."+zone, dns.TypeA).Answer, estA)
			wantRRs(t, "AAAA", ask(t, network, addr, "est."+zone, dns.TypeAAAA).Answer, estAAAA)
			wantRRs(t, "NS", ask(t, network, addr, zone, dns.TypeNS).Answer, zone+"\t30\tIN\tNS\test."+zone)

			r = ask(t, network, addr, zone, dns.TypeSOA)
			if len(r.Answer) != 1 || !strings.HasPrefix(r.Answer[0].String(), soa) {
				t.Errorf("SOA: %v", r.Answer)
			}
			for _, b := range []string{"b", "db", "lb"} {
				name := b + "._dns-sd._udp." + zone
				wantRRs(t, "browse "+b, ask(t, network, addr, name, dns.TypePTR).Answer, name+"\t30\tIN\tPTR\t"+zone)
			}
			wantRRs(t, "service types", ask(t, network, addr, "_services._dns-sd._udp."+zone, dns.TypePTR).Answer,
				"_services._dns-sd._udp."+zone+"\t30\tIN\tPTR\t"+certs, "_services._dns-sd._udp."+zone+"\t30\tIN\tPTR\t"+reg)
			r = ask(t, network, addr, reg, dns.TypePTR)
			wantRRs(t, "register PTR", r.Answer, reg+"\t30\tIN\tPTR\tRegistry."+reg)
			wantRRs(t, "register additional", r.Extra,
				"Registry."+reg+"\t30\tIN\tSRV\t0 0 443 registry."+zone,
				"Registry."+reg+"\t30\tIN\tTXT\t\"pri=0\" \"api_proto=https\" \"api_ver=v1.3\" \"api_auth=true\"",
				"registry."+zone+"\t30\tIN\tA\t127.0.0.2")

			// NXDOMAIN and NODATA carry the SOA.
			r = ask(t, network, addr, "nope."+zone, dns.TypeA)
			if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Answer) != 0 || len(r.Ns) != 1 || !strings.HasPrefix(r.Ns[0].String(), soa) {
				t.Errorf("NXDOMAIN: %v", r)
			}
			r = ask(t, network, addr, "est."+zone, dns.TypeTXT)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Errorf("NODATA: %v", r)
			}

			// Case-insensitive, with the question echoed as asked.
			r = ask(t, network, addr, "EST.Studio.Example.TEST.", dns.TypeA)
			if len(r.Answer) != 1 || r.Question[0].Name != "EST.Studio.Example.TEST." {
				t.Errorf("mixed case: %v", r)
			}

			// EDNS0: the OPT record comes back, with DO echoed.
			r = ask(t, network, addr, "est."+zone, dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) })
			if o := r.IsEdns0(); o == nil || !o.Do() || o.Version() != 0 {
				t.Errorf("EDNS0 not echoed: %v", r)
			}
			r = ask(t, network, addr, "est."+zone, dns.TypeA)
			if r.IsEdns0() != nil {
				t.Errorf("OPT without EDNS0 in the query: %v", r)
			}

			// Outside the zone, without forwarders: REFUSED.
			r = ask(t, network, addr, "example.org.", dns.TypeA)
			if r.Rcode != dns.RcodeRefused || r.Authoritative {
				t.Errorf("out of zone: %v", r.MsgHdr)
			}
		})
	}
}

// startUpstream runs a plain DNS server on loopback (UDP and TCP on one port)
// that answers every A query with 192.0.2.99.
func startUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	hp, err := resolveListen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 300 IN A 192.0.2.99")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: hp, Net: network, Handler: handler}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ListenAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("upstream %s: %v", network, err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return netip.MustParseAddrPort(hp)
}

func TestForward(t *testing.T) {
	up := startUpstream(t)
	o := testOptions()
	o.Forward = []string{up.String()}
	s, _ := startServer(t, o)
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, s.Addr(), "www.example.org.", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.99" {
			t.Errorf("%s forwarded: %v", network, r)
		}
		// The zone is still answered locally, including NXDOMAIN.
		r = ask(t, network, s.Addr(), "est."+zone, dns.TypeA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" || !r.Authoritative {
			t.Errorf("%s local: %v", network, r)
		}
		if r = ask(t, network, s.Addr(), "nope."+zone, dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s local NXDOMAIN: %v", network, r)
		}
	}
}

// TestTruncation checks that a PTR answer too big for UDP sets TC, and that
// TCP returns it whole.
func TestTruncation(t *testing.T) {
	o := testOptions()
	o.Services = nil
	for i := range 40 {
		o.Services = append(o.Services, Service{Type: "_nmos-certs._tcp", Instance: fmt.Sprintf("EST server %02d", i), Port: 8000 + i, Pri: i})
	}
	s, _ := startServer(t, o)
	name := "_nmos-certs._tcp." + zone

	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypePTR)
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 40 {
		t.Errorf("UDP without EDNS0: TC=%v with %d answers; want TC and fewer than 40", r.Truncated, len(r.Answer))
	}
	r = ask(t, "udp", s.Addr(), name, dns.TypePTR, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if !r.Truncated {
		t.Errorf("UDP with a 1232-byte buffer: TC=%v with %d answers", r.Truncated, len(r.Answer))
	}
	r = ask(t, "tcp", s.Addr(), name, dns.TypePTR)
	if r.Truncated || len(r.Answer) != 40 || len(r.Extra) != 2*40+2 {
		t.Errorf("TCP: TC=%v, %d answers, %d additional", r.Truncated, len(r.Answer), len(r.Extra))
	}
}

// TestGarbage sends malformed packets over UDP and TCP and checks that the
// server keeps answering.
func TestGarbage(t *testing.T) {
	s, _ := startServer(t, testOptions())
	addr := s.Addr().String()

	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	valid := new(dns.Msg)
	valid.SetQuestion("est."+zone, dns.TypeA)
	wire, _ := valid.Pack()
	packets := [][]byte{
		{},
		{0x12},
		{0x12, 0x34, 0x01}, // truncated header
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00},       // truncated header
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}, // one question announced, none present
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0}, // no question
		{0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		wire[:len(wire)-3],                     // question cut short
		append(slices.Clone(wire), 0xde, 0xad), // trailing bytes
		bytes.Repeat([]byte{0xc0, 0x0c}, 300),  // compression pointer loop
	}
	for range 200 {
		p := make([]byte, 1+randInt(600))
		rand.Read(p)
		packets = append(packets, p)
	}
	for _, p := range packets {
		if _, err := udp.Write(p); err != nil {
			t.Fatal(err)
		}
	}

	// TCP: garbage after a length, a short length, a length promising more
	// than comes, and random bytes, each on its own connection.
	tcpPayloads := [][]byte{
		append([]byte{0, 12}, bytes.Repeat([]byte{0xff}, 12)...),
		{0},
		append([]byte{0xff, 0xff}, wire...),
		append([]byte{0, byte(len(wire) - 5)}, wire[:len(wire)-5]...),
	}
	for range 20 {
		p := make([]byte, 1+randInt(300))
		rand.Read(p)
		tcpPayloads = append(tcpPayloads, p)
	}
	for _, p := range tcpPayloads {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(p)
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		io.Copy(io.Discard, conn)
		conn.Close()
	}

	for _, network := range []string{"udp", "tcp"} {
		if r := ask(t, network, s.Addr(), "est."+zone, dns.TypeA); len(r.Answer) != 1 {
			t.Errorf("%s after garbage: %v", network, r)
		}
	}
}

func randInt(n int) int {
	var b [4]byte
	rand.Read(b[:])
	return int(binary.BigEndian.Uint32(b[:]) % uint32(n))
}

func TestReload(t *testing.T) {
	s, logs := startServer(t, testOptions())
	addr := s.Addr()
	certs := "_nmos-certs._tcp." + zone

	o := testOptions()
	o.Services = []Service{{Type: "_nmos-certs._tcp", Instance: "replacement", Port: 9443, Pri: 1}}
	if err := s.Reload(o); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if s.Addr() != addr {
		t.Errorf("address changed from %v to %v", addr, s.Addr())
	}
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, certs, dns.TypePTR)
		wantRRs(t, network+" PTR after reload", r.Answer, certs+"\t30\tIN\tPTR\treplacement."+certs)
		if r := ask(t, network, addr, "_nmos-register._tcp."+zone, dns.TypePTR); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: removed service type still answers: %v", network, r)
		}
	}

	// A configuration that does not validate: error, old answers stay.
	bad := o
	bad.Hostname = "est.elsewhere.test"
	if err := s.Reload(bad); err == nil || !strings.Contains(err.Error(), "not inside zone") {
		t.Errorf("Reload(bad hostname) = %v", err)
	}
	// A configuration CoreDNS cannot start: the port is taken.
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	moved := o
	moved.Listen = blocker.Addr().String()
	moved.Services = []Service{{Type: "_nmos-certs._tcp", Instance: "never", Port: 1}}
	if err := s.Reload(moved); err == nil {
		t.Error("Reload onto a busy port succeeded")
	}
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, certs, dns.TypePTR)
		wantRRs(t, network+" PTR after failed reloads", r.Answer, certs+"\t30\tIN\tPTR\treplacement."+certs)
	}
	if s.Addr() != addr {
		t.Errorf("address changed to %v by a failed reload", s.Addr())
	}
	if !strings.Contains(logs.String(), `"component":"dns"`) || !strings.Contains(logs.String(), "Reloading") {
		t.Errorf("CoreDNS's reload log is not in the dns component's log:\n%s", logs.String())
	}

	// A working reload after the failed ones.
	o.Services = append(o.Services, Service{Type: "_nmos-certs._tcp", Instance: "second", Port: 9444})
	if err := s.Reload(o); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	r := ask(t, "udp", addr, certs, dns.TypePTR)
	wantRRs(t, "PTR after second reload", r.Answer, certs+"\t30\tIN\tPTR\treplacement."+certs, certs+"\t30\tIN\tPTR\tsecond."+certs)
}

func TestStartErrors(t *testing.T) {
	o := testOptions()
	o.Services[0].Port = 0
	if _, err := Start(o, nil); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Errorf("Start(port 0) = %v", err)
	}
	blocker, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	o = testOptions()
	o.Listen = blocker.LocalAddr().String()
	if _, err := Start(o, nil); err == nil {
		t.Error("Start on a busy port succeeded")
	}
}

func TestStopReleasesPort(t *testing.T) {
	s, err := Start(testOptions(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.Reload(testOptions()); err == nil {
		t.Error("Reload after Stop succeeded")
	}
	for _, network := range []string{"tcp", "udp"} {
		var c io.Closer
		var err error
		if network == "tcp" {
			c, err = net.Listen("tcp", addr.String())
		} else {
			c, err = net.ListenPacket("udp", addr.String())
		}
		if err != nil {
			t.Errorf("%s port not released: %v", network, err)
			continue
		}
		c.Close()
	}
}

// TestMetrics checks that CoreDNS's own series and the plugin's are recorded
// in the default registry, which the appliance serves on its /metrics.
func TestMetrics(t *testing.T) {
	s, _ := startServer(t, testOptions())
	server := "dns://" + s.Addr().String()
	before := counterValue(t, "coredns_dns_requests_total", map[string]string{"server": server, "type": "SRV", "proto": "udp"})
	for range 3 {
		ask(t, "udp", s.Addr(), `nmos-certs\ 1._nmos-certs._tcp.`+zone, dns.TypeSRV)
	}
	ask(t, "udp", s.Addr(), "nope."+zone, dns.TypeA)
	// CoreDNS counts a request once its answer is written, so the client
	// may read the answer a moment before the count moves: wait for it.
	labels := map[string]string{"server": server, "type": "SRV", "proto": "udp"}
	got := counterValue(t, "coredns_dns_requests_total", labels)
	for deadline := time.Now().Add(5 * time.Second); got < before+3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		got = counterValue(t, "coredns_dns_requests_total", labels)
	}
	if got != before+3 {
		t.Errorf("coredns_dns_requests_total{type=SRV} went from %v to %v, want +3", before, got)
	}
	if got := counterValue(t, "coredns_dns_responses_total", map[string]string{"server": server, "rcode": "NXDOMAIN"}); got < 1 {
		t.Errorf("coredns_dns_responses_total{rcode=NXDOMAIN} = %v", got)
	}
	if got := counterValue(t, "coredns_nmoscerts_requests_total", map[string]string{"type": "SRV", "rcode": "NOERROR"}); got < 3 {
		t.Errorf("coredns_nmoscerts_requests_total{type=SRV} = %v", got)
	}
	if got := gaugeValue(t, "coredns_nmoscerts_advertisements", map[string]string{"zone": zone, "service": "_nmos-certs._tcp"}); got != 2 {
		t.Errorf("coredns_nmoscerts_advertisements = %v, want 2", got)
	}
	if got := gaugeValue(t, "coredns_plugin_enabled", map[string]string{"server": server, "name": "nmoscerts"}); got != 1 {
		t.Errorf("coredns_plugin_enabled{name=nmoscerts} = %v", got)
	}
}

// metricValue sums the values of the series of name that have labels, from
// the default registry; found is false when there is none.
func metricValue(t *testing.T, name string, labels map[string]string) (sum float64, found bool) {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			found = true
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum, found
}

func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := metricValue(t, name, labels)
	return v
}

func gaugeValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	v, found := metricValue(t, name, labels)
	if !found {
		return -1
	}
	return v
}

// TestLogBridge checks the translation of CoreDNS's log lines.
func TestLogBridge(t *testing.T) {
	var buf syncBuffer
	var b logBridge
	b.logger.Store(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "dns"))
	for _, line := range []string{
		"[ERROR] plugin/errors: 2 example.org. A: read udp: connection refused\n",
		"[WARNING] something odd\n",
		"[INFO] Reloading\n",
		"no prefix at all\n",
	} {
		b.Write([]byte(line))
	}
	got := buf.String()
	for _, want := range []string{
		`level=ERROR msg="2 example.org. A: read udp: connection refused" component=dns plugin=errors`,
		`level=WARN msg="something odd" component=dns`,
		`level=INFO msg=Reloading component=dns`,
		`level=INFO msg="no prefix at all" component=dns`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log output lacks %q:\n%s", want, got)
		}
	}
}

// TestConcurrentQueries runs queries over UDP and TCP in parallel, for the
// race detector's sake: the precomputed answers are shared.
func TestConcurrentQueries(t *testing.T) {
	o := testOptions()
	for i := range 12 {
		o.Services = append(o.Services, Service{Type: "_nmos-certs._tcp", Instance: fmt.Sprintf("extra %d", i), Port: 9000 + i})
	}
	s, _ := startServer(t, o)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			network := []string{"udp", "tcp"}[w%2]
			c := &dns.Client{Net: network, Timeout: 3 * time.Second}
			for i := range 50 {
				m := new(dns.Msg)
				m.SetQuestion("_nmos-certs._tcp."+zone, dns.TypePTR)
				if i%2 == 0 {
					m.SetEdns0(uint16(512+i*20), i%4 == 0)
				}
				r, _, err := c.Exchange(m, s.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
					errs <- fmt.Errorf("%s: %v", network, r.MsgHdr)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSerialRises: the SOA serial rises at every reload, two in one
// second included, and across a restart that keeps it in a file, even
// when the clock is behind the serial last served.
func TestSerialRises(t *testing.T) {
	file := filepath.Join(t.TempDir(), "serial")
	ahead := uint32(time.Now().Unix()) + 1000 // as after a clock set back
	if err := os.WriteFile(file, []byte(fmt.Sprintf("%d\n", ahead)), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.SerialFile = file
	s, _ := startServer(t, o)
	soa := func() uint32 {
		t.Helper()
		c := &dns.Client{Net: "tcp"}
		m := new(dns.Msg)
		m.SetQuestion(zone, dns.TypeSOA)
		r, _, err := c.Exchange(m, s.Addr().String())
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("SOA: %v %v", r, err)
		}
		return r.Answer[0].(*dns.SOA).Serial
	}
	if got := soa(); got != ahead+1 {
		t.Fatalf("serial after a start %d, want %d", got, ahead+1)
	}
	o.Listen = s.Addr().String()
	for i := range uint32(2) {
		if err := s.Reload(o); err != nil {
			t.Fatal(err)
		}
		if got := soa(); got != ahead+2+i {
			t.Fatalf("serial after reload %d: %d, want %d", i, got, ahead+2+i)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(ahead+3) {
		t.Fatalf("serial file %q %v", b, err)
	}
}
