package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
)

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)

// The package's tests share one throwaway PostgreSQL cluster, started by
// the first test that needs it and stopped when they end.
var shared struct {
	once    sync.Once
	cluster *pgtest.Cluster
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Stop()
	}
	os.Exit(code)
}

// cluster is the shared cluster.
func cluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	shared.once.Do(func() { shared.cluster, shared.err = pgtest.New() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.cluster
}

// openPostgres opens a store in a fresh database of the shared cluster.
func openPostgres(t *testing.T) *Postgres {
	t.Helper()
	p, err := OpenPostgres(context.Background(), cluster(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// forEachStore runs fn on a fresh SQLite store and on a fresh PostgreSQL
// one: the conformance of the two backends, case by case.
func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, _ := openTest(t)
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgres(t)) })
}

// conformanceCases run against every backend.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"certificates round trip", func(t *testing.T, s Store) {
		ctx := context.Background()
		for i := range 3 {
			c := testCert(i)
			if i == 2 {
				c.IssuerID = "rsa-int-1"
			}
			if err := s.PutCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Certificate(ctx, testCert(1).Serial)
		want := testCert(1)
		if err != nil || got.Subject != want.Subject || !slices.Equal(got.SANs, want.SANs) || !got.NotAfter.Equal(want.NotAfter) ||
			got.IssuerID != want.IssuerID || string(got.DER) != string(want.DER) || got.Revoked || got.Renews != nil {
			t.Fatalf("certificate %+v, %v", got, err)
		}
		if _, err := s.Certificate(ctx, big.NewInt(7)); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing: %v", err)
		}
		if st, err := s.CertificateStatus(ctx, "ecdsa-int-1", want.Serial); err != nil || st.Revoked || !st.NotAfter.Equal(want.NotAfter) {
			t.Errorf("status %+v %v", st, err)
		}
		if _, err := s.CertificateStatus(ctx, "rsa-int-1", want.Serial); !errors.Is(err, ErrNotFound) {
			t.Errorf("status under another issuer: %v", err)
		}
		list, err := s.ListCertificates(ctx, ListOptions{IssuerID: "ecdsa-int-1"})
		if err != nil || len(list) != 2 || list[0].Serial.Cmp(testCert(1).Serial) != 0 {
			t.Errorf("list %v %v", list, err)
		}
		if counts, err := s.CountCertificates(ctx); err != nil || counts["ecdsa-int-1"] != 2 || counts["rsa-int-1"] != 1 {
			t.Errorf("counts %v %v", counts, err)
		}
	}},
	{"key reuse and serial conflicts", func(t *testing.T, s Store) {
		ctx := context.Background()
		c := testCert(1)
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		if used, err := s.KeyUsed(ctx, c.SPKIHash); err != nil || !used {
			t.Fatalf("key used: %v %v", used, err)
		}
		again := testCert(2)
		again.SPKIHash = c.SPKIHash
		if err := s.PutCertificate(ctx, again); !errors.Is(err, ErrKeyReused) {
			t.Errorf("reused key: %v", err)
		}
		same := testCert(3)
		same.Serial = c.Serial
		if err := s.PutCertificate(ctx, same); !errors.Is(err, ErrConflict) {
			t.Errorf("reused serial: %v", err)
		}
		// A same-key renewal is the one certificate that may repeat a key.
		renewal := testCert(4)
		renewal.SPKIHash, renewal.Renews = c.SPKIHash, c.Serial
		if err := s.PutCertificate(ctx, renewal); err != nil {
			t.Errorf("same-key renewal: %v", err)
		}
		if got, err := s.Certificate(ctx, renewal.Serial); err != nil || got.Renews == nil || got.Renews.Cmp(c.Serial) != 0 {
			t.Errorf("renewal %+v %v", got, err)
		}
		// Nothing of the refused certificates was kept.
		if list, _ := s.ListCertificates(ctx, ListOptions{}); len(list) != 2 {
			t.Errorf("%d certificates after refusals", len(list))
		}
	}},
	{"revocation", func(t *testing.T, s Store) {
		ctx := context.Background()
		at := time.Unix(1_800_100_000, 0).UTC()
		first, _ := s.LastEvent(ctx)
		for i := range 4 {
			if err := s.PutCertificate(ctx, testCert(i)); err != nil {
				t.Fatal(err)
			}
		}
		renewal := testCert(9)
		renewal.SPKIHash, renewal.Renews = testCert(2).SPKIHash, testCert(2).Serial
		if err := s.PutCertificate(ctx, renewal); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, big.NewInt(5), at, 1); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoke a missing serial: %v", err)
		}
		rctx := WithAudit(ctx, &AuditRecord{At: at, Actor: "operator ada", Action: "certificate_revoked", Remote: "192.0.2.1"})
		c, err := s.Revoke(rctx, testCert(3).Serial, at, 4)
		if err != nil || !c.Revoked || c.Reason != 4 || !c.RevokedAt.Equal(at) {
			t.Fatalf("revoke: %+v %v", c, err)
		}
		if _, err := s.Revoke(ctx, testCert(3).Serial, at, 4); !errors.Is(err, ErrAlreadyRevoked) {
			t.Errorf("revoke twice: %v", err)
		}
		// keyCompromise takes the key's other certificates too.
		if _, err := s.Revoke(ctx, testCert(2).Serial, at, ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Certificate(ctx, renewal.Serial); !got.Revoked || got.Reason != ReasonKeyCompromise {
			t.Errorf("the same key's renewal: %+v", got)
		}
		var serials []string
		if err := s.Revocations(ctx, "ecdsa-int-1", func(r Revocation) error {
			serials = append(serials, fmt.Sprintf("%s/%d", SerialKey(r.Serial), r.Reason))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := []string{SerialKey(testCert(2).Serial) + "/1", SerialKey(testCert(3).Serial) + "/4", SerialKey(renewal.Serial) + "/1"}
		slices.Sort(want)
		if !slices.Equal(serials, want) {
			t.Errorf("revocations %v, want %v", serials, want)
		}
		evs, err := s.EventsSince(ctx, first)
		if err != nil || len(evs) != 3 || evs[0].Kind != EventRevoked || evs[0].Ref != "ecdsa-int-1/"+SerialKey(testCert(3).Serial) {
			t.Errorf("events %+v %v", evs, err)
		}
		recs, err := s.Audit(ctx, 0)
		if err != nil || len(recs) != 1 || recs[0].Target != SerialKey(testCert(3).Serial) || recs[0].Remote != "192.0.2.1" ||
			!strings.Contains(recs[0].Detail, "names n3.studio.example.test") {
			t.Errorf("audit %+v %v", recs, err)
		}
	}},
	{"CRL numbers", func(t *testing.T, s Store) {
		ctx := context.Background()
		for want := int64(1); want <= 3; want++ {
			if n, err := s.NextCRLNumber(ctx, "ecdsa-int-1"); err != nil || n != want {
				t.Fatalf("number %d, want %d: %v", n, want, err)
			}
		}
		if n, err := s.NextCRLNumber(ctx, "rsa-int-1"); err != nil || n != 1 {
			t.Fatalf("another issuer's first: %d %v", n, err)
		}
	}},
	{"name bindings", func(t *testing.T, s Store) {
		ctx := context.Background()
		now := testCert(0).IssuedAt
		a := testCert(1)
		a.Holder, a.Bind = "vendor A 1", &Binding{Lapsed: now.Add(-time.Hour)}
		if err := s.PutCertificate(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := testCert(2)
		b.SANs, b.Holder, b.Bind = []string{"n1.studio.example.test"}, "vendor B 2", &Binding{Lapsed: now.Add(-time.Hour)}
		var nb *NameBoundError
		if err := s.PutCertificate(ctx, b); !errors.As(err, &nb) || nb.Holder != "vendor A 1" {
			t.Fatalf("a bound name for another holder: %v", err)
		}
		if _, err := s.Certificate(ctx, b.Serial); !errors.Is(err, ErrNotFound) {
			t.Fatal("the refused certificate was kept")
		}
		// An operator's take-over moves it, audited.
		b.Bind = &Binding{Lapsed: now.Add(-time.Hour), TakeOver: map[string]string{"n1.studio.example.test": "vendor A 1"}, Actor: "operator ada"}
		if err := s.PutCertificate(ctx, b); err != nil {
			t.Fatal(err)
		}
		bs, err := s.NameBindings(ctx, BindingFilter{})
		if err != nil || len(bs) != 2 || bs[0].Name != "alt.studio.example.test" || bs[0].Holder != "vendor A 1" ||
			bs[1].Name != "n1.studio.example.test" || bs[1].Holder != "vendor B 2" || bs[1].Serial.Cmp(b.Serial) != 0 {
			t.Fatalf("bindings %+v %v", bs, err)
		}
		recs, _ := s.Audit(ctx, 0)
		if len(recs) != 1 || recs[0].Action != "name_transferred" || recs[0].Actor != "operator ada" || !strings.Contains(recs[0].Detail, "from vendor A 1 to vendor B 2") {
			t.Errorf("audit %+v", recs)
		}
		if bs, _ := s.NameBindings(ctx, BindingFilter{Holder: "B 2"}); len(bs) != 1 { // a part of the holder
			t.Errorf("by holder: %+v", bs)
		}
	}},
	{"events", func(t *testing.T, s Store) {
		ctx := context.Background()
		base, err := s.LastEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Unix(1_800_000_000, 0).UTC()
		for _, k := range []string{EventIssued, EventGenerations} {
			if err := s.AddEvent(ctx, k, "ref-"+k, at); err != nil {
				t.Fatal(err)
			}
		}
		evs, err := s.EventsSince(ctx, base)
		if err != nil || len(evs) != 2 || evs[0].Kind != EventIssued || evs[1].Ref != "ref-"+EventGenerations || !evs[1].At.Equal(at) {
			t.Fatalf("events %+v %v", evs, err)
		}
		if last, _ := s.LastEvent(ctx); last != evs[1].ID {
			t.Errorf("last %d, want %d", last, evs[1].ID)
		}
		if evs, _ := s.EventsSince(ctx, evs[1].ID); len(evs) != 0 {
			t.Errorf("after the last: %+v", evs)
		}
	}},
}

// TestConformance runs every case on SQLite and on PostgreSQL. (Most of
// the store's other tests run on both too, through forEachStore.)
func TestConformance(t *testing.T) {
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) { forEachStore(t, tc.run) })
	}
}

