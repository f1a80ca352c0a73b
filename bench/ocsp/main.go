// Command ocsp-load prepares and checks the OCSP load comparison of
// run.sh: nmos-certs serve (the production binary, configuration and
// HTTP stack) against cfssl ocspserve serving pre-signed answers for the
// same certificates, with a bare net/http handler as the machine's HTTP
// reference. It is for measuring only, not part of the appliance.
//
//	ocsp-load setup -config FILE -n N -out DIR
//
// opens the data directory of an nmos-certs configuration (creating the
// CA), issues N ECDSA leaf certificates through the authority, as EST
// enrollment does, and writes to DIR:
//
//	paths.txt                GET paths /ocsp/<base64 request>, one a certificate
//	cfssl-paths.txt          the same requests as cfssl ocspserve's paths, /<base64>
//	request.der              POST body: the request for the first certificate
//	request-nonce.der        the same request with a 16-octet nonce (RFC 8954)
//	responses.txt            base64 DER answers for cfssl ocspserve -responses,
//	                         signed by the issuer, without a certificate
//	responses-delegated.txt  the same signed by a delegated responder
//	                         certificate of the CA, which they carry (as
//	                         nmos-certs signs by default)
//
// The requests use SHA-1 CertIDs, as OpenSSL sends them. Those whose
// base64 holds "//" are left out of both path lists: cfssl ocspserve
// sits behind http.ServeMux, which answers them with a redirect.
//
//	ocsp-load check -base URL -paths FILE [-post FILE,... -post-path PATH]
//
// asks for every path (then, with -post, POSTs each request once), fails
// unless each answer is a successful OCSP response (every 50th, and the
// POST answer, parsed in full: status good, signature valid), and prints
// what it saw, whether a nonce was echoed included. It fills nmos-certs'
// cache too, which signs an answer on first request.
//
//	ocsp-load bare -addr ADDR
//
// serves a fixed 400-byte body for every request, the least any Go HTTP
// server does per request.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/bench/internal/benchutil"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	xocsp "golang.org/x/crypto/ocsp"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "setup":
		err = setupCmd(os.Args[2:])
	case "check":
		err = checkCmd(os.Args[2:])
	case "bare":
		err = bareCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocsp-load:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ocsp-load setup|check|bare [flags]")
	os.Exit(2)
}

// leaf is one issued certificate and the issuer it names.
type leaf struct {
	serial *big.Int
	issuer *x509.Certificate
}

