package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/app"
	"github.com/nmos-certs/nmos-certs/ca/store"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"nmos-certs"}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// siteConfig writes a configuration with its data dir in a temp dir.
func siteConfig(t *testing.T, extra string) (cfgPath, dir string) {
	t.Helper()
	dir = t.TempDir()
	cfgPath = filepath.Join(dir, "nmos-certs.yaml")
	y := fmt.Sprintf("data_dir: %s\nlisten:\n  est: 127.0.0.1:0\n  http: 127.0.0.1:0\n  dns: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  web: \"off\"\ndns:\n  advertise:\n    - port: 8443\n%s", filepath.Join(dir, "data"), extra)
	if err := os.WriteFile(cfgPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dir
}

// initSite is siteConfig with its CA created (ca init).
func initSite(t *testing.T, extra string) (cfgPath, dir string) {
	t.Helper()
	cfgPath, dir = siteConfig(t, extra)
	if r := run(t, "ca", "init", "--config", cfgPath); r.code != 0 {
		t.Fatal(r)
	}
	return cfgPath, dir
}

func needOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed: install it (apt-get install openssl; .ci/run does) to run this test")
	}
}

func opensslCSR(t *testing.T, dir, name, keyArgs, subj, san string) string {
	t.Helper()
	csr := filepath.Join(dir, name+".csr")
	args := append([]string{"req", "-new"}, strings.Fields(keyArgs)...)
	args = append(args, "-nodes", "-keyout", filepath.Join(dir, name+".key"), "-subj", subj, "-out", csr)
	if san != "" {
		args = append(args, "-addext", "subjectAltName="+san)
	}
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	return csr
}

func TestVersionAndHelp(t *testing.T) {
	r := run(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "nmos-certs ") {
		t.Fatalf("version: %+v", r)
	}
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"certs", "issue", "--help"}, {"requests", "--help"}, {"ca", "status", "--help"}} {
		if r := run(t, args...); r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if r := run(t, "no-such-command"); r.code == 0 {
		t.Errorf("unknown command exited 0")
	}
}

func TestConfigCommands(t *testing.T) {
	r := run(t, "config", "example")
	if r.code != 0 || !strings.Contains(r.stdout, "trusted_client_roots") {
		t.Fatalf("example: %+v", r)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(r.stdout), 0o644)
	if r := run(t, "config", "check", good); r.code != 0 || !strings.Contains(r.stdout, "ok") {
		t.Fatalf("check example: %+v", r)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("domain: studio.example.test\nest:\n  retry_aftr: 5s\n"), 0o644)
	r = run(t, "config", "check", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "bad.yaml:3: est.retry_aftr: unknown key") {
		t.Fatalf("check bad: %+v", r)
	}
	if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines != 0 {
		t.Errorf("one error should print one line, got:\n%s", r.stderr)
	}
	if r := run(t, "config", "check", filepath.Join(dir, "missing.yaml")); r.code == 0 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Fatalf("check missing file: %+v", r)
	}
	if r := run(t, "config", "check"); r.code != 2 {
		t.Fatalf("check without FILE: %+v", r)
	}
}

// An invalid configuration stops serve before it binds any port: the
// error is about the configuration, not about the port held here.
func TestServeRefusesBadConfigBeforeBinding(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg, _ := siteConfig(t, "ca:\n  leaf_lifetime: -5h\n")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(data, []byte("http: 127.0.0.1:0"), []byte("http: "+l.Addr().String()), 1), 0o644)
	r := run(t, "serve", "--config", cfg)
	if r.code == 0 || !strings.Contains(r.stderr, "ca.leaf_lifetime") || strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("serve with a bad config: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "data")); err == nil {
		t.Error("data dir created for an invalid configuration")
	}
}