// TestPostgresSchema: a second appliance opening the same database finds
// it migrated; a database of a newer schema is refused; two appliances
// racing to certify one key get one certificate between them; a DSN's
// password is not repeated in an error.
func TestPostgresSchema(t *testing.T) {
	ctx := context.Background()
	dsn := cluster(t).NewDatabase(t)
	a, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatalf("the second appliance: %v", err)
	}
	defer b.Close()

	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			cert := testCert(100 + i)
			cert.SPKIHash = testCert(0).SPKIHash
			errs[i] = s.PutCertificate(ctx, cert)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrKeyReused):
			t.Errorf("racing: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d certificates of one key", ok)
	}

	if _, err := a.pool.Exec(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer than this program") {
		t.Fatalf("a newer schema: %v", err)
	}
	for _, bad := range []string{"postgres://u:hunter2secret@127.0.0.1:1/db?sslmode=disable", "postgres://u:hunter2secret@[::1/db", "host=127.0.0.1 port=1 password=hunter2secret"} {
		_, err := OpenPostgres(ctx, bad)
		t.Logf("DSN %q: %v", bad, err)
		if err == nil || strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("DSN %q: %v", bad, err)
		}
	}
}

// TestPostgresEvents: events added by two handles (two appliances) come
// in commit order to a reader, who is notified of them without polling.
func TestPostgresEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn := cluster(t).NewDatabase(t)
	a, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	notes := a.Notifications(ctx)
	time.Sleep(200 * time.Millisecond) // the listener's LISTEN
	at := time.Unix(1_800_000_000, 0).UTC()
	if err := b.AddEvent(ctx, EventIssued, "from b", at); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notes:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification of b's event")
	}
	// Many writers: a reader that follows EventsSince never skips one.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			for j := range 20 {
				if err := s.AddEvent(ctx, EventRevoked, fmt.Sprintf("%d/%d", i, j), at); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[int64]bool{}
	var last int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		evs, err := a.EventsSince(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			seen[e.ID] = true
			last = e.ID
		}
		if finished {
			break
		}
	}
	all, _ := a.EventsSince(ctx, 0)
	if len(all) != 161 || len(seen) != 161 {
		t.Fatalf("%d events, a reader following them saw %d", len(all), len(seen))
	}
}

