package nmoscerts

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

const testCorefile = `nmoscerts studio.example.test {
	hostname est.studio.example.test
	address 192.0.2.10 2001:db8::10
	ttl 60
	service _nmos-certs._tcp {
		instance "nmos-certs 1"
		port 8443
		pri 10
	}
	service _nmos-certs._tcp {
		port 8444
		pri 20
		weight 5
		api_selector lab
	}
	service _nmos-register._tcp {
		instance "Registry.Main"
		target reg.studio.example.test 192.0.2.20
		port 443
		txt api_proto=https api_ver=v1.3
		txt api_auth=true
	}
	service _nmos-query._tcp {
		target query.elsewhere.test
		port 8080
		pri 5
	}
}`

// newTestHandler parses a Corefile snippet the way CoreDNS does and builds the handler.
func newTestHandler(t testing.TB, corefile string) *NMOSCerts {
	t.Helper()
	cfg, err := parse(caddy.NewTestController("dns", corefile))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	// A fixed serial: handlers built a second apart must answer alike.
	cfg.Serial = 1
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

const (
	tzone    = "studio.example.test."
	certs    = "_nmos-certs._tcp." + tzone
	inst1    = `nmos-certs\ 1.` + certs
	inst2    = `est\ 8444\ pri\ 20\ lab.` + certs
	register = "_nmos-register._tcp." + tzone
	regInst  = `Registry\.Main.` + register
	query    = "_nmos-query._tcp." + tzone
	qryInst  = `query\ 8080\ pri\ 5.` + query
)

var (
	soaRR  = test.SOA(tzone + " 60 IN SOA est.studio.example.test. hostmaster.studio.example.test. 1 7200 1800 1209600 60")
	estA   = test.A("est." + tzone + " 60 IN A 192.0.2.10")
	estA6  = test.AAAA("est." + tzone + " 60 IN AAAA 2001:db8::10")
	regA   = test.A("reg." + tzone + " 60 IN A 192.0.2.20")
	srv1   = test.SRV(inst1 + " 60 IN SRV 10 0 8443 est.studio.example.test.")
	srv2   = test.SRV(inst2 + " 60 IN SRV 20 5 8444 est.studio.example.test.")
	txt1   = test.TXT(inst1 + ` 60 IN TXT "pri=10"`)
	txt2   = test.TXT(inst2 + ` 60 IN TXT "pri=20" "api_selector=lab"`)
	regSRV = test.SRV(regInst + " 60 IN SRV 0 0 443 reg.studio.example.test.")
	regTXT = test.TXT(regInst + ` 60 IN TXT "pri=0" "api_proto=https" "api_ver=v1.3" "api_auth=true"`)
	qrySRV = test.SRV(qryInst + " 60 IN SRV 5 0 8080 query.elsewhere.test.")
)

var dnsTestCases = []test.Case{
	{
		Qname: certs, Qtype: dns.TypePTR, Authoritative: true,
		Answer: []dns.RR{test.PTR(certs + " 60 IN PTR " + inst1), test.PTR(certs + " 60 IN PTR " + inst2)},
		Extra:  []dns.RR{srv1, txt1, srv2, txt2, estA, estA6},
	},
	{
		Qname: inst1, Qtype: dns.TypeSRV, Authoritative: true,
		Answer: []dns.RR{srv1},
		Extra:  []dns.RR{estA, estA6},
	},
	{Qname: inst1, Qtype: dns.TypeTXT, Authoritative: true, Answer: []dns.RR{txt1}},
	{Qname: inst2, Qtype: dns.TypeTXT, Authoritative: true, Answer: []dns.RR{txt2}},
	{Qname: inst2, Qtype: dns.TypeANY, Authoritative: true, Answer: []dns.RR{srv2, txt2}},
	{Qname: "est." + tzone, Qtype: dns.TypeA, Authoritative: true, Answer: []dns.RR{estA}},
	{Qname: "est." + tzone, Qtype: dns.TypeAAAA, Authoritative: true, Answer: []dns.RR{estA6}},
	{Qname: tzone, Qtype: dns.TypeSOA, Authoritative: true, Answer: []dns.RR{soaRR}},
	{
		Qname: tzone, Qtype: dns.TypeNS, Authoritative: true,
		Answer: []dns.RR{test.NS(tzone + " 60 IN NS est.studio.example.test.")},
		Extra:  []dns.RR{estA, estA6},
	},
	{Qname: "b._dns-sd._udp." + tzone, Qtype: dns.TypePTR, Authoritative: true, Answer: []dns.RR{test.PTR("b._dns-sd._udp." + tzone + " 60 IN PTR " + tzone)}},
	{Qname: "db._dns-sd._udp." + tzone, Qtype: dns.TypePTR, Authoritative: true, Answer: []dns.RR{test.PTR("db._dns-sd._udp." + tzone + " 60 IN PTR " + tzone)}},
	{Qname: "lb._dns-sd._udp." + tzone, Qtype: dns.TypePTR, Authoritative: true, Answer: []dns.RR{test.PTR("lb._dns-sd._udp." + tzone + " 60 IN PTR " + tzone)}},
	{
		Qname: "_services._dns-sd._udp." + tzone, Qtype: dns.TypePTR, Authoritative: true,
		Answer: []dns.RR{
			test.PTR("_services._dns-sd._udp." + tzone + " 60 IN PTR " + certs),
			test.PTR("_services._dns-sd._udp." + tzone + " 60 IN PTR " + register),
			test.PTR("_services._dns-sd._udp." + tzone + " 60 IN PTR " + query),
		},
	},
	{
		// A target inside the zone with its own address.
		Qname: register, Qtype: dns.TypePTR, Authoritative: true,
		Answer: []dns.RR{test.PTR(register + " 60 IN PTR " + regInst)},
		Extra:  []dns.RR{regSRV, regTXT, regA},
	},
	{Qname: regInst, Qtype: dns.TypeSRV, Authoritative: true, Answer: []dns.RR{regSRV}, Extra: []dns.RR{regA}},
	{Qname: "reg." + tzone, Qtype: dns.TypeA, Authoritative: true, Answer: []dns.RR{regA}},
	{
		// A target outside the zone: no additional records.
		Qname: qryInst, Qtype: dns.TypeSRV, Authoritative: true, Answer: []dns.RR{qrySRV},
	},
	{
		// Names are case-insensitive.
		Qname: "_NMOS-Certs._TCP.Studio.Example.TEST.", Qtype: dns.TypePTR, Authoritative: true,
		Answer: []dns.RR{test.PTR(certs + " 60 IN PTR " + inst1), test.PTR(certs + " 60 IN PTR " + inst2)},
		Extra:  []dns.RR{srv1, txt1, srv2, txt2, estA, estA6},
	},
	{Qname: `NMOS-CERTS\ 1.` + certs, Qtype: dns.TypeTXT, Authoritative: true, Answer: []dns.RR{txt1}},
	// Names that do not exist: NXDOMAIN with the SOA.
	{Qname: "nope." + tzone, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: "x.est." + tzone, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: `other\ instance.` + certs, Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Authoritative: true, Ns: []dns.RR{soaRR}},
	// Names that exist without the type: NODATA with the SOA.
	{Qname: "est." + tzone, Qtype: dns.TypeMX, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: inst1, Qtype: dns.TypeA, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: tzone, Qtype: dns.TypeDS, Authoritative: true, Ns: []dns.RR{soaRR}},
	// Empty non-terminals exist (RFC 8020): NODATA, not NXDOMAIN.
	{Qname: "_tcp." + tzone, Qtype: dns.TypePTR, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: "_dns-sd._udp." + tzone, Qtype: dns.TypePTR, Authoritative: true, Ns: []dns.RR{soaRR}},
	{Qname: "_udp." + tzone, Qtype: dns.TypeANY, Authoritative: true, Ns: []dns.RR{soaRR}},
}

func TestServeDNS(t *testing.T) {
	n := newTestHandler(t, testCorefile)
	for _, tc := range dnsTestCases {
		t.Run(fmt.Sprintf("%s/%s", tc.Qname, dns.TypeToString[tc.Qtype]), func(t *testing.T) {
			m := tc.Msg()
			m.Id = 4711
			m.RecursionDesired = true
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			rc, err := n.ServeDNS(context.Background(), rec, m)
			if err != nil || rc != dns.RcodeSuccess {
				t.Fatalf("ServeDNS = %d, %v; want NOERROR (written), nil", rc, err)
			}
			resp := rec.Msg
			if resp == nil {
				t.Fatal("no response written")
			}
			if resp.Id != 4711 || !resp.Response || !resp.RecursionDesired || resp.RecursionAvailable {
				t.Errorf("header: %+v", resp.MsgHdr)
			}
			if resp.Authoritative != tc.Authoritative {
				t.Errorf("AA = %v, want %v", resp.Authoritative, tc.Authoritative)
			}
			if len(resp.Question) != 1 || resp.Question[0] != m.Question[0] {
				t.Errorf("question %v, want the query's %v", resp.Question, m.Question)
			}
			if err := test.SortAndCheck(resp, sorted(tc)); err != nil {
				t.Error(err)
			}
			// The precomputed reply must pack.
			if _, err := resp.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
}

// sorted returns tc with its sections sorted the way test.SortAndCheck sorts a response.
func sorted(tc test.Case) test.Case {
	for _, s := range []*[]dns.RR{&tc.Answer, &tc.Ns, &tc.Extra} {
		*s = slices.Clone(*s)
		sort.Sort(test.RRSet(*s))
	}
	return tc
}

func TestOutOfZone(t *testing.T) {
	queries := []struct {
		name  string
		class uint16
	}{
		{"example.org.", dns.ClassINET},
		{"example.test.", dns.ClassINET},
		{"xstudio.example.test.", dns.ClassINET},
		// An escaped dot is part of a label: this name is not below the zone.
		{`x\.studio.example.test.`, dns.ClassINET},
		{"est." + tzone, dns.ClassCHAOS},
	}
	t.Run("refused", func(t *testing.T) {
		n := newTestHandler(t, testCorefile)
		for _, q := range queries {
			m := new(dns.Msg)
			m.SetQuestion(q.name, dns.TypeA)
			m.Question[0].Qclass = q.class
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			rc, err := n.ServeDNS(context.Background(), rec, m)
			if rc != dns.RcodeRefused || err != nil || rec.Msg != nil {
				t.Errorf("%s: ServeDNS = %d, %v, wrote %v; want REFUSED unwritten", q.name, rc, err, rec.Msg)
			}
		}
	})
	t.Run("fallthrough", func(t *testing.T) {
		n := newTestHandler(t, strings.Replace(testCorefile, "ttl 60", "ttl 60\n\tfallthrough", 1))
		var got []string
		n.Next = test.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			got = append(got, r.Question[0].Name)
			return dns.RcodeServerFailure, nil
		})
		for _, q := range queries {
			m := new(dns.Msg)
			m.SetQuestion(q.name, dns.TypeA)
			m.Question[0].Qclass = q.class
			if rc, _ := n.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m); rc != dns.RcodeServerFailure {
				t.Errorf("%s: rcode %d, want the next plugin's", q.name, rc)
			}
		}
		if len(got) != len(queries) {
			t.Errorf("next plugin saw %v", got)
		}
		// In-zone names never fall through, not even NXDOMAIN.
		m := new(dns.Msg)
		m.SetQuestion("nope."+tzone, dns.TypeA)
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		n.ServeDNS(context.Background(), rec, m)
		if rec.Msg == nil || rec.Msg.Rcode != dns.RcodeNameError {
			t.Errorf("in-zone NXDOMAIN: %v", rec.Msg)
		}
	})
}

func TestOpcodeAndMalformed(t *testing.T) {
	n := newTestHandler(t, testCorefile)
	m := new(dns.Msg)
	m.SetNotify(tzone)
	if rc, _ := n.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m); rc != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: rcode %d, want NOTIMP", rc)
	}
	m = new(dns.Msg)
	if rc, _ := n.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m); rc != dns.RcodeFormatError {
		t.Errorf("no question: rcode %d, want FORMERR", rc)
	}
}

