package dns

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func renderCases() map[string]Options {
	basic := testOptions()
	basic.Listen = "127.0.0.1:5353"

	forward := testOptions()
	forward.Listen = ":53"
	forward.TTL = 0
	forward.Forward = []string{"192.0.2.53", "[2001:db8::53]:5353"}

	quoting := testOptions()
	quoting.Listen = "[::1]:53"
	quoting.TTL = 2 * time.Minute
	quoting.Services = []Service{
		{Type: "_nmos-certs._tcp", Instance: "Studio A #1 {main}", Port: 443, Pri: 0, APISelector: "studio-a"},
		{Type: "_nmos-auth._tcp", Instance: "Ü-Gerät", Target: "auth.elsewhere.test", Port: 443, Pri: 100, TXT: []string{"api_proto=https", "note=two words", "flag"}},
	}
	return map[string]Options{"basic": basic, "forward": forward, "quoting": quoting}
}

func TestRenderGolden(t *testing.T) {
	for name, o := range renderCases() {
		t.Run(name, func(t *testing.T) {
			got, err := Render(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (run go test -update if the change is intended):\n%s", path, got)
			}
		})
	}
}

// TestRenderTokens checks that the Corefile lexer reads configured strings
// back unchanged, whatever quoting they needed.
func TestRenderTokens(t *testing.T) {
	o := renderCases()["quoting"]
	text, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := caddyfile.Parse("Corefile", strings.NewReader(text), directives)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 {
		t.Fatalf("%d server blocks", len(blocks))
	}
	var tokens []string
	for _, tok := range blocks[0].Tokens["nmoscerts"] {
		tokens = append(tokens, tok.Text)
	}
	for _, want := range []string{"Studio A #1 {main}", "Ü-Gerät", "note=two words", "flag", "studio-a"} {
		if !slices.Contains(tokens, want) {
			t.Errorf("token %q not read back; tokens: %q", want, tokens)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"listen host name", func(o *Options) { o.Listen = "localhost:53" }, `listen "localhost:53": the host must be an IP address`},
		{"listen without port", func(o *Options) { o.Listen = "127.0.0.1" }, `listen "127.0.0.1": want host:port`},
		{"listen port range", func(o *Options) { o.Listen = "127.0.0.1:65536" }, `port "65536" is not a number from 0 to 65535`},
		{"listen multicast", func(o *Options) { o.Listen = "224.0.0.251:5353" }, "multicast addresses are not served"},
		{"forward multicast", func(o *Options) { o.Forward = []string{"[ff02::fb]:5353"} }, `forward[0] "[ff02::fb]:5353": want a unicast IP`},
		{"ttl fraction", func(o *Options) { o.TTL = 1500 * time.Millisecond }, "ttl 1.5s: want whole seconds"},
		{"ttl long", func(o *Options) { o.TTL = 200 * time.Hour }, "ttl 200h0m0s"},
		{"forward name", func(o *Options) { o.Forward = []string{"dns.example"} }, `forward[0] "dns.example": want IP or IP:port`},
		{"forward port 0", func(o *Options) { o.Forward = []string{"192.0.2.1:0"} }, "forward[0]"},
		{"forward to itself", func(o *Options) { o.Listen = "127.0.0.1:5353"; o.Forward = []string{"192.0.2.1", "127.0.0.1:5353"} }, "forward[1] 127.0.0.1:5353 is this server's own address"},
		{"zone missing", func(o *Options) { o.Zone = "" }, "zone is empty"},
		{"hostname outside zone", func(o *Options) { o.Hostname = "est.example.test" }, "hostname est.example.test. is not inside zone studio.example.test."},
		{"no IPv4", func(o *Options) { o.Addresses = []netip.Addr{netip.MustParseAddr("::1")} }, "at least one IPv4 address"},
		{"no services", func(o *Options) { o.Services = nil }, "no service configured"},
		{"port", func(o *Options) { o.Services[1].Port = 0 }, "services[1] _nmos-certs._tcp: port 0 is out of range 1-65535"},
		{"type", func(o *Options) { o.Services[0].Type = "nmos-certs" }, `services[0] nmos-certs: service type "nmos-certs"`},
		{"pri", func(o *Options) { o.Services[0].Pri = -1 }, "services[0] _nmos-certs._tcp: pri -1 is out of range"},
		{"duplicate instance", func(o *Options) { o.Services[1].Instance = "NMOS-certs 1" }, `services[1] _nmos-certs._tcp: instance "NMOS-certs 1" is already used by services[0]`},
		{"instance quote", func(o *Options) { o.Services[0].Instance = `say "hi"` }, `services[0].instance "say \"hi\"": cannot be written to a Corefile`},
		{"txt environment", func(o *Options) { o.Services[2].TXT = []string{"home={$HOME}"} }, `services[2].txt[0] "home={$HOME}": cannot be written`},
		{"txt backslash", func(o *Options) { o.Services[2].TXT = []string{`path=C:\`} }, "services[2].txt[0]"},
		{"txt control", func(o *Options) { o.Services[2].TXT = []string{"a=b\nc"} }, "services[2].txt[0]"},
		{"target addresses outside zone", func(o *Options) { o.Services[2].Target = "reg.example.org" }, "services[2] _nmos-register._tcp: target reg.example.org. is outside zone"},
		{"selector", func(o *Options) { o.Services[1].APISelector = "a b" }, `api_selector "a b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			o.Services = slices.Clone(o.Services)
			tc.edit(&o)
			got, err := Render(o)
			if err == nil {
				t.Fatalf("no error; rendered\n%s", got)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dns: ") {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
