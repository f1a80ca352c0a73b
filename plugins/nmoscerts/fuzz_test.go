package nmoscerts

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds packed messages to the handler: it must not panic,
// whatever it writes must pack, fit the client's buffer and answer the query,
// and the prepacked mode must write the same response.
func FuzzServeDNS(f *testing.F) {
	n := newTestHandler(f, testCorefile)
	packed := newTestHandler(f, testCorefile)
	packed.Prepacked = true
	for _, tc := range dnsTestCases {
		tc.Do = true
		for _, m := range []*dns.Msg{tc.Msg(), sorted(tc).Msg()} {
			buf, err := m.Pack()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(buf)
		}
	}
	for _, name := range []string{"example.org.", `x\.studio.example.test.`, "."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		buf, _ := m.Pack()
		f.Add(buf)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tcp := range []bool{false, true} {
			m := new(dns.Msg)
			if err := m.Unpack(data); err != nil {
				return
			}
			query := m.Copy()
			rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
			size := (&request.Request{W: rec, Req: m}).Size()
			rc, err := n.ServeDNS(context.Background(), request.NewScrubWriter(m, rec), m)
			if err != nil {
				t.Fatalf("ServeDNS error: %v", err)
			}
			if rec.Msg == nil {
				if rc == dns.RcodeSuccess {
					t.Fatal("NOERROR returned but nothing written")
				}
				continue
			}
			wire, err := rec.Msg.Pack()
			if err != nil {
				t.Fatalf("response does not pack: %v", err)
			}
			if len(wire) > size {
				t.Fatalf("response of %d bytes exceeds the client's %d", len(wire), size)
			}
			if rec.Msg.Id != m.Id || len(rec.Msg.Question) != 1 || rec.Msg.Question[0] != m.Question[0] {
				t.Fatalf("response %v does not answer %v", rec.Msg.MsgHdr, m.Question)
			}

			want, _ := answer(t, n, query, tcp)
			got, _ := answer(t, packed, query, tcp)
			if err := sameResponse(got, want); err != nil {
				t.Fatalf("prepacked response differs: %v", err)
			}
		}
	})
}