func TestCAAndCertsCommands(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := siteConfig(t, "")
	if r := run(t, "ca", "status", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "no CA has been created yet") {
		t.Fatalf("status before init: %+v", r)
	}
	r := run(t, "ca", "init", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	for _, want := range []string{"ecdsa-root-1", "ecdsa-int-1", "rsa-root-1", "rsa-int-1", "ECDSA P-384", "ECDSA P-256", "RSA 3072", "RSA 2048", "active"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("init output lacks %q:\n%s", want, r.stdout)
		}
	}
	st := run(t, "ca", "status", "--config", cfg)
	if st.code != 0 || st.stdout != r.stdout {
		t.Fatalf("status differs from init output: %+v", st)
	}
	if again := run(t, "ca", "init", "--config", cfg); again.code != 0 || again.stdout != r.stdout {
		t.Fatalf("second init changed the CA: %+v", again)
	}

	// The CA's certificates, to verify with openssl.
	chains := map[string]string{"ecdsa": filepath.Join(dir, "ecdsa-chain.pem"), "rsa": filepath.Join(dir, "rsa-chain.pem")}
	a, closeStore := openAuthority(t, cfg)
	cacerts, _ := a.CACerts(context.Background())
	for _, h := range []string{"ecdsa", "rsa"} {
		var b bytes.Buffer
		for _, c := range cacerts {
			if strings.Contains(strings.ToLower(c.Subject.CommonName), h+" ") {
				b.Write(pemCert(c.Raw))
			}
		}
		os.WriteFile(chains[h], b.Bytes(), 0o644)
	}
	closeStore()

	serialRE := regexp.MustCompile(`issued ([0-9a-f]+) for`)
	serials := map[string]string{}
	for _, tc := range []struct{ name, key, hier string }{
		{"ec", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "ecdsa"},
		{"rsa", "-newkey rsa:2048", "rsa"},
	} {
		csr := opensslCSR(t, dir, tc.name, tc.key, "/CN="+tc.name+".studio.example.test/serialNumber=SN-"+tc.name, "DNS:"+tc.name+".studio.example.test")
		out := filepath.Join(dir, tc.name+".crt")
		r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", out)
		if r.code != 0 {
			t.Fatalf("issue %s: %+v", tc.name, r)
		}
		m := serialRE.FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("no serial in %q", r.stderr)
		}
		serials[tc.name] = m[1]
		v, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", chains[tc.hier], out).CombinedOutput()
		if err != nil || !strings.Contains(string(v), ": OK") {
			t.Fatalf("openssl verify %s: %v\n%s", tc.name, err, v)
		}
		other := chains["rsa"]
		if tc.hier == "rsa" {
			other = chains["ecdsa"]
		}
		if v, err := exec.Command("openssl", "verify", "-CAfile", other, out).CombinedOutput(); err == nil {
			t.Fatalf("%s certificate verified against the other hierarchy:\n%s", tc.name, v)
		}
		// The same CSR again is refused (key reuse), and --out is never overwritten.
		if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", out+".2"); r.code == 0 || !strings.Contains(r.stderr, "new key pair") {
			t.Fatalf("reissue of the same key: %+v", r)
		}
		if r := run(t, "certs", "issue", "--config", cfg, "--csr", opensslCSR(t, dir, tc.name+"b", tc.key, "/CN="+tc.name+"b.studio.example.test", ""), "--out", out); r.code == 0 || !strings.Contains(r.stderr, "exists") {
			t.Fatalf("overwrote --out: %+v", r)
		}
	}
	// Refusals with reasons.
	for _, tc := range []struct{ subj, san, want string }{
		{"/CN=x.example.org", "", "outside the domain"},
		{"/CN=*.studio.example.test", "", "wildcard"},
		{"/CN=192.0.2.7", "", "IP address"},
		{"/O=nobody", "", "names no host"},
	} {
		csr := opensslCSR(t, dir, "refused", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", tc.subj, tc.san)
		if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "refused.crt")); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %+v", tc.subj, r)
		}
	}
	weak := filepath.Join(dir, "weak.csr")
	if out, err := exec.Command("openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", filepath.Join(dir, "weak.key"), "-subj", "/CN=w.studio.example.test", "-out", weak).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", weak, "--out", filepath.Join(dir, "w.crt")); r.code == 0 || !strings.Contains(r.stderr, "too small") {
		t.Errorf("RSA 1024: %+v", r)
	}
	garbage := filepath.Join(dir, "garbage.csr")
	os.WriteFile(garbage, []byte("not a csr"), 0o644)
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", garbage, "--out", filepath.Join(dir, "g.crt")); r.code == 0 || !strings.Contains(r.stderr, "not a PKCS#10") {
		t.Errorf("garbage CSR: %+v", r)
	}

	// list, show, revoke.
	r = run(t, "certs", "list", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, serials["ec"]) || !strings.Contains(r.stdout, serials["rsa"]) {
		t.Fatalf("list: %+v", r)
	}
	r = run(t, "certs", "show", "--config", cfg, serials["rsa"])
	if r.code != 0 || !strings.Contains(r.stdout, "SERIALNUMBER=SN-rsa") || !strings.Contains(r.stdout, "BEGIN CERTIFICATE") {
		t.Fatalf("show: %+v", r)
	}
	if r := run(t, "certs", "revoke", "--config", cfg, "--reason", "nonsense", serials["ec"]); r.code != 2 || !strings.Contains(r.stderr, "keyCompromise") {
		t.Fatalf("revoke with a bad reason: %+v", r)
	}
	if r := run(t, "certs", "revoke", "--config", cfg, "--reason", "keyCompromise", serials["ec"]); r.code != 0 || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revoke: %+v", r)
	}
	if r := run(t, "certs", "revoke", "--config", cfg, serials["ec"]); r.code == 0 || !strings.Contains(r.stderr, "already revoked") {
		t.Fatalf("revoke twice: %+v", r)
	}
	if r := run(t, "certs", "show", "--config", cfg, serials["ec"]); !strings.Contains(r.stdout, "keyCompromise") {
		t.Fatalf("show revoked: %+v", r)
	}
	if r := run(t, "certs", "list", "--config", cfg, "--revoked"); strings.Contains(r.stdout, serials["rsa"]) || !strings.Contains(r.stdout, serials["ec"]) {
		t.Fatalf("list --revoked: %+v", r)
	}
	if r := run(t, "certs", "show", "--config", cfg, "zz"); r.code != 2 {
		t.Fatalf("show with a bad serial: %+v", r)
	}
	if r := run(t, "certs", "revoke", "--config", cfg, "abcdef"); r.code == 0 || !strings.Contains(r.stderr, "no certificate") {
		t.Fatalf("revoke unknown: %+v", r)
	}
}