// TestZoneTransferRefused: AXFR and IXFR are REFUSED, over any transport,
// not answered with the SOA alone.
func TestZoneTransferRefused(t *testing.T) {
	n := newTestHandler(t, testCorefile)
	for _, qt := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		m := new(dns.Msg)
		m.SetQuestion(tzone, qt)
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		if rc, _ := n.ServeDNS(context.Background(), rec, m); rc != dns.RcodeRefused || rec.Msg != nil {
			t.Errorf("%s: rcode %d, message %v; want REFUSED from the server", dns.TypeToString[qt], rc, rec.Msg)
		}
	}
}

// TestInstanceEscaping checks that instance names with characters that are
// special in presentation format reach the wire as the configured bytes, and
// that the names clients read from a PTR answer find the SRV record.
func TestInstanceEscaping(t *testing.T) {
	labels := []string{
		"plain",
		"with space",
		"dot.ted",
		`back\slash`,
		`quo"te`,
		"semi;colon (paren) @at $dollar 'apos'",
		"Studio Ü-Gerät 3",
		"trailing dot.",
	}
	var b strings.Builder
	b.WriteString("nmoscerts studio.example.test {\nhostname est.studio.example.test\naddress 192.0.2.10\n")
	for i, l := range labels {
		// The Corefile lexer unescapes \" inside quotes and keeps any other
		// backslash as it is.
		quoted := `"` + strings.ReplaceAll(l, `"`, `\"`) + `"`
		fmt.Fprintf(&b, "service _nmos-certs._tcp {\ninstance %s\nport %d\n}\n", quoted, 8000+i)
	}
	b.WriteString("}\n")
	n := newTestHandler(t, b.String())

	resp := exchange(t, n, certs, dns.TypePTR)
	if len(resp.Answer) != len(labels) {
		t.Fatalf("PTR answer has %d records, want %d", len(resp.Answer), len(labels))
	}
	for i, rr := range resp.Answer {
		target := rr.(*dns.PTR).Ptr
		var buf [256]byte
		off, err := dns.PackDomainName(target, buf[:], 0, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if got := string(buf[1 : 1+buf[0]]); got != labels[i] {
			t.Errorf("instance label on the wire %q, want %q", got, labels[i])
		}
		if int(buf[1+buf[0]]) != len("_nmos-certs") || off <= 0 {
			t.Errorf("%s: instance is not a single label", target)
		}
		srv := exchange(t, n, target, dns.TypeSRV)
		if len(srv.Answer) != 1 || srv.Answer[0].(*dns.SRV).Port != uint16(8000+i) {
			t.Errorf("SRV %s: %v", target, srv.Answer)
		}
	}
}

// exchange runs a query through the handler and through pack and unpack, as
// a client would see it.
func exchange(t *testing.T, n *NMOSCerts, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: true})
	if _, err := n.ServeDNS(context.Background(), request.NewScrubWriter(m, rec), m); err != nil {
		t.Fatal(err)
	}
	wire, err := rec.Msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTruncation checks that a large PTR answer is truncated with TC over UDP
