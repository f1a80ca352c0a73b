package app

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nmos-certs/nmos-certs/appliance/dns/bindtest"
)

// TestPushToFacilityDNS: with dns.push, the appliance puts its DNS-SD
// records into a BIND primary at start, again after a reload that
// changes them, and takes them back when it stops; the key comes from a
// file as tsig-keygen writes it.
func TestPushToFacilityDNS(t *testing.T) {
	// The key as the operator makes it for BIND, included by BIND and
	// read by the appliance from the same file.
	dir := t.TempDir()
	keygen := filepath.Join(filepath.Dir(bindtest.Named(t)), "tsig-keygen")
	keyText, err := exec.Command(keygen, "-a", "hmac-sha256", "nmos-certs-update").Output()
	if err != nil {
		t.Fatalf("tsig-keygen: %v", err)
	}
	keyFile := filepath.Join(dir, "nmos-certs-update.key")
	if err := os.WriteFile(keyFile, keyText, 0o600); err != nil {
		t.Fatal(err)
	}
	b := bindtest.Start(t, fmt.Sprintf(`include "%s";
zone "studio.example.test" { type primary; file "studio.zone"; allow-update { key "nmos-certs-update"; }; };
`, keyFile), map[string]string{"studio.zone": "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 192.0.2.53\n"})
	push := fmt.Sprintf("  push:\n    server: %s\n    tsig:\n      name: nmos-certs-update\n      secret_file: %s\n    remove_on_stop: true\n", b.Addr(), keyFile)
	cfg := testConfig(t, dir, push)
	if err := CheckConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *App, 1)
	a, err := New(ctx, cfg, Options{EventPoll: 50 * time.Millisecond, Ready: func(a *App) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ready
	waitFor := func(what, name, qtype string, want ...string) {
		t.Helper()
		slices.Sort(want)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := bindtest.DigShort(t, b.Addr(), name, qtype)
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q, want %q\n%s", what, got, want, b.Log())
			}
		}
	}
	waitFor("the EST instance at start", "_nmos-certs._tcp.studio.example.test", "PTR", `est\032pri\0320._nmos-certs._tcp.studio.example.test.`)
	waitFor("the address", "est.studio.example.test", "A", "127.0.0.1")
	if n := testutil.ToFloat64(a.pushMet.total.WithLabelValues("ok")); n < 1 {
		t.Errorf("pushes counted: %v", n)
	}

	// A reload that adds a registry pushes it at once.
	next := testConfig(t, dir, push+"  services:\n    - type: _nmos-register._tcp\n      instance: registry-a\n      target: reg.studio.example.test\n      addresses: [192.0.2.20]\n      port: 443\n")
	if err := a.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	waitFor("the registry after a reload", "_nmos-register._tcp.studio.example.test", "PTR", "registry-a._nmos-register._tcp.studio.example.test.")
	waitFor("its address", "reg.studio.example.test", "A", "192.0.2.20")

	// Stopping takes the records back.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor("the EST instance after the stop", "_nmos-certs._tcp.studio.example.test", "PTR")
	waitFor("the registry after the stop", "_nmos-register._tcp.studio.example.test", "PTR")
	waitFor("the facility's own records stay", "ns.studio.example.test", "A", "192.0.2.53")
}

// TestTSIGKeyFiles: config check reads the key file: it must be private,
// hold the key named in the configuration, and a secret.
func TestTSIGKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := base64.StdEncoding.EncodeToString(bindtest.Secret(t))
	for _, c := range []struct {
		name, file string
		want       string // "" for no error
	}{
		{"key clause", write("a.key", "key \"xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \""+secret+"\";\n};\n", 0o600), ""},
		{"bare secret", write("b.key", secret+"\n", 0o600), ""},
		{"readable by others", write("c.key", secret, 0o644), "open to group or others"},
		{"another key", write("d.key", "key \"other\" {\n\tsecret \""+secret+"\";\n};\n", 0o600), `holds key "other"`},
		{"commented", write("g.key", "# made by tsig-keygen\nkey \"xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \""+secret+"\";\n};\n", 0o600), ""},
		{"another algorithm", write("h.key", "key \"xfr\" {\n\talgorithm hmac-sha512;\n\tsecret \""+secret+"\";\n};\n", 0o600), "algorithm hmac-sha512"},
		{"two keys", write("i.key", "key \"xfr\" {\n\tsecret \""+secret+"\";\n};\nkey \"xfr2\" {\n\tsecret \""+secret+"\";\n};\n", 0o600), "holds 2 keys"},
		{"slashes in the secret", write("j.key", "key \"xfr\" {\n\tsecret \"ab//"+secret[4:]+"\";\n};\n", 0o600), ""},
		{"not base64", write("e.key", "hunter2!\n", 0o600), "base64"},
		{"short", write("f.key", base64.StdEncoding.EncodeToString([]byte("short")), 0o600), "at least 16"},
		{"missing", filepath.Join(dir, "none.key"), "no such file"},
	} {
		cfg := testConfig(t, dir, "  transfer:\n    to: [192.0.2.54]\n    tsig:\n      name: xfr\n      secret_file: "+c.file+"\n")
		err := CheckConfig(context.Background(), cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "dns.transfer.tsig")):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
