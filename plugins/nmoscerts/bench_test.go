package nmoscerts

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// packWriter packs every message into a reused buffer, as the server's
// writer does before sending it, and discards it.
type packWriter struct {
	test.ResponseWriter
	buf []byte
}

func (w *packWriter) WriteMsg(m *dns.Msg) error {
	var err error
	w.buf, err = m.PackBuffer(w.buf)
	return err
}

// BenchmarkServeDNS measures a query in three ways: the handler alone
// writing a message to a writer that drops it; "wire", the message path with
// what the server adds (fitting to the client's buffer, packing); and
// "prepacked", the prepacked mode with the same server writer.
func BenchmarkServeDNS(b *testing.B) {
	n := newTestHandler(b, testCorefile)
	packed := newTestHandler(b, testCorefile)
	packed.Prepacked = true
	queries := []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"PTR", certs, dns.TypePTR},
		{"SRV", inst1, dns.TypeSRV},
		{"TXT", inst2, dns.TypeTXT},
		{"A", "est." + tzone, dns.TypeA},
		{"NXDOMAIN", "nope." + tzone, dns.TypeA},
		{"mixed-case", "EST." + tzone, dns.TypeA},
	}
	ctx := context.Background()
	for _, q := range queries {
		m := new(dns.Msg)
		m.SetQuestion(q.qname, q.qtype)
		m.SetEdns0(1232, false) // as DNS-SD clients ask: the answers fit
		b.Run(q.name, func(b *testing.B) {
			w := &test.ResponseWriter{}
			b.ReportAllocs()
			for b.Loop() {
				n.ServeDNS(ctx, w, m)
			}
		})
		b.Run(q.name+"/wire", func(b *testing.B) {
			w := &packWriter{}
			b.ReportAllocs()
			for b.Loop() {
				n.ServeDNS(ctx, request.NewScrubWriter(m, w), m)
			}
		})
		b.Run(q.name+"/prepacked", func(b *testing.B) {
			w := &test.ResponseWriter{}
			b.ReportAllocs()
			for b.Loop() {
				packed.ServeDNS(ctx, request.NewScrubWriter(m, w), m)
			}
		})
	}
}
