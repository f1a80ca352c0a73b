package nmoscerts

import (
	"strconv"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestSetup(t *testing.T) {
	c := caddy.NewTestController("dns", testCorefile)
	if err := setup(c); err != nil {
		t.Fatalf("setup: %v", err)
	}
}

func TestParse(t *testing.T) {
	cfg, err := parse(caddy.NewTestController("dns", testCorefile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Zone != "studio.example.test." || cfg.Hostname != "est.studio.example.test." || cfg.TTL != 60 || cfg.Fallthrough {
		t.Errorf("config %+v", cfg)
	}
	if len(cfg.Services) != 4 || len(cfg.Addresses) != 2 {
		t.Fatalf("%d services, %d addresses", len(cfg.Services), len(cfg.Addresses))
	}
	s := cfg.Services[2]
	if s.Type != "_nmos-register._tcp" || s.Instance != "Registry.Main" || s.Target != "reg.studio.example.test" ||
		len(s.TargetAddresses) != 1 || s.Port != 443 || s.Priority != 0 ||
		strings.Join(s.TXT, ",") != "api_proto=https,api_ver=v1.3,api_auth=true" || s.pos != "Testfile:16" {
		t.Errorf("service %+v", s)
	}

	// Without a zone argument the server block's zone is used.
	c := caddy.NewTestController("dns", "nmoscerts {\nhostname est.studio.example.test\naddress 192.0.2.1\nservice _nmos-certs._tcp {\nport 1\n}\nfallthrough\n}")
	c.ServerBlockKeys = []string{"Studio.Example.Test.:53"}
	cfg, err = parse(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Zone != "studio.example.test." || !cfg.Fallthrough || cfg.TTL != 0 || cfg.Serial != 0 {
		t.Errorf("config %+v", cfg)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "nmoscerts studio.example.test {\nhostname est.studio.example.test\naddress 192.0.2.1\n"
	const svc = "service _nmos-certs._tcp {\nport 8443\n}\n"
	tests := []struct {
		name, input string
		line        int // 0: no position expected (cross-service check by New)
		want        string
	}{
		{"no zone", "nmoscerts {\n}", 1, "want exactly one zone, got 0"},
		{"root zone", "nmoscerts . {\n}", 1, "the root zone cannot be served"},
		{"two zones", "nmoscerts a.test b.test {\n}", 1, "exactly one zone"},
		{"unknown property", head + "colour blue\n" + svc + "}", 4, "unknown property 'colour'"},
		{"hostname twice", head + "hostname x.studio.example.test\n" + svc + "}", 4, "hostname is given twice"},
		{"hostname outside zone", "nmoscerts studio.example.test {\nhostname est.example.test\n}", 2, "not inside zone"},
		{"hostname not LDH", "nmoscerts studio.example.test {\nhostname est_1.studio.example.test\n}", 2, "only letters, digits and hyphens"},
		{"hostname missing", "nmoscerts studio.example.test {\naddress 192.0.2.1\n" + svc + "}", 6, "hostname is required"},
		{"address missing", "nmoscerts studio.example.test {\nhostname est.studio.example.test\n" + svc + "}", 6, "address is required"},
		{"address bad", head + "address 192.0.2.300\n" + svc + "}", 4, `"192.0.2.300" is not an IP address`},
		{"address duplicate", head + "address 192.0.2.1\n" + svc + "}", 4, "given twice"},
		{"address multicast", head + "address 224.0.0.251\n" + svc + "}", 4, "224.0.0.251 is not a host address"},
		{"address without args", head + "address\n" + svc + "}", 4, "Wrong argument count"},
		{"no IPv4", "nmoscerts studio.example.test {\nhostname est.studio.example.test\naddress ::1\n" + svc + "}", 0, "at least one IPv4 address"},
		{"ttl zero", head + "ttl 0\n" + svc + "}", 4, "ttl \"0\""},
		{"serial zero", head + "serial 0\n" + svc + "}", 4, "serial \"0\""},
		{"serial too large", head + "serial 4294967296\n" + svc + "}", 4, "serial \"4294967296\""},
		{"ttl word", head + "ttl soon\n" + svc + "}", 4, "ttl \"soon\""},
		{"fallthrough with zones", head + "fallthrough example.org\n" + svc + "}", 4, "fallthrough takes no arguments"},
		{"no service", head + "}", 4, "at least one service"},
		{"service type", head + "service _nmos-certs {\nport 1\n}\n}", 4, "want _<name>._tcp"},
		{"service type long", head + "service _nmos-certificates._tcp {\nport 1\n}\n}", 4, "1 to 15 characters"},
		{"service reserved", head + "service _dns-sd._udp {\nport 1\n}\n}", 4, "reserved"},
		{"service without block", head + "service _nmos-certs._tcp\n}", 4, "want '{'"},
		{"service block not closed", head + "service _nmos-certs._tcp {\nport 1\n", 5, "not closed"},
		{"service unknown", head + "service _nmos-certs._tcp {\nport 1\nprio 3\n}\n}", 6, "unknown property 'prio'"},
		{"port missing", head + "service _nmos-certs._tcp {\npri 1\n}\n}", 6, "port is required"},
		{"port zero", head + "service _nmos-certs._tcp {\nport 0\n}\n}", 5, "port 0 is out of range 1-65535"},
		{"port big", head + "service _nmos-certs._tcp {\nport 70000\n}\n}", 5, "port 70000 is out of range"},
		{"port twice", head + "service _nmos-certs._tcp {\nport 1\nport 2\n}\n}", 6, "port is given twice"},
		{"pri word", head + "service _nmos-certs._tcp {\nport 1\npri high\n}\n}", 6, `pri "high" is not a number`},
		{"weight negative", head + "service _nmos-certs._tcp {\nport 1\nweight -1\n}\n}", 6, "weight -1 is out of range"},
		{"instance long", head + "service _nmos-certs._tcp {\nport 1\ninstance " + strings.Repeat("x", 64) + "\n}\n}", 6, "more than 63"},
		{"instance control", head + "service _nmos-certs._tcp {\nport 1\ninstance \"a\tb\"\n}\n}", 6, "control character"},
		{"instance args", head + "service _nmos-certs._tcp {\nport 1\ninstance a b\n}\n}", 6, "Wrong argument count"},
		{"selector path", head + "service _nmos-certs._tcp {\nport 1\napi_selector a/b\n}\n}", 6, "api_selector \"a/b\""},
		{"selector operation", head + "service _nmos-certs._tcp {\nport 1\napi_selector cacerts\n}\n}", 6, "EST operation name"},
		{"txt pri", head + "service _nmos-certs._tcp {\nport 1\ntxt pri=3\n}\n}", 6, "set by the pri and api_selector options"},
		{"txt duplicate", head + "service _nmos-certs._tcp {\nport 1\ntxt a=1\ntxt A=2\n}\n}", 7, `txt key "A" is given twice`},
		{"txt no key", head + "service _nmos-certs._tcp {\nport 1\ntxt =x\n}\n}", 6, "has no key"},
		{"target bad", head + "service _nmos-certs._tcp {\nport 1\ntarget bad_host.test\n}\n}", 6, "target"},
		{"target bad address", head + "service _nmos-certs._tcp {\nport 1\ntarget r.studio.example.test nope\n}\n}", 6, `"nope" is not an IP address`},
		{"target in zone without address", head + "service _nmos-certs._tcp {\nport 1\ntarget r.studio.example.test\n}\n}", 0, "Testfile:4: service _nmos-certs._tcp: target r.studio.example.test. is inside zone"},
		{"target outside zone with address", head + "service _nmos-certs._tcp {\nport 1\ntarget r.example.org 192.0.2.9\n}\n}", 0, "is outside zone"},
		{"target conflicting addresses", head +
			"service _a._tcp {\nport 1\ntarget r.studio.example.test 192.0.2.9\n}\n" +
			"service _b._tcp {\nport 1\ntarget r.studio.example.test 192.0.2.8\n}\n}", 0, "Testfile:8: service _b._tcp: target r.studio.example.test. has other addresses"},
		{"duplicate instance", head +
			"service _nmos-certs._tcp {\nport 1\ninstance A\n}\n" +
			"service _nmos-certs._tcp {\nport 2\ninstance a\n}\n}", 0, `Testfile:8: service _nmos-certs._tcp: instance "a" is already used by Testfile:4`},
		{"duplicate advertisement", head + svc + svc + "}", 0, "same type, target, port, pri and api_selector as Testfile:4"},
		{"twice in a block", head + svc + "}\nnmoscerts other.test {\n}", 0, "this plugin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := caddy.NewTestController("dns", tc.input)
			err := setup(c)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.input)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			if tc.line > 0 {
				if pos := "Testfile:" + strconv.Itoa(tc.line) + " - "; !strings.Contains(msg, pos) {
					t.Errorf("error %q is not at %q", msg, pos)
				}
			}
		})
	}
}
