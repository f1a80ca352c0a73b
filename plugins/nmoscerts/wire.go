package nmoscerts

import (
	"encoding/binary"
	"net"
	"slices"
	"sync"

	"github.com/coredns/coredns/plugin/pkg/edns"

	"github.com/miekg/dns"
)

// The prepacked mode writes answers that were packed at setup: a query costs
// a copy of the bytes, its ID, flags and the question's letter case patched
// in, and an OPT record appended when the query has one. Whatever the fast
// path cannot produce exactly as CoreDNS's own writer would (an answer larger
// than the client's buffer, a TSIG-signed query, EDNS options some plugin has
// registered) goes through the ordinary message path instead.
//
// Packed bytes bypass the WriteMsg of the writers of plugins that run before
// this one: a plugin that records or rewrites the response message (log,
// cache, dnstap, rewrite) sees only Write. Enable it only in chains without
// such plugins.

// Header flag bits, in the third and fourth bytes of a message.
const (
	flagRD = 0x01 // byte 2
	flagCD = 0x10 // byte 3
)

const headerLen = 12

// optRRLen is the length of an OPT record without options.
const optRRLen = 11

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1232); return &b }}

// pack fills rep.wire with the reply to the question (name, qtype), name in
// canonical lower case: message ID 0, RD and CD clear, no OPT record.
func (rep *reply) pack(name string, qtype uint16) error {
	m := &dns.Msg{
		MsgHdr:   dns.MsgHdr{Response: true, Opcode: dns.OpcodeQuery, Authoritative: true, Rcode: rep.rcode},
		Compress: true,
		Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}},
		Answer:   rep.answer,
		Ns:       rep.ns,
		Extra:    rep.extra,
	}
	wire, err := m.Pack()
	if err != nil {
		return err
	}
	// The question's name comes first and is never compressed.
	qend := headerLen
	for wire[qend] != 0 {
		qend += int(wire[qend]) + 1
	}
	rep.wire, rep.qend = wire, qend+1
	return nil
}

// packNegative fills rep.wire with the reply's authority section alone,
// uncompressed, to follow a question of any name.
func (rep *reply) packNegative() error {
	var buf []byte
	for _, rr := range rep.ns {
		b := make([]byte, dns.Len(rr)+32)
		off, err := dns.PackRR(rr, b, 0, nil, false)
		if err != nil {
			return err
		}
		buf = append(buf, b[:off]...)
	}
	rep.wire = buf
	return nil
}

// writePacked writes the prepacked reply for r, whose question is q and
// whose lower-cased name is key. It returns false, having written nothing,
// when the message path has to answer instead.
func writePacked(w dns.ResponseWriter, r *dns.Msg, q dns.Question, key string, rep *reply) bool {
	var opt *dns.OPT
	if len(r.Extra) > 0 {
		if r.IsTsig() != nil {
			return false
		}
		opt = r.IsEdns0()
		if opt != nil {
			for _, o := range opt.Option {
				if edns.SupportedOption(o.Option()) {
					return false
				}
			}
		}
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]

	if rep.negative {
		// Header, the question as asked, the authority section.
		buf = slices.Grow(buf, headerLen+256+4+len(rep.wire)+optRRLen)
		buf = buf[:headerLen+256+4]
		clear(buf[:headerLen])
		buf[2] = 0x84 // QR, AA
		buf[3] = byte(rep.rcode)
		buf[5] = 1 // QDCOUNT
		buf[9] = byte(len(rep.ns))
		off, err := dns.PackDomainName(q.Name, buf, headerLen, nil, false)
		if err != nil {
			*bp = buf
			return false
		}
		binary.BigEndian.PutUint16(buf[off:], q.Qtype)
		binary.BigEndian.PutUint16(buf[off+2:], q.Qclass)
		buf = append(buf[:off+4], rep.wire...)
	} else {
		buf = append(buf, rep.wire...)
		if q.Name != key {
			// Echo the question's letter case: the same name, so the same
			// length, and the compression pointers stay right.
			off, err := dns.PackDomainName(q.Name, buf, headerLen, nil, false)
			if err != nil || off != rep.qend {
				*bp = buf
				return false
			}
		}
	}

	binary.BigEndian.PutUint16(buf, r.Id)
	if r.RecursionDesired {
		buf[2] |= flagRD
	}
	if r.CheckingDisabled {
		buf[3] |= flagCD
	}

	// The client's buffer: 512 bytes without EDNS0, what it says with
	// (never less than 512), 64 KiB over TCP.
	limit := dns.MinMsgSize
	if opt != nil {
		limit = max(int(opt.UDPSize()), dns.MinMsgSize)
		// An OPT record without options echoes the size and the DO bit;
		// options CoreDNS does not support are dropped, as it does.
		var rr [optRRLen]byte
		rr[2] = byte(dns.TypeOPT)
		binary.BigEndian.PutUint16(rr[3:], opt.UDPSize())
		if opt.Do() {
			rr[7] = 0x80
		}
		buf = append(buf, rr[:]...)
		binary.BigEndian.PutUint16(buf[10:], binary.BigEndian.Uint16(buf[10:])+1)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
		limit = dns.MaxMsgSize
	}
	if len(buf) > limit {
		*bp = buf
		return false
	}
	w.Write(buf)
	*bp = buf
	return true
}
