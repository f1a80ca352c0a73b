package est

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const enrollPath = "/.well-known/est/simpleenroll"

var pkcs10 = map[string]string{"Content-Type": "application/pkcs10"}

// TestChannelBinding links the CSR to the TLS connection on TLS 1.2
// (tls-unique) and TLS 1.3 (tls-exporter).
func TestChannelBinding(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RequireChannelBinding = true })
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			conn, binding := f.channelBindingConn(f.pki.devA, v.version)
			csr := csrWithAttrs(t, ecKey(), "cb."+testDomain, challengePassword(binding))
			resp, body := f.onConn(conn, http.MethodPost, enrollPath, b64(csr.Raw), pkcs10)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			// The binding of another connection is refused.
			other, _ := f.channelBindingConn(f.pki.devA, v.version)
			csr = csrWithAttrs(t, ecKey(), "cb."+testDomain, challengePassword(binding))
			resp, body = f.onConn(other, http.MethodPost, enrollPath, b64(csr.Raw), pkcs10)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "channel binding") {
				t.Fatalf("other connection: %d %s", resp.StatusCode, body)
			}
		})
	}
	// Without a binding, refused when required (the globalsign client
	// sends none: it opens a new connection for every request).
	_, err := f.client(f.pki.devA).Enroll(ctx(t), newCSR(t, ecKey(), "cb2."+testDomain))
	if estStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "requires") {
		t.Fatalf("no binding: %v", err)
	}
	if f.ca.count(t) != 2 {
		t.Fatalf("%d certificates", f.ca.count(t))
	}
}

// TestChannelBindingOptional: a binding is still checked when not required.
func TestChannelBindingOptional(t *testing.T) {
	f := newFixture(t)
	conn, _ := f.channelBindingConn(f.pki.devA, tls.VersionTLS13)
	csr := csrWithAttrs(t, ecKey(), "cb."+testDomain, challengePassword("bm90IHRoZSBiaW5kaW5n"))
	resp, body := f.onConn(conn, http.MethodPost, enrollPath, b64(csr.Raw), pkcs10)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("wrong binding: %d %s", resp.StatusCode, body)
	}
}

// TestBodyFormats sends the same kind of CSR in every encoding clients
// use, over TLS 1.2 and 1.3, with Content-Length and chunked.
func TestBodyFormats(t *testing.T) {
	f := newFixture(t)
	formats := map[string]func(der []byte) string{
		"base64 CRLF 76": func(d []byte) string { return string(base64Wrapped(d)) },
		"base64 LF 64":   b64,
		"base64 one line, no padding": func(d []byte) string {
			return base64.RawStdEncoding.EncodeToString(d)
		},
		"base64 with spaces and tabs": func(d []byte) string {
			s := base64.StdEncoding.EncodeToString(d)
			return " " + s[:10] + " \t" + s[10:40] + "\r\n\t" + s[40:] + " \n"
		},
		"PEM": func(d []byte) string {
			return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: d}))
		},
		"bare DER": func(d []byte) string { return string(d) },
	}
	headers := map[string]map[string]string{
		"pkcs10":             {"Content-Type": "application/pkcs10"},
		"pkcs10 with params": {"Content-Type": "Application/PKCS10; charset=us-ascii", "Content-Transfer-Encoding": "base64"},
		"binary CTE ignored": {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "binary"},
		"no Content-Type":    {},
	}
	i := 0
	for fname, enc := range formats {
		for hname, hdr := range headers {
			for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
				for _, chunked := range []bool{false, true} {
					i++
					csr := newCSR(t, ecKey(), "fmt."+testDomain)
					var body io.Reader = strings.NewReader(enc(csr.Raw))
					if chunked {
						body = io.MultiReader(body) // unknown length: sent chunked
					}
					resp, out := f.do(f.httpClient(f.pki.devA, version), http.MethodPost, enrollPath, body, hdr)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%s, %s, %x, chunked %v: %d %s", fname, hname, version, chunked, resp.StatusCode, out)
					}
				}
			}
		}
	}
	if n := f.ca.count(t); n != i {
		t.Fatalf("%d certificates for %d requests", n, i)
	}
}

