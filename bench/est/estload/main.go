// Command estload measures EST (RFC 7030) enrollment throughput: many
// clients each doing simpleenroll over and over, the way devices do.
//
// Every enrollment is what a device does the first time it meets the
// server:
//
//   - a new TCP connection and a full TLS handshake, presenting the device
//     certificate (-cert, -key-file); keep-alives are off and no TLS
//     session is cached, so nothing is resumed (a resumed handshake is
//     counted as an error, kind "resumed"). The server's certificate chain
//     is verified against -cacert the first time it is seen and then
//     remembered by its exact bytes (a device verifies it every time, but
//     that is the device's CPU, and this tool shares the machine with the
//     server); crypto/tls checks the server's handshake signature, which
//     proves it holds the key, on every connection;
//   - a key pair and CSR used once: POST /.well-known/est[/<est-label>]/simpleenroll
//     with the base64 of the DER PKCS#10 as application/pkcs10
//     (Content-Transfer-Encoding: base64);
//   - the answer must be 200 application/pkcs7-mime, base64 of a
//     certs-only PKCS#7 holding exactly one certificate whose public key
//     is the CSR's.
//
// Key pairs and CSRs are generated before the clock starts, on every CPU,
// into a pool of -pool entries (default: -n plus -warmup with -n, else
// 1500 per second of -d plus -warmup): the figure is the server's, not the
// client's key generation. If a run outlasts its pool, clients generate
// inline and the report says how often ("inline_keygen").
//
// The report gives enrollments per second (successful enrollments over
// the time from the first start to the last finish), latency percentiles
// of successful enrollments (dial to verified certificate), TLS handshake
// percentiles, errors by kind, the client's own CPU time per enrollment
// and, with -server-pid, the server process's CPU time per enrollment
// (utime+stime from /proc/<pid>/stat over the timed section), and the TCP
// segments the machine sent per enrollment (OutSegs of /proc/net/snmp:
// on loopback, both ends' segments, and any other traffic's).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.mozilla.org/pkcs7"
)

type options struct {
	server     string
	label      string
	estLabel   string
	serverName string
	clients    int
	total      int
	duration   time.Duration
	warmup     int
	keyType    string
	rsaBits    int
	certFile   string
	keyFile    string
	caFile     string
	insecure   bool
	out        string
	pool       int
	curves     string
	domain     string
	timeout    time.Duration
	serverPID  int
	cpuProfile string
	serials    string
	path       string // of the request, from estLabel
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "127.0.0.1:8443", "EST server `host:port`")
	flag.StringVar(&o.label, "label", "", "name of this run in the report (default: -server)")
	flag.StringVar(&o.estLabel, "est-label", "", "RFC 7030 3.2.2 path label: POST /.well-known/est/`LABEL`/simpleenroll")
	flag.StringVar(&o.serverName, "servername", "", "TLS server name to verify (default: the host of -server)")
	flag.IntVar(&o.clients, "c", 16, "concurrent clients")
	flag.IntVar(&o.total, "n", 0, "total enrollments (instead of -d)")
	flag.DurationVar(&o.duration, "d", 0, "duration; clients start no enrollment after it (default 10s when -n is not set)")
	flag.IntVar(&o.warmup, "warmup", 0, "enrollments done before the clock starts (not reported)")
	flag.StringVar(&o.keyType, "key", "ecdsa", "enrollment key type: ecdsa (P-256) or rsa")
	flag.IntVar(&o.rsaBits, "rsa-bits", 2048, "RSA key size with -key rsa")
	flag.StringVar(&o.certFile, "cert", "", "client (device) certificate PEM; may hold its chain")
	flag.StringVar(&o.keyFile, "key-file", "", "client (device) private key PEM")
	flag.StringVar(&o.caFile, "cacert", "", "PEM trust anchor(s) for the server certificate")
	flag.BoolVar(&o.insecure, "insecure", false, "do not verify the server certificate")
	flag.StringVar(&o.out, "out", "text", "report format: text or json (on standard output)")
	flag.IntVar(&o.pool, "pool", 0, "pre-generated key pairs and CSRs (default: see above)")
	flag.StringVar(&o.curves, "curves", "", "TLS key exchanges to offer, comma-separated: X25519MLKEM768, X25519, P256, P384, P521 (default: Go's)")
	flag.StringVar(&o.domain, "domain", "studio.example.test", "DNS domain of the names requested")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of one enrollment")
	flag.IntVar(&o.serverPID, "server-pid", 0, "`PID` of the server process, to report its CPU time per enrollment")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write this tool's CPU profile of the timed section to `FILE`")
	flag.StringVar(&o.serials, "serials", "", "write the serial of every certificate received in the timed section to `FILE`, one a line (hexadecimal)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "estload:", err)
		os.Exit(1)
	}
}

