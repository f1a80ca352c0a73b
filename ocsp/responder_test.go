package ocsp

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"
)

// reqSpec describes a request for buildRequest.
type reqSpec struct {
	hashOID  []byte // DER contents
	nameHash []byte
	keyHash  []byte
	serial   *big.Int
	count    int      // requests in the list (1 when 0)
	version  int64    // written explicitly when not 0
	nonce    []byte   // nonce octets, wrapped in an OCTET STRING
	rawNonce []byte   // extnValue as is, when not nil
	critical [][]byte // OIDs of critical extensions to add
}

// buildRequest encodes an OCSPRequest independently of the parser.
func buildRequest(t testing.TB, s reqSpec) []byte {
	t.Helper()
	if s.count == 0 {
		s.count = 1
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if s.version != 0 {
				b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1Int64(s.version) })
			}
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for range s.count {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(casn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(s.hashOID) })
								b.AddASN1NULL()
							})
							b.AddASN1OctetString(s.nameHash)
							b.AddASN1OctetString(s.keyHash)
							b.AddASN1BigInt(s.serial)
						})
					})
				}
			})
			if s.nonce != nil || s.rawNonce != nil || len(s.critical) > 0 {
				b.AddASN1(tagExplicit2, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						if s.nonce != nil || s.rawNonce != nil {
							b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(casn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oidNonce) })
								if s.rawNonce != nil {
									b.AddASN1OctetString(s.rawNonce)
								} else {
									b.AddASN1(casn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(s.nonce) })
								}
							})
						}
						for _, oid := range s.critical {
							b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(casn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oid) })
								b.AddASN1Boolean(true)
								b.AddASN1OctetString([]byte{0x05, 0x00})
							})
						}
					})
				})
			}
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// specFor is a request for serial of ca, with the hash at index alg.
func specFor(ca *testCA, alg int, serial *big.Int) reqSpec {
	bits, _ := publicKeyBits(ca.cert.RawSubjectPublicKeyInfo)
	h := hashAlgs[alg].hash.New()
	h.Write(ca.cert.RawSubject)
	name := h.Sum(nil)
	h.Reset()
	h.Write(bits)
	return reqSpec{hashOID: hashAlgs[alg].oid, nameHash: name, keyHash: h.Sum(nil), serial: serial}
}

func post(t *testing.T, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	return getResponse(t, req)
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return getResponse(t, req)
}

// parseOK parses a successful answer about leaf signed for issuer.
func parseOK(t *testing.T, body []byte, leaf, issuer *x509.Certificate) *xocsp.Response {
	t.Helper()
	resp, err := xocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		t.Fatalf("parse response: %v (%x)", err, body)
	}
	return resp
}

func TestHashAlgorithms(t *testing.T) {
	p := newPKI(t)
	_, srv := p.startResponder(t, nil)
	for _, ca := range []*testCA{p.ecInt, p.rsaInt} {
		leaf := p.leaf(ca, nil, true)
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			t.Run(ca.id+"/"+h.String(), func(t *testing.T) {
				der, err := xocsp.CreateRequest(leaf.cert, ca.cert, &xocsp.RequestOptions{Hash: h})
				if err != nil {
					t.Fatal(err)
				}
				_, body := post(t, srv.URL+"/ocsp", der)
				resp := parseOK(t, body, leaf.cert, ca.cert)
				if resp.Status != xocsp.Good || resp.IssuerHash != h || resp.SerialNumber.Cmp(leaf.cert.SerialNumber) != 0 {
					t.Errorf("status %d hash %v serial %x", resp.Status, resp.IssuerHash, resp.SerialNumber)
				}
				if resp.Certificate == nil || resp.Certificate.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
					t.Error("no delegated responder certificate in the answer")
				}
				if got := resp.NextUpdate.Sub(resp.ThisUpdate); got != DefaultValidity {
					t.Errorf("validity %s", got)
				}
				if !resp.ProducedAt.Equal(p.clock.Now()) {
					t.Errorf("producedAt %s, clock %s", resp.ProducedAt, p.clock.Now())
				}
			})
		}
	}
}

