package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globalsign/est"
	mdns "github.com/miekg/dns"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
	"github.com/nmos-certs/nmos-certs/webroot"
)

// TestApplianceOnPostgres: with store.driver postgres (the DSN in a
// private file), the appliance creates its CA in the database, a device
// enrolls with the globalsign client, a revocation shows in the OCSP
// responder's answer, and after a restart the same CA serves from the
// same database.
func TestApplianceOnPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(cluster.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acme := newManufacturer(t)
	roots := writePEM(t, filepath.Join(dir, "acme.pem"), acme.cert)
	extra := fmt.Sprintf("est:\n  trusted_client_roots: [%s]\nstore:\n  driver: postgres\n  dsn_file: %s\n", roots, dsnFile)
	cfg := testConfig(t, dir, extra)
	if err := CheckConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// config check reads the DSN file, which must be private.
	if err := os.Chmod(dsnFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "store.dsn_file") || !strings.Contains(err.Error(), "open to group or others") {
		t.Fatalf("a DSN file others can read: %v", err)
	}
	if err := os.Chmod(dsnFile, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	a, stop := runApp(t, cfg)
	if _, ok := a.store.(*store.Postgres); !ok {
		t.Fatalf("the store is %T", a.store)
	}
	fingerprints := func(a *App) string {
		var fp []string
		for _, g := range a.Authority().Generations() {
			fp = append(fp, g.ID+"="+g.Fingerprint)
		}
		return strings.Join(fp, ",")
	}
	before := fingerprints(a)

	devCert, devKey := acme.device(t, "CAM-1")
	client := &est.Client{Host: a.Addr("est").String(), InsecureSkipVerify: true, Certificates: []*x509.Certificate{devCert}, PrivateKey: devKey}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := client.Enroll(ctx, csrFor(t, key, "cam1.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.store.Certificate(ctx, cert.SerialNumber)
	if err != nil || !strings.Contains(rec.Identity, "Acme Camera") {
		t.Fatalf("stored: %+v %v", rec, err)
	}
	// The same key in another request is refused by the database's
	// unique index; the identical request gets the same certificate.
	if _, err := client.Enroll(ctx, csrFor(t, key, "cam7.studio.example.test")); err == nil {
		t.Fatal("a reused key was certified")
	}
	if again, err := client.Enroll(ctx, csrFor(t, key, "cam1.studio.example.test")); err != nil || !again.Equal(cert) {
		t.Fatalf("the same request again: %v", err)
	}

	// The certificates went through the group-commit writer, counted as
	// on SQLite.
	_, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics")
	for _, name := range []string{"nmos_certs_store_certificate_commits_total", "nmos_certs_store_certificates_committed_total", "nmos_certs_store_commit_duration_seconds_count"} {
		if !strings.Contains(string(body), "\n"+name+" ") || strings.Contains(string(body), "\n"+name+" 0\n") {
			t.Errorf("/metrics: %s missing or 0 after an enrollment", name)
		}
	}

	issuer, _ := a.Authority().CACertificate("ecdsa-int-1")
	status := func(app *App) int { t.Helper(); return ocspStatus(t, app, cert, issuer) }
	if s := status(a); s != xocsp.Good {
		t.Fatalf("OCSP before the revocation: %d", s)
	}
	if _, err := a.Authority().Revoke(ctx, cert.SerialNumber, store.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); status(a) != xocsp.Revoked; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("OCSP does not say revoked")
		}
	}
	stop()

	// Restarted on the same database: the same CA, the revocation kept.
	a, _ = runApp(t, cfg)
	if got := fingerprints(a); got != before {
		t.Fatalf("generations after the restart:\n%s\nwant\n%s", got, before)
	}
	if s := status(a); s != xocsp.Revoked {
		t.Fatalf("OCSP after the restart: %d", s)
	}
	if _, err := a.store.Certificate(ctx, cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	// On PostgreSQL a backup holds the CA's keys (the database is its
	// own tools' to back up).
	if info, err := Backup(ctx, cfg, filepath.Join(dir, "backup.tar")); err != nil || !info.KeysOnly || info.Files != 5 {
		t.Fatalf("backup on PostgreSQL: %+v %v", info, err)
	}
}

// runApp runs an App until stop is called (or the test ends).
func runApp(t *testing.T, cfg *config.Config) (a *App, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *App, 1)
	a, err := New(ctx, cfg, Options{EventPoll: 500 * time.Millisecond, Heartbeat: 200 * time.Millisecond, Ready: func(a *App) { ready <- a }})
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
		t.Fatalf("run: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// pgNodeDir makes the directory of an appliance named name, with a file
// holding dsn (mode 0600) for its store.dsn_file.
func pgNodeDir(t *testing.T, name, dsn string) (dir, dsnFile string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dsnFile = filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, dsnFile
}

// TestTwoAppliancesOnePostgres: two appliances, each with its own data
// directory and listeners, share one database and the CA's keys (copied
// from the first's data_dir/ca). A certificate enrolled on A and revoked
// on B is revoked in A's OCSP answers within 2 seconds (the poll is set
// to 500 ms; NOTIFY wakes A sooner); enrollments split over both get
// distinct serials; each node's CRL numbers only go up.
func TestTwoAppliancesOnePostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	acme := newManufacturer(t)
	node := func(name string) (*config.Config, string) {
		dir, dsnFile := pgNodeDir(t, name, dsn)
		roots := writePEM(t, filepath.Join(dir, "acme.pem"), acme.cert)
		return testConfig(t, dir, fmt.Sprintf("est:\n  trusted_client_roots: [%s]\nstore:\n  driver: postgres\n  dsn_file: %s\n", roots, dsnFile)), dir
	}
	cfgA, _ := node("a")
	cfgB, _ := node("b")
	a, _ := runApp(t, cfgA)
	// The CA's keys reach B: backup on A (the keys alone, on PostgreSQL),
	// restore on B. A SQLite backup is refused there.
	keys := filepath.Join(t.TempDir(), "keys.tar")
	// Four generation keys and the key-encryption key of the keys kept
	// sealed in the database.
	if info, err := Backup(context.Background(), cfgA, keys); err != nil || !info.KeysOnly || info.Files != 5 {
		t.Fatalf("backup of A: %+v %v", info, err)
	}
	if info, _, err := Restore(context.Background(), cfgB, keys, false); err != nil || info.Generations != 4 {
		t.Fatalf("restore on B: %+v %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(cfgB.DataDir, "server")); !os.IsNotExist(err) {
		t.Fatalf("A's own TLS keys went to B: %v", err)
	}
	b, _ := runApp(t, cfgB)
	ctx := context.Background()

	client := func(app *App) *est.Client {
		dev, key := acme.device(t, "CAM-"+app.Addr("est").String())
		return &est.Client{Host: app.Addr("est").String(), InsecureSkipVerify: true, Certificates: []*x509.Certificate{dev}, PrivateKey: key}
	}
	ca, cb := client(a), client(b)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "cam1.studio.example.test")
	cert, err := ca.Enroll(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	// The same device asks B the very same thing (its answer from A was
	// lost): B answers with A's certificate. Another device, or another
	// request with the key, is refused it.
	sameDevice := *ca
	sameDevice.Host = b.Addr("est").String()
	if again, err := sameDevice.Enroll(ctx, csr); err != nil || !again.Equal(cert) {
		t.Fatalf("the same request at B: %v (the same certificate: %t)", err, again != nil && again.Equal(cert))
	}
	if _, err := cb.Enroll(ctx, csr); err == nil || !strings.Contains(err.Error(), "certified before") {
		t.Fatalf("the request of another device with that key: %v", err)
	}
	if _, err := sameDevice.Enroll(ctx, csrFor(t, key, "cam2.studio.example.test")); err == nil || !strings.Contains(err.Error(), "certified before") {
		t.Fatalf("another request with that key: %v", err)
	}
	issuer, _ := a.Authority().CACertificate("ecdsa-int-1")
	status := func(app *App) int { t.Helper(); return ocspStatus(t, app, cert, issuer) }
	if status(a) != xocsp.Good || status(b) != xocsp.Good {
		t.Fatal("not good before the revocation")
	}
	crlNumber := func(app *App) int64 {
		for _, c := range app.crl.Published() {
			if c.IssuerID == "ecdsa-int-1" {
				return c.Number
			}
		}
		t.Fatal("no CRL of ecdsa-int-1")
		return 0
	}
	beforeA := crlNumber(a)
	if _, err := b.Authority().Revoke(ctx, cert.SerialNumber, store.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now()
	for status(a) != xocsp.Revoked {
		if time.Since(revokedAt) > 2*time.Second {
			t.Fatal("A's OCSP does not say revoked 2 s after B revoked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("A's OCSP said revoked %v after B's revocation", time.Since(revokedAt).Round(time.Millisecond))
	for deadline := time.Now().Add(5 * time.Second); crlNumber(a) <= beforeA; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("A's CRL number stays %d", beforeA)
		}
	}

	// Enrollments split over both nodes: distinct serials, all stored.
	seen := map[string]bool{}
	for i := range 40 {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		got, err := c.Enroll(ctx, csrFor(t, k, fmt.Sprintf("dev%d.studio.example.test", i)))
		if err != nil {
			t.Fatal(err)
		}
		s := store.SerialKey(got.SerialNumber)
		if seen[s] {
			t.Fatalf("serial %s twice", s)
		}
		seen[s] = true
		if _, err := a.store.Certificate(ctx, got.SerialNumber); err != nil {
			t.Fatalf("%s is not in the database: %v", s, err)
		}
	}

	// An intermediate rollover made on B: A takes the new key from the
	// database (sealed under the key-encryption key both hold) within 2 s,
	// and issues from the new intermediate.
	roll, err := b.Authority().RolloverIntermediate(ctx, "ecdsa", "operator")
	if err != nil {
		t.Fatal(err)
	}
	rolledAt := time.Now()
	active := func(app *App) string {
		for _, g := range app.Authority().Generations() {
			if g.Hierarchy == "ecdsa" && g.Role == "intermediate" && g.State == store.StateActive && g.KeyHeld {
				return g.ID
			}
		}
		return ""
	}
	for active(a) != roll.New.ID {
		if time.Since(rolledAt) > 2*time.Second {
			t.Fatalf("A's active ECDSA intermediate is %q 2 s after B rolled over to %s", active(a), roll.New.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("A issues from %s %v after B's rollover", roll.New.ID, time.Since(rolledAt).Round(time.Millisecond))
	if err := a.caErr.Load(); err != nil {
		t.Fatalf("A's CA after the rollover: %v", *err)
	}
	if fi, err := os.Stat(filepath.Join(cfgA.DataDir, "ca", roll.New.ID+".key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the new key on A: %v %v", fi, err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got, err := ca.Enroll(ctx, csrFor(t, k, "after-rollover.studio.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if newInt, _ := a.Authority().CACertificate(roll.New.ID); newInt == nil || got.CheckSignatureFrom(newInt) != nil {
		t.Fatalf("A's certificate after the rollover is not from %s", roll.New.ID)
	}
}

// TestPeersInDNSSD: each appliance advertises the others of dns.peers as
// EST instances of their own, with their addresses, so that a device
// that cannot reach one tries the next by pri; their hostnames are
// reserved.
func TestPeersInDNSSD(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "  peers:\n    - hostname: est-b.studio.example.test\n      addresses: [127.0.0.3]\n      pri: 20\n      port: 8443\n")
	cfg.DNS.Advertise[0].Pri = 10
	a := start(t, cfg)
	if got, want := estInstances(t, a), []string{"est-b.studio.example.test. 20 8443", "est.studio.example.test. 10 8443"}; !slices.Equal(got, want) {
		t.Fatalf("EST instances %v, want %v", got, want)
	}
	if rrs := askDNS(t, a, "est-b.studio.example.test.", mdns.TypeA); len(rrs) != 1 || rrs[0].(*mdns.A).A.String() != "127.0.0.3" {
		t.Fatalf("the peer's address: %v", rrs)
	}
	reserved := false
	for _, r := range CANames(cfg).Reserved {
		reserved = reserved || r.Pattern == "est-b.studio.example.test"
	}
	if !reserved {
		t.Fatal("the peer's hostname is not reserved")
	}
}

// askDNS asks app's DNS server over TCP and returns the answer section.
func askDNS(t *testing.T, app *App, name string, qtype uint16) []mdns.RR {
	t.Helper()
	c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, app.Addr("dns").String())
	if err != nil {
		t.Fatal(err)
	}
	return r.Answer
}

// estInstances is what app's DNS-SD says of _nmos-certs._tcp: "target pri
// port" per instance, sorted.
func estInstances(t *testing.T, app *App) []string {
	t.Helper()
	var out []string
	for _, rr := range askDNS(t, app, "_nmos-certs._tcp.studio.example.test.", mdns.TypePTR) {
		for _, s := range askDNS(t, app, rr.(*mdns.PTR).Ptr, mdns.TypeSRV) {
			srv := s.(*mdns.SRV)
			out = append(out, fmt.Sprintf("%s %d %d", srv.Target, srv.Priority, srv.Port))
		}
	}
	slices.Sort(out)
	return out
}

// ocspStatus asks app's OCSP responder about cert, as a client would, and
// returns the status of the verified answer.
func ocspStatus(t *testing.T, app *App, cert, issuer *x509.Certificate) int {
	t.Helper()
	der, err := askOCSP(context.Background(), app.ocsp, cert, issuer)
	if err != nil {
		t.Fatal(err)
	}
	r, err := xocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// TestNodesRegister: appliances sharing a PostgreSQL store, with no
// dns.peers, find each other through it: each one's DNS-SD answers list
// the other's EST instance, with its pri and addresses, and its hostname
// is reserved. One that stops is dropped at once; one that dies, after
// three missed heartbeats.
func TestNodesRegister(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	node := func(name, addr string, pri int) *config.Config {
		dir, dsnFile := pgNodeDir(t, name, dsn)
		cfg := testConfig(t, dir, fmt.Sprintf("hostname: est-%s.studio.example.test\naddresses: [%s]\nstore:\n  driver: postgres\n  dsn_file: %s\n", name, addr, dsnFile))
		cfg.DNS.Advertise[0].Pri = pri
		return cfg
	}
	cfgA, cfgB := node("a", "127.0.0.2", 10), node("b", "127.0.0.3", 20)
	a, _ := runApp(t, cfgA)
	keys := filepath.Join(t.TempDir(), "keys.tar")
	if _, err := Backup(context.Background(), cfgA, keys); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Restore(context.Background(), cfgB, keys, false); err != nil {
		t.Fatal(err)
	}
	b, stopB := runApp(t, cfgB)

	instances := func(app *App) []string { return estInstances(t, app) }
	both := []string{"est-a.studio.example.test. 10 8443", "est-b.studio.example.test. 20 8443"}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: A lists %v, B lists %v", what, instances(a), instances(b))
			}
		}
	}
	waitFor("each to list both", func() bool { return slices.Equal(instances(a), both) && slices.Equal(instances(b), both) })
	// The dashboard and /metrics say so too.
	st, err := webBackend{a}.Status(context.Background())
	if err != nil || len(st.Appliances) != 2 || !st.Appliances[0].Self || !st.Appliances[1].Advertised || st.Appliances[1].Hostname != "est-b.studio.example.test" ||
		!slices.Equal(st.Appliances[1].Instances, []string{"est-b pri 20 (port 8443, pri 20)"}) {
		t.Fatalf("status: %+v %v", st.Appliances, err)
	}
	if _, body := get(t, "http://"+a.Addr("metrics").String()+"/metrics"); !strings.Contains(string(body), "\nnmos_certs_appliances 2\n") {
		t.Error("/metrics: nmos_certs_appliances is not 2")
	}
	if got := askDNS(t, a, "est-b.studio.example.test.", mdns.TypeA); len(got) != 1 || got[0].(*mdns.A).A.String() != "127.0.0.3" {
		t.Fatalf("A's answer for B's address: %v", got)
	}
	// B's hostname is B's: no device gets it from A.
	if _, err := a.Authority().CheckCSR(context.Background(), csrFor(t, newKey(t), "est-b.studio.example.test"), policy.Requester{Holder: "device"}); err == nil ||
		!strings.Contains(err.Error(), "another appliance sharing the store") {
		t.Fatalf("B's hostname at A: %v", err)
	}

	// A reload that names B in dns.peers: B is advertised once, from the
	// configuration.
	next := *cfgA
	next.DNS.Peers = []config.Peer{{Hostname: "est-b.studio.example.test", Addresses: []string{"127.0.0.3"}, Port: 8443, Pri: 20}}
	if err := a.Reload(context.Background(), &next); err != nil {
		t.Fatalf("reload naming B in dns.peers: %v", err)
	}
	if got := instances(a); !slices.Equal(got, both) {
		t.Fatalf("after the reload A lists %v", got)
	}
	if err := a.Reload(context.Background(), cfgA); err != nil {
		t.Fatal(err)
	}

	// Rows that break the rules of dns.peers are left out, each on its
	// own: the others are still advertised, and a new one is added.
	reg := a.store.(nodeRegistry)
	inst := func(name string, port, pri int) []store.NodeInstance {
		return []store.NodeInstance{{Instance: name, Port: port, Pri: pri}}
	}
	beats := []store.Node{
		{Hostname: "est-d.studio.example.test", Addresses: []string{"127.0.0.5"}, Instances: inst("est-a pri 10", 8443, 40)}, // A's instance name
		{Hostname: "*.studio.example.test", Addresses: []string{"127.0.0.6"}, Instances: inst("any", 8443, 40)},
		{Hostname: "est-f.studio.example.test", Addresses: []string{"127.0.0.7"}, Instances: inst("est-f", 0, 40)},
		{Hostname: "est-g.studio.example.test", Instances: inst("est-g", 8443, 40)}, // in the zone, no address
		{Hostname: "est-h.studio.example.test", Addresses: []string{"not an address"}, Instances: inst("est-h", 8443, 40)},
		{Hostname: "est-e.studio.example.test", Addresses: []string{"127.0.0.8"}, Instances: inst("est-e", 8443, 30)}, // a good one
	}
	// They beat, as live appliances do, until E is seen.
	beating, stopBeats := context.WithCancel(context.Background())
	beatsDone := make(chan struct{})
	go func() {
		defer close(beatsDone)
		for beating.Err() == nil {
			for _, n := range beats {
				_ = reg.Heartbeat(beating, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	withE := []string{both[0], both[1], "est-e.studio.example.test. 30 8443"}
	waitFor("A to add E and nothing else", func() bool { return slices.Equal(instances(a), withE) })
	st, err = webBackend{a}.Status(context.Background())
	if err != nil || !slices.ContainsFunc(st.Appliances, func(v webroot.ApplianceView) bool {
		return v.Hostname == "est-g.studio.example.test" && !v.Advertised && strings.Contains(v.Problem, "give its addresses")
	}) {
		t.Fatalf("status of an appliance left out: %+v %v", st.Appliances, err)
	}
	stopBeats()
	<-beatsDone

	// B stops: it leaves the list at once, and A drops it at its next
	// heartbeat.
	stopB()
	nodes, err := reg.Nodes(context.Background(), time.Hour)
	if err != nil || slices.ContainsFunc(nodes, func(n store.Node) bool { return n.Hostname == "est-b.studio.example.test" }) {
		t.Fatalf("registered after B stopped: %+v %v", nodes, err)
	}
	waitFor("A to drop B, and E, whose heartbeats stopped", func() bool { return slices.Equal(instances(a), both[:1]) })

	// A node that dies stops beating: it is dropped after three missed
	// heartbeats (600 ms here).
	dead := store.Node{Hostname: "est-c.studio.example.test", Addresses: []string{"127.0.0.4"}, Instances: []store.NodeInstance{{Instance: "est-c", Port: 8443, Pri: 30}}}
	if err := reg.Heartbeat(context.Background(), dead); err != nil {
		t.Fatal(err)
	}
	waitFor("A to list C", func() bool { return slices.Contains(instances(a), "est-c.studio.example.test. 30 8443") })
	waitFor("A to drop C", func() bool { return slices.Equal(instances(a), both[:1]) })
}
