// Package floor measures what an enrollment cannot avoid on this
// machine: the public-key operations an EST server makes for every
// device, with Go's own crypto, and a whole TLS 1.3 handshake with a
// client certificate. bench/report.sh adds them up into the floor that
// the server CPU per enrollment of bench/est is compared with:
//
//	ECDHE P-256 (one key generation, one shared secret)
//	+ ECDSA P-256 signature (the server's CertificateVerify)
//	+ ECDSA P-256 verification (the device's CertificateVerify)
//	+ ECDSA P-256 verification (the CSR's proof of possession)
//	+ ECDSA P-256 signature (the new certificate)
//
//	go test -run '^$' -bench . ./bench/est/floor/
package floor

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func BenchmarkECDSAP256Sign(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := sha256.Sum256([]byte("tbs"))
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, k, h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkECDSAP256Verify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := sha256.Sum256([]byte("tbs"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
			b.Fatal("signature does not verify")
		}
	}
}

func BenchmarkECDHEP256(b *testing.B) {
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	for b.Loop() {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.ECDH(peer.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

func selfSigned(b *testing.B, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// BenchmarkTLS13HandshakeClientCert is one full TLS 1.3 handshake over
// an in-memory pipe, P-256 key exchange, ECDSA P-256 certificates on
// both sides, the client's certificate requested but not chain-checked
// (as an EST server does before its handler looks at it): both ends'
// CPU, since both run in this process.
func BenchmarkTLS13HandshakeClientCert(b *testing.B) {
	srvCert := selfSigned(b, "est.studio.example.test", x509.ExtKeyUsageServerAuth)
	cliCert := selfSigned(b, "device", x509.ExtKeyUsageClientAuth)
	srvConf := &tls.Config{
		Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.CurveP256}, ClientAuth: tls.RequestClientCert,
		SessionTicketsDisabled: true,
	}
	cliConf := &tls.Config{
		Certificates: []tls.Certificate{cliCert}, ServerName: "est.studio.example.test",
		InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.CurveP256},
		SessionTicketsDisabled: true,
	}
	for b.Loop() {
		c1, c2 := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			errc <- tls.Server(c2, srvConf).Handshake()
			c2.Close()
		}()
		c := tls.Client(c1, cliConf)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c1.Close()
	}
}

// BenchmarkFsync16KiB is what a durable commit pays the disk at least:
// 16 KiB written to a file in the temporary directory (run it with
// TMPDIR on the data directory's file system) and synced with fsync, as
// SQLite's WAL is at every COMMIT with synchronous=FULL. Besides the wall
// time it reports cpu-us/op, the process's user and system CPU per
// write and sync: on a virtual machine the sync's notification of the
// virtual disk is paid in CPU.
func BenchmarkFsync16KiB(b *testing.B) { benchSync(b, 16<<10, (*os.File).Sync) }

// BenchmarkFdatasync16KiB is the same with fdatasync, which the store
// makes after a certificate commit.
func BenchmarkFdatasync16KiB(b *testing.B) {
	benchSync(b, 16<<10, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) })
}

// BenchmarkFdatasyncNothing syncs a file with nothing new to write: the
// part of a sync that does not depend on the data.
func BenchmarkFdatasyncNothing(b *testing.B) {
	benchSync(b, 0, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) })
}

func benchSync(b *testing.B, size int, sync func(*os.File) error) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "wal"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, size)
	if _, err := f.WriteAt(make([]byte, 64*(16<<10)), 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	i := 0
	for b.Loop() {
		if size > 0 {
			if _, err := f.WriteAt(buf, int64(i%64)*int64(len(buf))); err != nil {
				b.Fatal(err)
			}
		}
		if err := sync(f); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpu()-start)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}
