package ocsp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	xocsp "golang.org/x/crypto/ocsp"
)

// startPublisher starts a Publisher over p on a loopback HTTP server.
func (p *pki) startPublisher(t *testing.T, mut func(*Options)) (*Publisher, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	o := p.options()
	o.Registerer = prometheus.NewRegistry()
	o.CRLURL = func(id string) string { return srv.URL + "/crl/" + id + ".crl" }
	if mut != nil {
		mut(&o)
	}
	pub, err := NewPublisher(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/crl/", pub)
	return pub, srv
}

// fetchCRL downloads and parses the DER CRL of ca, checking its signature.
func fetchCRL(t *testing.T, srv *httptest.Server, ca *testCA) (*x509.RevocationList, []byte, *http.Response) {
	t.Helper()
	resp, body := get(t, srv.URL+"/crl/"+ca.id+".crl")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET CRL of %s: %d", ca.id, resp.StatusCode)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.cert); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return crl, body, resp
}

func TestCRL(t *testing.T) {
	p := newPKI(t)
	pub, srv := p.startPublisher(t, nil)

	revoked := map[string]int{}
	for _, reason := range []int{xocsp.KeyCompromise, xocsp.Superseded, xocsp.Unspecified, xocsp.CessationOfOperation} {
		leaf := p.leaf(p.ecInt, nil, true)
		p.revoke(leaf.cert.SerialNumber, reason)
		revoked[leaf.cert.SerialNumber.String()] = reason
	}
	p.leaf(p.ecInt, nil, true) // not revoked
	if err := pub.Rebuild(context.Background(), p.ecInt.id); err != nil {
		t.Fatal(err)
	}

	crl, der, resp := fetchCRL(t, srv, p.ecInt)
	if crl.Number.Int64() != 2 { // 1 at start, 2 after the rebuild
		t.Errorf("CRL number %s, want 2", crl.Number)
	}
	if !bytes.Equal(crl.AuthorityKeyId, p.ecInt.cert.SubjectKeyId) {
		t.Error("AKI is not the issuer's SKI")
	}
	if got := crl.NextUpdate.Sub(crl.ThisUpdate); got != DefaultCRLValidity {
		t.Errorf("validity %s", got)
	}
	if !crl.ThisUpdate.Equal(p.clock.Now()) {
		t.Errorf("thisUpdate %s, clock %s", crl.ThisUpdate, p.clock.Now())
	}
	if len(crl.RevokedCertificateEntries) != len(revoked) {
		t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(revoked))
	}
	// Published describes the CRL served.
	var info *CRLInfo
	for _, i := range pub.Published() {
		if i.IssuerID == p.ecInt.id {
			info = &i
		}
	}
	if info == nil || info.Number != 2 || info.Entries != len(revoked) || !info.ThisUpdate.Equal(crl.ThisUpdate) || !info.NextUpdate.Equal(crl.NextUpdate) {
		t.Errorf("Published says %+v of CRL %s with %d entries", info, crl.Number, len(revoked))
	}
	for _, e := range crl.RevokedCertificateEntries {
		want, ok := revoked[e.SerialNumber.String()]
		if !ok || e.ReasonCode != want {
			t.Errorf("entry %s reason %d (want %d, listed %v)", e.SerialNumber, e.ReasonCode, want, ok)
		}
		if !e.RevocationTime.Equal(p.clock.Now()) {
			t.Errorf("entry %s revoked at %s", e.SerialNumber, e.RevocationTime)
		}
	}
	// The issuing distribution point names the CRL's own URL, critical.
	var idp *struct {
		critical bool
		value    []byte
	}
	for _, ext := range crl.Extensions {
		if ext.Id.Equal(oidIssuingDistributionPoint) {
			idp = &struct {
				critical bool
				value    []byte
			}{ext.Critical, ext.Value}
		}
	}
	if idp == nil || !idp.critical {
		t.Fatal("no critical issuing distribution point")
	}
	var decoded struct {
		DP struct {
			FullName []asn1.RawValue `asn1:"optional,tag:0"`
		} `asn1:"optional,tag:0"`
	}
	if rest, err := asn1.Unmarshal(idp.value, &decoded); err != nil || len(rest) > 0 || len(decoded.DP.FullName) != 1 ||
		string(decoded.DP.FullName[0].Bytes) != srv.URL+"/crl/"+p.ecInt.id+".crl" || decoded.DP.FullName[0].Tag != 6 {
		t.Errorf("IDP %x: %+v %v", idp.value, decoded, err)
	}

	// Headers.
	sum := sha256.Sum256(der)
	h := resp.Header
	for k, want := range map[string]string{
		"Content-Type":   "application/pkix-crl",
		"Content-Length": strconv.Itoa(len(der)),
		"Last-Modified":  crl.ThisUpdate.Format(http.TimeFormat),
		"Expires":        crl.NextUpdate.Format(http.TimeFormat),
		"Etag":           `"` + hex.EncodeToString(sum[:]) + `"`,
		"Cache-Control":  "max-age=3600, public, no-transform, must-revalidate",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/crl/"+p.ecInt.id+".crl", nil)
	req.Header.Set("If-None-Match", h.Get("Etag"))
	if resp, _ := getResponse(t, req); resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %d", resp.StatusCode)
	}

	// PEM, same CRL.
	resp, body := get(t, srv.URL+"/crl/"+p.ecInt.id+".pem")
	block, _ := pem.Decode(body)
	if resp.Header.Get("Content-Type") != "application/x-pem-file" || block == nil || block.Type != "X509 CRL" || !bytes.Equal(block.Bytes, der) {
		t.Errorf("PEM: %s %q", resp.Header.Get("Content-Type"), body)
	}

	// Other requests.
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodHead, "/crl/" + p.ecInt.id + ".crl", 200},
		{http.MethodPost, "/crl/" + p.ecInt.id + ".crl", 405},
		{http.MethodGet, "/crl/nobody.crl", 404},
		{http.MethodGet, "/crl/" + p.ecInt.id + ".der", 404},
		{http.MethodGet, "/crl/" + p.ecInt.id, 404},
		{http.MethodGet, "/crl/", 404},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, body := getResponse(t, req)
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
		if tc.method == http.MethodHead && (len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(der))) {
			t.Errorf("HEAD: %d bytes, Content-Length %s", len(body), resp.Header.Get("Content-Length"))
		}
	}

	if got := testutil.ToFloat64(pub.met.number.WithLabelValues(p.ecInt.id)); got != 2 {
		t.Errorf("crl_number gauge %v", got)
	}
	if got := testutil.ToFloat64(pub.met.bytes.WithLabelValues(p.ecInt.id)); got != float64(len(der)) {
		t.Errorf("crl_bytes gauge %v", got)
	}
	if got := testutil.ToFloat64(pub.met.nextUpdate.WithLabelValues(p.ecInt.id)); got != float64(crl.NextUpdate.Unix()) {
		t.Errorf("next update gauge %v", got)
	}
}