// by CoreDNS's scrubbing writer and is whole over TCP.
func TestTruncation(t *testing.T) {
	const instances = 60
	var b strings.Builder
	b.WriteString("nmoscerts studio.example.test {\nhostname est.studio.example.test\naddress 192.0.2.10\n")
	for i := range instances {
		fmt.Fprintf(&b, "service _nmos-certs._tcp {\ninstance \"EST server number %d\"\nport %d\n}\n", i, 8000+i)
	}
	b.WriteString("}\n")
	n := newTestHandler(t, b.String())

	for _, tcp := range []bool{false, true} {
		m := new(dns.Msg)
		m.SetQuestion(certs, dns.TypePTR)
		rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
		n.ServeDNS(context.Background(), request.NewScrubWriter(m, rec), m)
		resp := rec.Msg
		wire, err := resp.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if tcp {
			if resp.Truncated || len(resp.Answer) != instances || len(resp.Extra) != 2*instances+1 {
				t.Errorf("TCP: TC=%v, %d answers, %d additional; want all", resp.Truncated, len(resp.Answer), len(resp.Extra))
			}
			continue
		}
		if !resp.Truncated || len(wire) > 512 {
			t.Errorf("UDP: TC=%v, %d bytes; want TC and at most 512 bytes", resp.Truncated, len(wire))
		}
	}
	// The shared precomputed reply is unchanged by the truncation.
	if got := len(n.zone.lookup(certs, dns.TypePTR).answer); got != instances {
		t.Errorf("precomputed answer has %d records after truncation, want %d", got, instances)
	}
}

