package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gsest "github.com/globalsign/est"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is an EST server on a real TLS loopback listener, backed by a
// test CA with its own SQLite store.
type fixture struct {
	t     testing.TB
	pki   *testPKI
	clock *testClock
	ca    *testCA
	srv   *Server
	ts    *httptest.Server
	reg   *prometheus.Registry
	logs  *syncBuffer
	roots *x509.CertPool // our CA roots, to verify the server
}

func newFixture(t testing.TB, configure ...func(*Options)) *fixture {
	t.Helper()
	p := getPKI(t)
	clock := newTestClock()
	ca := newTestCA(t, clock)
	f := &fixture{t: t, pki: p, clock: clock, ca: ca, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	trust, err := LoadTrust(context.Background(), p.trustConfig())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		CA:         ca,
		Approvals:  ca.st,
		Trust:      trust,
		Clock:      clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: f.reg,
		Labels:     []string{"nmos"},
		KeySigner:  func() *tls.Certificate { return p.serverEC.tlsCert() },
	}
	for _, c := range configure {
		c(&o)
	}
	f.srv, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewUnstartedServer(f.srv)
	f.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes tests abort on purpose
	f.ts.TLS = TLSConfig(func() []*tls.Certificate {
		return []*tls.Certificate{p.serverEC.tlsCert(), p.serverRSA.tlsCert()}
	})
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	f.roots = x509.NewCertPool()
	f.roots.AddCert(p.ecRoot.cert)
	f.roots.AddCert(p.rsaRoot.cert)
	return f
}

// addr is the server's address by name: clients then send SNI, and the
// server picks its certificate with GetCertificate. (httptest adds its
// own certificate to the configuration, which Go serves to clients that
// send no SNI.)
func (f *fixture) addr() string {
	_, port, _ := net.SplitHostPort(f.ts.Listener.Addr().String())
	return "localhost:" + port
}

func (f *fixture) url(path string) string { return "https://" + f.addr() + path }

// client is a globalsign EST client, presenting who (nil: nothing).
func (f *fixture) client(who *issued) *gsest.Client {
	c := &gsest.Client{Host: f.addr(), ExplicitAnchor: f.roots, DisableKeepAlives: true}
	if who != nil {
		c.Certificates, c.PrivateKey = who.certs(), who.key
	}
	return c
}

// httpClient is a plain HTTPS client presenting who, with TLS at most
// maxVersion (0: any).
func (f *fixture) httpClient(who *issued, maxVersion uint16) *http.Client {
	cfg := &tls.Config{RootCAs: f.roots, MaxVersion: maxVersion}
	if who != nil {
		cfg.Certificates = []tls.Certificate{*who.tlsCert()}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// do sends a request and returns the response with its body read.
func (f *fixture) do(c *http.Client, method, path string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url(path), body)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, string(b)
}

// checkHSTS fails unless the response carries the HSTS header.
func checkHSTS(t testing.TB, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security = %q", got)
	}
}

// newCSR makes a CSR for cn (also a SAN) and extra DNS names.
func newCSR(t testing.TB, key crypto.Signer, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: append([]string{cn}, dns...)}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// csrAttr is an extra attribute for csrWithAttrs.
type csrAttr struct {
	oid   asn1.ObjectIdentifier
	value func(*cryptobyte.Builder)
}

func challengePassword(s string) csrAttr {
	return csrAttr{oidChallengePassword, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	}}
}

func asymmKeyID(id []byte) csrAttr {
	return csrAttr{oidAsymmDecryptKeyID, func(b *cryptobyte.Builder) { b.AddASN1OctetString(id) }}
}

func decryptKeyID(id []byte) csrAttr {
	return csrAttr{oidDecryptKeyID, func(b *cryptobyte.Builder) { b.AddASN1OctetString(id) }}
}

// csrWithAttrs makes a CSR like newCSR with extra attributes, which Go's
// x509 package cannot add: the request info is rebuilt and signed again.
func csrWithAttrs(t testing.TB, key crypto.Signer, cn string, attrs ...csrAttr) *x509.CertificateRequest {
	t.Helper()
	base := newCSR(t, key, cn)
	in := cryptobyte.String(base.RawTBSCertificateRequest)
	var tbs, version, subject, spki, oldAttrs cryptobyte.String
	var present bool
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&version, cbasn1.INTEGER) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1(&oldAttrs, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		t.Fatal("cannot split CSR")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(version)
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(oldAttrs)
			for _, a := range attrs {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(a.oid)
					b.AddASN1(cbasn1.SET, a.value)
				})
			}
		})
	})
	newTBS := b.BytesOrPanic()
	// The signature algorithm identifier is the base CSR's.
	in = cryptobyte.String(base.Raw)
	var outer, algo cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !outer.SkipASN1(cbasn1.SEQUENCE) || !outer.ReadASN1Element(&algo, cbasn1.SEQUENCE) {
		t.Fatal("cannot split CSR")
	}
	hash := crypto.SHA256
	digest := hash.New()
	digest.Write(newTBS)
	sig, err := key.Sign(rand.Reader, digest.Sum(nil), hash)
	if err != nil {
		t.Fatal(err)
	}
	var csrB cryptobyte.Builder
	csrB.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(newTBS)
		b.AddBytes(algo)
		b.AddASN1BitString(sig)
	})
	csr, err := x509.ParseCertificateRequest(csrB.BytesOrPanic())
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return csr
}

// b64 is how EST clients send a CSR: base64 in 64-character lines.
func b64(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var out strings.Builder
	for len(s) > 64 {
		out.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	out.WriteString(s + "\n")
	return out.String()
}

// estStatus returns the HTTP status of a globalsign client error (0 when
// err is nil, -1 when it is not an EST error).
func estStatus(err error) int {
	if err == nil {
		return 0
	}
	var e gsest.Error
	if errors.As(err, &e) {
		return e.StatusCode()
	}
	return -1
}

// channelBindingConn opens a TLS connection to the fixture, returning it
// with its channel binding value as the CSR must carry it.
func (f *fixture) channelBindingConn(who *issued, version uint16) (*tls.Conn, string) {
	f.t.Helper()
	cfg := &tls.Config{RootCAs: f.roots, MinVersion: version, MaxVersion: version, ServerName: "localhost"}
	if who != nil {
		cfg.Certificates = []tls.Certificate{*who.tlsCert()}
	}
	conn, err := tls.Dial("tcp", f.addr(), cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	cs := conn.ConnectionState()
	if version == tls.VersionTLS12 {
		return conn, base64.StdEncoding.EncodeToString(cs.TLSUnique)
	}
	ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLen)
	if err != nil {
		f.t.Fatal(err)
	}
	return conn, base64.StdEncoding.EncodeToString(ekm)
}

// onConn sends one request over an open TLS connection.
func (f *fixture) onConn(conn *tls.Conn, method, path, body string, hdr map[string]string) (*http.Response, string) {
	f.t.Helper()
	used := false
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, io.EOF
		}
		used = true
		return conn, nil
	}}
	defer tr.CloseIdleConnections()
	return f.do(&http.Client{Transport: tr, Timeout: 30 * time.Second}, method, path, strings.NewReader(body), hdr)
}

func itoa(n int) string { return strconv.Itoa(n) }

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}
