package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

// testConfig is a configuration on loopback with OS-chosen ports.
func testConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`data_dir: %s
listen:
  est: 127.0.0.1:0
  http: 127.0.0.1:0
  dns: 127.0.0.1:0
  metrics: 127.0.0.1:0
  web: "off"
dns:
  advertise:
    - port: 8443
%s`, filepath.Join(dir, "data"), extra)
	cfg, err := config.Load([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs an App until the test ends and returns it once every
// listener is bound.
func start(t *testing.T, cfg *config.Config) *App {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *App, 1)
	a, err := New(ctx, cfg, Options{EventPoll: 50 * time.Millisecond, Ready: func(a *App) { ready <- a }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- nil // for the cleanup, which waits for the end
		t.Fatalf("run ended before ready: %v", err)
	}
	return a
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestMetricsAndCACertificates(t *testing.T) {
	dir := t.TempDir()
	a := start(t, testConfig(t, dir, ""))
	_, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics")
	for _, want := range []string{
		"nmos_certs_build_info{", "go_goroutines", "process_resident_memory_bytes",
		`nmos_certs_ca_cert_expiry_timestamp_seconds{generation="ecdsa-root-1"`,
		`nmos_certs_ca_issued_total{key_type="rsa",profile="leaf"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	base := "http://" + a.Addr("http").String()
	for _, id := range []string{"ecdsa-root-1", "ecdsa-int-1", "rsa-root-1", "rsa-int-1"} {
		resp, der := get(t, base+"/ca/"+id+".crt")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-cert" {
			t.Fatalf("%s: %d %s", id, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		c, err := x509.ParseCertificate(der)
		if err != nil || !c.IsCA {
			t.Fatalf("%s: %v", id, err)
		}
		resp, pemBody := get(t, base+"/ca/"+id+".pem")
		if resp.StatusCode != 200 || !strings.HasPrefix(string(pemBody), "-----BEGIN CERTIFICATE-----") {
			t.Fatalf("%s.pem: %d", id, resp.StatusCode)
		}
	}
	for _, path := range []string{"/ca/nope.crt", "/ca/ecdsa-root-1.txt", "/ca/", "/ca/ecdsa-root-1"} {
		if resp, _ := get(t, base+path); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(base+"/ca/ecdsa-root-1.crt", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

func TestRestartKeepsCA(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	// first starts the appliance and returns the CA's fingerprints, the
	// OCSP responder certificates kept and the certificates recorded.
	first := func() ([]string, string, map[string]int) {
		ctx := context.Background()
		a, err := New(ctx, cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		var fps []string
		for _, g := range a.ca.Generations() {
			fps = append(fps, g.Fingerprint)
		}
		var responders []byte
		for _, id := range []string{"ecdsa-root-1", "ecdsa-int-1", "rsa-root-1", "rsa-int-1"} {
			b, err := os.ReadFile(filepath.Join(dir, "data", "ocsp", id+".crt"))
			if err != nil {
				t.Fatalf("responder certificate of %s not kept: %v", id, err)
			}
			responders = append(responders, b...)
		}
		n, err := a.store.CountCertificates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fps, string(responders), n
	}
	one, r1, n1 := first()
	two, r2, n2 := first()
	if strings.Join(one, ",") != strings.Join(two, ",") || len(one) != 4 {
		t.Fatalf("CA changed across restarts:\n%v\n%v", one, two)
	}
	// The delegated OCSP responders' keys are kept: a restart certifies
	// none again.
	if r1 != r2 {
		t.Error("a restart replaced the OCSP responder certificates")
	}
	if fmt.Sprint(n1) != fmt.Sprint(n2) {
		t.Errorf("a restart recorded certificates: %v, then %v", n1, n2)
	}
	// A missing key file stops the start and is named.
	key := filepath.Join(dir, "data", "ca", "rsa-int-1.key")
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("start with a missing key: %v", err)
	}
}

func TestBindFailureNamesListener(t *testing.T) {
	dir := t.TempDir()
	a := start(t, testConfig(t, dir, ""))
	taken := a.Addr("http").String()
	cfg := testConfig(t, t.TempDir(), "")
	cfg.Listen.HTTP = taken
	b, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "listen.http") {
		t.Fatalf("run with a taken port: %v", err)
	}
}

// Revoking the appliance's own TLS certificate (from another process)
// makes it present a new one within seconds.
func TestRevokedServerCertificateReplaced(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	a := start(t, cfg)
	ctx := context.Background()
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", a.Addr("est").String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()
	other, err := store.OpenSQLite(ctx, filepath.Join(cfg.DataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, first.SerialNumber, time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	other.Close()
	deadline := time.Now().Add(5 * time.Second)
	for served().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("revoked server certificate still presented 5s after the revocation")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
