// Command ocsp-load starts an OCSP responder for a throwaway ECDSA CA
// with n issued certificates on a loopback port, and prints GET URLs to
// point a load generator at:
//
//	go run ./bench/ocsp -n 10000 -paths paths.txt
//	wrk -t2 -c32 -d10s URL                                   # one cached answer
//	wrk -t2 -c32 -d10s -s bench/ocsp/random.lua BASE -- paths.txt  # random certificates
//
// It is a measuring tool, not part of the appliance.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha1" // CertID hashes
	_ "crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ocsp"
	xocsp "golang.org/x/crypto/ocsp"
)

func main() {
	n := flag.Int("n", 10000, "certificates issued by the test CA")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", ocsp.ModeDelegated, "signing mode: delegated or issuer")
	sha := flag.Int("sha", 1, "CertID hash: 1 or 256")
	paths := flag.String("paths", "", "write the GET path of every certificate to this file")
	flag.Parse()
	if err := run(*n, *addr, *mode, *sha, *paths); err != nil {
		fmt.Fprintln(os.Stderr, "ocsp-load:", err)
		os.Exit(1)
	}
}

func run(n int, addr, mode string, sha int, pathsFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	hash := crypto.SHA1
	if sha == 256 {
		hash = crypto.SHA256
	}
	ca, key, err := newCA()
	if err != nil {
		return err
	}
	src := &memSource{issuer: ocsp.Issuer{ID: "ecdsa-int-1", Cert: ca, Signer: key}, certs: make(map[string]bool, n)}
	var paths []string
	for range n {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return err
		}
		src.certs[store.SerialKey(serial)] = true
		req, err := certIDRequest(ca, serial, hash)
		if err != nil {
			return err
		}
		paths = append(paths, "/ocsp/"+base64.StdEncoding.EncodeToString(req))
	}
	if pathsFile != "" {
		if err := os.WriteFile(pathsFile, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := ocsp.NewResponder(ctx, ocsp.Options{Source: src, Logger: logger, Mode: mode, CacheSize: n * 2})
	if err != nil {
		return err
	}
	go r.Run(ctx)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Printf("base %s\nurl  %s%s\n", base, base, paths[0])
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newCA makes a self-signed ECDSA CA.
func newCA() (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "OCSP load test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// certIDRequest is the OCSP request for serial of ca.
func certIDRequest(ca *x509.Certificate, serial *big.Int, hash crypto.Hash) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(ca.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(ca.RawSubject)
	name := h.Sum(nil)
	h.Reset()
	h.Write(spki.PublicKey.RightAlign())
	req := xocsp.Request{HashAlgorithm: hash, IssuerNameHash: name, IssuerKeyHash: h.Sum(nil), SerialNumber: serial}
	return req.Marshal()
}

// memSource answers good for every certificate it holds.
type memSource struct {
	issuer ocsp.Issuer
	certs  map[string]bool // read-only once serving
}

func (s *memSource) Issuers(context.Context) ([]ocsp.Issuer, error) {
	return []ocsp.Issuer{s.issuer}, nil
}

func (s *memSource) CertificateStatus(_ context.Context, issuerID string, serial *big.Int) (*store.Certificate, error) {
	if issuerID != s.issuer.ID || !s.certs[store.SerialKey(serial)] {
		return nil, store.ErrNotFound
	}
	return &store.Certificate{Serial: serial, IssuerID: issuerID}, nil
}

func (s *memSource) Revocations(context.Context, string, func(store.Revocation) error) error {
	return nil
}

func (s *memSource) NextCRLNumber(context.Context, string) (int64, error) { return 1, nil }

func (s *memSource) IssueResponderCert(_ context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "OCSP responder for " + issuerID},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.issuer.Cert, pub, s.issuer.Signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