func TestIssuerMode(t *testing.T) {
	p := newPKI(t)
	_, srv := p.startResponder(t, func(o *Options) { o.Mode = ModeIssuer })
	leaf := p.leaf(p.rsaInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.rsaInt.cert, nil)
	_, body := post(t, srv.URL+"/ocsp", der)
	resp := parseOK(t, body, leaf.cert, p.rsaInt.cert)
	if resp.Certificate != nil {
		t.Error("issuer mode sent a responder certificate")
	}
	if resp.Status != xocsp.Good {
		t.Errorf("status %d", resp.Status)
	}
	if n := p.src.responderCertCount(p.rsaInt.id); n != 0 {
		t.Errorf("%d responder certificates issued in issuer mode", n)
	}
}

func TestGETHeaders(t *testing.T) {
	p := newPKI(t)
	_, srv := p.startResponder(t, func(o *Options) { o.CacheMaxAge = 30 * time.Minute })
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, &xocsp.RequestOptions{Hash: crypto.SHA256})
	b64 := base64.StdEncoding.EncodeToString(der)

	resp, body := get(t, srv.URL+"/ocsp/"+b64)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := parseOK(t, body, leaf.cert, p.ecInt.cert)
	sum := sha256.Sum256(body)
	h := resp.Header
	for k, want := range map[string]string{
		"Content-Type":   "application/ocsp-response",
		"Content-Length": strconv.Itoa(len(body)),
		"Last-Modified":  r.ThisUpdate.Format(http.TimeFormat),
		"Expires":        r.NextUpdate.Format(http.TimeFormat),
		"Etag":           `"` + hex.EncodeToString(sum[:]) + `"`,
		"Cache-Control":  "max-age=1800, public, no-transform, must-revalidate",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if h.Get("Date") == "" {
		t.Error("no Date")
	}

	// The cache holds the exact bytes; a conditional GET gets a 304.
	_, again := get(t, srv.URL+"/ocsp/"+b64)
	if !bytes.Equal(again, body) {
		t.Error("second GET got another answer")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ocsp/"+b64, nil)
	req.Header.Set("If-None-Match", h.Get("Etag"))
	resp, body304 := getResponse(t, req)
	if resp.StatusCode != http.StatusNotModified || len(body304) != 0 || resp.Header.Get("Etag") != h.Get("Etag") {
		t.Errorf("conditional GET: %d, %d bytes, etag %q", resp.StatusCode, len(body304), resp.Header.Get("Etag"))
	}

	// POST answers carry no HTTP caching headers.
	resp, pbody := post(t, srv.URL+"/ocsp", der)
	if !bytes.Equal(pbody, body) {
		t.Error("POST and GET answers differ")
	}
	for _, k := range []string{"Cache-Control", "Etag", "Expires", "Last-Modified"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("POST answer has %s: %s", k, v)
		}
	}
	if resp.Header.Get("Content-Type") != "application/ocsp-response" || resp.Header.Get("Content-Length") != strconv.Itoa(len(pbody)) {
		t.Errorf("POST headers %v", resp.Header)
	}

	// Max-age never outlives nextUpdate, even when capped by neither.
	p.clock.Advance(DefaultValidity - 10*time.Minute) // past the refresh point: the old answer is served once
	resp, _ = get(t, srv.URL+"/ocsp/"+b64)
	m := maxAgeRE.FindStringSubmatch(resp.Header.Get("Cache-Control"))
	if m == nil {
		t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	if age, _ := strconv.Atoi(m[1]); age > 600 {
		t.Errorf("max-age %d beyond nextUpdate (600s left)", age)
	}
}

// TestBadRequests checks every kind of junk gets an OCSP error or a 4xx,
// never a panic or a 5xx.
func TestBadRequests(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	good := specFor(p.ecInt, 1, leaf.cert.SerialNumber)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	with := func(f func(*reqSpec)) []byte {
		s := good
		f(&s)
		return buildRequest(t, s)
	}
	malformed, unauthorized := xocsp.MalformedRequestErrorResponse, xocsp.UnauthorizedErrorResponse

	type result struct {
		code int
		body []byte // nil: any
	}
	postCases := []struct {
		name string
		ct   string
		body []byte
		want result
	}{
		{"junk", "application/ocsp-request", []byte("hello, world"), result{200, malformed}},
		{"empty", "application/ocsp-request", nil, result{200, malformed}},
		{"trailing data", "application/ocsp-request", append(buildRequest(t, good), 0), result{200, malformed}},
		{"truncated", "application/ocsp-request", buildRequest(t, good)[:40], result{200, malformed}},
		{"two requests", "application/ocsp-request", with(func(s *reqSpec) { s.count = 2 }), result{200, malformed}},
		{"no requests", "", with(func(s *reqSpec) { s.count = -1 }), result{200, malformed}},
		{"version 2", "application/ocsp-request", with(func(s *reqSpec) { s.version = 1 }), result{200, malformed}},
		{"empty nonce", "application/ocsp-request", with(func(s *reqSpec) { s.nonce = []byte{} }), result{200, malformed}},
		{"33 byte nonce", "application/ocsp-request", with(func(s *reqSpec) { s.nonce = make([]byte, 33) }), result{200, malformed}},
		{"unwrapped nonce", "application/ocsp-request", with(func(s *reqSpec) { s.rawNonce = []byte("0123456789abcdef") }), result{200, malformed}},
		{"critical unknown extension", "application/ocsp-request", with(func(s *reqSpec) { s.critical = [][]byte{{0x2a, 0x03}} }), result{200, malformed}},
		{"name hash of another issuer", "application/ocsp-request", with(func(s *reqSpec) { s.nameHash = specFor(p.rsaInt, 1, nil).nameHash }), result{200, unauthorized}},
		{"unknown key hash", "application/ocsp-request", with(func(s *reqSpec) { s.keyHash = make([]byte, 32) }), result{200, unauthorized}},
		{"MD5 CertID", "application/ocsp-request", with(func(s *reqSpec) { s.hashOID = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05} }), result{200, unauthorized}},
		{"text body", "text/plain", buildRequest(t, good), result{415, nil}},
		{"oversize", "application/ocsp-request", make([]byte, DefaultMaxRequestBytes+1), result{413, nil}},
	}
	for _, tc := range postCases {
		t.Run("POST "+tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ocsp", bytes.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			resp, body := getResponse(t, req)
			if resp.StatusCode != tc.want.code || (tc.want.body != nil && !bytes.Equal(body, tc.want.body)) {
				t.Errorf("got %d %x, want %d %x", resp.StatusCode, body, tc.want.code, tc.want.body)
			}
		})
	}
	t.Run("POST oversize chunked", func(t *testing.T) {
		// No Content-Length: the limit applies while reading.
		body := io.MultiReader(bytes.NewReader(make([]byte, DefaultMaxRequestBytes)), strings.NewReader("xx"))
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ocsp", body)
		resp, _ := getResponse(t, req)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d", resp.StatusCode)
		}
	})

	getCases := []struct {
		name, path string
		want       result
	}{
		{"no tail", "/ocsp", result{200, malformed}},
		{"slash only", "/ocsp/", result{200, malformed}},
		{"garbage base64", "/ocsp/!!!!****", result{200, malformed}},
		{"base64 of junk", "/ocsp/" + b64([]byte("junk junk junk")), result{200, malformed}},
		{"too long", "/ocsp/" + strings.Repeat("A", 4*DefaultMaxRequestBytes), result{414, nil}},
		{"other path", "/ocspx/" + b64(buildRequest(t, good)), result{404, nil}},
		{"query ignored", "/ocsp/" + b64(buildRequest(t, good)) + "?x=1", result{200, nil}},
		{"url-safe base64", "/ocsp/" + base64.RawURLEncoding.EncodeToString(buildRequest(t, good)), result{200, nil}},
		{"unpadded base64", "/ocsp/" + base64.RawStdEncoding.EncodeToString(buildRequest(t, good)), result{200, nil}},
	}
	for _, tc := range getCases {
		t.Run("GET "+tc.name, func(t *testing.T) {
			resp, body := get(t, srv.URL+tc.path)
			if resp.StatusCode != tc.want.code || (tc.want.body != nil && !bytes.Equal(body, tc.want.body)) {
				t.Errorf("got %d %x, want %d %x", resp.StatusCode, body, tc.want.code, tc.want.body)
			}
			if tc.want.code == 200 && tc.want.body == nil {
				parseOK(t, body, leaf.cert, p.ecInt.cert)
			}
		})
	}
	// Invalid escapes never reach the handler: net/http refuses them.
	for _, path := range []string{"/ocsp/%zz" + b64(buildRequest(t, good)), "/ocsp/" + b64(buildRequest(t, good)) + "%3"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		conn.Close()
	}
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions, "BREW"} {
		t.Run(m, func(t *testing.T) {
			req, _ := http.NewRequest(m, srv.URL+"/ocsp", nil)
			resp, _ := getResponse(t, req)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
				t.Errorf("status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
			}
		})
	}
	if n := testutil.ToFloat64(r.met.responses[kindMalformed]); n < 15 {
		t.Errorf("malformed counted %v times", n)
	}
	if n := testutil.ToFloat64(r.met.responses[kindUnauthorized]); n != 3 {
		t.Errorf("unauthorized counted %v times", n)
	}
}