func setupCmd(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	cfgFile := fs.String("config", "", "nmos-certs configuration whose data directory is filled")
	n := fs.Int("n", 10000, "certificates to issue")
	out := fs.String("out", ".", "directory for the request and answer files")
	workers := fs.Int("workers", 8, "concurrent issuances")
	fs.Parse(args)
	if *cfgFile == "" || *n < 1 {
		return errors.New("setup: -config and a positive -n are required")
	}
	ctx := context.Background()
	cfg, err := config.LoadFile(*cfgFile)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	auth, st, err := app.Open(ctx, cfg, logger, nil, time.Now, true)
	if err != nil {
		return err
	}
	defer st.Close()

	leaves := make([]leaf, *n)
	var next atomic.Int64
	errs := make(chan error, *workers)
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				csr, err := newCSR(fmt.Sprintf("node-%d.%s", i, cfg.Domain))
				if err == nil {
					var cert *x509.Certificate
					if cert, err = auth.Issue(ctx, csr, policy.Requester{Identity: "ocsp-load"}); err == nil {
						leaves[i] = leaf{serial: cert.SerialNumber, issuer: issuerOf(auth, cert)}
						if leaves[i].issuer == nil {
							err = fmt.Errorf("no issuer for certificate %d", i)
						}
					}
				}
				if err != nil {
					errs <- err
					next.Store(int64(*n))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("issue: %w", err)
	}

	var ours, theirs []string
	for _, l := range leaves {
		der, err := requestDER(l, nil)
		if err != nil {
			return err
		}
		b := base64.StdEncoding.EncodeToString(der)
		if strings.Contains(b, "//") {
			continue
		}
		ours = append(ours, "/ocsp/"+b)
		theirs = append(theirs, "/"+b)
	}
	if len(ours) == 0 {
		return errors.New("no usable request")
	}
	post, err := requestDER(leaves[0], nil)
	if err != nil {
		return err
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	postNonce, err := requestDER(leaves[0], nonce)
	if err != nil {
		return err
	}
	responses, err := cfsslResponses(ctx, auth, leaves, false)
	if err != nil {
		return err
	}
	delegated, err := cfsslResponses(ctx, auth, leaves, true)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"paths.txt":               []byte(strings.Join(ours, "\n") + "\n"),
		"cfssl-paths.txt":         []byte(strings.Join(theirs, "\n") + "\n"),
		"request.der":             post,
		"request-nonce.der":       postNonce,
		"responses.txt":           responses,
		"responses-delegated.txt": delegated,
	} {
		if err := os.WriteFile(filepath.Join(*out, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("issued %d certificates; %d requests in the GET lists\n", *n, len(ours))
	return nil
}

// issuerOf finds the generation that signed cert, by name and key
// identifier.
func issuerOf(auth *ca.Authority, cert *x509.Certificate) *x509.Certificate {
	for _, is := range auth.Issuers() {
		if bytes.Equal(is.Cert.RawSubject, cert.RawIssuer) && bytes.Equal(is.Cert.SubjectKeyId, cert.AuthorityKeyId) {
			return is.Cert
		}
	}
	return nil
}

// newCSR makes a CSR for a fresh P-256 key, as a device would.
func newCSR(name string) (*x509.CertificateRequest, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name},
		DNSNames: []string{name},
	}, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}

// OCSPRequest of RFC 6960 section 4.1.1, with one Request and optional
// request extensions (x/crypto/ocsp cannot marshal a nonce).
type certID struct {
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
}

type singleRequest struct {
	Cert certID
}

type tbsRequest struct {
	RequestList []singleRequest
	Extensions  []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

type ocspRequest struct {
	TBSRequest tbsRequest
}

var (
	oidSHA1  = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
)

// requestDER is the OCSP request for l with a SHA-1 CertID (what OpenSSL
// and most relying parties send), and a nonce extension when nonce is set.
func requestDER(l leaf, nonce []byte) ([]byte, error) {
	name, key, err := benchutil.IssuerHashes(l.issuer, crypto.SHA1)
	if err != nil {
		return nil, err
	}
	req := ocspRequest{TBSRequest: tbsRequest{RequestList: []singleRequest{{Cert: certID{
		HashAlgorithm:  pkix.AlgorithmIdentifier{Algorithm: oidSHA1, Parameters: asn1.NullRawValue},
		IssuerNameHash: name,
		IssuerKeyHash:  key,
		SerialNumber:   l.serial,
	}}}}}
	if nonce != nil {
		v, err := asn1.Marshal(nonce)
		if err != nil {
			return nil, err
		}
		req.TBSRequest.Extensions = []pkix.Extension{{Id: oidNonce, Value: v}}
	}
	return asn1.Marshal(req)
}

// cfsslResponses signs a good answer for every leaf, valid for a day like
// nmos-certs' own answers, and returns them base64-encoded, one a line,
// as cfssl ocspserve -responses reads them. With delegated set they are
// signed by a responder certificate the authority issues for the purpose
// and carry it, as cfssl ocspsign does with a responder distinct from the
// issuer; otherwise by the issuer's key, with no certificate.
func cfsslResponses(ctx context.Context, auth *ca.Authority, leaves []leaf, delegated bool) ([]byte, error) {
	type responder struct {
		cert *x509.Certificate
		key  crypto.Signer
	}
	responders := map[string]responder{}
	now := time.Now().Truncate(time.Second)
	var buf bytes.Buffer
	for _, l := range leaves {
		r, ok := responders[string(l.issuer.Raw)]
		if !ok {
			var is *ca.Issuer
			for _, c := range auth.Issuers() {
				if bytes.Equal(c.Cert.Raw, l.issuer.Raw) {
					is = &c
				}
			}
			if is == nil {
				return nil, errors.New("issuer of a leaf not found")
			}
			r = responder{cert: is.Cert, key: is.Signer}
			if delegated {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					return nil, err
				}
				cert, err := auth.IssueResponderCert(ctx, is.ID, key.Public(), now.Add(-5*time.Minute), now.Add(7*24*time.Hour))
				if err != nil {
					return nil, err
				}
				r = responder{cert: cert, key: key}
			}
			responders[string(l.issuer.Raw)] = r
		}
		tmpl := xocsp.Response{
			Status:       xocsp.Good,
			SerialNumber: l.serial,
			ThisUpdate:   now,
			NextUpdate:   now.Add(24 * time.Hour),
		}
		if delegated {
			tmpl.Certificate = r.cert
		}
		der, err := xocsp.CreateResponse(l.issuer, r.cert, tmpl, r.key)
		if err != nil {
			return nil, err
		}
		buf.WriteString(base64.StdEncoding.EncodeToString(der))
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

func checkCmd(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	base := fs.String("base", "", "server URL without a trailing '/'")
	pathsFile := fs.String("paths", "", "GET paths, one a line")
	post := fs.String("post", "", "POST these request bodies (files, comma-separated) to -base + -post-path and check the answers")
	postPath := fs.String("post-path", "/", "path POSTed to")
	workers := fs.Int("workers", 8, "concurrent requests")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for the server to answer at all")
	fs.Parse(args)
	if *base == "" || *pathsFile == "" {
		return errors.New("check: -base and -paths are required")
	}
	data, err := os.ReadFile(*pathsFile)
	if err != nil {
		return err
	}
	paths := strings.Fields(string(data))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *workers}}
	deadline := time.Now().Add(*wait)
	for {
		_, err := do(client, http.MethodGet, *base+paths[0], nil, true)
		if err == nil {
			break
		}
		// Wait while nothing listens yet; any other error is final.
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}

	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	smallest, largest := math.MaxInt, 0
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(paths) {
					return
				}
				// Every 50th answer is parsed and its signature checked;
				// the others only need to be successful OCSP responses.
				a, err := do(client, http.MethodGet, *base+paths[i], nil, i%50 == 0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", paths[i], err)
				}
				if a != nil {
					smallest, largest = min(smallest, len(a.body)), max(largest, len(a.body))
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	a, err := do(client, http.MethodGet, *base+paths[0], nil, true)
	if err != nil {
		return err
	}
	fmt.Printf("GET: %d paths answered good, answers of %d to %d bytes\n", len(paths), smallest, largest)
	fmt.Printf("GET headers: %s\n", a.headers)
	for _, file := range strings.Split(*post, ",") {
		if file == "" {
			continue
		}
		body, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		a, err := do(client, http.MethodPost, *base+*postPath, body, true)
		if err != nil {
			return fmt.Errorf("POST %s: %w", file, err)
		}
		nonce := "no nonce asked"
		if v := nonceValue(body); v != nil {
			nonce = "nonce not echoed"
			if bytes.Contains(a.body, v) {
				nonce = "nonce echoed"
			}
		}
		fmt.Printf("POST %s: good, %d bytes, %s\n", filepath.Base(file), len(a.body), nonce)
		fmt.Printf("POST headers: %s\n", a.headers)
	}
	return nil
}

// answer is what check saw of one response.
type answer struct {
	body    []byte
	headers string
}

// successful reports whether b starts like a successful OCSPResponse: a
// SEQUENCE whose first element is responseStatus ENUMERATED 0.
func successful(b []byte) bool {
	if len(b) < 2 || b[0] != 0x30 {
		return false
	}
	i := 2
	if b[1]&0x80 != 0 {
		i += int(b[1] & 0x7f)
	}
	return len(b) >= i+3 && b[i] == 0x0a && b[i+1] == 0x01 && b[i+2] == 0x00
}

// do sends one request and checks the answer: HTTP 200, a successful OCSP
// response, and when full is set a good status under a valid signature.
func do(c *http.Client, method, url string, body []byte, full bool) (*answer, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	if !successful(b) {
		return nil, fmt.Errorf("not a successful OCSP response: % x", b[:min(len(b), 8)])
	}
	if full {
		r, err := xocsp.ParseResponse(b, nil)
		if err != nil {
			return nil, fmt.Errorf("answer: %w", err)
		}
		if r.Status != xocsp.Good {
			return nil, fmt.Errorf("status %d, want good", r.Status)
		}
	}
	var hs []string
	for _, k := range []string{"Content-Type", "Content-Length", "Cache-Control", "Last-Modified", "Expires", "Etag", "Date"} {
		if v := resp.Header.Get(k); v != "" {
			hs = append(hs, k+": "+v)
		}
	}
	return &answer{body: b, headers: strings.Join(hs, "; ")}, nil
}

// nonceValue returns the DER of the nonce in an OCSP request, or nil.
func nonceValue(der []byte) []byte {
	var req ocspRequest
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return nil
	}
	for _, e := range req.TBSRequest.Extensions {
		if e.Id.Equal(oidNonce) {
			return e.Value
		}
	}
	return nil
}

// bareBody is what the bare server answers: about the size of an OCSP
// answer without a responder certificate.
var bareBody = bytes.Repeat([]byte{0x30}, 400)

func bareCmd(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18085", "listen address")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ct := []string{"application/ocsp-response"}
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = ct
		w.Write(bareBody)
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
