package dns

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/dns/bindtest"
)

const facilityZone = `$TTL 300
@	IN SOA ns.studio.example.test. hostmaster.studio.example.test. 1 3600 600 86400 60
@	IN NS ns.studio.example.test.
ns	IN A 192.0.2.53
; the facility's own registry, its service type, and its records of the
; appliance's host: another address, and the same IPv6 address
_nmos-register._tcp	IN PTR Facility\ Registry._nmos-register._tcp
Facility\ Registry._nmos-register._tcp	IN SRV 0 0 443 reg.studio.example.test.
_services._dns-sd._udp	IN PTR _nmos-register._tcp
est	IN A 192.0.2.99
est	IN AAAA 2001:db8::10
`

// TestPushToBIND: the appliance's records reach a BIND primary by RFC
// 2136 updates signed with TSIG; the facility's own records stay, those
// the appliance also serves included; a change of configuration replaces
// what the last push sent, after a restart too; a wrong key is refused;
// withdrawing takes back exactly what the appliance added; a push to
// another server first takes the records back from the old one.
func TestPushToBIND(t *testing.T) {
	secret := bindtest.Secret(t)
	b := bindtest.Start(t, fmt.Sprintf(`key "nmos-certs-update." { algorithm hmac-sha256; secret "%s"; };
zone "studio.example.test" { type primary; file "studio.zone"; allow-update { key "nmos-certs-update."; }; };
`, base64.StdEncoding.EncodeToString(secret)), map[string]string{"studio.zone": facilityZone})
	state := filepath.Join(t.TempDir(), "dns-push.state")
	newPusher := func(key TSIGKey) *Pusher {
		t.Helper()
		p, err := NewPusher(Push{Server: b.Addr(), Zone: "studio.example.test", Key: key, StateFile: state})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := TSIGKey{Name: "nmos-certs-update", Secret: secret}
	o := testOptions()
	o.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}
	recs, err := PushRecords(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := newPusher(key).Sync(ctx, recs); err != nil {
		t.Fatalf("push: %v\n%s", err, b.Log())
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
	}
	s := b.Addr()
	expect("EST instances", bindtest.DigShort(t, s, "_nmos-certs._tcp.studio.example.test", "PTR"),
		`est\0328443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test.`, `nmos-certs\0321._nmos-certs._tcp.studio.example.test.`)
	expect("registries: the facility's and the appliance's", bindtest.DigShort(t, s, "_nmos-register._tcp.studio.example.test", "PTR"),
		`Facility\032Registry._nmos-register._tcp.studio.example.test.`, `Registry._nmos-register._tcp.studio.example.test.`)
	expect("the appliance's address beside the facility's", bindtest.DigShort(t, s, "est.studio.example.test", "A"), "192.0.2.10", "192.0.2.99")
	expect("AAAA", bindtest.DigShort(t, s, "est.studio.example.test", "AAAA"), "2001:db8::10")
	expect("SRV", bindtest.DigShort(t, s, `nmos-certs\0321._nmos-certs._tcp.studio.example.test`, "SRV"), "10 0 8443 est.studio.example.test.")
	expect("TXT", bindtest.DigShort(t, s, `nmos-certs\0321._nmos-certs._tcp.studio.example.test`, "TXT"), `"pri=10"`)
	expect("the registry's target", bindtest.DigShort(t, s, "registry.studio.example.test", "A"), "127.0.0.2")
	expect("the facility's NS", bindtest.DigShort(t, s, "studio.example.test", "NS"), "ns.studio.example.test.")

	// The configuration changes (an instance renamed, a port changed) and
	// the appliance restarts: the next push, from the state file, removes
	// what is no longer served.
	o.Services[0].Instance = "nmos-certs main"
	o.Services[1].Port = 9443
	recs, err = PushRecords(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := newPusher(key).Sync(ctx, recs); err != nil {
		t.Fatal(err)
	}
	expect("EST instances after the change", bindtest.DigShort(t, s, "_nmos-certs._tcp.studio.example.test", "PTR"),
		`est\0329443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test.`, `nmos-certs\032main._nmos-certs._tcp.studio.example.test.`)
	expect("the old instance's SRV", bindtest.DigShort(t, s, `nmos-certs\0321._nmos-certs._tcp.studio.example.test`, "SRV"))
	expect("the old instance's TXT", bindtest.DigShort(t, s, `est\0328443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test`, "TXT"))
	expect("the changed port", bindtest.DigShort(t, s, `est\0329443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test`, "SRV"), "20 5 9443 est.studio.example.test.")

	// A wrong secret, and an unknown key, are refused, and change nothing.
	for _, bad := range []TSIGKey{{Name: "nmos-certs-update", Secret: bindtest.Secret(t)}, {Name: "someone-else", Secret: secret}} {
		err := newPusher(bad).Sync(ctx, nil)
		t.Logf("push with key %s: %v", bad.Name, err)
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "TSIG") {
			t.Fatalf("push with key %s: %v", bad.Name, err)
		}
	}
	expect("after the refused pushes", bindtest.DigShort(t, s, "est.studio.example.test", "A"), "192.0.2.10", "192.0.2.99")

	// Withdrawing takes back what was pushed, and only that.
	if err := newPusher(key).Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	expect("EST instances withdrawn", bindtest.DigShort(t, s, "_nmos-certs._tcp.studio.example.test", "PTR"))
	expect("the facility's registry stays", bindtest.DigShort(t, s, "_nmos-register._tcp.studio.example.test", "PTR"),
		`Facility\032Registry._nmos-register._tcp.studio.example.test.`)
	expect("the appliance's address withdrawn, the facility's kept", bindtest.DigShort(t, s, "est.studio.example.test", "A"), "192.0.2.99")
	expect("the facility's IPv6 address, which the appliance also served, kept", bindtest.DigShort(t, s, "est.studio.example.test", "AAAA"), "2001:db8::10")
	expect("the facility's service type kept, the appliance's gone", bindtest.DigShort(t, s, "_services._dns-sd._udp.studio.example.test", "PTR"), "_nmos-register._tcp.studio.example.test.")
	expect("the registry's target withdrawn", bindtest.DigShort(t, s, "registry.studio.example.test", "A"))
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file after withdrawing: %v", err)
	}

	// Pushed to one server, then configured for another: the records
	// leave the first.
	if err := newPusher(key).Sync(ctx, recs); err != nil {
		t.Fatal(err)
	}
	expect("pushed again", bindtest.DigShort(t, s, "_nmos-certs._tcp.studio.example.test", "PTR"),
		`est\0329443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test.`, `nmos-certs\032main._nmos-certs._tcp.studio.example.test.`)
	b2 := bindtest.Start(t, fmt.Sprintf(`key "nmos-certs-update." { algorithm hmac-sha256; secret "%s"; };
zone "studio.example.test" { type primary; file "studio.zone"; allow-update { key "nmos-certs-update."; }; };
`, base64.StdEncoding.EncodeToString(secret)), map[string]string{"studio.zone": facilityZone})
	p2, err := NewPusher(Push{Server: b2.Addr(), Zone: "studio.example.test", Key: key, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Sync(ctx, recs); err != nil {
		t.Fatal(err)
	}
	expect("the first server after the move", bindtest.DigShort(t, s, "_nmos-certs._tcp.studio.example.test", "PTR"))
	expect("the second server", bindtest.DigShort(t, b2.Addr(), "_nmos-certs._tcp.studio.example.test", "PTR"),
		`est\0329443\032pri\03220\032lab._nmos-certs._tcp.studio.example.test.`, `nmos-certs\032main._nmos-certs._tcp.studio.example.test.`)
}

// TestTransferToBIND: a BIND secondary copies the zone by AXFR signed
// with the TSIG key; a reload's NOTIFY makes it fetch the new zone; dig
// without the key, with a wrong key, or from an address not listed is
// refused; an IXFR from the current serial is answered with the SOA.
func TestTransferToBIND(t *testing.T) {
	secret := bindtest.Secret(t)
	keyArg := "hmac-sha256:nmos-certs-xfr:" + base64.StdEncoding.EncodeToString(secret)
	bindPort := bindtest.FreePort(t)
	o := testOptions()
	o.Transfer = &Transfer{To: []string{"127.0.0.1:" + strconv.Itoa(bindPort)}, Key: TSIGKey{Name: "nmos-certs-xfr", Secret: secret}}
	srv, _ := startServer(t, o)
	app := srv.Addr().String()

	// dig: the zone with the key; refused without it or with another.
	axfr := bindtest.Dig(t, app, keyArg, "studio.example.test", "AXFR")
	flat := strings.Join(strings.Fields(axfr), " ")
	if !strings.Contains(flat, `nmos-certs\0321._nmos-certs._tcp.studio.example.test. 30 IN SRV 10 0 8443 est.studio.example.test.`) ||
		strings.Count(flat, " IN SOA ") != 2 || !strings.Contains(flat, "XFR size: 20 records") {
		t.Fatalf("AXFR with the key:\n%s", axfr)
	}
	for what, key := range map[string]string{"no key": "", "a wrong key": "hmac-sha256:nmos-certs-xfr:" + base64.StdEncoding.EncodeToString(bindtest.Secret(t))} {
		if out := bindtest.Dig(t, app, key, "studio.example.test", "AXFR"); !strings.Contains(out, "Transfer failed") && !strings.Contains(out, "failed") {
			t.Fatalf("AXFR with %s:\n%s", what, out)
		}
	}
	serial := strings.Fields(bindtest.DigShort(t, app, "studio.example.test", "SOA")[0])[2]
	if out := bindtest.Dig(t, app, keyArg, "studio.example.test", "IXFR="+serial); strings.Count(out, "\tSOA\t") != 1 || strings.Contains(out, "SRV") {
		t.Fatalf("IXFR from the current serial:\n%s", out)
	}

	// BIND, a secondary listed in transfer.to, copies the zone.
	b := bindtest.StartOn(t, bindPort, fmt.Sprintf(`key "nmos-certs-xfr." { algorithm hmac-sha256; secret "%s"; };
zone "studio.example.test" { type secondary; file "secondary.db"; primaries { 127.0.0.1 port %d key "nmos-certs-xfr."; }; };
`, base64.StdEncoding.EncodeToString(secret), srv.Addr().Port()))
	waitFor := func(what string, want string, args ...string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			got := bindtest.DigShort(t, b.Addr(), args...)
			if slices.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q, want %q\n%s", what, got, want, b.Log())
			}
		}
	}
	waitFor("the secondary's copy", "10 0 8443 est.studio.example.test.", `nmos-certs\0321._nmos-certs._tcp.studio.example.test`, "SRV")

	// A reload serves a new zone (a newer serial) and sends NOTIFY: the
	// secondary fetches it without waiting for its refresh (3600 s).
	o2 := o
	o2.Listen = app
	o2.Services = slices.Clone(o.Services)
	o2.Services[0].Port = 9443
	if err := srv.Reload(o2); err != nil {
		t.Fatal(err)
	}
	waitFor("the secondary after NOTIFY", "10 0 9443 est.studio.example.test.", `nmos-certs\0321._nmos-certs._tcp.studio.example.test`, "SRV")

	// An address not in transfer.to is refused, with the key.
	o3 := o2
	o3.Transfer = &Transfer{To: []string{"192.0.2.1"}, Key: o.Transfer.Key}
	if err := srv.Reload(o3); err != nil {
		t.Fatal(err)
	}
	if out := bindtest.Dig(t, app, keyArg, "studio.example.test", "AXFR"); !strings.Contains(out, "failed") {
		t.Fatalf("AXFR from an address not listed:\n%s", out)
	}
}
