package ocsp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// discardWriter is a ResponseWriter that keeps nothing, reused across
// iterations so that only the handler's own allocations are counted.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// rewindBody is a request body that can be read again.
type rewindBody struct{ *bytes.Reader }

func (rewindBody) Close() error { return nil }

// benchResponder makes a responder for an ECDSA intermediate that issued
// n certificates, and returns it with one of the serials.
func benchResponder(b *testing.B, n int) (*Responder, *testCA, *big.Int) {
	root := makeCA(b, "ecdsa-root-1", "Bench Root", mustEC(b), nil)
	inter := makeCA(b, "ecdsa-int-1", "Bench Intermediate", mustEC(b), root)
	src := &mapSource{issuers: []Issuer{inter.issuer()}, certs: make(map[string]*store.Certificate, n)}
	var serial *big.Int
	for range n {
		serial = randSerial(b)
		src.certs[store.SerialKey(serial)] = &store.Certificate{Serial: serial, IssuerID: inter.id, NotAfter: time.Now().Add(24 * time.Hour)}
	}
	r, err := NewResponder(context.Background(), Options{Source: src})
	if err != nil {
		b.Fatal(err)
	}
	return r, inter, serial
}

// BenchmarkCachedGET is the hot path: a GET for an answer in the cache,
// found by the alias of its path.
func BenchmarkCachedGET(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	der := buildRequest(b, specFor(ca, 1, serial))
	req := httptest.NewRequest(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(der), nil)
	benchServe(b, r, req, nil, true)
}

// BenchmarkCachedGETDecoded is a GET for a cached answer through the
// full path: URL and base64 decoding, DER parsing, issuer and cache
// lookups, as for the first request of each spelling of a path. The
// alias made by each request is deleted (part of the figure).
func BenchmarkCachedGETDecoded(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	tail := base64.StdEncoding.EncodeToString(buildRequest(b, specFor(ca, 1, serial)))
	req := httptest.NewRequest(http.MethodGet, "/ocsp/"+tail, nil)
	benchServe(b, r, req, func() { r.getAliases.m.Delete(tail) }, true)
}

// BenchmarkWrapCachedGET is the hot path as the appliance mounts it, in
// front of its ServeMux.
func BenchmarkWrapCachedGET(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	req := httptest.NewRequest(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(buildRequest(b, specFor(ca, 1, serial))), nil)
	benchServe(b, r.Wrap(http.NewServeMux()), req, nil, false)
}

// benchServe serves req with h once before the clock starts (filling the
// cache), then over and over, calling each (when not nil) before every
// request, and checks the last answer: a body, and a Cache-Control
// header when withCache.
func benchServe(b *testing.B, h http.Handler, req *http.Request, each func(), withCache bool) {
	w := &discardWriter{h: http.Header{}}
	if each != nil {
		each()
	}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if each != nil {
			each()
		}
		w.reset()
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.code != 0 || w.n == 0 || (withCache && w.h.Get("Cache-Control") == "") {
		b.Fatalf("bad answer: code %d, %d bytes", w.code, w.n)
	}
}

func BenchmarkCachedGETParallel(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	url := "/ocsp/" + base64.StdEncoding.EncodeToString(buildRequest(b, specFor(ca, 1, serial)))
	r.ServeHTTP(&discardWriter{h: http.Header{}}, httptest.NewRequest(http.MethodGet, url, nil))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, url, nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			w.reset()
			r.ServeHTTP(w, req)
		}
	})
}

// BenchmarkPOST is a POST for a cached answer, found by the alias of
// the request body.
func BenchmarkPOST(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	benchPOST(b, r, buildRequest(b, specFor(ca, 0, serial)), "application/ocsp-request")
}

// BenchmarkNonce measures live signing: a nonce defeats the cache.
func BenchmarkNonce(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	s := specFor(ca, 1, serial)
	s.nonce = make([]byte, 16)
	rand.Read(s.nonce)
	benchPOST(b, r, buildRequest(b, s), "")
}

