package ocsp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	xocsp "golang.org/x/crypto/ocsp"
)

// rfc5019Headers checks the headers of a cached GET answer against RFC
// 5019 section 6: exactly Content-Type, Content-Length, Cache-Control,
// Last-Modified, Expires and ETag besides Date, with the values the
// answer itself dictates.
func rfc5019Headers(t *testing.T, resp *http.Response, body []byte, maxAge int) {
	t.Helper()
	r, err := xocsp.ParseResponse(body, nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	sum := sha256.Sum256(body)
	want := map[string]string{
		"Content-Type":   "application/ocsp-response",
		"Content-Length": strconv.Itoa(len(body)),
		"Cache-Control":  "max-age=" + strconv.Itoa(maxAge) + ", public, no-transform, must-revalidate",
		"Last-Modified":  r.ThisUpdate.UTC().Format(http.TimeFormat),
		"Expires":        r.NextUpdate.UTC().Format(http.TimeFormat),
		"Etag":           `"` + hex.EncodeToString(sum[:]) + `"`,
	}
	for k, v := range want {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want [%q]", k, got, v)
		}
	}
	for k := range resp.Header {
		if _, ok := want[k]; !ok && k != "Date" {
			t.Errorf("unexpected header %s: %q", k, resp.Header[k])
		}
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
}

// TestAliasGET follows one GET path from the full decoding path to the
// alias and checks that both answer alike, byte for byte and header for
// header, under every spelling of the request a client may use.
func TestAliasGET(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, func(o *Options) { o.CacheMaxAge = 30 * time.Minute })
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	b64 := base64.StdEncoding.EncodeToString(der)
	tails := []string{
		b64,
		strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(b64),
		strings.TrimRight(base64.URLEncoding.EncodeToString(der), "="),
	}
	var first []byte
	for _, tail := range tails {
		if r.getAliases.get(tail) != nil {
			t.Fatalf("%s: alias before any request", tail)
		}
		for i, via := range []string{"full path", "alias"} {
			resp, body := get(t, srv.URL+"/ocsp/"+tail)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s, %s: status %d", tail, via, resp.StatusCode)
			}
			if first == nil {
				first = body
			} else if !bytes.Equal(body, first) {
				t.Errorf("%s, %s: another answer", tail, via)
			}
			rfc5019Headers(t, resp, body, 1800)
			if i == 0 && r.getAliases.get(tail) == nil {
				t.Errorf("%s: no alias after the first answer", tail)
			}
		}
	}
	// Every request after the first was a cache hit, and each was counted.
	if got := testutil.ToFloat64(r.met.cacheHits); got != float64(2*len(tails)-1) {
		t.Errorf("cache hits %v, want %d", got, 2*len(tails)-1)
	}
	if got := testutil.ToFloat64(r.met.responses[kindGood]); got != float64(2*len(tails)) {
		t.Errorf("good answers %v, want %d", got, 2*len(tails))
	}

	// A conditional GET through the alias gets a 304 with the validators.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ocsp/"+b64, nil)
	sum := sha256.Sum256(first)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	req.Header.Set("If-None-Match", etag)
	resp, body := getResponse(t, req)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("Etag") != etag {
		t.Errorf("conditional GET: %d, %d bytes, etag %q", resp.StatusCode, len(body), resp.Header.Get("Etag"))
	}

	// Past the refresh point the alias still answers, with a max-age
	// that stops at nextUpdate.
	p.clock.Advance(DefaultValidity - 10*time.Minute)
	resp, body = get(t, srv.URL+"/ocsp/"+b64)
	if !bytes.Equal(body, first) {
		t.Error("past the refresh point: another answer before the refresh")
	}
	rfc5019Headers(t, resp, body, 600)
	r.bg.Wait()
	// The refresh replaced the entry: the alias is no longer followed,
	// and the next request is answered with the new one and aliased to it.
	if r.getAliases.get(b64) != nil {
		t.Error("alias of a replaced answer still followed")
	}
	_, body = get(t, srv.URL+"/ocsp/"+b64)
	if bytes.Equal(body, first) {
		t.Error("old answer served after the refresh")
	}
	if e := r.getAliases.get(b64); e == nil || !bytes.Equal(e.body, body) {
		t.Error("not aliased to the refreshed answer")
	}
}

