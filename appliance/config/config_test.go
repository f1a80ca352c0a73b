package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// keyPaths lists every configuration key as a dotted path, with lists
// written as key[].
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPaths(ft, path)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPaths(ft.Elem(), path+"[]")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

func TestEmbeddedDefault(t *testing.T) {
	c, err := Load(nil, "embedded default")
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != DefaultDomain || c.Hostname != DefaultHostname || c.DataDir != DefaultDataDir {
		t.Errorf("defaults: %q %q %q", c.Domain, c.Hostname, c.DataDir)
	}
	for _, l := range []string{c.Listen.EST, c.Listen.HTTP, c.Listen.DNS, c.Listen.Metrics, c.Listen.Web} {
		if !strings.HasPrefix(l, "127.0.0.1:") || Port(l) < 1024 {
			t.Errorf("default listener %s is not loopback on a high port", l)
		}
	}
	if c.CA.LeafLifetime.D() != 2160*time.Hour {
		t.Errorf("leaf_lifetime default %s", c.CA.LeafLifetime)
	}
	if c.CA.BaseURL != "http://est.studio.example.test:8080" {
		t.Errorf("base_url default %s", c.CA.BaseURL)
	}
	if len(c.DNS.Advertise) != 1 || c.DNS.Advertise[0].Port != 8443 {
		t.Errorf("advertise default %+v", c.DNS.Advertise)
	}
}

func TestExampleLoadsAndDocumentsEveryKey(t *testing.T) {
	c, err := Load(Example, "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DNS.Advertise) != 2 || c.DNS.Advertise[1].APISelector != "lab" || c.DNS.Advertise[1].Port != 8443 {
		t.Errorf("example advertise %+v", c.DNS.Advertise)
	}
	// The example differs from the embedded default only where it
	// illustrates (the advertisements).
	def, _ := Load(nil, "")
	c.DNS.Advertise, def.DNS.Advertise = nil, nil
	c.lines, def.lines = nil, nil
	c.Source, def.Source = "", ""
	c.EST.TrustedClientRoots, c.EST.ClientCRLs, c.DNS.Forward, c.DNS.Services = nil, nil, nil, nil
	c.EST.ServerKeyGenKEKFiles, c.CA.ReservedNames, c.DNS.Transfer.To, c.DNS.Peers = nil, nil, nil, nil
	if !reflect.DeepEqual(c, def) {
		t.Errorf("example values differ from the defaults:\nexample %+v\ndefault %+v", c, def)
	}
	text := string(Example)
	for _, p := range keyPaths(reflect.TypeOf(Config{}), "") {
		leaf := p[strings.LastIndex(p, ".")+1:]
		leaf = strings.TrimSuffix(leaf, "[]")
		if !strings.Contains(text, leaf+":") {
			t.Errorf("example does not show key %s", p)
		}
	}
}

func TestConfigReferenceDocumentsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range keyPaths(reflect.TypeOf(Config{}), "") {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/config.md does not document `%s`", p)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // substrings of the error, each must appear
	}{
		{"unknown key", "domain: a.test\nlisten:\n  htp: 1\n", []string{"x.yaml:3:", "listen.htp: unknown key", `did you mean "http"`}},
		{"wrong type", "ca:\n  leaf_lifetime: [1]\n", []string{"x.yaml:2:", "ca.leaf_lifetime: want a duration"}},
		{"bad duration", "est:\n  retry_after: soon\n", []string{"x.yaml:2:", "est.retry_after", `"soon"`}},
		{"bool", "est:\n  manual_approval: maybe\n", []string{"x.yaml:2:", "est.manual_approval: want true or false"}},
		{"int", "dns:\n  advertise:\n    - pri: high\n", []string{"x.yaml:3:", "dns.advertise[0].pri: want a whole number"}},
		{"list", "addresses: 127.0.0.1\n", []string{"x.yaml:1:", "addresses: want a list"}},
		{"duplicate key", "domain: a.test\ndomain: b.test\n", []string{"x.yaml:2:", "domain: key set twice"}},
		{"two documents", "domain: a.test\n---\ndomain: b.test\n", []string{"only one YAML document"}},
		{"bad yaml", "domain: [\n", []string{"invalid YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping"}},
		{"hostname outside", "domain: studio.example.test\nhostname: est.other.test\naddresses: [127.0.0.1]\n", []string{"x.yaml:2:", "hostname", "not inside domain"}},
		{"no address", "hostname: est.studio.example.test\n", []string{"addresses: at least one address"}},
		{"bad address", "addresses: [300.1.1.1]\n", []string{"x.yaml:1:", "addresses[0]", "not an IP address"}},
		{"push without key", "dns:\n  push:\n    server: 192.0.2.53:53\n", []string{"dns.push.tsig.name", "dns.push.tsig.secret_file"}},
		{"push outside zone", "dns:\n  push:\n    server: 192.0.2.53:53\n    zone: other.test\n    tsig: {name: k, secret_file: /k}\n", []string{"x.yaml:4:", "dns.push.zone", "not inside zone"}},
		{"push md5", "dns:\n  push:\n    server: 192.0.2.53:53\n    tsig: {name: k, algorithm: hmac-md5, secret_file: /k}\n", []string{"dns.push.tsig.algorithm", "hmac-md5"}},
		{"push no server", "dns:\n  push:\n    remove_on_stop: true\n", []string{"dns.push.server", "without a server"}},
		{"push port 0", "dns:\n  push:\n    server: 192.0.2.53:0\n    tsig: {name: k, secret_file: /k}\n", []string{"dns.push.server", "port"}},
		{"transfer bad to", "dns:\n  transfer:\n    to: [ns1.example.test]\n    tsig: {name: k, secret_file: /k}\n", []string{"x.yaml:3:", "dns.transfer.to[0]", "IP address"}},
		{"transfer no key", "dns:\n  transfer:\n    to: [192.0.2.54]\n", []string{"dns.transfer.tsig.name", "dns.transfer.tsig.secret_file"}},
		{"peer without addresses", "dns:\n  peers:\n    - hostname: est-b.studio.example.test\n      pri: 20\n", []string{"dns.peers[0].addresses", "A record"}},
		{"peer is me", "dns:\n  peers:\n    - hostname: est.studio.example.test\n      addresses: [192.0.2.11]\n", []string{"x.yaml:3:", "dns.peers[0].hostname", "own hostname"}},
		{"peer same instance", "dns:\n  advertise:\n    - pri: 10\n  peers:\n    - hostname: est.other.test\n      pri: 10\n      instance: est pri 10\n", []string{"dns.peers[0].instance"}},
		{"transfer key alone", "dns:\n  transfer:\n    tsig: {name: k, secret_file: /k}\n", []string{"dns.transfer.to", "no secondary"}},
		{"ip domain", "domain: 10.0.0.1\n", []string{"domain", "IP address"}},
		{"bad port", "listen:\n  est: 127.0.0.1:99999\n", []string{"x.yaml:2:", "listen.est", "bad port"}},
		{"same listener", "listen:\n  est: 127.0.0.1:9000\n  web: 127.0.0.1:9000\n", []string{"x.yaml:3:", "listen.web", "also used by listen.est"}},
		{"leaf longer than intermediate", "ca:\n  leaf_lifetime: 3650d\n", []string{"x.yaml:2:", "ca.leaf_lifetime", "shorter than ca.intermediate_lifetime"}},
		{"small rsa", "ca:\n  rsa_root_bits: 2048\n", []string{"x.yaml:2:", "ca.rsa_root_bits"}},
		{"bad base url", "ca:\n  base_url: ftp://x\n", []string{"ca.base_url"}},
		{"partial import", "ca:\n  ecdsa:\n    import:\n      root_cert: r.pem\n", []string{"ca.ecdsa.import.intermediate_cert: is required", "ca.ecdsa.import.intermediate_key: is required"}},
		{"bad crl url", "est:\n  client_crls: [\"ftp://x/y\"]\n", []string{"est.client_crls[0]"}},
		{"retry after", "est:\n  retry_after: 0s\n", []string{"est.retry_after"}},
		{"body size", "est:\n  max_body_bytes: 10\n", []string{"est.max_body_bytes"}},
		{"kek path", "est:\n  serverkeygen_kek_files: [\"\"]\n", []string{"x.yaml:2:", "est.serverkeygen_kek_files[0]: empty path"}},
		{"kek list", "est:\n  serverkeygen_kek_files: kek.yaml\n", []string{"x.yaml:2:", "est.serverkeygen_kek_files: want a list"}},
		{"selector is an op", "dns:\n  advertise:\n    - api_selector: cacerts\n", []string{"x.yaml:3:", "dns.advertise[0].api_selector"}},
		{"selector chars", "dns:\n  advertise:\n    - api_selector: \"a/b\"\n", []string{"dns.advertise[0].api_selector"}},
		{"pri range", "dns:\n  advertise:\n    - pri: -1\n", []string{"dns.advertise[0].pri"}},
		{"duplicate instance", "dns:\n  advertise:\n    - pri: 1\n    - pri: 1\n", []string{"dns.advertise[1].instance", "also defined by dns.advertise[0]"}},
		{"service type", "dns:\n  services:\n    - type: nmos-register\n      instance: r\n      target: r.studio.example.test\n      port: 80\n", []string{"dns.services[0].type"}},
		{"service no instance", "dns:\n  services:\n    - type: _nmos-register._tcp\n      target: r.studio.example.test\n      port: 80\n", []string{"dns.services[0].instance: is required"}},
		{"forward name", "dns:\n  forward: [\"resolver.example:53\"]\n", []string{"dns.forward[0]", "IP address"}},
		{"ocsp signer", "ocsp:\n  signer: me\n", []string{"ocsp.signer"}},
		{"store", "store:\n  driver: mysql\n", []string{"store.driver", "sqlite or postgres"}},
		{"postgres without a DSN", "store:\n  driver: postgres\n", []string{"store.dsn", "dsn_file"}},
		{"postgres with both", "store:\n  driver: postgres\n  dsn: postgres://db/x\n  dsn_file: /f\n", []string{"x.yaml:3:", "store.dsn", "one of them"}},
		{"sqlite with a DSN", "store:\n  dsn: postgres://db/x\n", []string{"x.yaml:2:", "store.dsn", "postgres"}},
		{"log level", "log:\n  level: loud\n", []string{"log.level"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.yaml), "x.yaml")
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "30s": 30 * time.Second, "1h30m": 90 * time.Minute, "0d": 0} {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-d", "1.5d", "x"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	if s := Duration(48 * time.Hour).String(); s != "2d" {
		t.Errorf("String() = %s", s)
	}
}