func TestOpenSSLCRL(t *testing.T) {
	needOpenSSL(t)
	p := newPKI(t)
	leaves := map[*testCA]*testLeaf{}
	for _, ca := range []*testCA{p.ecInt, p.rsaInt} {
		leaves[ca] = p.leaf(ca, nil, true)
		p.revoke(leaves[ca].cert.SerialNumber, xocsp.KeyCompromise)
		p.revoke(p.leaf(ca, nil, true).cert.SerialNumber, xocsp.AffiliationChanged)
	}
	pub, srv := p.startPublisher(t, nil)
	// Both trust anchors and intermediates: openssl crl looks the issuer up there.
	all := p.writePEM("all.pem", p.ecRoot.cert, p.ecInt.cert, p.rsaRoot.cert, p.rsaInt.cert)
	numberRE := regexp.MustCompile(`X509v3 CRL Number:\s*\n\s*(\d+)`)
	for round := 1; round <= 3; round++ {
		for _, ca := range []*testCA{p.ecRoot, p.ecInt, p.rsaRoot, p.rsaInt} {
			_, der, _ := fetchCRL(t, srv, ca)
			path := filepath.Join(t.TempDir(), ca.id+".crl")
			if err := os.WriteFile(path, der, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := run(t, "openssl", "crl", "-in", path, "-inform", "DER", "-CAfile", all, "-noout", "-text")
			if err != nil {
				t.Fatalf("openssl crl: %v\n%s", err, out)
			}
			wantContains(t, out, "verify OK", "Version 2 (0x1)", "X509v3 Authority Key Identifier",
				"X509v3 Issuing Distribution Point: critical", "URI:"+srv.URL+"/crl/"+ca.id+".crl")
			m := numberRE.FindStringSubmatch(out)
			if m == nil || m[1] != strconv.Itoa(round) {
				t.Errorf("%s round %d: CRL number %v\n%s", ca.id, round, m, out)
			}
			if ca == p.ecInt || ca == p.rsaInt {
				wantContains(t, out, "Key Compromise", "Affiliation Changed",
					"Serial Number: "+hexUpper(leaves[ca].cert.SerialNumber))
			} else {
				wantContains(t, out, "No Revoked Certificates.")
			}
			// And the PEM form.
			resp, body := get(t, srv.URL+"/crl/"+ca.id+".pem")
			pemPath := filepath.Join(t.TempDir(), ca.id+".pem")
			if err := os.WriteFile(pemPath, body, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err = run(t, "openssl", "crl", "-in", pemPath, "-CAfile", all, "-noout")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("openssl crl PEM: %v\n%s", err, out)
			}
			wantContains(t, out, "verify OK")
		}
		if err := pub.RebuildAll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// hexUpper is how openssl prints a serial number.
func hexUpper(n *big.Int) string { return strings.ToUpper(hex.EncodeToString(n.Bytes())) }

func TestCRLRebuildStale(t *testing.T) {
	p := newPKI(t)
	pub, srv := p.startPublisher(t, func(o *Options) { o.CRLValidity = 2 * time.Hour })
	number := func(ca *testCA) int64 {
		crl, _, _ := fetchCRL(t, srv, ca)
		return crl.Number.Int64()
	}
	p.clock.Advance(59 * time.Minute)
	pub.rebuildStale(context.Background())
	if n := number(p.ecInt); n != 1 {
		t.Errorf("rebuilt before half its validity: number %d", n)
	}
	p.clock.Advance(time.Minute)
	pub.rebuildStale(context.Background())
	if n := number(p.ecInt); n != 2 {
		t.Errorf("not rebuilt at half its validity: number %d", n)
	}
	if n := number(p.rsaRoot); n != 2 {
		t.Errorf("RSA root not rebuilt: number %d", n)
	}
	// Past nextUpdate the served CRL is stale; max-age says so.
	p.clock.Advance(3 * time.Hour)
	resp, _ := get(t, srv.URL+"/crl/"+p.ecInt.id+".crl")
	if cc := resp.Header.Get("Cache-Control"); cc != "max-age=0, public, no-transform, must-revalidate" {
		t.Errorf("stale CRL Cache-Control %q", cc)
	}
}

func TestCRLIssuers(t *testing.T) {
	p := newPKI(t)
	noKey := p.ecRoot.issuer()
	noKey.Signer = nil
	p.src.setIssuers(noKey, p.ecInt.issuer())
	pub, srv := p.startPublisher(t, nil)
	if resp, _ := get(t, srv.URL+"/crl/"+p.ecRoot.id+".crl"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("issuer without a key: %d", resp.StatusCode)
	}
	if err := pub.Rebuild(context.Background(), p.rsaInt.id); !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("rebuild of an unlisted issuer: %v", err)
	}
	// A new generation appears: Rebuild finds it.
	p.src.setIssuers(p.ecInt.issuer(), p.rsaInt.issuer())
	if err := pub.Rebuild(context.Background(), p.rsaInt.id); err != nil {
		t.Fatal(err)
	}
	fetchCRL(t, srv, p.rsaInt)
	// An issuer without the crlSign key usage cannot have a CRL.
	bad := makeCA(t, "bad", "No CRL Sign", mustEC(t), nil)
	bad.cert.KeyUsage = x509.KeyUsageCertSign
	p.src.setIssuers(bad.issuer())
	if err := pub.RebuildAll(context.Background()); err == nil {
		t.Error("CRL built for an issuer without crlSign")
	}
	if _, err := NewPublisher(context.Background(), Options{Source: p.src, CRLURL: func(string) string { return "http://bad url/" }}); err == nil {
		t.Error("URL with a space accepted")
	}
}

// TestCRLRebuildCoalescing: rebuilds asked for while one runs share the
// next build, and that build holds every revocation made before.
func TestCRLRebuildCoalescing(t *testing.T) {
	p := newPKI(t)
	pub, srv := p.startPublisher(t, nil)
	ci := (*pub.issuers.Load())[p.ecInt.id]
	ci.mu.Lock() // a build is running
	var serials []*big.Int
	done := make(chan error)
	const n = 8
	for range n {
		leaf := p.leaf(p.ecInt, nil, true)
		p.revoke(leaf.cert.SerialNumber, xocsp.KeyCompromise)
		serials = append(serials, leaf.cert.SerialNumber)
		go func() { done <- pub.Rebuild(context.Background(), p.ecInt.id) }()
	}
	for ci.requested.Load() != n+1 { // + the build at start
		time.Sleep(time.Millisecond)
	}
	ci.mu.Unlock()
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	crl, _, _ := fetchCRL(t, srv, p.ecInt)
	if crl.Number.Int64() != 2 {
		t.Errorf("CRL number %s after %d concurrent rebuilds, want 2 (one build)", crl.Number, n)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.String()] = true
	}
	for _, s := range serials {
		if !listed[s.String()] {
			t.Errorf("revoked %s missing from the CRL", s)
		}
	}
	// A rebuild asked for after that build makes a new one.
	if err := pub.Rebuild(context.Background(), p.ecInt.id); err != nil {
		t.Fatal(err)
	}
	if crl, _, _ := fetchCRL(t, srv, p.ecInt); crl.Number.Int64() != 3 {
		t.Errorf("CRL number %s, want 3", crl.Number)
	}
}
