package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globalsign/est"
	mdns "github.com/miekg/dns"
)

func txtOf(t *testing.T, addr, name string) string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeTXT)
	r, _, err := (&mdns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) == 0 {
		return ""
	}
	return strings.Join(r.Answer[0].(*mdns.TXT).Txt, " ")
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	a := start(t, cfg)
	ctx := context.Background()
	dnsAddr := a.Addr("dns").String()
	instance := "est\\ pri\\ 0._nmos-certs._tcp.studio.example.test."
	if got := txtOf(t, dnsAddr, instance); got != "pri=0" {
		t.Fatalf("TXT before reload: %q", got)
	}
	metric := func(name string) string {
		_, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics")
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		return ""
	}

	// A listener change needs a restart: refused, nothing changes.
	moved := testConfig(t, dir, "")
	moved.Listen.EST = "127.0.0.1:1"
	if err := a.Reload(ctx, moved); !errors.Is(err, ErrRestartNeeded) || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("reload with a listener change: %v", err)
	}
	if m := metric("nmos_certs_config_last_reload_successful"); m != "nmos_certs_config_last_reload_successful 0" {
		t.Errorf("after a failed reload: %q", m)
	}

	// A missing manufacturer root: refused, the old EST server keeps going.
	broken := testConfig(t, dir, "est:\n  trusted_client_roots: ["+filepath.Join(dir, "missing.pem")+"]\n")
	if err := a.Reload(ctx, broken); err == nil {
		t.Fatal("reload with a missing root file succeeded")
	}

	// DNS and manual approval change live.
	next := testConfig(t, dir, "est:\n  manual_approval: true\n  retry_after: 7s\n")
	next.DNS.Advertise[0].Pri = 42
	next.DNS.Advertise[0].Instance = "est pri 0"
	if err := a.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got := txtOf(t, dnsAddr, instance); got != "pri=42" {
		t.Fatalf("TXT after reload: %q", got)
	}
	if m := metric("nmos_certs_config_last_reload_successful"); m != "nmos_certs_config_last_reload_successful 1" {
		t.Errorf("after a good reload: %q", m)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true}
	_, err := c.Enroll(ctx, csrFor(t, key, "anon.studio.example.test"))
	var ee interface{ RetryAfter() int }
	if !errors.As(err, &ee) || ee.RetryAfter() != 7 {
		t.Fatalf("enrollment after enabling manual approval: %v", err)
	}
	waiting, _ := a.store.ListPending(ctx, "pending")
	if len(waiting) != 1 {
		t.Fatalf("%d waiting requests", len(waiting))
	}
}

// TestReloadFileFailures: a reload whose file cannot be parsed, names an
// unknown key or holds an invalid value fails like any other: the gauge
// drops to 0 and the running configuration stays; a good file sets it
// back to 1.
func TestReloadFileFailures(t *testing.T) {
	dir := t.TempDir()
	a := start(t, testConfig(t, dir, ""))
	ctx := context.Background()
	path := filepath.Join(dir, "nmos-certs.yaml")
	good := fmt.Sprintf("data_dir: %s\nlisten:\n  est: %s\n  http: %s\n  dns: %s\n  metrics: %s\n  web: \"off\"\ndns:\n  advertise:\n    - port: 8443\n",
		filepath.Join(dir, "data"), "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	gauge := func() string {
		_, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics")
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "nmos_certs_config_last_reload_successful ") {
				return strings.TrimPrefix(l, "nmos_certs_config_last_reload_successful ")
			}
		}
		return ""
	}
	for name, body := range map[string]string{
		"YAML error":    good + "dns: [\n",
		"unknown key":   good + "no_such_key: 1\n",
		"invalid value": strings.Replace(good, "- port: 8443", "- port: 70000", 1),
		"missing file":  "",
	} {
		p := path
		if body == "" {
			p = filepath.Join(dir, "missing.yaml")
		} else if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := a.ReloadFile(ctx, p); err == nil {
			t.Fatalf("%s: reload succeeded", name)
		}
		if g := gauge(); g != "0" {
			t.Errorf("%s: gauge %q, want 0", name, g)
		}
		if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := a.ReloadFile(ctx, path); err != nil {
			t.Fatalf("good file after %s: %v", name, err)
		}
		if g := gauge(); g != "1" {
			t.Errorf("after %s and a good file: gauge %q, want 1", name, g)
		}
	}
}

// TestReloadKEKFiles: the serverkeygen key files are read again on
// reload; one that is too open is refused with the key named and the
// running configuration kept.
func TestReloadKEKFiles(t *testing.T) {
	dir := t.TempDir()
	kekFile := filepath.Join(dir, "kek1.yaml")
	if err := os.WriteFile(kekFile, []byte("id: studio-kek-1\nkey: 000102030405060708090a0b0c0d0e0f\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, testConfig(t, dir, "est:\n  serverkeygen_kek_files: ["+kekFile+"]\n"))
	ctx := context.Background()
	srv := a.estHandler.p.Load()

	second := filepath.Join(dir, "kek2.yaml")
	if err := os.WriteFile(second, []byte("id: studio-kek-2\nkey: 101112131415161718191a1b1c1d1e1f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := testConfig(t, dir, "est:\n  serverkeygen_kek_files: ["+kekFile+", "+second+"]\n")
	err := a.Reload(ctx, open)
	if err == nil || !strings.Contains(err.Error(), "serverkeygen_kek_files") || !strings.Contains(err.Error(), "kek2.yaml") {
		t.Fatalf("reload with a 0644 key file: %v", err)
	}
	if a.estHandler.p.Load() != srv {
		t.Fatal("a refused reload replaced the EST server")
	}
	if strings.Contains(err.Error(), "1011121314") {
		t.Fatal("the error shows key material")
	}
	if err := os.Chmod(second, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(ctx, open); err != nil {
		t.Fatalf("reload with both files 0600: %v", err)
	}
	if a.estHandler.p.Load() == srv {
		t.Fatal("the reload kept the old EST server")
	}
}