func TestRecords(t *testing.T) {
	n := newTestHandler(t, testCorefile)
	rrs := n.Records()
	// SOA, NS, 3 browse PTRs, 3 A/AAAA, 4 advertisements x 3, 3 service types.
	if want := 2 + 3 + 3 + 4*3 + 3; len(rrs) != want {
		t.Fatalf("%d records, want %d", len(rrs), want)
	}
	if rrs[0].Header().Rrtype != dns.TypeSOA || n.Zone() != tzone {
		t.Errorf("first record %v, zone %s", rrs[0], n.Zone())
	}
	// Records returns copies.
	rrs[0].Header().Ttl = 1
	if n.Records()[0].Header().Ttl != 60 {
		t.Error("Records exposes the served records")
	}
}

func TestSOASerial(t *testing.T) {
	cfg, err := parse(caddy.NewTestController("dns", testCorefile))
	if err != nil {
		t.Fatal(err)
	}
	serialOf := func(cfg Config) uint32 {
		t.Helper()
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n.Records()[0].(*dns.SOA).Serial
	}
	cfg.Serial = 7
	if got := serialOf(cfg); got != 7 {
		t.Errorf("configured serial 7 served as %d", got)
	}
	cfg.Serial = 0
	before := uint32(time.Now().Unix())
	got := serialOf(cfg)
	if after := uint32(time.Now().Unix()); got < before || got > after {
		t.Errorf("serial %d is not the clock's seconds (%d..%d)", got, before, after)
	}
}