// item is one enrollment's pre-generated request.
type item struct {
	request []byte // the HTTP request, its body the base64 of the CSR's DER
	spki    []byte // the key's SubjectPublicKeyInfo
}

// sample is one finished enrollment.
type sample struct {
	latency, handshake time.Duration
	kind               string // "" on success, else the error kind
	serial             string // of the certificate received, hexadecimal
}

// Report is what a run found.
type Report struct {
	Label                string         `json:"label"`
	Server               string         `json:"server"`
	Clients              int            `json:"clients"`
	Key                  string         `json:"key"`
	TLS                  string         `json:"tls"`
	Enrollments          int            `json:"enrollments"`
	Errors               map[string]int `json:"errors"`
	ErrorCount           int            `json:"error_count"`
	FirstError           string         `json:"first_error,omitempty"`
	Seconds              float64        `json:"seconds"`
	EnrollPerSecond      float64        `json:"enroll_per_s"`
	LatencyMS            Percentiles    `json:"latency_ms"`
	HandshakeMS          Percentiles    `json:"handshake_ms"`
	ClientCPUMSPerEnroll float64        `json:"client_cpu_ms_per_enroll"`
	ServerCPUMSPerEnroll *float64       `json:"server_cpu_ms_per_enroll,omitempty"`
	ServerCPUUtilisation *float64       `json:"server_cpu_cores,omitempty"`
	Pool                 int            `json:"pool"`
	PoolSeconds          float64        `json:"pool_seconds"`
	InlineKeygen         int64          `json:"inline_keygen"`
	GOMAXPROCS           int            `json:"client_gomaxprocs"`
	// TCPSegmentsPerEnroll is the machine's TCP segments sent (both ends,
	// on loopback) per successful enrollment over the timed section,
	// from /proc/net/snmp; absent where that cannot be read.
	TCPSegmentsPerEnroll *float64 `json:"tcp_segments_per_enroll,omitempty"`
	// MachineIdlePct and MachineStealPct are the shares of all the
	// machine's CPU time, over the timed section, spent idle (idle and
	// iowait) and stolen by the hypervisor (the first line of /proc/stat);
	// absent where that cannot be read.
	MachineIdlePct  *float64 `json:"machine_idle_pct,omitempty"`
	MachineStealPct *float64 `json:"machine_steal_pct,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func run(o options) error {
	if o.total > 0 && o.duration > 0 {
		return errors.New("give -n or -d, not both")
	}
	if o.total <= 0 && o.duration <= 0 {
		o.duration = 10 * time.Second
	}
	if o.clients < 1 {
		return errors.New("-c must be at least 1")
	}
	if o.keyType != "ecdsa" && o.keyType != "rsa" {
		return fmt.Errorf("-key %q: want ecdsa or rsa", o.keyType)
	}
	if o.out != "text" && o.out != "json" {
		return fmt.Errorf("-out %q: want text or json", o.out)
	}
	if o.label == "" {
		o.label = o.server
	}
	tlsConf, err := clientTLS(o)
	if err != nil {
		return err
	}
	o.path = "/.well-known/est/simpleenroll"
	if o.estLabel != "" {
		o.path = "/.well-known/est/" + o.estLabel + "/simpleenroll"
	}

	poolSize := o.pool
	if poolSize <= 0 {
		if o.total > 0 {
			poolSize = o.total + o.warmup
		} else {
			poolSize = int(o.duration.Seconds()*1500) + o.warmup
		}
	}
	genStart := time.Now()
	pool, err := makePool(o, poolSize)
	if err != nil {
		return err
	}
	l := &loader{o: o, tls: tlsConf, pool: pool}
	l.genSeconds = time.Since(genStart).Seconds()

	if o.warmup > 0 {
		l.phase(o.warmup, 0)
	}
	l.samples = nil
	l.firstErr.Store(nil)

	cpu0, err := selfCPU()
	if err != nil {
		return err
	}
	var srv0 time.Duration
	if o.serverPID > 0 {
		if srv0, err = procCPU(o.serverPID); err != nil {
			return err
		}
	}
	segs0, segsErr := tcpOutSegs()
	mach0, machErr := machineCPU()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	start := time.Now()
	l.phase(o.total, o.duration)
	elapsed := time.Since(start)
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	var srv1 time.Duration
	if o.serverPID > 0 {
		if srv1, err = procCPU(o.serverPID); err != nil {
			return err
		}
	}
	cpu1, err := selfCPU()
	if err != nil {
		return err
	}
	segs1, segsErr1 := tcpOutSegs()
	mach1, machErr1 := machineCPU()

	r := l.report(elapsed)
	if o.serials != "" {
		var b strings.Builder
		for _, s := range l.samples {
			if s.kind == "" {
				b.WriteString(s.serial + "\n")
			}
		}
		if err := os.WriteFile(o.serials, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if r.Enrollments > 0 {
		r.ClientCPUMSPerEnroll = round3(ms(cpu1-cpu0) / float64(r.Enrollments))
		if o.serverPID > 0 {
			v := round3(ms(srv1-srv0) / float64(r.Enrollments))
			r.ServerCPUMSPerEnroll = &v
		}
		if segsErr == nil && segsErr1 == nil {
			v := round3(float64(segs1-segs0) / float64(r.Enrollments))
			r.TCPSegmentsPerEnroll = &v
		}
	}
	if o.serverPID > 0 {
		v := round3((srv1 - srv0).Seconds() / elapsed.Seconds())
		r.ServerCPUUtilisation = &v
	}
	if machErr == nil && machErr1 == nil {
		if total := mach1.total - mach0.total; total > 0 {
			idle := round3(100 * float64(mach1.idle-mach0.idle) / float64(total))
			steal := round3(100 * float64(mach1.steal-mach0.steal) / float64(total))
			r.MachineIdlePct, r.MachineStealPct = &idle, &steal
		}
	}
	r.PoolSeconds = round3(l.genSeconds)
	if o.out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printText(os.Stdout, r)
	return nil
}

// clientTLS is the device's TLS configuration: its certificate, no
// session cache (every handshake is a full one), HTTP/1.1.
func clientTLS(o options) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		NextProtos:             []string{"http/1.1"},
		SessionTicketsDisabled: true,
		// The chain is verified by VerifyConnection below, once per chain.
		InsecureSkipVerify: true,
	}
	host, _, err := net.SplitHostPort(o.server)
	if err != nil {
		return nil, fmt.Errorf("-server: %w", err)
	}
	c.ServerName = host
	if o.serverName != "" {
		c.ServerName = o.serverName
	}
	if o.caFile != "" {
		data, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s: no PEM certificate", o.caFile)
		}
	} else if !o.insecure {
		return nil, errors.New("give -cacert (the server's trust anchor) or -insecure")
	}
	if !o.insecure {
		c.VerifyConnection = (&chainCache{roots: c.RootCAs}).verify
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("-cert and -key-file go together")
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if o.curves != "" {
		names := map[string]tls.CurveID{
			"X25519MLKEM768": tls.X25519MLKEM768, "X25519": tls.X25519,
			"P256": tls.CurveP256, "P384": tls.CurveP384, "P521": tls.CurveP521,
		}
		for _, n := range strings.Split(o.curves, ",") {
			id, ok := names[strings.TrimSpace(n)]
			if !ok {
				return nil, fmt.Errorf("-curves: unknown %q", n)
			}
			c.CurvePreferences = append(c.CurvePreferences, id)
		}
	}
	return c, nil
}

// makePool generates n key pairs and CSRs on every CPU.
func makePool(o options, n int) ([]item, error) {
	pool := make([]item, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				it, err := newItem(o, i)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				pool[i] = it
			}
		})
	}
	wg.Wait()
	return pool, firstErr
}

// newItem makes a key pair and a CSR for device i of the domain.
func newItem(o options, i int) (item, error) {
	var key crypto.Signer
	var err error
	if o.keyType == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, o.rsaBits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return item{}, err
	}
	name := fmt.Sprintf("node-%d.%s", i, o.domain)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name},
		DNSNames: []string{name},
	}, key)
	if err != nil {
		return item{}, err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return item{}, err
	}
	body := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
	base64.StdEncoding.Encode(body, der)
	return item{request: enrollRequest(o, body), spki: spki}, nil
}

// enrollRequest is the whole HTTP/1.1 request for one enrollment.
func enrollRequest(o options, body []byte) []byte {
	host := o.server
	if o.serverName != "" {
		if _, port, err := net.SplitHostPort(o.server); err == nil {
			host = net.JoinHostPort(o.serverName, port)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: estload\r\n", o.path, host)
	b.WriteString("Content-Type: application/pkcs10\r\nContent-Transfer-Encoding: base64\r\nAccept: application/pkcs7-mime\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes()
}

// chainCache verifies server certificate chains, remembering the ones
// that verified.
type chainCache struct {
	roots *x509.CertPool
	ok    sync.Map // sha256 of server name and chain -> true
}

func (cc *chainCache) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	h := sha256.New()
	h.Write([]byte(cs.ServerName))
	for _, c := range cs.PeerCertificates {
		h.Write([]byte{0})
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if _, ok := cc.ok.Load(key); ok {
		return nil
	}
	opts := x509.VerifyOptions{Roots: cc.roots, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return err
	}
	cc.ok.Store(key, true)
	return nil
}

type loader struct {
	o          options
	tls        *tls.Config
	pool       []item
	next       atomic.Int64 // next pool entry
	inline     atomic.Int64 // entries generated inline once the pool ran out
	genSeconds float64

	mu       sync.Mutex
	samples  []sample
	tlsDesc  string
	firstErr atomic.Pointer[string]
}

// phase runs the clients until total enrollments were started (total > 0)
// or d has passed.
func (l *loader) phase(total int, d time.Duration) {
	var started atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range l.o.clients {
		wg.Go(func() {
			w := newWorker(l)
			var mine []sample
			for {
				if total > 0 {
					if started.Add(1) > int64(total) {
						break
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				mine = append(mine, w.enroll(l.take()))
			}
			l.mu.Lock()
			l.samples = append(l.samples, mine...)
			l.mu.Unlock()
		})
	}
	wg.Wait()
}

// take returns the next pre-generated request, or makes one.
func (l *loader) take() item {
	i := int(l.next.Add(1)) - 1
	if i < len(l.pool) {
		it := l.pool[i]
		l.pool[i] = item{}
		return it
	}
	l.inline.Add(1)
	it, err := newItem(l.o, i)
	if err != nil {
		panic(err) // crypto/rand failing: nothing sensible to report
	}
	return it
}

type worker struct {
	l      *loader
	dialer net.Dialer
	br     *bufio.Reader
	// Set for the current enrollment.
	handshake time.Duration
	resumed   bool
	serial    string
}

func newWorker(l *loader) *worker {
	return &worker{l: l, dialer: net.Dialer{Timeout: l.o.timeout}, br: bufio.NewReaderSize(nil, 8<<10)}
}

type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func (w *worker) enroll(it item) sample {
	start := time.Now()
	w.handshake, w.resumed, w.serial = 0, false, ""
	err := w.do(it)
	s := sample{latency: time.Since(start), handshake: w.handshake, serial: w.serial}
	if err == nil && w.resumed {
		err = &kindError{"resumed", errors.New("the TLS session was resumed")}
	}
	if err != nil {
		var ke *kindError
		s.kind = "request"
		if errors.As(err, &ke) {
			s.kind = ke.kind
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.kind = "timeout"
		}
		msg := err.Error()
		w.l.firstErr.CompareAndSwap(nil, &msg)
	}
	return s
}

// do makes one enrollment on a connection of its own: TCP, the TLS
// handshake, one HTTP/1.1 request with "Connection: close", the answer
// read and checked. The request is written directly rather than through
// net/http's client, whose connection pool and per-connection
// goroutines would only cost the machine CPU that the server then lacks.
func (w *worker) do(it item) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.l.o.timeout)
	defer cancel()
	raw, err := w.dialer.DialContext(ctx, "tcp", w.l.o.server)
	if err != nil {
		return &kindError{"dial", err}
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	start := time.Now()
	tc := tls.Client(raw, w.l.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return &kindError{"tls_handshake", err}
	}
	w.handshake = time.Since(start)
	cs := tc.ConnectionState()
	w.resumed = cs.DidResume
	w.l.describeTLS(cs)

	if _, err := tc.Write(it.request); err != nil {
		return &kindError{"write", err}
	}
	w.br.Reset(tc)
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return &kindError{"read_response", err}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return &kindError{"read_body", err}
	}
	if resp.StatusCode != http.StatusOK {
		return &kindError{"http_" + strconv.Itoa(resp.StatusCode), fmt.Errorf("%s: %s", resp.Status, firstLine(body))}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/pkcs7-mime" {
		return &kindError{"content_type", fmt.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))}
	}
	der, err := base64.StdEncoding.DecodeString(stripSpace(body))
	if err != nil {
		return &kindError{"base64", err}
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return &kindError{"pkcs7", err}
	}
	if len(p7.Certificates) != 1 {
		return &kindError{"cert_count", fmt.Errorf("%d certificates in the answer, want 1", len(p7.Certificates))}
	}
	if !bytes.Equal(p7.Certificates[0].RawSubjectPublicKeyInfo, it.spki) {
		return &kindError{"key_mismatch", errors.New("the certificate's public key is not the CSR's")}
	}
	w.serial = p7.Certificates[0].SerialNumber.Text(16)
	return nil
}

func (l *loader) describeTLS(cs tls.ConnectionState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tlsDesc != "" {
		return
	}
	l.tlsDesc = fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	if len(cs.PeerCertificates) > 0 {
		l.tlsDesc += fmt.Sprintf(", server certificate %s", keyDesc(cs.PeerCertificates[0].PublicKey))
	}
}

func keyDesc(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

func (l *loader) report(elapsed time.Duration) *Report {
	r := &Report{
		Label: l.o.label, Server: l.o.server, Clients: l.o.clients, Key: l.o.keyType, TLS: l.tlsDesc,
		Errors: map[string]int{}, Seconds: round3(elapsed.Seconds()), Pool: len(l.pool),
		InlineKeygen: l.inline.Load(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	if r.Key == "rsa" {
		r.Key = fmt.Sprintf("rsa%d", l.o.rsaBits)
	}
	var lat, hs []time.Duration
	for _, s := range l.samples {
		if s.kind != "" {
			r.Errors[s.kind]++
			r.ErrorCount++
			continue
		}
		lat = append(lat, s.latency)
		hs = append(hs, s.handshake)
	}
	if p := l.firstErr.Load(); p != nil {
		r.FirstError = *p
	}
	r.Enrollments = len(lat)
	r.EnrollPerSecond = round3(float64(len(lat)) / elapsed.Seconds())
	r.LatencyMS = percentiles(lat)
	r.HandshakeMS = percentiles(hs)
	return r
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q*float64(len(d))+0.5) - 1
		return round3(ms(d[min(max(i, 0), len(d)-1)]))
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: round3(ms(d[len(d)-1]))}
}

func printText(w io.Writer, r *Report) {
	fmt.Fprintf(w, "%s (%s): %d clients, %s keys, %s\n", r.Label, r.Server, r.Clients, r.Key, r.TLS)
	fmt.Fprintf(w, "  enrollments  %d in %.2fs = %.1f/s\n", r.Enrollments, r.Seconds, r.EnrollPerSecond)
	fmt.Fprintf(w, "  latency ms   p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.LatencyMS.Max)
	fmt.Fprintf(w, "  handshake ms p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.HandshakeMS.P50, r.HandshakeMS.P90, r.HandshakeMS.P99, r.HandshakeMS.Max)
	fmt.Fprintf(w, "  client CPU   %.3f ms/enrollment (GOMAXPROCS %d)\n", r.ClientCPUMSPerEnroll, r.GOMAXPROCS)
	if r.ServerCPUMSPerEnroll != nil {
		fmt.Fprintf(w, "  server CPU   %.3f ms/enrollment (%.2f cores busy)\n", *r.ServerCPUMSPerEnroll, *r.ServerCPUUtilisation)
	}
	if r.TCPSegmentsPerEnroll != nil {
		fmt.Fprintf(w, "  TCP segments %.2f/enrollment (the machine's, both ends)\n", *r.TCPSegmentsPerEnroll)
	}
	if r.MachineIdlePct != nil {
		fmt.Fprintf(w, "  machine CPU  %.1f%% idle, %.1f%% stolen by the hypervisor\n", *r.MachineIdlePct, *r.MachineStealPct)
	}
	fmt.Fprintf(w, "  pool         %d pre-generated in %.1fs, %d generated inline\n", r.Pool, r.PoolSeconds, r.InlineKeygen)
	if r.ErrorCount > 0 {
		kinds := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  errors       %d:", r.ErrorCount)
		for _, k := range kinds {
			fmt.Fprintf(w, " %s=%d", k, r.Errors[k])
		}
		fmt.Fprintf(w, "\n  first error  %s\n", r.FirstError)
	}
}

// selfCPU is this process's user and system CPU time.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// tcpOutSegs is the machine's count of TCP segments sent (OutSegs in
// the Tcp lines of /proc/net/snmp).
func tcpOutSegs() (int64, error) {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == "OutSegs" && i < len(fields) {
				return strconv.ParseInt(fields[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Tcp OutSegs in /proc/net/snmp")
}

// cpuTimes holds the machine's CPU time counters (USER_HZ ticks, summed
// over its CPUs) from the first line of /proc/stat.
type cpuTimes struct{ total, idle, steal int64 }

// machineCPU reads the machine's CPU time: all of it, idle (idle and
// iowait) and stolen (steal). guest and guest_nice are left out of the
// total, as the kernel counts them in user and nice already.
func machineCPU() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return parseCPULine(line)
}

// parseCPULine reads the counters of /proc/stat's first line ("cpu", then
// user nice system idle iowait irq softirq steal, and more on newer
// kernels).
func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, errors.New("no cpu line in /proc/stat")
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		var err error
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	var t cpuTimes
	for _, x := range v {
		t.total += x
	}
	t.idle = v[3] + v[4]
	t.steal = v[7]
	return t, nil
}

// userHZ is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU is a process's utime+stime from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing parenthesis start with field 3 (state).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("server CPU: cannot read /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("server CPU: cannot read /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func stripSpace(b []byte) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, string(b))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