// TestAliasRevocation checks that a revocation reaches GET and POST
// requests that were answered through an alias before.
func TestAliasRevocation(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	getURL := srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(der)
	status := func(body []byte) int {
		return parseOK(t, body, leaf.cert, p.ecInt.cert).Status
	}
	for range 2 {
		if _, body := get(t, getURL); status(body) != xocsp.Good {
			t.Fatal("not good before the revocation")
		}
		if _, body := post(t, srv.URL+"/ocsp", der); status(body) != xocsp.Good {
			t.Fatal("POST: not good before the revocation")
		}
	}
	if r.getAliases.get(base64.StdEncoding.EncodeToString(der)) == nil || r.postAliases.get(string(der)) == nil {
		t.Fatal("no aliases")
	}
	p.revoke(leaf.cert.SerialNumber, xocsp.KeyCompromise)
	r.Invalidate(p.ecInt.id, leaf.cert.SerialNumber)
	for range 2 {
		if _, body := get(t, getURL); status(body) != xocsp.Revoked {
			t.Error("GET: good after the revocation")
		}
		if _, body := post(t, srv.URL+"/ocsp", der); status(body) != xocsp.Revoked {
			t.Error("POST: good after the revocation")
		}
	}

	// A reload drops every alias with the cache.
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.getAliases.get(base64.StdEncoding.EncodeToString(der)) != nil || r.postAliases.get(string(der)) != nil {
		t.Error("aliases followed after a reload")
	}
	if _, body := get(t, getURL); status(body) != xocsp.Revoked {
		t.Error("after the reload: not revoked")
	}
}

// TestAliasMethods checks that an alias changes nothing of how methods,
// content types and nonces are handled.
func TestAliasMethods(t *testing.T) {
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	b64 := base64.StdEncoding.EncodeToString(der)
	get(t, srv.URL+"/ocsp/"+b64)
	post(t, srv.URL+"/ocsp", der)

	for _, m := range []string{http.MethodHead, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+"/ocsp/"+b64, nil)
		resp, _ := getResponse(t, req)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
			t.Errorf("%s: %d, Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ocsp", bytes.NewReader(der))
	req.Header.Set("Content-Type", "text/plain")
	if resp, _ := getResponse(t, req); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("POST text/plain: %d", resp.StatusCode)
	}
	// POST answers carry no caching headers, through the alias too.
	resp, body := post(t, srv.URL+"/ocsp", der)
	parseOK(t, body, leaf.cert, p.ecInt.cert)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range resp.Header {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"Content-Length", "Content-Type", "Date"}) {
		t.Errorf("POST answer headers %v", keys)
	}

	// A nonce makes a fresh answer every time, by GET or POST, and is
	// never aliased.
	s := specFor(p.ecInt, 0, leaf.cert.SerialNumber)
	s.nonce = []byte("0123456789abcdef")
	nder := buildRequest(t, s)
	ntail := base64.StdEncoding.EncodeToString(nder)
	var answers [][]byte
	for range 2 {
		resp, body := get(t, srv.URL+"/ocsp/"+ntail)
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET with a nonce: Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		answers = append(answers, body)
		_, body = post(t, srv.URL+"/ocsp", nder)
		answers = append(answers, body)
	}
	for i, a := range answers {
		if got := responseNonce(t, a); !bytes.Equal(got, append([]byte{0x04, 16}, s.nonce...)) {
			t.Errorf("answer %d: nonce %x", i, got)
		}
		for _, b := range answers[:i] {
			if bytes.Equal(a, b) {
				t.Errorf("answer %d repeats an earlier one", i)
			}
		}
	}
	if r.getAliases.get(ntail) != nil || r.postAliases.get(string(nder)) != nil {
		t.Error("a request with a nonce was aliased")
	}
}

// TestAliasesBound checks the bound on aliases and the sweep of those
// whose answer left the cache.
func TestAliasesBound(t *testing.T) {
	a := newAliases(3)
	live := func() *entry {
		e := &entry{}
		e.live.Store(true)
		return e
	}
	dead := &entry{}
	a.put("a", live())
	a.put("b", dead)
	a.put("a", live()) // replacing does not count
	a.put("c", live())
	if a.get("a") == nil || a.get("c") == nil || a.n.Load() != 3 {
		t.Fatalf("n %d", a.n.Load())
	}
	if a.get("b") != nil {
		t.Error("alias of a dead entry followed")
	}
	a.sweep()
	if a.n.Load() != 2 {
		t.Errorf("after sweep: n %d, want 2", a.n.Load())
	}
	a.put("d", live())
	a.put("e", live()) // the fourth: all dropped
	if a.n.Load() != 0 || a.get("a") != nil || a.get("e") != nil {
		t.Errorf("past the bound: n %d", a.n.Load())
	}
}