func TestCheckFiles(t *testing.T) {
	c, err := Load([]byte("est:\n  trusted_client_roots: [/nonexistent/acme.pem]\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckFiles()
	if err == nil || !strings.Contains(err.Error(), "x.yaml:2: est.trusted_client_roots[0]: /nonexistent/acme.pem does not exist") {
		t.Fatalf("CheckFiles: %v", err)
	}
}

// TestCheckFilesKEK: key-encryption key files are checked as the server
// reads them, and a bad one is reported with its key and line.
func TestCheckFilesKEK(t *testing.T) {
	dir := t.TempDir()
	const key = "key: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
	file := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good.yaml", "id: studio-kek-1\n"+key, 0o600)
	other := file("other.yaml", "id: studio-kek-2\n"+key, 0o400)
	open := file("open.yaml", "id: studio-kek-3\n"+key, 0o644)
	broken := file("broken.yaml", "id: studio-kek-4\nkey: 0011\n", 0o600)
	dup := file("dup.yaml", "id_hex: 73747564696f2d6b656b2d31\n"+key, 0o600)
	load := func(paths ...string) *Config {
		t.Helper()
		y := "est:\n  serverkeygen_kek_files:\n"
		for _, p := range paths {
			y += "    - " + p + "\n"
		}
		c, err := Load([]byte(y), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := load(good, other).CheckFiles(); err != nil {
		t.Fatalf("good files: %v", err)
	}
	err := load(good, open, broken, filepath.Join(dir, "missing.yaml"), dup).CheckFiles()
	if err == nil {
		t.Fatal("bad files passed")
	}
	for _, want := range []string{
		"x.yaml:4: est.serverkeygen_kek_files[1]: key file " + open + ": mode 0644 is too open",
		"x.yaml:5: est.serverkeygen_kek_files[2]: key file " + broken + ":2: the key must be 16, 24 or 32 bytes",
		"x.yaml:6: est.serverkeygen_kek_files[3]: key file " + filepath.Join(dir, "missing.yaml") + ": missing",
		"x.yaml:7: est.serverkeygen_kek_files[4]: " + dup + " has the same identifier as " + good + " (est.serverkeygen_kek_files[0])",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles error\n%s\ndoes not contain\n%s", err, want)
		}
	}
	if strings.Contains(err.Error(), "0102030405") {
		t.Errorf("CheckFiles shows key material: %s", err)
	}
}

// TestRedacted: the running configuration as YAML reads back as the same
// configuration, with the values of secret-looking keys hidden.
func TestRedacted(t *testing.T) {
	cfg, err := Load([]byte("domain: facility.example\nhostname: est.facility.example\naddresses: [192.0.2.1]\nca:\n  leaf_lifetime: 60d\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y, "leaf_lifetime: 60d") || !strings.Contains(y, "domain: facility.example") {
		t.Fatalf("redacted:\n%s", y)
	}
	back, err := Load([]byte(y), "redacted.yaml")
	if err != nil {
		t.Fatalf("the redacted YAML does not load: %v\n%s", err, y)
	}
	if back.CA.LeafLifetime != cfg.CA.LeafLifetime || back.Domain != cfg.Domain || back.Listen != cfg.Listen {
		t.Fatalf("read back %+v", back)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("store:\n  dsn: postgres://u:hunter2@db/x\n  password_file: /etc/pw\nlog:\n  level: info\n"), &n); err != nil {
		t.Fatal(err)
	}
	redact(&n)
	out, _ := yaml.Marshal(&n)
	if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), "/etc/pw") || !strings.Contains(string(out), "level: info") {
		t.Fatalf("redact:\n%s", out)
	}
}
