package dns

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDig queries the server with dig, a client that shares no code with it,
// over UDP and TCP.
func TestDig(t *testing.T) {
	digPath, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: apt-get install bind9-dnsutils (.ci/run does) to run the third-party client test")
	}
	up := startUpstream(t)
	o := testOptions()
	o.Forward = []string{up.String()}
	// Enough instances of one type that the PTR answer cannot fit 512 bytes.
	for i := range 30 {
		o.Services = append(o.Services, Service{Type: "_nmos-query._tcp", Instance: fmt.Sprintf("Query API %02d", i), Target: "query.elsewhere.test", Port: 8000 + i})
	}
	s, _ := startServer(t, o)
	port := strconv.Itoa(int(s.Addr().Port()))

	dig := func(args ...string) string {
		t.Helper()
		args = append([]string{"@" + s.Addr().Addr().String(), "-p", port, "+time=2", "+tries=1"}, args...)
		out, err := exec.Command(digPath, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	short := func(args ...string) []string {
		t.Helper()
		out := strings.TrimSpace(dig(append([]string{"+short"}, args...)...))
		if out == "" {
			return nil
		}
		lines := strings.Split(out, "\n")
		slices.Sort(lines)
		return lines
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", what, got, want)
		}
	}

	for _, transport := range []string{"+notcp", "+tcp"} {
		t.Run(transport, func(t *testing.T) {
			// dig writes a space in a label as \032.
			instances := short(transport, "_nmos-certs._tcp."+zone, "PTR")
			expect("PTR", instances,
				`est\0328443\032pri\03220\032lab._nmos-certs._tcp.`+zone,
				`nmos-certs\0321._nmos-certs._tcp.`+zone)
			// The names as dig printed them find the SRV and TXT records.
			for _, inst := range instances {
				srv := short(transport, inst, "SRV")
				txt := short(transport, inst, "TXT")
				if strings.HasPrefix(inst, "nmos-certs") {
					expect("SRV "+inst, srv, "10 0 8443 est."+zone)
					expect("TXT "+inst, txt, `"pri=10"`)
				} else {
					expect("SRV "+inst, srv, "20 5 8443 est."+zone)
					expect("TXT "+inst, txt, `"pri=20" "api_selector=lab"`)
				}
			}
			expect("A", short(transport, "est."+zone, "A"), "127.0.0.1")
			expect("AAAA", short(transport, "est."+zone, "AAAA"), "::1")
			expect("NS", short(transport, zone, "NS"), "est."+zone)
			if soa := short(transport, zone, "SOA"); len(soa) != 1 || !strings.HasPrefix(soa[0], "est."+zone+" hostmaster."+zone+" ") {
				t.Errorf("SOA: %q", soa)
			}
			for _, b := range []string{"b", "db", "lb"} {
				expect("browse "+b, short(transport, b+"._dns-sd._udp."+zone, "PTR"), zone)
			}
			expect("service types", short(transport, "_services._dns-sd._udp."+zone, "PTR"),
				"_nmos-certs._tcp."+zone, "_nmos-register._tcp."+zone, "_nmos-query._tcp."+zone)

			// The additional section of the PTR answer (RFC 6763 section 12.1).
			full := dig(transport, "_nmos-certs._tcp."+zone, "PTR")
			for _, want := range []string{"flags: qr aa rd;", "status: NOERROR", ";; ADDITIONAL SECTION:", "IN SRV\t10 0 8443 est." + zone, "IN\tA\t127.0.0.1"} {
				if !strings.Contains(full, want) {
					t.Errorf("PTR output lacks %q:\n%s", want, full)
				}
			}

			nx := dig(transport, "nope."+zone, "A")
			for _, want := range []string{"status: NXDOMAIN", "flags: qr aa rd;", ";; AUTHORITY SECTION:", "IN\tSOA\test." + zone} {
				if !strings.Contains(nx, want) {
					t.Errorf("NXDOMAIN output lacks %q:\n%s", want, nx)
				}
			}

			// No zone transfers: REFUSED, not a lone SOA (over TCP, as
			// transfers go; TestZoneTransferRefused has UDP).
			for _, xfr := range []string{"AXFR", "IXFR=1"} {
				if transport != "+tcp" {
					break
				}
				out := dig(transport, zone, xfr)
				if !strings.Contains(out, "Transfer failed") || strings.Contains(out, "IN\tSOA") {
					t.Errorf("%s answered:\n%s", xfr, out)
				}
			}

			// Everything else goes to the upstream resolver.
			expect("forwarded", short(transport, "www.example.org", "A"), "192.0.2.99")
		})
	}

	// Truncation: without EDNS0 the 30-instance answer does not fit UDP.
	udp := dig("+notcp", "+noedns", "+ignore", "_nmos-query._tcp."+zone, "PTR")
	if !strings.Contains(udp, "flags: qr aa tc rd;") {
		t.Errorf("UDP answer is not truncated:\n%s", udp)
	}
	tcp := dig("+tcp", "+noedns", "_nmos-query._tcp."+zone, "PTR")
	if !strings.Contains(tcp, "ANSWER: 30,") || strings.Contains(tcp, " tc ") {
		t.Errorf("TCP answer is not whole:\n%s", tcp)
	}
	// dig's default falls back to TCP by itself on TC.
	if got := short("_nmos-query._tcp."+zone, "PTR"); len(got) != 30 {
		t.Errorf("PTR with TCP fallback: %d instances", len(got))
	}
}