// benchPOST posts der to the responder over and over (once before the
// clock starts, to fill the cache), with contentType when not empty.
func benchPOST(b *testing.B, r *Responder, der []byte, contentType string) {
	body := rewindBody{bytes.NewReader(der)}
	req := httptest.NewRequest(http.MethodPost, "/ocsp", body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	benchServe(b, r, req, func() { body.Reset(der) }, false)
}

// BenchmarkCRLBuild builds the CRL of an ECDSA intermediate with n
// revoked certificates (16-byte serials, half with a reason code). The
// revocations come from memory, so this is the cost of the publisher and
// x509.CreateRevocationList, not of the store.
func BenchmarkCRLBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n/1000)+"k", func(b *testing.B) {
			root := makeCA(b, "ecdsa-root-1", "Bench Root", mustEC(b), nil)
			inter := makeCA(b, "ecdsa-int-1", "Bench Intermediate", mustEC(b), root)
			revs := make([]store.Revocation, n)
			at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			for i := range revs {
				revs[i] = store.Revocation{Serial: randSerial(b), RevokedAt: at, Reason: (i % 2) * 4}
			}
			src := &mapSource{issuers: []Issuer{inter.issuer()}, revocations: map[string][]store.Revocation{inter.id: revs}}
			p, err := NewPublisher(context.Background(), Options{Source: src, CRLURL: func(id string) string { return "http://ca.example/crl/" + id + ".crl" }})
			if err != nil {
				b.Fatal(err)
			}
			ci := (*p.issuers.Load())[inter.id]
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := p.build(context.Background(), ci); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			doc := ci.doc.Load()
			if doc.entries != n {
				b.Fatalf("%d entries", doc.entries)
			}
			b.ReportMetric(float64(len(doc.der))/1e6, "MB-DER")
		})
	}
}

// memConn is a keep-alive client connection in memory: reads return the
// same request over and over, n times, then EOF; writes are dropped.
// Serving it measures net/http's request loop and the handler without
// the kernel's sockets.
type memConn struct {
	mu   sync.Mutex
	req  []byte
	off  int
	left int
	out  int64
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.req[c.off:])
	if c.off += n; c.off == len(c.req) {
		c.off = 0
		c.left--
	}
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out += int64(len(p))
	c.mu.Unlock()
	return len(p), nil
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if c := l.c; c != nil {
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

// serveMem serves b.N copies of raw (one HTTP/1.1 request) on one
// keep-alive connection through an http.Server with h, and returns the
// bytes written back.
func serveMem(b *testing.B, h http.Handler, raw string) int64 {
	c := &memConn{req: []byte(raw), left: b.N}
	done := make(chan struct{})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				close(done)
			}
		},
	}
	l := &oneConnListener{c: c, done: make(chan struct{})}
	b.ReportAllocs()
	b.ResetTimer()
	go srv.Serve(l)
	<-done
	b.StopTimer()
	srv.Close()
	return c.out
}

// BenchmarkServerCachedGET is the cached GET through net/http's server
// loop (request parsing, response and header writing) as the appliance
// mounts it and with its http.Server settings, over an in-memory
// connection: everything a request costs but the kernel's sockets (and
// the timers of the deadlines, which the in-memory connection ignores).
func BenchmarkServerCachedGET(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	path := "/ocsp/" + base64.StdEncoding.EncodeToString(buildRequest(b, specFor(ca, 1, serial)))
	h := r.Wrap(http.NewServeMux())
	h.ServeHTTP(&discardWriter{h: http.Header{}}, httptest.NewRequest(http.MethodGet, path, nil))
	out := serveMem(b, h, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	b.ReportMetric(float64(out)/float64(b.N), "B-out/op")
}

// BenchmarkServerBare is the same for a handler that writes a fixed
// 400-byte body with a Content-Type: the least a net/http server does.
func BenchmarkServerBare(b *testing.B) {
	body := bytes.Repeat([]byte{0x30}, 400)
	out := serveMem(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = hdrOCSPResponse
		w.Write(body)
	}), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	b.ReportMetric(float64(out)/float64(b.N), "B-out/op")
}

// BenchmarkGenerations: a GET through the full path (decoding, issuer
// lookup by key hash, cache) with one CA generation and with eight (a
// CA after rollovers: each an intermediate with certificates of its
// own): the issuer is found by its key hash, so the cost per answer does
// not grow with the generations.
func BenchmarkGenerations(b *testing.B) {
	for _, gens := range []int{1, 8} {
		b.Run(fmt.Sprint(gens), func(b *testing.B) {
			root := makeCA(b, "ecdsa-root-1", "Bench Root", mustEC(b), nil)
			src := &mapSource{certs: map[string]*store.Certificate{}}
			var last *testCA
			var serial *big.Int
			for g := range gens {
				last = makeCA(b, fmt.Sprintf("ecdsa-int-%d", g+1), fmt.Sprintf("Bench Intermediate %d", g+1), mustEC(b), root)
				src.issuers = append(src.issuers, last.issuer())
				for range 200 {
					serial = randSerial(b)
					src.certs[store.SerialKey(serial)] = &store.Certificate{Serial: serial, IssuerID: last.id, NotAfter: time.Now().Add(24 * time.Hour)}
				}
			}
			r, err := NewResponder(context.Background(), Options{Source: src})
			if err != nil {
				b.Fatal(err)
			}
			tail := base64.StdEncoding.EncodeToString(buildRequest(b, specFor(last, 1, serial)))
			req := httptest.NewRequest(http.MethodGet, "/ocsp/"+tail, nil)
			benchServe(b, r, req, func() { r.getAliases.m.Delete(tail) }, true)
		})
	}
}
