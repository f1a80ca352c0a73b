// Command estpki writes the throwaway PKI of the EST benchmark into a
// directory:
//
//	mfr-root.pem               manufacturer root (ECDSA P-256): the trust anchor
//	                           both servers accept device certificates from
//	device.pem, device.key     a device's factory certificate (ECDSA P-256,
//	                           extendedKeyUsage clientAuth) signed by that root
//	ref-ca.pem, ref-ca.key     the reference server's mock CA: an ECDSA P-256
//	                           intermediate then an ECDSA P-384 root (the shape of
//	                           nmos-certs' ECDSA hierarchy), and the intermediate's key
//	ref-root.pem               that root alone, the client's anchor for the reference server
//	ref-server.pem, .key       the reference server's TLS certificate (ECDSA P-256,
//	                           -hostname, localhost and 127.0.0.1) followed by the
//	                           intermediate, as nmos-certs presents its own
//
// Keys are PKCS#8 PEM, mode 0600. Nothing here is fit for anything but a
// benchmark on loopback.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nmos-certs/nmos-certs/bench/internal/benchutil"
)

func main() {
	dir := flag.String("dir", ".", "directory to write the files into")
	hostname := flag.String("hostname", "est.studio.example.test", "DNS name in the reference server's certificate")
	flag.Parse()
	if err := run(*dir, *hostname); err != nil {
		fmt.Fprintln(os.Stderr, "estpki:", err)
		os.Exit(1)
	}
}

type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func run(dir, hostname string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	day := 24 * time.Hour

	mfr, err := newCert(elliptic.P256(), nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Bench Manufacturer Root", Organization: []string{"Bench Devices"}},
		NotBefore:             now,
		NotAfter:              now.Add(365 * day),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return fmt.Errorf("manufacturer root: %w", err)
	}
	device, err := newCert(elliptic.P256(), mfr, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "bench-device-0001", Organization: []string{"Bench Devices"}, SerialNumber: "0001"},
		NotBefore:             now,
		NotAfter:              now.Add(365 * day),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("device certificate: %w", err)
	}
	refRoot, err := newCert(elliptic.P384(), nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Bench Reference Root CA", Organization: []string{"Bench"}},
		NotBefore:             now,
		NotAfter:              now.Add(365 * day),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return fmt.Errorf("reference root: %w", err)
	}
	refInt, err := newCert(elliptic.P256(), refRoot, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Bench Reference Intermediate CA", Organization: []string{"Bench"}},
		NotBefore:             now,
		NotAfter:              now.Add(300 * day),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return fmt.Errorf("reference intermediate: %w", err)
	}
	refServer, err := newCert(elliptic.P256(), refInt, &x509.Certificate{
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Bench"}},
		DNSNames:              []string{hostname, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now,
		NotAfter:              now.Add(90 * day),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("reference server certificate: %w", err)
	}

	files := []struct {
		name  string
		data  []byte
		perm  os.FileMode
		isKey bool
	}{
		{"mfr-root.pem", certsPEM(mfr.cert), 0o644, false},
		{"device.pem", certsPEM(device.cert), 0o644, false},
		{"device.key", nil, 0o600, true},
		{"ref-ca.pem", certsPEM(refInt.cert, refRoot.cert), 0o644, false},
		{"ref-ca.key", nil, 0o600, true},
		{"ref-root.pem", certsPEM(refRoot.cert), 0o644, false},
		{"ref-server.pem", certsPEM(refServer.cert, refInt.cert), 0o644, false},
		{"ref-server.key", nil, 0o600, true},
	}
	keys := map[string]*ecdsa.PrivateKey{"device.key": device.key, "ref-ca.key": refInt.key, "ref-server.key": refServer.key}
	for _, f := range files {
		data := f.data
		if f.isKey {
			der, err := x509.MarshalPKCS8PrivateKey(keys[f.name])
			if err != nil {
				return err
			}
			data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// newCert makes a key on curve and a certificate for it from tmpl, signed
// by parent (self-signed when parent is nil). crypto/x509 adds the key
// identifiers of CA certificates itself.
func newCert(curve elliptic.Curve, parent *issued, tmpl *x509.Certificate) (*issued, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	var issuerCert *x509.Certificate
	var signer crypto.Signer
	if parent != nil {
		issuerCert, signer = parent.cert, parent.key
	}
	cert, key, err := benchutil.NewCert(curve, tmpl, issuerCert, signer)
	if err != nil {
		return nil, err
	}
	return &issued{cert: cert, key: key}, nil
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
