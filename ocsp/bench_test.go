package ocsp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
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

func BenchmarkCachedGET(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	der := buildRequest(b, specFor(ca, 1, serial))
	req := httptest.NewRequest(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(der), nil)
	w := &discardWriter{h: http.Header{}}
	r.ServeHTTP(w, req) // fill the cache
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		r.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.code != 0 || w.n == 0 || w.h.Get("Cache-Control") == "" {
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

func BenchmarkPOST(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	der := buildRequest(b, specFor(ca, 0, serial))
	body := rewindBody{bytes.NewReader(der)}
	req := httptest.NewRequest(http.MethodPost, "/ocsp", body)
	req.Header.Set("Content-Type", "application/ocsp-request")
	w := &discardWriter{h: http.Header{}}
	r.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		body.Reset(der)
		r.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.code != 0 || w.n == 0 {
		b.Fatalf("bad answer: code %d, %d bytes", w.code, w.n)
	}
}

// BenchmarkNonce measures live signing: a nonce defeats the cache.
func BenchmarkNonce(b *testing.B) {
	r, ca, serial := benchResponder(b, 1000)
	s := specFor(ca, 1, serial)
	s.nonce = make([]byte, 16)
	rand.Read(s.nonce)
	der := buildRequest(b, s)
	body := rewindBody{bytes.NewReader(der)}
	req := httptest.NewRequest(http.MethodPost, "/ocsp", body)
	w := &discardWriter{h: http.Header{}}
	r.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		body.Reset(der)
		r.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.code != 0 || w.n == 0 {
		b.Fatalf("bad answer: code %d, %d bytes", w.code, w.n)
	}
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