// TestBadRequests: every malformed request gets its 4xx, a reason in
// text/plain, HSTS, and stores nothing.
func TestBadRequests(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 4096 })
	dev := f.httpClient(f.pki.devA, 0)
	anon := f.httpClient(nil, 0)
	csr := newCSR(t, ecKey(), "bad."+testDomain)
	cases := []struct {
		name    string
		client  *http.Client
		method  string
		path    string
		body    io.Reader
		hdr     map[string]string
		status  int
		reason  string
		allow   string
		noBasic bool
	}{
		{name: "malformed base64", client: dev, method: "POST", path: enrollPath, body: strings.NewReader("MIIB$$$notbase64"), hdr: pkcs10, status: 400, reason: "base64"},
		{name: "base64 of garbage", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(base64.StdEncoding.EncodeToString([]byte("hello, world"))), hdr: pkcs10, status: 400, reason: "PKCS#10"},
		{name: "a certificate, not a CSR", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(b64(f.pki.devA.cert.Raw)), hdr: pkcs10, status: 400, reason: "PKCS#10"},
		{name: "truncated CSR", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(b64(csr.Raw[:len(csr.Raw)-10])), hdr: pkcs10, status: 400, reason: "PKCS#10"},
		{name: "bad CSR signature", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(b64(corruptSignature(csr.Raw))), hdr: pkcs10, status: 400, reason: "signature"},
		{name: "empty body", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(" \r\n"), hdr: pkcs10, status: 400, reason: "empty"},
		{name: "PEM of a certificate", client: dev, method: "POST", path: enrollPath, body: bytes.NewReader(pemCerts(f.pki.devA.cert)), hdr: pkcs10, status: 400, reason: "CERTIFICATE REQUEST"},
		{name: "wrong content type", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(b64(csr.Raw)), hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415, reason: "application/pkcs10"},
		{name: "malformed content type", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(b64(csr.Raw)), hdr: map[string]string{"Content-Type": "application/pkcs10; ="}, status: 415, reason: "Content-Type"},
		{name: "oversize, Content-Length", client: dev, method: "POST", path: enrollPath, body: strings.NewReader(strings.Repeat("A", 5000)), hdr: pkcs10, status: 413, reason: "4096 bytes"},
		{name: "oversize, chunked", client: dev, method: "POST", path: enrollPath, body: io.MultiReader(strings.NewReader(strings.Repeat("A", 5000))), hdr: pkcs10, status: 413, reason: "4096 bytes"},
		{name: "GET simpleenroll", client: dev, method: "GET", path: enrollPath, status: 405, allow: "POST"},
		{name: "PUT serverkeygen", client: dev, method: "PUT", path: "/.well-known/est/serverkeygen", body: strings.NewReader(""), status: 405, allow: "POST"},
		{name: "POST cacerts", client: dev, method: "POST", path: "/.well-known/est/cacerts", body: strings.NewReader(""), status: 405, allow: "GET, HEAD"},
		{name: "DELETE csrattrs", client: dev, method: "DELETE", path: "/.well-known/est/csrattrs", status: 405, allow: "GET, HEAD"},
		{name: "fullcmc", client: dev, method: "POST", path: "/.well-known/est/fullcmc", body: strings.NewReader(""), status: 501, reason: "fullcmc"},
		{name: "unknown operation", client: dev, method: "GET", path: "/.well-known/est/foo", status: 404, reason: "no EST operation"},
		{name: "unknown label", client: dev, method: "GET", path: "/.well-known/est/nope/cacerts", status: 404},
		{name: "too deep", client: dev, method: "GET", path: "/.well-known/est/nmos/x/cacerts", status: 404},
		{name: "trailing slash", client: dev, method: "GET", path: "/.well-known/est/cacerts/", status: 404},
		{name: "outside EST", client: dev, method: "GET", path: "/", status: 404},
		{name: "Basic auth without a certificate", client: anon, method: "POST", path: enrollPath, body: strings.NewReader(b64(csr.Raw)),
			hdr: map[string]string{"Content-Type": "application/pkcs10", "Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:admin"))}, status: 401, reason: "client certificate", noBasic: true},
		{name: "no certificate", client: anon, method: "POST", path: enrollPath, body: strings.NewReader(b64(csr.Raw)), hdr: pkcs10, status: 401, noBasic: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(tc.client, tc.method, tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			checkHSTS(t, resp)
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.reason != "" && !strings.Contains(body, tc.reason) {
				t.Errorf("body %q does not mention %q", body, tc.reason)
			}
			if resp.Header.Get("Allow") != tc.allow {
				t.Errorf("Allow %q, want %q", resp.Header.Get("Allow"), tc.allow)
			}
			if tc.noBasic && len(resp.Header.Values("WWW-Authenticate")) != 0 {
				t.Errorf("WWW-Authenticate %q", resp.Header.Values("WWW-Authenticate"))
			}
		})
	}
	if n := f.ca.count(t); n != 0 {
		t.Fatalf("%d certificates stored by bad requests", n)
	}
}

