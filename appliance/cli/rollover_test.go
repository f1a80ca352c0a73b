package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globalsign/est"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
)

// startApp runs the appliance of cfgPath, by clock (nil: time.Now),
// until the test ends.
func startApp(t *testing.T, cfgPath string, clock func() time.Time) *app.App {
	t.Helper()
	a, stop := startAppClock(t, cfgPath, clock)
	t.Cleanup(stop)
	return a
}

// startAppStoppable runs the appliance of cfgPath until stop is called.
func startAppStoppable(t *testing.T, cfgPath string) (*app.App, func()) {
	t.Helper()
	return startAppClock(t, cfgPath, nil)
}

func startAppClock(t *testing.T, cfgPath string, clock func() time.Time) (*app.App, func()) {
	t.Helper()
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *app.App, 1)
	a, err := app.New(ctx, cfg, app.Options{Clock: clock, EventPoll: 20 * time.Millisecond, Ready: func(a *app.App) { ready <- a }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("the appliance stopped before it was ready: %v", err)
	}
	var once sync.Once
	return a, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

// TestRolloverFromCLIBesideRunningAppliance: an intermediate rolled over
// by the CLI while the appliance runs is, within seconds, what the
// appliance issues from, what its /cacerts carries (both intermediates)
// and what its own TLS certificate chains to; the old generation's
// certificates still verify and renew; a compromised intermediate's
// certificates are listed and revoked in one command.
func TestRolloverFromCLIBesideRunningAppliance(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := initSite(t, "est:\n  manual_approval: true\n")
	csr := opensslCSR(t, dir, "old1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=old1.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "old1.crt")); r.code != 0 {
		t.Fatal(r)
	}
	a := startApp(t, cfg, nil)
	if r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "nope", "--config", cfg); r.code != 2 {
		t.Fatalf("bad hierarchy: %+v", r)
	}
	r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ecdsa-int-2 is active") || !strings.Contains(r.stdout, "ecdsa-int-1 is retiring") {
		t.Fatalf("rollover: %+v", r)
	}
	st := run(t, "ca", "status", "--config", cfg).stdout
	if !strings.Contains(st, "ecdsa-int-2") || !strings.Contains(st, "retiring") {
		t.Fatalf("status after rollover:\n%s", st)
	}
	// The running appliance follows within seconds: /cacerts carries both
	// intermediates, the new one first.
	estHost := a.Addr("est").String()
	anon := &est.Client{Host: estHost, InsecureSkipVerify: true}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cacerts, err := anon.CACerts(context.Background())
		if err == nil && len(cacerts) == 5 && strings.Contains(cacerts[0].Subject.CommonName, "ECDSA Intermediate CA 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cacerts after the rollover: %d certificates, %v", len(cacerts), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its own TLS certificate moves to the new intermediate.
	for {
		conn, err := tls.Dial("tcp", estHost, &tls.Config{InsecureSkipVerify: true, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		issuer := conn.ConnectionState().PeerCertificates[0].Issuer.CommonName
		conn.Close()
		if strings.Contains(issuer, "ECDSA Intermediate CA 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS certificate still from %q", issuer)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The certificate of the old generation renews over EST into the new.
	oldCert := readCert(t, filepath.Join(dir, "old1.crt"))
	oldKey := readKeyFile(t, filepath.Join(dir, "old1.key"))
	me := &est.Client{Host: estHost, InsecureSkipVerify: true, Certificates: []*x509.Certificate{oldCert}, PrivateKey: oldKey}
	nk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: oldCert.RawSubject, DNSNames: oldCert.DNSNames}, nk)
	renewReq, _ := x509.ParseCertificateRequest(der)
	renewed, err := me.Reenroll(context.Background(), renewReq)
	if err != nil {
		t.Fatalf("renewal of a certificate of the retiring generation: %v", err)
	}
	if !strings.Contains(renewed.Issuer.CommonName, "ECDSA Intermediate CA 2") {
		t.Fatalf("renewed by %q", renewed.Issuer.CommonName)
	}
	// The retiring generation's CRL is still published.
	resp, err := http.Get("http://" + a.Addr("http").String() + "/crl/ecdsa-int-1.crl")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := x509.ParseRevocationList(b); resp.StatusCode != 200 || err != nil {
		t.Fatalf("CRL of the retiring generation: %d %v", resp.StatusCode, err)
	}

	// A compromised intermediate: its valid certificates are listed, and
	// revoked in one command.
	r = run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--reason", "keyCompromise", "--config", cfg)
	// The renewed device's, and the appliance's own TLS and OCSP responder
	// certificates.
	if r.code != 0 || !strings.Contains(r.stdout, "3 certificates of ecdsa-int-2 are still valid") || !strings.Contains(r.stdout, "old1.studio.example.test until") ||
		!strings.Contains(r.stdout, "nmos-certs certs revoke --issuer ecdsa-int-2 --reason keyCompromise") {
		t.Fatalf("compromise rollover: %+v", r)
	}
	r = run(t, "certs", "revoke", "--issuer", "ecdsa-int-2", "--reason", "keyCompromise", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "revoked 3 certificates of ecdsa-int-2") {
		t.Fatalf("revoke --issuer: %+v", r)
	}
	if r := run(t, "certs", "revoke", "--issuer", "nope-int-9", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "no CA generation") {
		t.Fatalf("revoke --issuer unknown: %+v", r)
	}
	// A key is destroyed only when confirmed, and only once retired.
	if r := run(t, "ca", "destroy-key", "ecdsa-int-1", "--config", cfg); r.code != 2 || !strings.Contains(r.stderr, "--confirm ecdsa-int-1") {
		t.Fatalf("destroy-key without confirmation: %+v", r)
	}
	if r := run(t, "ca", "destroy-key", "ecdsa-int-1", "--confirm", "ecdsa-int-1", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "only a retired") {
		t.Fatalf("destroy-key of a retiring generation: %+v", r)
	}
}

// TestScheduledRollover: an appliance whose intermediates have used
// ca.intermediate_rollover_at of their life (by its clock) rolls them over
// at start, and says so in its metrics.
func TestScheduledRollover(t *testing.T) {
	cfg, _ := initSite(t, "ca:\n  intermediate_rollover_at: 60\n")
	later := time.Now().Add(3*365*24*time.Hour + 30*24*time.Hour) // 62 % of 5 years
	a := startApp(t, cfg, func() time.Time { return later })
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := run(t, "ca", "status", "--config", cfg).stdout
		if strings.Count(st, "-int-2") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled rollover:\n%s", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + a.Addr("metrics").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`nmos_certs_ca_rollover_due{hierarchy="ecdsa",level="intermediate"} 0`,
		`nmos_certs_ca_rollover_due{hierarchy="rsa",level="root"} 0`,
		`nmos_certs_ca_cert_life_used_ratio{generation="ecdsa-int-1",hierarchy="ecdsa",role="intermediate",state="retiring"}`,
		`nmos_certs_ca_rollovers_total{hierarchy="rsa",level="intermediate"} 1`,
		// The appliance's TLS certificate issued before the rollover is
		// still valid under the old intermediate (responder
		// certificates are not counted).
		`nmos_certs_ca_valid_certificates{generation="ecdsa-int-1",state="retiring"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	a, _ := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if a.Leaf == nil && len(a.Certificate) > 0 {
		c, err := x509.ParseCertificate(a.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if a.Leaf == nil {
		t.Fatalf("no certificate in %s", path)
	}
	return a.Leaf
}

func readKeyFile(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(strings.TrimSuffix(path, ".key")+".crt", path)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("%s is not an ECDSA key", path)
	}
	return k
}

// TestRootRolloverBesideRunningAppliance: a root rollover made by the
// CLI beside the running appliance puts the new root and both link
// certificates in /cacerts at once, as globalsign's EST client and
// openssl read them, and the appliance goes on issuing from the old
// hierarchy until the overlap ends.
func TestRootRolloverBesideRunningAppliance(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := initSite(t, "")
	a := startApp(t, cfg, nil)
	if r := run(t, "ca", "rollover", "root", "--hierarchy", "ecdsa", "--overlap", "soon", "--config", cfg); r.code != 2 {
		t.Fatalf("bad overlap: %+v", r)
	}
	r := run(t, "ca", "rollover", "root", "--hierarchy", "ecdsa", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "new root ecdsa-root-2") || !strings.Contains(r.stdout, "ecdsa-root-2-by-1 (NewWithOld) and ecdsa-root-1-by-2 (OldWithNew)") {
		t.Fatalf("root rollover: %+v", r)
	}
	if r := run(t, "ca", "rollover", "root", "--hierarchy", "ecdsa", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "already under way") {
		t.Fatalf("second root rollover: %+v", r)
	}
	// The running appliance's /cacerts, by globalsign's client.
	host := a.Addr("est").String()
	anon := &est.Client{Host: host, InsecureSkipVerify: true}
	var cacerts []*x509.Certificate
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		cacerts, err = anon.CACerts(context.Background())
		if err == nil && len(cacerts) == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cacerts after the root rollover: %d certificates, %v", len(cacerts), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The intermediates (ECDSA active, ECDSA next, RSA), the roots
	// (OldWithOld, NewWithNew, RSA), then NewWithOld and OldWithNew.
	selfSigned := func(c *x509.Certificate) bool { return c.CheckSignatureFrom(c) == nil }
	if cacerts[0].IsCA && strings.Contains(cacerts[0].Subject.CommonName, "ECDSA Intermediate CA 1") &&
		strings.Contains(cacerts[1].Subject.CommonName, "ECDSA Intermediate CA 2") && strings.Contains(cacerts[2].Subject.CommonName, "RSA Intermediate") &&
		selfSigned(cacerts[3]) && selfSigned(cacerts[4]) && selfSigned(cacerts[5]) && !selfSigned(cacerts[6]) && !selfSigned(cacerts[7]) &&
		cacerts[6].CheckSignatureFrom(cacerts[3]) == nil && cacerts[7].CheckSignatureFrom(cacerts[4]) == nil {
	} else {
		for i, c := range cacerts {
			t.Logf("%d %s / %s self-signed %v", i, c.Subject.CommonName, c.Issuer.CommonName, selfSigned(c))
		}
		t.Fatal("cacerts order during the overlap")
	}
	// openssl reads the same answer as RFC 7030 4.1.3 gives it: base64 of
	// a certs-only CMS.
	url := "https://" + host + "/.well-known/est/cacerts"
	out, err := exec.Command("bash", "-o", "pipefail", "-c", "curl -sk "+url+" | tr -d '\\r' | base64 -d | openssl pkcs7 -inform DER -print_certs -noout").CombinedOutput()
	if err != nil || strings.Count(string(out), "subject=") != 8 {
		t.Fatalf("openssl on /cacerts: %v\n%s", err, out)
	}
	// During the overlap the old hierarchy still issues.
	csr := opensslCSR(t, dir, "o1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=o1.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "o1.crt")); r.code != 0 {
		t.Fatal(r)
	}
	if c := readCert(t, filepath.Join(dir, "o1.crt")); !strings.Contains(c.Issuer.CommonName, "Intermediate CA 1") {
		t.Fatalf("issued during the overlap by %q", c.Issuer.CommonName)
	}
	// Without overlap, the RSA hierarchy switches at once.
	r = run(t, "ca", "rollover", "root", "--hierarchy", "rsa", "--overlap", "0", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "issue from now") {
		t.Fatalf("rollover without overlap: %+v", r)
	}
}

// TestEnrollmentsThroughRollovers: devices enroll without pause while
// the intermediate and then the root of their hierarchy roll over (the
// root with no overlap): not one request fails.
func TestEnrollmentsThroughRollovers(t *testing.T) {
	cfg, dir := initSite(t, "")
	// A manufacturer whose devices enroll.
	mkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mtmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Maker Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	mder, _ := x509.CreateCertificate(rand.Reader, mtmpl, mtmpl, mkey.Public(), mkey)
	mcert, _ := x509.ParseCertificate(mder)
	roots := filepath.Join(dir, "maker.pem")
	os.WriteFile(roots, pemCert(mder), 0o644)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("est:\n  trusted_client_roots: ["+roots+"]\n")...), 0o644)
	a := startApp(t, cfg, nil)
	host := a.Addr("est").String()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	issuers := map[string]int{}
	var failures []error
	for w := range 4 {
		dkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		dtmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(10 + w)), Subject: pkix.Name{CommonName: "device", SerialNumber: fmt.Sprint("D", w)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		dder, _ := x509.CreateCertificate(rand.Reader, dtmpl, mcert, dkey.Public(), mkey)
		dcert, _ := x509.ParseCertificate(dder)
		c := &est.Client{Host: host, InsecureSkipVerify: true, Certificates: []*x509.Certificate{dcert}, PrivateKey: dkey}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				name := fmt.Sprintf("w%d-%d.studio.example.test", w, i)
				der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
				req, _ := x509.ParseCertificateRequest(der)
				cert, err := c.Enroll(context.Background(), req)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					issuers[cert.Issuer.CommonName+" "+hex.EncodeToString(cert.AuthorityKeyId)]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--config", cfg); r.code != 0 {
		t.Error(r)
	}
	time.Sleep(500 * time.Millisecond)
	if r := run(t, "ca", "rollover", "root", "--hierarchy", "ecdsa", "--overlap", "0", "--config", cfg); r.code != 0 {
		t.Error(r)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d enrollments failed through the rollovers, the first: %v", len(failures), failures[0])
	}
	// Certificates came from the three intermediates in turn.
	if len(issuers) != 3 {
		t.Fatalf("issuers seen: %v", issuers)
	}
	t.Logf("enrollments by issuer: %v", issuers)
}

// TestOfflineRootCeremony: with the root key off the appliance (an
// imported hierarchy without it), an intermediate rollover is refused
// with the ceremony's commands, and made through them: the request on
// the appliance, the signature where the root key is, the import; the
// new intermediate then issues, under the same root.
func TestOfflineRootCeremony(t *testing.T) {
	needOpenSSL(t)
	// A hierarchy made elsewhere: its root key stays in "vault".
	src, srcDir := initSite(t, "")
	vault := t.TempDir()
	sa, closeSrc := openAuthority(t, src)
	root, _ := sa.CACertificate("ecdsa-root-1")
	inter, _ := sa.CACertificate("ecdsa-int-1")
	closeSrc()
	rootPEM := filepath.Join(vault, "root.pem")
	os.WriteFile(rootPEM, pemCert(root.Raw), 0o644)
	interPEM := filepath.Join(vault, "int.pem")
	os.WriteFile(interPEM, pemCert(inter.Raw), 0o644)
	rootKey := filepath.Join(srcDir, "data", "ca", "ecdsa-root-1.key")
	intKey := filepath.Join(srcDir, "data", "ca", "ecdsa-int-1.key")

	cfg, dir := siteConfig(t, "ca:\n  ecdsa:\n    import:\n      root_cert: "+rootPEM+"\n      intermediate_cert: "+interPEM+"\n      intermediate_key: "+intKey+"\n")
	if r := run(t, "ca", "init", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "ecdsa-root-1") {
		t.Fatal(r)
	}
	r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stderr, "--csr-out FILE") || !strings.Contains(r.stderr, "ca import-intermediate") {
		t.Fatalf("rollover with the root offline: %+v", r)
	}
	csr := filepath.Join(dir, "int2.csr")
	if r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--csr-out", csr, "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "ecdsa-int-2") {
		t.Fatalf("request: %+v", r)
	}
	// Where the root key is (no configuration, no database).
	signed := filepath.Join(vault, "int2.pem")
	r = run(t, "ca", "sign-intermediate", "--root-cert", rootPEM, "--root-key", rootKey, "--csr", csr, "--out", signed,
		"--base-url", "http://est.studio.example.test:8080", "--root-id", "ecdsa-root-1")
	if r.code != 0 {
		t.Fatalf("sign-intermediate: %+v", r)
	}
	if r := run(t, "ca", "import-intermediate", "--in", rootPEM, "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "an intermediate here has path length 0") {
		t.Fatalf("import of a certificate that is not the request's: %+v", r)
	}
	if r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--csr-out", csr+"2", "--reason", "keyCompromise", "--config", cfg); r.code != 2 || !strings.Contains(r.stderr, "import-intermediate") {
		t.Fatalf("--csr-out with --reason: %+v", r)
	}
	r = run(t, "ca", "import-intermediate", "--in", signed, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ecdsa-int-2 is active") || !strings.Contains(r.stdout, "ecdsa-int-1 is retiring") {
		t.Fatalf("import-intermediate: %+v", r)
	}
	// The new intermediate issues, under the same root.
	leafCSR := opensslCSR(t, dir, "c1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=c1.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", leafCSR, "--out", filepath.Join(dir, "c1.crt")); r.code != 0 {
		t.Fatal(r)
	}
	leaf := readCert(t, filepath.Join(dir, "c1.crt"))
	ints, err := ca.ReadCertificates(signed)
	if err != nil {
		t.Fatal(err)
	}
	newInt := ints[0]
	if leaf.CheckSignatureFrom(newInt) != nil || newInt.CheckSignatureFrom(root) != nil || len(newInt.CRLDistributionPoints) != 1 ||
		newInt.CRLDistributionPoints[0] != "http://est.studio.example.test:8080/crl/ecdsa-root-1.crl" {
		t.Fatalf("leaf from %q, intermediate from %q, CRL %v", leaf.Issuer.CommonName, newInt.Issuer.CommonName, newInt.CRLDistributionPoints)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "ca", "pending", "ecdsa-int-2.key")); !os.IsNotExist(err) {
		t.Fatalf("the pending key is left: %v", err)
	}
}

// TestExportRootKeyAndOfflineCRL: a root taken offline leaves the
// appliance encrypted (openssl reads it with the passphrase), with a last
// CRL that the running appliance publishes; the intermediate rollover
// goes through the ceremony with the encrypted key; the next root CRL is
// requested, signed offline and imported, and a CRL that does not move
// the number forward is refused.
func TestExportRootKeyAndOfflineCRL(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := initSite(t, "")
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("short\n"), 0o600)
	vault := t.TempDir()
	key := filepath.Join(vault, "ecdsa-root-1.key")
	if r := run(t, "ca", "export-root-key", "--hierarchy", "ecdsa", "--out", key, "--passphrase-file", short, "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "12 characters") {
		t.Fatalf("a short passphrase: %+v", r)
	}
	r := run(t, "ca", "export-root-key", "--hierarchy", "ecdsa", "--out", key, "--passphrase-file", pass, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "no longer on the appliance") {
		t.Fatalf("export-root-key: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "ca", "ecdsa-root-1.key")); !os.IsNotExist(err) {
		t.Fatalf("the root key is still on the appliance: %v", err)
	}
	if st := run(t, "ca", "status", "--config", cfg).stdout; !regexp.MustCompile(`ecdsa-root-1\s+root\s+active\s+ECDSA P-384\s+no`).MatchString(st) {
		t.Fatalf("status after the export:\n%s", st)
	}
	// openssl reads the exported key with the passphrase, and not without.
	if out, err := exec.Command("openssl", "pkey", "-in", key, "-passin", "file:"+pass, "-noout").CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v %s", err, out)
	}
	if err := exec.Command("openssl", "pkey", "-in", key, "-passin", "pass:wrong", "-noout").Run(); err == nil {
		t.Fatal("openssl read the key with a wrong passphrase")
	}
	// ca.root_key: offline refuses a data directory that still holds a
	// root key: the RSA root's here.
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("ca:\n  root_key: offline\n")...), 0o644)
	if r := run(t, "config", "check", cfg); r.code == 0 || !strings.Contains(r.stderr, "rsa-root-1.key holds a root key") || strings.Contains(r.stderr, "ecdsa-root-1.key") {
		t.Fatalf("config check with a root key and ca.root_key offline: %+v", r)
	}
	os.WriteFile(cfg, b, 0o644)
	a := startApp(t, cfg, nil)
	crlURL := "http://" + a.Addr("http").String() + "/crl/ecdsa-root-1.crl"
	rootCRL := func() *x509.RevocationList {
		resp, err := http.Get(crlURL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			t.Fatalf("%s: %d %v", crlURL, resp.StatusCode, err)
		}
		return crl
	}
	first := rootCRL()
	if first.NextUpdate.Before(time.Now().Add(360 * 24 * time.Hour)) {
		t.Fatalf("the last CRL signed here is valid until %v", first.NextUpdate)
	}
	// The intermediate rollover goes through the ceremony, with the
	// encrypted key.
	csr := filepath.Join(dir, "int2.csr")
	if r := run(t, "ca", "rollover", "intermediate", "--hierarchy", "ecdsa", "--csr-out", csr, "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	rootPEM := filepath.Join(vault, "root.pem")
	root, _ := a.Authority().CACertificate("ecdsa-root-1")
	os.WriteFile(rootPEM, pemCert(root.Raw), 0o644)
	signed := filepath.Join(vault, "int2.pem")
	if r := run(t, "ca", "sign-intermediate", "--root-cert", rootPEM, "--root-key", key, "--passphrase-file", pass, "--csr", csr, "--out", signed); r.code != 0 {
		t.Fatalf("sign-intermediate with the encrypted key: %+v", r)
	}
	if r := run(t, "ca", "import-intermediate", "--in", signed, "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	// The next root CRL, signed offline.
	req := filepath.Join(dir, "crl-req.json")
	if r := run(t, "ca", "crl-request", "--root", "ecdsa-root-1", "--out", req, "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	next := filepath.Join(vault, "root.crl")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + a.Addr("metrics").String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ok offline root CRL ecdsa-root-1") {
		t.Fatalf("readyz with a year of CRL left: %d\n%s", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `nmos_certs_offline_root_crl_next_update_timestamp_seconds{root="ecdsa-root-1"}`) {
		t.Fatal("no metric of the offline root's CRL")
	}
	// A CRL of ten days: /readyz says the next one is due.
	if r := run(t, "ca", "sign-crl", "--root-cert", rootPEM, "--root-key", key, "--passphrase-file", pass, "--request", req, "--validity", "10d", "--out", next); r.code != 0 {
		t.Fatalf("sign-crl: %+v", r)
	}
	if r := run(t, "ca", "import-crl", "--in", next, "--config", cfg); r.code != 0 {
		t.Fatalf("import-crl: %+v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rootCRL().Number.Cmp(first.Number) <= 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the published root CRL is still number %v", first.Number)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rootCRL().CheckSignatureFrom(root); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "fail offline root CRL ecdsa-root-1") {
		t.Fatalf("readyz with ten days of CRL left: %d\n%s", code, body)
	}
	if r := run(t, "ca", "import-crl", "--in", next, "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "not greater") {
		t.Fatalf("the same CRL again: %+v", r)
	}
}