func TestNonce(t *testing.T) {
	p := newPKI(t)
	_, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	for _, n := range []int{1, 16, 32} {
		s := specFor(p.ecInt, 1, leaf.cert.SerialNumber)
		s.nonce = bytes.Repeat([]byte{byte(n)}, n)
		resp, body := post(t, srv.URL+"/ocsp", buildRequest(t, s))
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("nonce answer Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		parseOK(t, body, leaf.cert, p.ecInt.cert)
		// The nonce sits in responseExtensions, where RFC 8954 puts it.
		want := append([]byte{0x04, byte(n)}, s.nonce...)
		if got := responseNonce(t, body); !bytes.Equal(got, want) {
			t.Errorf("nonce %x, want %x", got, want)
		}
	}
}

// responseNonce digs the nonce extnValue out of responseExtensions.
func responseNonce(t *testing.T, der []byte) []byte {
	t.Helper()
	in := cryptobyte.String(der)
	var resp, rb, basicOctets, basic, tbs cryptobyte.String
	var basicBytes []byte
	ok := in.ReadASN1(&resp, casn1.SEQUENCE) && resp.SkipASN1(casn1.ENUM) &&
		resp.ReadASN1(&rb, tagExplicit0) && rb.ReadASN1(&basicOctets, casn1.SEQUENCE) &&
		basicOctets.SkipASN1(casn1.OBJECT_IDENTIFIER) && basicOctets.ReadASN1Bytes(&basicBytes, casn1.OCTET_STRING)
	basic = cryptobyte.String(basicBytes)
	var inner cryptobyte.String
	ok = ok && basic.ReadASN1(&inner, casn1.SEQUENCE) && inner.ReadASN1(&tbs, casn1.SEQUENCE) &&
		tbs.SkipOptionalASN1(tagExplicit0) && tbs.SkipASN1(casn1.Tag(2).ContextSpecific().Constructed()) &&
		tbs.SkipASN1(casn1.GeneralizedTime) && tbs.SkipASN1(casn1.SEQUENCE)
	if !ok {
		t.Fatal("cannot walk the response")
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&exts, &present, tagExplicit1) || !present {
		t.Fatal("no responseExtensions")
	}
	var found []byte
	if err := walkExtensions(exts, func(id, value []byte) (bool, error) {
		if bytes.Equal(id, oidNonce) {
			found = value
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestRefresh follows one answer through its life with a fake clock.
func TestRefresh(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, func(o *Options) { o.Validity = time.Hour })
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	url := srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(der)
	thisUpdate := func() time.Time {
		_, body := get(t, url)
		return parseOK(t, body, leaf.cert, p.ecInt.cert).ThisUpdate
	}
	t0 := p.clock.Now()
	if got := thisUpdate(); !got.Equal(t0) {
		t.Fatalf("thisUpdate %s, want %s", got, t0)
	}
	p.clock.Advance(20 * time.Minute)
	if got := thisUpdate(); !got.Equal(t0) {
		t.Errorf("before half validity: thisUpdate %s, want the cached %s", got, t0)
	}
	// Past half: the hit is answered from the cache and a refresh starts.
	p.clock.Advance(11 * time.Minute)
	if got := thisUpdate(); !got.Equal(t0) {
		t.Errorf("refresh point: thisUpdate %s, want the cached %s", got, t0)
	}
	r.bg.Wait()
	t1 := p.clock.Now()
	if got := thisUpdate(); !got.Equal(t1) {
		t.Errorf("after the refresh: thisUpdate %s, want %s", got, t1)
	}
	// Past nextUpdate an answer is never served: it is signed again inline.
	p.clock.Advance(2 * time.Hour)
	if got := thisUpdate(); !got.Equal(p.clock.Now()) {
		t.Errorf("after nextUpdate: thisUpdate %s, want %s", got, p.clock.Now())
	}
	// The background pass signs due entries without a request.
	p.clock.Advance(31 * time.Minute)
	r.maintain(context.Background())
	var kb [64]byte
	st := r.set.Load().byID[p.ecInt.id]
	e := r.cache.get(appendKey(kb[:0], 0, st.idx, serialToDER(leaf.cert.SerialNumber)))
	if e == nil || e.thisUpdate != p.clock.Now().Unix() {
		t.Errorf("maintain did not refresh the entry: %+v", e)
	}
}

func TestResponderCertRenewal(t *testing.T) {
	p := newPKI(t)
	// Answers valid for a day, responder certificates for three hours.
	r, srv := p.startResponder(t, func(o *Options) { o.ResponderCertLifetime = 3 * time.Hour })
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	responder := func() *x509.Certificate {
		s := specFor(p.ecInt, 0, leaf.cert.SerialNumber)
		s.nonce = []byte("fresh signature please")
		_, body := post(t, srv.URL+"/ocsp", buildRequest(t, s))
		return parseOK(t, body, leaf.cert, p.ecInt.cert).Certificate
	}
	first := responder()
	if n := p.src.responderCertCount(p.ecInt.id); n != 1 {
		t.Fatalf("%d responder certificates at start", n)
	}
	p.clock.Advance(150 * time.Minute) // past the renewal point (2/3 of 3h05m)
	if c := responder(); c.Equal(first) {
		t.Error("responder certificate not renewed past two thirds of its life")
	}
	if n := p.src.responderCertCount(p.ecInt.id); n != 2 {
		t.Errorf("%d responder certificates after renewal", n)
	}
	// Run's pass renews the others, which nobody asked about.
	if n := p.src.responderCertCount(p.rsaInt.id); n != 1 {
		t.Errorf("%d RSA responder certificates", n)
	}
	r.maintain(context.Background())
	if n := p.src.responderCertCount(p.rsaInt.id); n != 2 {
		t.Errorf("%d RSA responder certificates after maintain", n)
	}
	_, body := post(t, srv.URL+"/ocsp", der)
	resp := parseOK(t, body, leaf.cert, p.ecInt.cert)
	// Answers never outlive the responder certificate.
	if !resp.NextUpdate.Equal(resp.Certificate.NotAfter) {
		t.Errorf("nextUpdate %s, want the responder certificate's end %s", resp.NextUpdate, resp.Certificate.NotAfter)
	}
}

// TestCoalescing sends concurrent misses for one answer: one store read.
func TestCoalescing(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	release := make(chan struct{})
	p.src.mu.Lock()
	p.src.statusHook = func() { <-release }
	p.src.mu.Unlock()
	before := p.src.statusCalls.Load()

	const n = 10
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(der))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			bodies[i], _ = io.ReadAll(resp.Body)
		})
	}
	var kb [64]byte
	key := appendKey(kb[:0], 0, r.set.Load().byID[p.ecInt.id].idx, serialToDER(leaf.cert.SerialNumber))
	for r.flight.waiting(key) != n-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := p.src.statusCalls.Load() - before; got != 1 {
		t.Errorf("%d status reads for %d concurrent requests", got, n)
	}
	for i := range bodies {
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatal("coalesced requests got different answers")
		}
	}
}