// TestTransferer: the zone for AXFR (its SOA first and last), the SOA
// alone for an IXFR from the current serial or a newer one, the zone for
// an older one, and no answer for another zone.
func TestTransferer(t *testing.T) {
	c := caddy.NewTestController("dns", strings.Replace(testCorefile, "ttl 60", "ttl 60\nserial 1000", 1))
	cfg, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	count := func(serial uint32) (int, uint32) {
		t.Helper()
		ch, err := n.Transfer("Studio.Example.Test", serial)
		if err != nil {
			t.Fatal(err)
		}
		var all []dns.RR
		for rrs := range ch {
			all = append(all, rrs...)
		}
		first, last := all[0].(*dns.SOA), all[len(all)-1].(*dns.SOA)
		if first.Serial != 1000 || last.Serial != 1000 {
			t.Fatalf("serials %d, %d", first.Serial, last.Serial)
		}
		return len(all), first.Serial
	}
	full := len(n.Records()) + 1
	for serial, want := range map[uint32]int{0: full, 999: full, 1000: 1, 1001: 1, 1000 + 1<<31 + 1: full} {
		if got, _ := count(serial); got != want {
			t.Errorf("serial %d: %d records, want %d", serial, got, want)
		}
	}
	if _, err := n.Transfer("example.org.", 0); err == nil {
		t.Error("a transfer of another zone")
	}
}
