package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
)

// runWithInput is run with stdin.
func runWithInput(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := New(&out, &errb)
	a.Reader = strings.NewReader(stdin)
	code := 0
	if err := a.RunContext(context.Background(), flagsFirst(a, append([]string{"nmos-certs"}, args...))); err != nil {
		errb.WriteString(err.Error())
		code = 1
	}
	return result{code, out.String(), errb.String()}
}

// TestSetupInteractive: the console questions write a configuration that
// config check accepts; a wrong answer is shown with its reason and asked
// again; input that ends early writes nothing.
func TestSetupInteractive(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "acme.pem")
	mkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mtmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme Devices Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	mder, err := x509.CreateCertificate(rand.Reader, mtmpl, mtmpl, mkey.Public(), mkey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(root, pemCert(mder), 0o644)
	out := filepath.Join(dir, "etc", "nmos-certs.yaml")
	data := filepath.Join(dir, "data")

	// Ends after two answers: nothing is written.
	r := runWithInput(t, "facility.example\n\n", "setup", "--out", out, "--data-dir", data)
	if r.code == 0 || !strings.Contains(r.stderr, "nothing was written") {
		t.Fatalf("input ended early: %+v", r)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a configuration was written: %v", err)
	}

	answers := strings.Join([]string{
		"Facility.Example.", // domain, normalised by config check's rules
		"",                  // hostname: est.<domain>
		"10.1.2.3, not-an-address",
		root,
		"y",
		// The address is refused: everything is asked again, with the
		// answers as defaults.
		"facility.example",
		"ca.facility.example",
		"10.1.2.3, 2001:db8::3",
		"",
		"n",
		"y", // write it
	}, "\n") + "\n"
	r = runWithInput(t, answers, "setup", "--out", out, "--data-dir", data)
	if r.code != 0 {
		t.Fatalf("setup: %+v", r)
	}
	if !strings.Contains(r.stdout, `"not-an-address" is not an IP address`) || !strings.Contains(r.stdout, "Please answer again") {
		t.Fatalf("the wrong address was not explained:\n%s", r.stdout)
	}
	cfg, err := config.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "facility.example" || cfg.Hostname != "ca.facility.example" || strings.Join(cfg.Addresses, ",") != "10.1.2.3,2001:db8::3" ||
		len(cfg.EST.TrustedClientRoots) != 1 || cfg.EST.TrustedClientRoots[0] != root || cfg.EST.ManualApproval || cfg.DataDir != data {
		t.Fatalf("written: %+v", cfg)
	}
	if cfg.Listen.EST != ":443" || cfg.Listen.DNS != ":53" || cfg.Listen.HTTP != ":80" || cfg.Listen.Web != ":8444" {
		t.Fatalf("listeners: %+v", cfg.Listen)
	}
	if r := run(t, "config", "check", out); r.code != 0 {
		t.Fatalf("config check: %+v", r)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// An existing file is kept without --force.
	r = runWithInput(t, answers, "setup", "--out", out, "--data-dir", data)
	if r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("second setup: %+v", r)
	}
	// A manufacturer root that is not a CA certificate is refused.
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate\n"), 0o644)
	r = runWithInput(t, "facility.example\n\n10.1.2.3\n"+bad+"\ny\n", "setup", "--out", filepath.Join(dir, "other.yaml"), "--data-dir", data)
	if r.code == 0 || !strings.Contains(r.stdout, "bad.pem") {
		t.Fatalf("a bad root: %+v", r)
	}
}

// TestSetupYes: with --yes the options are the answers; a missing one is
// a config error naming the key.
func TestSetupYes(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "nmos-certs.yaml")
	r := run(t, "setup", "--yes", "--out", out, "--domain", "studio.example.net", "--address", "192.0.2.10", "--data-dir", filepath.Join(dir, "data"))
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	cfg, err := config.LoadFile(out)
	if err != nil || cfg.Hostname != "est.studio.example.net" || !cfg.EST.ManualApproval {
		t.Fatalf("%v %+v", err, cfg)
	}
	r = run(t, "setup", "--yes", "--out", filepath.Join(dir, "x.yaml"), "--domain", "studio.example.net", "--hostname", "est.elsewhere.example", "--address", "192.0.2.10")
	if r.code == 0 || !strings.Contains(r.stderr, "hostname") {
		t.Fatalf("a hostname outside the domain: %+v", r)
	}
}

// TestBanner: the console banner names the URLs and the fingerprints
// that ca status shows.
func TestBanner(t *testing.T) {
	cfg, _ := initSite(t, "")
	r := run(t, "banner", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	status := run(t, "ca", "status", "--config", cfg).stdout
	for _, id := range []string{"ecdsa-root-1", "rsa-root-1"} {
		fp := regexp.MustCompile(id + `\s.*?([0-9A-F]{2}(?::[0-9A-F]{2}){31})`).FindStringSubmatch(status)
		if fp == nil || !strings.Contains(r.stdout, fp[1]) {
			t.Errorf("banner lacks %s's fingerprint:\n%s", id, r.stdout)
		}
	}
	for _, want := range []string{"https://127.0.0.1:0/.well-known/est/", "_nmos-certs._tcp.studio.example.test", "http://127.0.0.1:0/metrics", "web UI               (off)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("banner lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "int-1") {
		t.Errorf("banner shows intermediates:\n%s", r.stdout)
	}
}

// TestCompletionAndMan: bash completes the command tree through the real
// binary; the manual page is roff that names every command.
func TestCompletionAndMan(t *testing.T) {
	bash := needTool(t, "bash", "bash")
	dir := t.TempDir()
	bin := filepath.Join(dir, "nmos-certs")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script := filepath.Join(dir, "completion.bash")
	os.WriteFile(script, []byte(run(t, "completion", "bash").stdout), 0o644)
	complete := func(words ...string) string {
		t.Helper()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _nmos_certs; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", prog, "bash", script}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return string(out)
	}
	if got := complete("nmos-certs", "ce"); strings.TrimSpace(got) != "certs" {
		t.Errorf("nmos-certs ce<TAB>: %q", got)
	}
	if got := complete("nmos-certs", "ca", ""); !strings.Contains(got, "rollover\n") || !strings.Contains(got, "export-root-key\n") {
		t.Errorf("nmos-certs ca <TAB>: %q", got)
	}
	if got := complete("nmos-certs", "certs", "revoke", "--re"); strings.TrimSpace(got) != "--reason" {
		t.Errorf("nmos-certs certs revoke --re<TAB>: %q", got)
	}
	if r := run(t, "completion", "zsh"); r.code != 0 || !strings.HasPrefix(r.stdout, "#compdef nmos-certs") {
		t.Errorf("zsh: %+v", r)
	}
	if r := run(t, "completion", "fish"); r.code == 0 {
		t.Errorf("fish: %+v", r)
	}

	man := run(t, "man")
	if man.code != 0 || !strings.Contains(man.stdout, `.TH "NMOS-CERTS" "1"`) {
		t.Fatalf("man: %+v", man)
	}
	for _, c := range []string{"serve", "setup", "banner", "rollover", "requests"} {
		if !regexp.MustCompile(`(?m)^\.?(?:SH |SS )?` + c + `$|^` + c + `\b`).MatchString(man.stdout) {
			t.Errorf("the manual page lacks %s", c)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "-l", "-")
		cmd.Stdin = strings.NewReader(run(t, "man").stdout)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "NMOS-CERTS(1)") {
			t.Errorf("man -l: %v\n%s", err, out)
		}
	}
}