// TestInvalidateDuringLoad revokes while an answer is being signed from
// the status read before: that answer must not be cached.
func TestInvalidateDuringLoad(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	read, release := make(chan struct{}), make(chan struct{})
	p.src.mu.Lock()
	p.src.statusHook = func() { close(read); <-release }
	p.src.mu.Unlock()

	done := make(chan []byte)
	go func() {
		resp, err := http.Post(srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(der))
		if err != nil {
			done <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- b
	}()
	<-read // the store said good
	p.src.mu.Lock()
	p.src.statusHook = nil
	p.src.mu.Unlock()
	p.revoke(leaf.cert.SerialNumber, xocsp.CessationOfOperation)
	r.Invalidate(p.ecInt.id, leaf.cert.SerialNumber)
	close(release)
	body := <-done
	if resp := parseOK(t, body, leaf.cert, p.ecInt.cert); resp.Status != xocsp.Good {
		t.Errorf("the concurrent answer: status %d", resp.Status)
	}
	if n := r.cache.len(); n != 0 {
		t.Errorf("%d entries cached from a status read before the revocation", n)
	}
	if _, ok := r.postAliases.m.Load(string(der)); ok {
		t.Error("the answer kept out of the cache was aliased")
	}
	_, body = post(t, srv.URL+"/ocsp", der)
	if resp := parseOK(t, body, leaf.cert, p.ecInt.cert); resp.Status != xocsp.Revoked || resp.RevocationReason != xocsp.CessationOfOperation {
		t.Errorf("after invalidation: status %d reason %d", resp.Status, resp.RevocationReason)
	}
}

func TestReload(t *testing.T) {
	p := newPKI(t)
	p.src.setIssuers(p.ecRoot.issuer(), p.ecInt.issuer())
	r, srv := p.startResponder(t, nil)
	ecLeaf, rsaLeaf := p.leaf(p.ecInt, nil, true), p.leaf(p.rsaInt, nil, true)
	status := func(leaf *testLeaf, ca *testCA) []byte {
		der, _ := xocsp.CreateRequest(leaf.cert, ca.cert, nil)
		_, body := post(t, srv.URL+"/ocsp", der)
		return body
	}
	if body := status(rsaLeaf, p.rsaInt); !bytes.Equal(body, xocsp.UnauthorizedErrorResponse) {
		t.Errorf("issuer not loaded yet: %x", body)
	}
	p.src.setIssuers(p.ecRoot.issuer(), p.ecInt.issuer(), p.rsaRoot.issuer(), p.rsaInt.issuer())
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	parseOK(t, status(rsaLeaf, p.rsaInt), rsaLeaf.cert, p.rsaInt.cert)
	parseOK(t, status(ecLeaf, p.ecInt), ecLeaf.cert, p.ecInt.cert)
	if n := p.src.responderCertCount(p.ecInt.id); n != 1 {
		t.Errorf("unchanged issuer got %d responder certificates", n)
	}
	p.src.setIssuers(p.rsaRoot.issuer(), p.rsaInt.issuer())
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if body := status(ecLeaf, p.ecInt); !bytes.Equal(body, xocsp.UnauthorizedErrorResponse) {
		t.Errorf("removed issuer still answered: %x", body)
	}
	p.src.setIssuers(p.rsaInt.issuer(), p.rsaInt.issuer())
	if err := r.Reload(context.Background()); err == nil {
		t.Error("an issuer listed twice was accepted")
	}
}

func TestWrapAndMetrics(t *testing.T) {
	p := newPKI(t)
	reg := prometheus.NewRegistry()
	o := p.options()
	o.Registerer = reg
	r, err := NewResponder(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "mux") })
	srv := httptest.NewServer(r.Wrap(mux))
	defer srv.Close()
	defer r.bg.Wait()

	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	// A path with "//" would be redirected by the mux; Wrap keeps it away.
	_, body := get(t, srv.URL+"/ocsp//"+base64.StdEncoding.EncodeToString(der))
	parseOK(t, body, leaf.cert, p.ecInt.cert)
	get(t, srv.URL+"/ocsp/"+base64.StdEncoding.EncodeToString(der))
	if _, body := get(t, srv.URL+"/other"); string(body) != "mux" {
		t.Errorf("other paths: %q", body)
	}
	if _, body := get(t, srv.URL+"/ocspother"); string(body) != "mux" {
		t.Errorf("prefix without a slash: %q", body)
	}
	if got := testutil.ToFloat64(r.met.responses[kindGood]); got != 2 {
		t.Errorf("good answers %v", got)
	}
	if got := testutil.ToFloat64(r.met.cacheHits); got != 1 {
		t.Errorf("cache hits %v", got)
	}
	if n := testutil.CollectAndCount(r.met.signSeconds); n != 1 {
		t.Errorf("sign histogram count %d", n)
	}
	// A second responder on the same registry (a reload) shares them.
	if _, err := NewResponder(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"nmos_certs_ocsp_responses_total", "nmos_certs_ocsp_cache_hits_total", "nmos_certs_ocsp_sign_duration_seconds"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
}