func TestRequestsCommands(t *testing.T) {
	cfg, _ := initSite(t, "")
	a, closeStore := openAuthority(t, cfg)
	ctx := context.Background()
	now := time.Now()
	for _, id := range []string{"req-a", "req-b"} {
		h := sha256.Sum256([]byte(id))
		if err := a.Store().PutPending(ctx, &store.Pending{ID: id, Operation: "simpleenroll", CSR: []byte{1}, SPKIHash: h[:], Subject: "CN=" + id,
			SANs: []string{id + ".studio.example.test"}, Client: "no client certificate from 192.0.2.9", State: store.PendingWaiting,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	closeStore()
	r := run(t, "requests", "list", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "req-a") || !strings.Contains(r.stdout, "no client certificate") {
		t.Fatalf("list: %+v", r)
	}
	if r := run(t, "requests", "approve", "--config", cfg, "req-a"); r.code != 0 || !strings.Contains(r.stdout, "approved") {
		t.Fatalf("approve: %+v", r)
	}
	if r := run(t, "requests", "deny", "--config", cfg, "req-b"); r.code != 0 || !strings.Contains(r.stdout, "denied") {
		t.Fatalf("deny: %+v", r)
	}
	if r := run(t, "requests", "deny", "--config", cfg, "req-a"); r.code == 0 || !strings.Contains(r.stderr, "approved") {
		t.Fatalf("deny after approve: %+v", r)
	}
	if r := run(t, "requests", "approve", "--config", cfg, "nope"); r.code == 0 || !strings.Contains(r.stderr, "no request") {
		t.Fatalf("approve unknown: %+v", r)
	}
	if r := run(t, "requests", "list", "--config", cfg); strings.Contains(r.stdout, "req-a") {
		t.Fatalf("decided request still listed as waiting: %+v", r)
	}
	if r := run(t, "requests", "list", "--config", cfg, "--all"); !strings.Contains(r.stdout, "req-a") || !strings.Contains(r.stdout, "denied") {
		t.Fatalf("list --all: %+v", r)
	}

	// Bulk denials: by client address, by age, or both.
	a, closeStore = openAuthority(t, cfg)
	for i, tc := range []struct {
		remote string
		age    time.Duration
	}{{"192.0.2.66", time.Minute}, {"192.0.2.66", 48 * time.Hour}, {"192.0.2.7", 48 * time.Hour}, {"192.0.2.7", time.Minute}} {
		id := fmt.Sprintf("bulk%d", i)
		h := sha256.Sum256([]byte(id))
		if err := a.Store().PutPending(ctx, &store.Pending{ID: id, Operation: "simpleenroll", CSR: []byte{1}, SPKIHash: h[:], Subject: "CN=" + id,
			Client: "from " + tc.remote, Remote: tc.remote, State: store.PendingWaiting,
			CreatedAt: now.Add(-tc.age), ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	closeStore()
	if r := run(t, "requests", "deny", "--all-from", "not-an-ip", "--config", cfg); r.code != 2 {
		t.Fatalf("--all-from garbage: %+v", r)
	}
	if r := run(t, "requests", "deny", "--all-from", "192.0.2.66", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "denied 2 waiting requests") {
		t.Fatalf("--all-from: %+v", r)
	}
	if r := run(t, "requests", "deny", "--older-than", "1d", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "denied 1 waiting requests") {
		t.Fatalf("--older-than: %+v", r)
	}
	r = run(t, "requests", "list", "--config", cfg)
	if strings.Contains(r.stdout, "bulk0") || strings.Contains(r.stdout, "bulk1") || strings.Contains(r.stdout, "bulk2") || !strings.Contains(r.stdout, "bulk3") {
		t.Fatalf("after bulk denials: %+v", r)
	}
}

// TestOperatorCommandsAsDocumented: options after arguments work as the
// README writes them; an --out that exists is refused before anything is
// signed; reserved names need --allow-reserved; names are listed and
// released.
func TestOperatorCommandsAsDocumented(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := initSite(t, "ca:\n  reserved_names: [\"*.infra.studio.example.test\"]\n")
	count := func() int {
		r := run(t, "certs", "list", "--config", cfg, "--limit", "0")
		return strings.Count(r.stdout, "\n") - 1
	}
	csr := opensslCSR(t, dir, "node1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=node1.studio.example.test", "DNS:node1.studio.example.test")
	// An --out that exists: refused, and the key is not burnt.
	taken := filepath.Join(dir, "taken.crt")
	os.WriteFile(taken, []byte("keep me"), 0o644)
	if r := run(t, "certs", "issue", "--csr", csr, "--out", taken, "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "nothing was issued") {
		t.Fatalf("existing --out: %+v", r)
	}
	if b, _ := os.ReadFile(taken); string(b) != "keep me" || count() != 0 {
		t.Fatalf("existing --out: file %q, %d certificates", b, count())
	}
	if r := run(t, "certs", "issue", "--csr", csr, "--out", filepath.Join(dir, "no-such-dir", "x.crt"), "--config", cfg); r.code == 0 || count() != 0 {
		t.Fatalf("unwritable --out: %+v, %d certificates", r, count())
	}
	out := filepath.Join(dir, "node1.crt")
	r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", out)
	if r.code != 0 {
		t.Fatalf("issue: %+v", r)
	}
	serial := regexp.MustCompile(`issued ([0-9a-f]+) for`).FindStringSubmatch(r.stderr)[1]
	// A refused request leaves no empty file behind.
	refusedOut := filepath.Join(dir, "refused.crt")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", refusedOut); r.code == 0 {
		t.Fatalf("reused key issued: %+v", r)
	}
	if _, err := os.Stat(refusedOut); !os.IsNotExist(err) {
		t.Fatalf("refused issue left %s: %v", refusedOut, err)
	}

	// Options after the argument, as README and docs/operations.md write them.
	if r := run(t, "certs", "show", serial, "--pem", "--config", cfg); r.code != 0 || !strings.HasPrefix(r.stdout, "-----BEGIN CERTIFICATE") {
		t.Fatalf("show SERIAL --pem: %+v", r)
	}
	if r := run(t, "certs", "revoke", serial, "--reason", "keyCompromise", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "keyCompromise") {
		t.Fatalf("revoke SERIAL --reason: %+v", r)
	}
	if r := run(t, "certs", "show", serial, "--config="+cfg); r.code != 0 || !strings.Contains(r.stdout, "keyCompromise") {
		t.Fatalf("show after revoke: %+v", r)
	}

	// Reserved names: the hostname, the apex, a configured pattern, "_" labels.
	for _, tc := range []struct{ name, rule string }{
		{"est.studio.example.test", "hostname"},
		{"studio.example.test", "zone apex"},
		{"sw1.infra.studio.example.test", "ca.reserved_names[0]"},
		{"_x.studio.example.test", "DNS-SD"},
	} {
		csr := opensslCSR(t, dir, "res", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN="+tc.name, "")
		if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "res.crt")); r.code == 0 || !strings.Contains(r.stderr, "reserved") || !strings.Contains(r.stderr, tc.rule) {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
	csr = opensslCSR(t, dir, "sw1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=sw1.infra.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "sw1.crt"), "--allow-reserved"); r.code != 0 {
		t.Fatalf("--allow-reserved: %+v", r)
	}

	// Names: node1 is bound to the operator; another holder cannot have it.
	r = run(t, "names", "list", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "node1.studio.example.test") || !strings.Contains(r.stdout, "operator") {
		t.Fatalf("names list: %+v", r)
	}
	csr = opensslCSR(t, dir, "node1b", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=NODE1.Studio.Example.Test.", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "node1b.crt"), "--holder", "device X"); r.code == 0 || !strings.Contains(r.stderr, "names release node1.studio.example.test") {
		t.Fatalf("bound name to another holder: %+v", r)
	}
	if r := run(t, "names", "list", "--identity", "device X", "--config", cfg); strings.Contains(r.stdout, "node1") {
		t.Fatalf("names list --identity: %+v", r)
	}
	if r := run(t, "names", "release", "Node1.Studio.Example.Test.", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "released node1.studio.example.test from operator") {
		t.Fatalf("names release: %+v", r)
	}
	if r := run(t, "names", "release", "node1.studio.example.test", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "not bound") {
		t.Fatalf("release twice: %+v", r)
	}
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "node1b.crt"), "--holder", "device X"); r.code != 0 {
		t.Fatalf("after release: %+v", r)
	}
	r = run(t, "names", "list", "--name", "node1.studio.example.test", "--config", cfg)
	if !strings.Contains(r.stdout, "device X") {
		t.Fatalf("names list --name: %+v", r)
	}
	// The certificate carries the normalised name.
	v, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, "node1b.crt"), "-noout", "-subject", "-ext", "subjectAltName").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "CN = node1.studio.example.test") || !strings.Contains(string(v), "DNS:node1.studio.example.test") {
		t.Fatalf("normalised names: %v\n%s", err, v)
	}
	// The release is in the audit trail.
	a, closeStore := openAuthority(t, cfg)
	defer closeStore()
	audit, err := a.Store().Audit(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, r := range audit {
		actions[r.Action]++
		if !strings.HasPrefix(r.Actor, "operator ") {
			t.Errorf("audit actor %q", r.Actor)
		}
	}
	if actions["name_released"] != 1 || actions["certificate_issued"] != 3 || actions["certificate_revoked"] != 1 {
		t.Fatalf("audit trail %v", actions)
	}
}

func TestFlagsFirst(t *testing.T) {
	a := New(nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"x certs revoke ab --reason keyCompromise", "x certs revoke --reason keyCompromise ab"},
		{"x certs show ab --pem --config c.yaml", "x certs show --pem --config c.yaml ab"},
		{"x certs show --config=c.yaml ab", "x certs show --config=c.yaml ab"},
		{"x requests deny -- -ab", "x requests deny -- -ab"},
		{"x certs issue --out - --csr f", "x certs issue --out - --csr f"},
		{"x certs", "x certs"},
		{"x", "x"},
	} {
		if got := strings.Join(flagsFirst(a, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestConfigCheckRunsServeChecks: what serve would refuse, config check
// refuses first, naming the file; serve refuses it before it creates a
// CA; a command that finds no CA says where it looked and creates
// nothing there.
func TestConfigCheckRunsServeChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "a device"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
	}, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "a device"}}, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	garbage := write("garbage.pem", "garbage\n", 0o644)
	withKey := write("with-key.pem", string(pemCert(leafDER))+string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), 0o644)
	leaf := write("leaf.pem", string(pemCert(leafDER)), 0o644)
	for _, tc := range []struct{ name, yaml, want string }{
		{"garbage root", "est:\n  trusted_client_roots: [" + garbage + "]\n", "no PEM certificate"},
		{"key in roots", "est:\n  trusted_client_roots: [" + withKey + "]\n", "holds a private key"},
		{"leaf as root", "est:\n  trusted_client_roots: [" + leaf + "]\n", "not a CA certificate"},
		{"garbage CRL", "est:\n  client_crls: [" + garbage + "]\n", "garbage.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, cdir := siteConfig(t, tc.yaml)
			if r := run(t, "config", "check", cfg); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("config check: %+v", r)
			}
			if r := run(t, "serve", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("serve: %+v", r)
			}
			if _, err := os.Stat(filepath.Join(cdir, "data")); !os.IsNotExist(err) {
				t.Fatalf("serve touched the data directory for a configuration config check refuses: %v", err)
			}
		})
	}
	t.Run("too open", func(t *testing.T) {
		cfg, cdir := initSite(t, "")
		data := filepath.Join(cdir, "data")
		for _, tc := range []struct{ path, fix string }{
			{data, "chmod 700"},
			{filepath.Join(data, "nmos-certs.db"), "chmod 600"},
			{filepath.Join(data, "ca", "ecdsa-int-1.key"), "chmod 600"},
		} {
			fi, _ := os.Stat(tc.path)
			os.Chmod(tc.path, fi.Mode().Perm()|0o044)
			if r := run(t, "config", "check", cfg); r.code == 0 || !strings.Contains(r.stderr, tc.fix+" "+tc.path) {
				t.Errorf("config check with %s open: %+v", tc.path, r)
			}
			if r := run(t, "serve", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, tc.path) {
				t.Errorf("serve with %s open: %+v", tc.path, r)
			}
			os.Chmod(tc.path, fi.Mode().Perm())
		}
		if r := run(t, "config", "check", cfg); r.code != 0 {
			t.Fatalf("config check once private again: %+v", r)
		}
	})
	t.Run("no CA", func(t *testing.T) {
		cfg, cdir := siteConfig(t, "")
		r := run(t, "certs", "list", "--config", cfg)
		if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(cdir, "data", "nmos-certs.db")) || !strings.Contains(r.stderr, "ca init") {
			t.Fatalf("certs list without a CA: %+v", r)
		}
		if _, err := os.Stat(filepath.Join(cdir, "data")); !os.IsNotExist(err) {
			t.Fatalf("a command without a CA created %s", filepath.Join(cdir, "data"))
		}
	})
	t.Run("relative paths", func(t *testing.T) {
		// data_dir and the files a configuration names are found
		// relative to the file, whatever the working directory.
		cdir := t.TempDir()
		cfg := filepath.Join(cdir, "site.yaml")
		os.WriteFile(cfg, []byte("data_dir: ./state\nlisten:\n  est: 127.0.0.1:0\n  http: 127.0.0.1:0\n  dns: 127.0.0.1:0\n  metrics: 127.0.0.1:0\n  web: \"off\"\ndns:\n  advertise:\n    - port: 8443\n"), 0o644)
		if r := run(t, "ca", "init", "--config", cfg); r.code != 0 {
			t.Fatal(r)
		}
		if _, err := os.Stat(filepath.Join(cdir, "state", "nmos-certs.db")); err != nil {
			t.Fatalf("data_dir not relative to the configuration file: %v", err)
		}
		if r := run(t, "ca", "status", "--config", cfg); r.code != 0 {
			t.Fatal(r)
		}
	})
}

