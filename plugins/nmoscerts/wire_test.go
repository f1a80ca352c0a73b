package nmoscerts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// captureWriter keeps what a handler wrote, message or bytes, behind
// CoreDNS's scrubbing writer as the server has it.
type captureWriter struct {
	test.ResponseWriter
	msgs, raws int
	wire       []byte
}

func (c *captureWriter) WriteMsg(m *dns.Msg) error {
	c.msgs++
	var err error
	c.wire, err = m.Pack()
	return err
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.raws++
	c.wire = slices.Clone(b)
	return len(b), nil
}

// answer runs r through n behind a ScrubWriter and returns the response as
// a client unpacks it, and whether it was written prepacked.
func answer(t testing.TB, n *NMOSCerts, r *dns.Msg, tcp bool) (*dns.Msg, bool) {
	t.Helper()
	c := &captureWriter{ResponseWriter: test.ResponseWriter{TCP: tcp}}
	r = r.Copy() // the scrubbing writer edits the query's OPT record
	if _, err := n.ServeDNS(context.Background(), request.NewScrubWriter(r, c), r); err != nil {
		t.Fatal(err)
	}
	if c.msgs+c.raws == 0 {
		return nil, false
	}
	if c.msgs+c.raws != 1 {
		t.Fatalf("%d messages and %d packed writes for one query", c.msgs, c.raws)
	}
	m := new(dns.Msg)
	if err := m.Unpack(c.wire); err != nil {
		t.Fatalf("unpack %x: %v", c.wire, err)
	}
	return m, c.raws == 1
}

// sameResponse reports how two responses differ, ignoring letter case in
// names (the prepacked path echoes the query's case through compression
// pointers) and the order within sections.
func sameResponse(a, b *dns.Msg) error {
	if a.MsgHdr != b.MsgHdr {
		return fmt.Errorf("header %+v != %+v", a.MsgHdr, b.MsgHdr)
	}
	if !slices.Equal(a.Question, b.Question) {
		return fmt.Errorf("question %v != %v", a.Question, b.Question)
	}
	for i, pair := range [][2][]dns.RR{{a.Answer, b.Answer}, {a.Ns, b.Ns}, {a.Extra, b.Extra}} {
		x, y := rrText(pair[0]), rrText(pair[1])
		if !slices.Equal(x, y) {
			return fmt.Errorf("section %d:\n%q\n%q", i, x, y)
		}
	}
	return nil
}

func rrText(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		if o, ok := rr.(*dns.OPT); ok {
			// CoreDNS echoes some of the query's must-be-zero flag bits;
			// the prepacked path clears them (RFC 6891 section 6.1.4).
			out[i] = fmt.Sprintf("OPT udp=%d do=%v version=%d ext-rcode=%d options=%v", o.UDPSize(), o.Do(), o.Version(), o.ExtendedRcode(), o.Option)
			continue
		}
		out[i] = strings.ToLower(rr.String())
	}
	slices.Sort(out)
	return out
}

// TestPrepackedMatchesMessages checks that the prepacked path writes what
// the message path writes, for every test question in several forms.
func TestPrepackedMatchesMessages(t *testing.T) {
	msgs := newTestHandler(t, testCorefile)
	packed := newTestHandler(t, testCorefile)
	packed.Prepacked = true

	variants := []struct {
		name string
		edit func(*dns.Msg)
	}{
		{"plain", func(*dns.Msg) {}},
		{"upper case", func(m *dns.Msg) { m.Question[0].Name = strings.ToUpper(m.Question[0].Name) }},
		{"RD and CD", func(m *dns.Msg) { m.RecursionDesired, m.CheckingDisabled = true, true }},
		{"no RD", func(m *dns.Msg) { m.RecursionDesired = false }},
		{"EDNS0", func(m *dns.Msg) { m.SetEdns0(1232, false) }},
		{"EDNS0 DO", func(m *dns.Msg) { m.SetEdns0(4096, true) }},
		{"EDNS0 small", func(m *dns.Msg) { m.SetEdns0(200, false) }},
		{"EDNS0 cookie", func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}},
	}
	var fast int
	for _, tc := range dnsTestCases {
		for _, v := range variants {
			for _, tcp := range []bool{false, true} {
				q := tc.Msg()
				q.Id = 0xbeef
				v.edit(q)
				want, _ := answer(t, msgs, q, tcp)
				got, wasPacked := answer(t, packed, q, tcp)
				if wasPacked {
					fast++
				}
				if err := sameResponse(got, want); err != nil {
					t.Errorf("%s %s %s tcp=%v: %v", tc.Qname, dns.TypeToString[tc.Qtype], v.name, tcp, err)
				}
			}
		}
	}
	if fast == 0 {
		t.Error("the prepacked path never answered")
	}
}

// TestPrepackedFallback checks the cases the prepacked path leaves to the
// message path: answers too large for the client's buffer and TSIG.
func TestPrepackedFallback(t *testing.T) {
	var b strings.Builder
	b.WriteString("nmoscerts studio.example.test {\nhostname est.studio.example.test\naddress 192.0.2.10\nprepacked\n")
	for i := range 30 {
		fmt.Fprintf(&b, "service _nmos-certs._tcp {\ninstance \"EST %d\"\nport %d\n}\n", i, 8000+i)
	}
	b.WriteString("}\n")
	n := newTestHandler(t, b.String())
	if !n.Prepacked {
		t.Fatal("prepacked option not parsed")
	}

	q := new(dns.Msg)
	q.SetQuestion(certs, dns.TypePTR)
	m, wasPacked := answer(t, n, q, false)
	if wasPacked || !m.Truncated {
		t.Errorf("UDP without EDNS0: packed=%v TC=%v; want the message path to truncate", wasPacked, m.Truncated)
	}
	m, wasPacked = answer(t, n, q, true)
	if !wasPacked || m.Truncated || len(m.Answer) != 30 {
		t.Errorf("TCP: packed=%v TC=%v answers=%d; want all, packed", wasPacked, m.Truncated, len(m.Answer))
	}

	q = new(dns.Msg)
	q.SetQuestion("est."+tzone, dns.TypeA)
	q.SetTsig("key.", dns.HmacSHA256, 300, 0)
	if _, wasPacked := answer(t, n, q, false); wasPacked {
		t.Error("TSIG-signed query answered prepacked")
	}
}