func TestOptions(t *testing.T) {
	p := newPKI(t)
	for name, o := range map[string]Options{
		"no source":     {},
		"bad mode":      {Source: p.src, Mode: "psychic"},
		"tiny validity": {Source: p.src, Validity: time.Second},
		"bad prefix":    {Source: p.src, OCSPPrefix: "ocsp/"},
		"negative size": {Source: p.src, CacheSize: -1},
	} {
		if _, err := NewResponder(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDecodeGET(t *testing.T) {
	der := []byte{0x30, 0x03, 0xfb, 0xff, 0xfe} // base64 "MAP7//4="
	for _, tc := range []struct {
		in   string
		want []byte
	}{
		{"MAP7//4=", der},
		{"MAP7//4", der},
		{"MAP7%2F%2F4%3D", der},
		{"MAP7%2f%2f4%3d", der},
		{"MAP7__4=", der},
		{"MAP7__4", der},
		{"", nil},
		{"%zz", nil},
		{"MAP7%2", nil},
		{"MAP7%", nil},
		{"M", nil},
		{"MA=P", nil},
		{"****", nil},
	} {
		got, err := decodeGET(tc.in, nil, nil, 100)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%q: decoded to %x", tc.in, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%q: %x, %v", tc.in, got, err)
		}
	}
	if _, err := decodeGET(strings.Repeat("A", 200), nil, nil, 100); !errors.Is(err, errTooLarge) {
		t.Errorf("oversize: %v", err)
	}
}

// TestResponderCertFailure: without a responder certificate the answer is
// internalError, and the CA is not asked again on every request.
func TestResponderCertFailure(t *testing.T) {
	p := newPKI(t)
	p.src.failResponder.Store(true)
	_, srv := p.startResponder(t, func(o *Options) { o.ResponderCertLifetime = 3 * time.Hour })
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	for range 3 {
		if _, body := post(t, srv.URL+"/ocsp", der); !bytes.Equal(body, xocsp.InternalErrorErrorResponse) {
			t.Fatalf("answer without a responder certificate: %x", body)
		}
	}
	if n := p.src.responderCertCount(p.ecInt.id); n != 1 {
		t.Errorf("%d attempts within the retry delay", n)
	}
	p.src.failResponder.Store(false)
	p.clock.Advance(2 * renewRetry)
	_, body := post(t, srv.URL+"/ocsp", der)
	first := parseOK(t, body, leaf.cert, p.ecInt.cert).Certificate

	// A failed renewal keeps the current certificate in use.
	p.src.failResponder.Store(true)
	p.clock.Advance(150 * time.Minute)
	for range 2 {
		s := specFor(p.ecInt, 0, leaf.cert.SerialNumber)
		s.nonce = []byte{1, 2, 3}
		_, body = post(t, srv.URL+"/ocsp", buildRequest(t, s))
		if c := parseOK(t, body, leaf.cert, p.ecInt.cert).Certificate; !c.Equal(first) {
			t.Error("responder certificate changed though renewal failed")
		}
	}
	if n := p.src.responderCertCount(p.ecInt.id); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}