// TestPostgresLead: one appliance at a time runs a job; when the one
// running it goes, another takes it.
func TestPostgresLead(t *testing.T) {
	ctx := context.Background()
	dsn := cluster(t).NewDatabase(t)
	a, err := OpenPostgres(ctx, dsn+"&application_name=node-a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	inA := make(chan struct{})
	release := make(chan struct{})
	go func() {
		ok, err := a.Lead(ctx, "ca-maintenance", func(context.Context) {
			close(inA)
			<-release
		})
		if !ok || err != nil {
			t.Errorf("A: %v %v", ok, err)
		}
	}()
	<-inA
	ran := false
	if ok, err := b.Lead(ctx, "ca-maintenance", func(context.Context) { ran = true }); ok || err != nil || ran {
		t.Fatalf("B ran the job while A did: %v %v", ok, err)
	}
	if ok, err := b.Lead(ctx, "another job", func(context.Context) { ran = true }); !ok || err != nil || !ran {
		t.Fatalf("B did not run another job: %v %v", ok, err)
	}
	close(release)
	// A dies holding the lock of a job: its connections close, and B takes it.
	hold, end := make(chan struct{}), make(chan struct{})
	defer close(end) // before a.Close, which waits for the held connection
	go func() {
		_, _ = a.Lead(ctx, "ca-maintenance", func(context.Context) { close(hold); <-end })
	}()
	<-hold
	if ok, _ := b.Lead(ctx, "ca-maintenance", func(context.Context) {}); ok {
		t.Fatal("B ran the job A holds")
	}
	// A's connections end, as when its process dies.
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'node-a'`); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ok, err := b.Lead(ctx, "ca-maintenance", func(context.Context) {}); ok && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B never took the job over")
		}
	}
}

// TestPostgresTLS: the store reaches PostgreSQL over TLS with the
// server's certificate verified (sslmode=verify-full): a server whose
// certificate does not chain to the root given, or does not name the host
// asked for, is refused, and the DSN's password stays out of the error.
func TestPostgresTLS(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	caFile := c.EnableTLS(t)
	u, err := url.Parse(c.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	p, err := OpenPostgres(ctx, c.TLSDSN(name, "localhost", caFile))
	if err != nil {
		t.Fatalf("verify-full: %v", err)
	}
	var ssl bool
	if err := p.pool.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the connection is not TLS: %v %v", ssl, err)
	}
	p.Close()

	other := pgtest.Start(t).EnableTLS(t) // another CA
	for what, dsn := range map[string]string{
		"another CA":   c.TLSDSN(name, "localhost", other),
		"another name": c.TLSDSN(name, "127.0.0.1", caFile),
	} {
		dsn = strings.Replace(dsn, "postgres@", "postgres:hunter2secret@", 1)
		_, err := OpenPostgres(ctx, dsn)
		if err == nil || strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
}

// TestPostgresNodes: Nodes lists the nodes heard from within the window,
// by the database's clock, leaves out a row this program did not write,
// and forgets a node that leaves.
func TestPostgresNodes(t *testing.T) {
	p := openPostgres(t)
	ctx := context.Background()
	a := Node{Hostname: "est-a.studio.example.test", Addresses: []string{"192.0.2.1"}, Instances: []NodeInstance{{Instance: "est-a pri 10", Port: 8443, Pri: 10}}}
	b := Node{Hostname: "est-b.studio.example.test", Addresses: []string{"192.0.2.2"}, Instances: []NodeInstance{{Instance: "est-b pri 20", Port: 8443, Pri: 20, APISelector: "x"}}}
	for _, n := range []Node{a, b} {
		if err := p.Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO nodes (hostname, info, last_seen) VALUES ('est-x.studio.example.test', 'not json', now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.pool.Exec(ctx, `UPDATE nodes SET last_seen = now() - interval '1 minute' WHERE hostname = $1`, b.Hostname); err != nil {
		t.Fatal(err)
	}
	got, err := p.Nodes(ctx, 30*time.Second)
	if err != nil || len(got) != 1 || got[0].Hostname != a.Hostname || !slices.Equal(got[0].Addresses, a.Addresses) ||
		!slices.Equal(got[0].Instances, a.Instances) || time.Since(got[0].LastSeen) > time.Minute {
		t.Fatalf("nodes within 30 s: %+v %v", got, err)
	}
	if got, err := p.Nodes(ctx, 2*time.Minute); err != nil || len(got) != 2 || got[1].Instances[0] != b.Instances[0] {
		t.Fatalf("nodes within 2 min: %+v %v", got, err)
	}
	if err := p.Leave(ctx, a.Hostname); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Nodes(ctx, 2*time.Minute); err != nil || len(got) != 1 || got[0].Hostname != b.Hostname {
		t.Fatalf("after A left: %+v %v", got, err)
	}
}