// corruptSignature flips a bit of the CSR's signature.
func corruptSignature(der []byte) []byte {
	out := bytes.Clone(der)
	out[len(out)-5] ^= 0x40
	return out
}

// TestBasicAuthIgnored: an Authorization header never authenticates and
// never gets in the way; it is noted in the log (by scheme only).
func TestBasicAuthIgnored(t *testing.T) {
	f := newFixture(t)
	c := f.client(f.pki.devA)
	c.Username, c.Password = "admin", "s3cret-password"
	if _, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "basic."+testDomain)); err != nil {
		t.Fatal(err)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"authorization_header_ignored":"Basic"`) {
		t.Fatalf("ignored header not logged: %s", logs)
	}
	if strings.Contains(logs, "s3cret") || strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte("admin:s3cret-password"))) {
		t.Fatal("credentials logged")
	}
}

// TestLogsAndMetrics: one log line per request with the authorization
// decision, no key material, and the counters.
func TestLogsAndMetrics(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ManualApproval = true })
	c := f.client(f.pki.devA)
	if _, err := c.Enroll(ctx(t), newCSR(t, ecKey(), "m1."+testDomain)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ServerKeyGen(ctx(t), newCSR(t, ecKey(), "m2."+testDomain)); err != nil {
		t.Fatal(err)
	}
	f.client(f.pki.devARevoked).Enroll(ctx(t), newCSR(t, ecKey(), "m3."+testDomain))
	f.client(nil).Enroll(ctx(t), newCSR(t, ecKey(), "m4."+testDomain))
	f.client(nil).CACerts(ctx(t))

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "est request" {
			lines = append(lines, m)
		}
		if strings.Contains(l, "PRIVATE KEY") || strings.Contains(l, "MII") {
			t.Fatalf("key material or DER in the log: %s", l)
		}
	}
	if len(lines) != 5 {
		t.Fatalf("%d request log lines, want 5", len(lines))
	}
	check := func(i int, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
	}
	check(0, map[string]any{"component": "est", "operation": "simpleenroll", "status": 200.0, "auth_method": "manufacturer", "auth_outcome": "accepted"})
	check(1, map[string]any{"operation": "serverkeygen", "status": 200.0, "auth_method": "manufacturer", "auth_outcome": "accepted"})
	check(2, map[string]any{"operation": "simpleenroll", "status": 403.0, "auth_method": "manufacturer", "auth_outcome": "refused"})
	check(3, map[string]any{"operation": "simpleenroll", "status": 202.0, "auth_method": "manual", "auth_outcome": "pending"})
	check(4, map[string]any{"operation": "cacerts", "level": "DEBUG"})
	cc, _ := lines[0]["client_cert"].(map[string]any)
	if cc["subject"] != f.pki.devA.cert.Subject.String() || cc["sha256"] != fingerprint(f.pki.devA.cert) || cc["issuer"] == nil {
		t.Errorf("client_cert %v", cc)
	}
	if names, _ := lines[0]["names"].([]any); len(names) != 1 || names[0] != "m1."+testDomain {
		t.Errorf("names %v", lines[0]["names"])
	}
	if names, _ := lines[2]["names"].([]any); len(names) != 1 || names[0] != "m3."+testDomain {
		t.Errorf("names of a refused request %v", lines[2]["names"])
	}
	if cc, _ := lines[2]["client_cert"].(map[string]any); cc["revoked"] != true || !strings.Contains(cc["reason"].(string), "revoked") {
		t.Errorf("revoked client_cert %v", cc)
	}
	if cc, _ := lines[3]["client_cert"].(map[string]any); cc["present"] != false {
		t.Errorf("absent client_cert %v", cc)
	}

	for _, m := range []struct {
		got  float64
		want float64
		name string
	}{
		{testutil.ToFloat64(f.srv.m.requests.WithLabelValues("simpleenroll", "ok")), 1, "enroll ok"},
		{testutil.ToFloat64(f.srv.m.requests.WithLabelValues("simpleenroll", "forbidden")), 1, "enroll forbidden"},
		{testutil.ToFloat64(f.srv.m.requests.WithLabelValues("simpleenroll", "pending")), 1, "enroll pending"},
		{testutil.ToFloat64(f.srv.m.requests.WithLabelValues("serverkeygen", "ok")), 1, "serverkeygen ok"},
		{testutil.ToFloat64(f.srv.m.requests.WithLabelValues("cacerts", "ok")), 1, "cacerts ok"},
		{testutil.ToFloat64(f.srv.m.auth.WithLabelValues("manufacturer", "accepted")), 2, "auth accepted"},
		{testutil.ToFloat64(f.srv.m.auth.WithLabelValues("manufacturer", "refused")), 1, "auth refused"},
		{testutil.ToFloat64(f.srv.m.auth.WithLabelValues("manual", "pending")), 1, "auth pending"},
	} {
		if m.got != m.want {
			t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
		}
	}
	want := `
# HELP nmos_certs_est_pending_requests Enrollment requests waiting for an operator's approval.
# TYPE nmos_certs_est_pending_requests gauge
nmos_certs_est_pending_requests 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "nmos_certs_est_pending_requests"); err != nil {
		t.Error(err)
	}
	// The oldest waiting request's age follows the clock, for the alert
	// on approvals left waiting.
	f.clock.Advance(90 * time.Minute)
	want = `
# HELP nmos_certs_est_pending_oldest_age_seconds How long the oldest request still waiting for an operator's approval has waited (0 when none waits).
# TYPE nmos_certs_est_pending_oldest_age_seconds gauge
nmos_certs_est_pending_oldest_age_seconds 5400
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "nmos_certs_est_pending_oldest_age_seconds"); err != nil {
		t.Error(err)
	}
	// Every operation's series exists from the start.
	if n, err := testutil.GatherAndCount(f.reg, "nmos_certs_est_request_duration_seconds"); err != nil || n != 5 {
		t.Errorf("duration series %d, %v", n, err)
	}
	if d, ok := lines[0]["duration_seconds"].(float64); !ok || d <= 0 || d > 60 {
		t.Errorf("duration_seconds %v: want the request's time in seconds", lines[0]["duration_seconds"])
	}
	fresh := newFixture(t)
	if n, err := testutil.GatherAndCount(fresh.reg, "nmos_certs_est_requests_total", "nmos_certs_est_auth_decisions_total"); err != nil || n != 5*6+4*3 {
		t.Errorf("series before any request: %d, %v", n, err)
	}
	if v := testutil.ToFloat64(fresh.srv.m.requests.WithLabelValues("simplereenroll", "forbidden")); v != 0 {
		t.Errorf("fresh counter %v", v)
	}
	// A server built again on the same registry (reload) registers fine.
	if _, err := New(Options{CA: f.ca, Approvals: f.ca.st, Registerer: f.reg}); err != nil {
		t.Fatal(err)
	}
}

// TestTLSConfig: versions, suites and the certificate picked by what the
// client supports.
func TestTLSConfig(t *testing.T) {
	f := newFixture(t)
	cfg := TLSConfig(nil)
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequestClientCert || len(cfg.Certificates) != 0 {
		t.Fatalf("config %+v", cfg)
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("suite %s is not ECDHE", name)
		}
	}
	if cfg.CipherSuites[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 || !containsSuite(cfg.CipherSuites, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) {
		t.Error("suite order")
	}
	dial := func(c *tls.Config) (*tls.ConnectionState, error) {
		c.RootCAs, c.ServerName = f.roots, "localhost"
		conn, err := tls.Dial("tcp", f.addr(), c)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		cs := conn.ConnectionState()
		return &cs, nil
	}
	cs, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	if !cs.PeerCertificates[0].Equal(f.pki.serverRSA.cert) {
		t.Error("RSA-only client did not get the RSA certificate")
	}
	cs, err = dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	if !cs.PeerCertificates[0].Equal(f.pki.serverEC.cert) {
		t.Error("ECDSA-only client did not get the ECDSA certificate")
	}
	cs, err = dial(&tls.Config{})
	if err != nil || cs.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: %v", err)
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}); err == nil {
		t.Error("non-ECDHE suite accepted")
	}
	// No certificate loaded: the handshake fails cleanly.
	if _, err := pickCertificate(&tls.ClientHelloInfo{}, nil); err == nil {
		t.Error("no certificate and no error")
	}
}

func containsSuite(list []uint16, id uint16) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}

// TestHSTSEverywhere: the header is on every answer, with the configured
// max-age.
func TestHSTSEverywhere(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HSTSMaxAge = 3600e9 })
	for _, path := range []string{"/", "/.well-known/est/cacerts", "/.well-known/est/fullcmc", enrollPath} {
		resp, _ := f.do(f.httpClient(nil, 0), http.MethodGet, path, nil, nil)
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=3600" {
			t.Errorf("%s: HSTS %q", path, got)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ca := &testCA{}
	for name, o := range map[string]Options{
		"no CA":                    {},
		"manual without approvals": {CA: ca, ManualApproval: true},
		"label with a slash":       {CA: ca, Labels: []string{"a/b"}},
		"label named like an op":   {CA: ca, Labels: []string{"cacerts"}},
		"empty label":              {CA: ca, Labels: []string{""}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