// TestBackupRestore: a backup made while the appliance could be running
// restores into a fresh directory that serves the same CA, certificates
// and CRL numbers; restore refuses to replace a CA unless --force, which
// moves the old one aside; a file that is not a backup changes nothing.
func TestBackupRestore(t *testing.T) {
	needOpenSSL(t)
	cfg, dir := initSite(t, "")
	csr := opensslCSR(t, dir, "b1", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", "/CN=b1.studio.example.test", "")
	if r := run(t, "certs", "issue", "--config", cfg, "--csr", csr, "--out", filepath.Join(dir, "b1.crt")); r.code != 0 {
		t.Fatal(r)
	}
	a, closeStore := openAuthority(t, cfg)
	ctx := context.Background()
	var crlNumber int64
	for range 3 {
		crlNumber, _ = a.Store().NextCRLNumber(ctx, "ecdsa-int-1")
	}
	closeStore()
	status := run(t, "ca", "status", "--config", cfg).stdout
	list := run(t, "certs", "list", "--config", cfg).stdout

	// A key waiting for an offline root's signature is in the backup too.
	os.MkdirAll(filepath.Join(dir, "data", "ca", "pending"), 0o700)
	pendingKey, _ := os.ReadFile(filepath.Join(dir, "data", "ca", "ecdsa-int-1.key"))
	os.WriteFile(filepath.Join(dir, "data", "ca", "pending", "ecdsa-int-2.key"), pendingKey, 0o600)
	out := filepath.Join(dir, "site.backup")
	r := run(t, "backup", "--config", cfg, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "4 CA generations, 1 certificates") {
		t.Fatalf("backup: %+v", r)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	if r := run(t, "backup", "--config", cfg, "--out", out); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("backup over an existing file: %+v", r)
	}

	// A fresh directory.
	cfg2, dir2 := siteConfig(t, "")
	if r := run(t, "restore", "--config", cfg2, "--in", filepath.Join(dir, "b1.crt")); r.code == 0 || !strings.Contains(r.stderr, "not an nmos-certs backup") {
		t.Fatalf("restore of a certificate: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir2, "data")); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s: %v", filepath.Join(dir2, "data"), err)
	}
	if r := run(t, "restore", "--config", cfg2, "--in", out); r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	if got := run(t, "ca", "status", "--config", cfg2).stdout; got != status {
		t.Fatalf("restored CA differs:\n%s\nwant\n%s", got, status)
	}
	if got := run(t, "certs", "list", "--config", cfg2).stdout; got != list {
		t.Fatalf("restored certificates differ:\n%s\nwant\n%s", got, list)
	}
	for _, f := range []string{"ca/ecdsa-int-1.key", "nmos-certs.db", "ca/pending/ecdsa-int-2.key"} {
		if fi, err := os.Stat(filepath.Join(dir2, "data", f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s restored with %v %v", f, fi, err)
		}
	}
	a2, closeStore2 := openAuthority(t, cfg2)
	if n, _ := a2.Store().NextCRLNumber(ctx, "ecdsa-int-1"); n != crlNumber+1+app.CRLNumberJump {
		t.Errorf("CRL number after restore %d, want %d (ahead of any published since the backup)", n, crlNumber+1+app.CRLNumberJump)
	}
	closeStore2()
	// It serves: the appliance starts on the restored directory.
	srv, stop := startAppStoppable(t, cfg2)
	httpGet := func(url string) []byte {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
		}
		return b
	}
	httpGet("http://" + srv.Addr("metrics").String() + "/readyz")
	root := httpGet("http://" + srv.Addr("http").String() + "/ca/ecdsa-root-1.pem")
	if !strings.Contains(status, "ecdsa-root-1") || !bytes.Contains(root, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("restored appliance serves no root: %s", root)
	}
	crl, err := x509.ParseRevocationList(httpGet("http://" + srv.Addr("http").String() + "/crl/ecdsa-int-1.crl"))
	if err != nil || crl.Number.Int64() <= crlNumber {
		t.Fatalf("restored appliance's CRL number %v (%v), want above %d", crl.Number, err, crlNumber)
	}
	stop()

	// Over a CA: refused, then with --force the old one is kept aside.
	if r := run(t, "restore", "--config", cfg2, "--in", out); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("restore over a CA: %+v", r)
	}
	r = run(t, "restore", "--config", cfg2, "--in", out, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "moved to "+filepath.Join(dir2, "data.replaced-")) {
		t.Fatalf("restore --force: %+v", r)
	}
	aside, _ := filepath.Glob(filepath.Join(dir2, "data.replaced-*", "nmos-certs.db"))
	if len(aside) != 1 {
		t.Fatalf("the replaced data directory is not kept: %v", aside)
	}
}