// TestCacheLive checks that an entry is live exactly while the cache
// holds it.
func TestCacheLive(t *testing.T) {
	c := newCache(2)
	var epoch atomic.Uint64
	mk := func(k string) *entry { return &entry{key: k} }
	a, b, a2, d := mk("a"), mk("b"), mk("a"), mk("d")
	c.put(a, &epoch, 0)
	c.put(b, &epoch, 0)
	if !a.live.Load() || !b.live.Load() {
		t.Fatal("stored entries not live")
	}
	c.put(a2, &epoch, 0) // replaces a
	if a.live.Load() || !a2.live.Load() {
		t.Error("replacement: old live or new not")
	}
	c.put(d, &epoch, 0) // full: evicts one of a2 and b
	if a2.live.Load() == b.live.Load() || !d.live.Load() {
		t.Errorf("eviction: a2 live %v, b live %v, d live %v", a2.live.Load(), b.live.Load(), d.live.Load())
	}
	c.remove([]byte("d"), &epoch)
	if d.live.Load() {
		t.Error("removed entry live")
	}
	stale := mk("s")
	if c.put(stale, &epoch, 0) || stale.live.Load() {
		t.Error("entry refused by the epoch check is live")
	}
	survivor := a2
	if !survivor.live.Load() {
		survivor = b
	}
	c.clear()
	if survivor.live.Load() {
		t.Error("entry live after clear")
	}
}

// TestAliasConcurrentRevocation serves GETs and POSTs for one certificate
// from several goroutines while it is revoked: no request that starts
// after Invalidate returns gets the good answer (run with -race).
func TestAliasConcurrentRevocation(t *testing.T) {
	p := newPKI(t)
	r, _ := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	der, _ := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	path := "/ocsp/" + base64.StdEncoding.EncodeToString(der)
	serve := func(get bool) []byte {
		var req *http.Request
		if get {
			req = httptest.NewRequest(http.MethodGet, path, nil)
		} else {
			req = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w.Body.Bytes()
	}
	good := serve(true)
	if parseOK(t, good, leaf.cert, p.ecInt.cert).Status != xocsp.Good {
		t.Fatal("not good")
	}
	var revoked, stop atomic.Bool
	var stale atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				after := revoked.Load()
				if body := serve((i+n)%2 == 0); after && bytes.Equal(body, good) {
					stale.Add(1)
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	p.revoke(leaf.cert.SerialNumber, xocsp.KeyCompromise)
	r.Invalidate(p.ecInt.id, leaf.cert.SerialNumber)
	revoked.Store(true)
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Errorf("%d requests after the invalidation got the good answer", n)
	}
	if parseOK(t, serve(true), leaf.cert, p.ecInt.cert).Status != xocsp.Revoked {
		t.Error("not revoked at the end")
	}
}

// TestContentLength checks that every cached answer goes out with its
// Content-Length and unchunked, both for small answers, whose length
// net/http writes, and for larger ones, which set it themselves.
func TestContentLength(t *testing.T) {
	p := newPKI(t)
	_, srv := p.startResponder(t, nil)
	sizes := map[bool]bool{}
	for _, ca := range []*testCA{p.ecInt, p.rsaInt} {
		leaf := p.leaf(ca, nil, true)
		der, _ := xocsp.CreateRequest(leaf.cert, ca.cert, nil)
		for range 2 { // signed, then through the alias
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				var resp *http.Response
				var body []byte
				if m == http.MethodGet {
					resp, body = get(t, srv.URL+"/ocsp/"+base64.StdEncoding.EncodeToString(der))
				} else {
					resp, body = post(t, srv.URL+"/ocsp", der)
				}
				parseOK(t, body, leaf.cert, ca.cert)
				if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
					t.Errorf("%s %s: Content-Length %d for %d bytes, Transfer-Encoding %v", ca.id, m, resp.ContentLength, len(body), resp.TransferEncoding)
				}
				sizes[len(body) > autoContentLength] = true
			}
		}
	}
	if !sizes[true] || !sizes[false] {
		t.Errorf("answers on one side of %d bytes only: %v", autoContentLength, sizes)
	}
}
