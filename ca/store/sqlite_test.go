package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func testCert(i int) *Certificate {
	h := sha256.Sum256([]byte(fmt.Sprint("key", i)))
	now := time.Unix(1_800_000_000, 0).UTC()
	return &Certificate{
		Serial: big.NewInt(int64(1000 + i)), IssuerID: "ecdsa-int-1", Subject: fmt.Sprintf("CN=n%d.studio.example.test", i),
		SANs: []string{fmt.Sprintf("n%d.studio.example.test", i), "alt.studio.example.test"}, KeyType: "ECDSA P-256",
		SPKIHash: h[:], NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), IssuedAt: now,
		Identity: "test", Profile: "leaf", DER: []byte{0x30, byte(i)},
	}
}

func TestCertificatesRoundTripAndDurability(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	c := testCert(1)
	if err := s.PutCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Same key again: ErrKeyReused. Same serial, other key: a conflict.
	dup := testCert(2)
	dup.SPKIHash = c.SPKIHash
	if err := s.PutCertificate(ctx, dup); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("reused key: %v", err)
	}
	same := testCert(3)
	same.Serial = c.Serial
	if err := s.PutCertificate(ctx, same); !errors.Is(err, ErrConflict) {
		t.Fatalf("reused serial: %v", err)
	}
	s.Close()

	// A second handle (another process) sees it.
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Certificate(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != c.Subject || len(got.SANs) != 2 || got.SANs[1] != "alt.studio.example.test" || !got.NotAfter.Equal(c.NotAfter) || string(got.DER) != string(c.DER) {
		t.Errorf("round trip: %+v", got)
	}
	if used, _ := s2.KeyUsed(ctx, c.SPKIHash); !used {
		t.Error("KeyUsed false for a certified key")
	}
	if _, err := s2.Certificate(ctx, big.NewInt(5)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing serial: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %04o, want 0600", fi.Mode().Perm())
	}
}

func TestRevokeEventsAndCRLNumbers(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		for i := 0; i < 5; i++ {
			if err := s.PutCertificate(ctx, testCert(i)); err != nil {
				t.Fatal(err)
			}
		}
		last, _ := s.LastEvent(ctx)
		at := time.Unix(1_800_000_100, 0)
		c, err := s.Revoke(ctx, big.NewInt(1003), at, 1)
		if err != nil || !c.Revoked || c.Reason != 1 || !c.RevokedAt.Equal(at) {
			t.Fatalf("revoke: %+v %v", c, err)
		}
		if _, err := s.Revoke(ctx, big.NewInt(1003), at, 1); !errors.Is(err, ErrAlreadyRevoked) {
			t.Fatalf("second revoke: %v", err)
		}
		if _, err := s.Revoke(ctx, big.NewInt(9), at, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke missing: %v", err)
		}
		evs, _ := s.EventsSince(ctx, last)
		if len(evs) != 1 || evs[0].Kind != EventRevoked || evs[0].Ref != "ecdsa-int-1/3eb" {
			t.Fatalf("events %+v", evs)
		}
		var revs []Revocation
		if err := s.Revocations(ctx, "ecdsa-int-1", func(r Revocation) error { revs = append(revs, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(revs) != 1 || revs[0].Serial.Int64() != 1003 || revs[0].Reason != 1 {
			t.Fatalf("revocations %+v", revs)
		}
		st, err := s.CertificateStatus(ctx, "ecdsa-int-1", big.NewInt(1003))
		if err != nil || !st.Revoked {
			t.Fatalf("status %+v %v", st, err)
		}
		if _, err := s.CertificateStatus(ctx, "rsa-int-1", big.NewInt(1003)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("status under the wrong issuer: %v", err)
		}
		yes := true
		list, _ := s.ListCertificates(ctx, ListOptions{Revoked: &yes})
		if len(list) != 1 {
			t.Fatalf("revoked list %d", len(list))
		}
		all, _ := s.ListCertificates(ctx, ListOptions{Limit: 3})
		if len(all) != 3 || all[0].Serial.Int64() != 1004 {
			t.Fatalf("list newest first with limit: %d, first %v", len(all), all[0].Serial)
		}
		prev := int64(0)
		for i := 0; i < 3; i++ {
			n, err := s.NextCRLNumber(ctx, "ecdsa-int-1")
			if err != nil || n <= prev {
				t.Fatalf("CRL number %d after %d: %v", n, prev, err)
			}
			prev = n
		}
		if n, _ := s.NextCRLNumber(ctx, "rsa-int-1"); n != 1 {
			t.Fatalf("CRL numbers are per issuer: got %d", n)
		}
	})
}

func TestPendingLifecycle(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		now := time.Unix(1_800_000_000, 0)
		key := sha256.Sum256([]byte("k"))
		p := &Pending{ID: "abc", Operation: "simpleenroll", CSR: []byte{1}, SPKIHash: key[:], Subject: "CN=x", SANs: []string{"x.studio.example.test"},
			Client: "no certificate", State: PendingWaiting, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.PutPending(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPending(ctx, p); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate pending: %v", err)
		}
		got, err := s.PendingByKey(ctx, key[:])
		if err != nil || got.ID != "abc" || got.State != PendingWaiting {
			t.Fatalf("by key: %+v %v", got, err)
		}
		if err := s.SetPendingIssued(ctx, "abc", big.NewInt(7)); !errors.Is(err, ErrConflict) {
			t.Fatalf("issued before approval: %v", err)
		}
		if _, err := s.DecidePending(ctx, "abc", PendingApproved, "op", now.Add(2*time.Hour)); !errors.Is(err, ErrConflict) {
			t.Fatalf("decided after expiry: %v", err)
		}
		d, err := s.DecidePending(ctx, "abc", PendingApproved, "op", now.Add(time.Minute))
		if err != nil || d.State != PendingApproved || d.DecidedBy != "op" {
			t.Fatalf("approve: %+v %v", d, err)
		}
		if _, err := s.DecidePending(ctx, "abc", PendingDenied, "op", now.Add(time.Minute)); !errors.Is(err, ErrConflict) {
			t.Fatalf("decided twice: %v", err)
		}
		if err := s.SetPendingIssued(ctx, "abc", big.NewInt(7)); err != nil {
			t.Fatal(err)
		}
		got, _ = s.PendingByID(ctx, "abc")
		if got.State != PendingIssued || got.Serial.Int64() != 7 {
			t.Fatalf("issued: %+v", got)
		}
		if _, err := s.DecidePending(ctx, "nope", PendingDenied, "op", now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		q := &Pending{ID: "old", Operation: "simpleenroll", CSR: []byte{1}, SPKIHash: []byte{9}, State: PendingWaiting, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if err := s.PutPending(ctx, q); err != nil {
			t.Fatal(err)
		}
		if n, err := s.ExpirePending(ctx, now.Add(time.Hour)); err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		waiting, _ := s.ListPending(ctx, PendingWaiting)
		all, _ := s.ListPending(ctx, "")
		if len(waiting) != 0 || len(all) != 2 {
			t.Fatalf("waiting %d all %d", len(waiting), len(all))
		}
	})
}

func TestGenerations(t *testing.T) {
	ctx := context.Background()
	forEachStore(t, func(t *testing.T, s Store) {
		g := &Generation{ID: "ecdsa-root-1", Hierarchy: "ecdsa", Role: "root", Seq: 1, State: StateActive, CertDER: []byte{1}, KeyFile: "ca/x.key", CreatedAt: time.Unix(1, 0)}
		if err := s.PutGeneration(ctx, g); err != nil {
			t.Fatal(err)
		}
		if err := s.PutGeneration(ctx, g); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate generation: %v", err)
		}
		if err := s.SetGenerationState(ctx, "ecdsa-root-1", StateRetiring); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGenerationState(ctx, "nope", StateRetiring); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		gs, _ := s.Generations(ctx)
		if len(gs) != 1 || gs[0].State != StateRetiring || gs[0].KeyFile != "ca/x.key" {
			t.Fatalf("generations %+v", gs)
		}
	})
}

// Two handles writing at once (the appliance and the CLI) must both
// succeed: the busy timeout serialises them.
func TestConcurrentWritersAcrossHandles(t *testing.T) {
	ctx := context.Background()
	s1, path := openTest(t)
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w, s := range []*SQLite{s1, s2} {
		wg.Add(1)
		go func(w int, s *SQLite) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				errs <- s.PutCertificate(ctx, testCert(w*1000+i))
			}
		}(w, s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, _ := s1.CountCertificates(ctx)
	if n["ecdsa-int-1"] != 100 {
		t.Fatalf("count %v", n)
	}
}

func TestSchemaNewerThanProgram(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if _, err := s.w.ExecContext(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := OpenSQLite(ctx, path); err == nil {
		t.Fatal("opened a database from a newer version")
	}
}

func BenchmarkPutCertificate(b *testing.B) {
	s, _ := openTest(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.PutCertificate(ctx, testCert(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMigrationsKeepData: a database of the first schema, with
// certificates in it, opened by this version gets its counts filled from
// its rows, and its certificates moved into the table of the third schema
// (holder, renews, the key's partial unique index) with nothing lost.
func TestMigrationsKeepData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`, `INSERT INTO schema_version VALUES (1)`, migrations[0]} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		c := testCert(i)
		if i == 2 {
			c.IssuerID = "rsa-int-1"
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO certificates
			(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, revoked, revoked_at, reason)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, SerialKey(c.Serial), c.IssuerID, c.Subject, joinNames(c.SANs), c.KeyType, c.SPKIHash,
			unix(c.NotBefore), unix(c.NotAfter), unix(c.IssuedAt), c.Identity, c.Profile, c.DER, i == 1, unix(c.IssuedAt), 1); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutCertificate(ctx, testCert(3)); err != nil {
		t.Fatal(err)
	}
	got, err := s.CountCertificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["ecdsa-int-1"] != 3 || got["rsa-int-1"] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want ecdsa-int-1 3, rsa-int-1 1", got)
	}
	c, err := s.Certificate(ctx, testCert(1).Serial)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revoked || c.Reason != 1 || c.Subject != testCert(1).Subject || c.Holder != "certificate "+SerialKey(c.Serial) || c.Renews != nil {
		t.Fatalf("migrated certificate %+v", c)
	}
	// The names of the certificates already issued are bound, the
	// newest certificate of a shared name winning.
	bs, err := s.NameBindings(ctx, BindingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]string{}
	for _, b := range bs {
		bound[b.Name] = b.Holder
	}
	want := map[string]string{
		"n0.studio.example.test": "certificate " + SerialKey(testCert(0).Serial),
		"n1.studio.example.test": "certificate " + SerialKey(testCert(1).Serial),
		"n2.studio.example.test": "certificate " + SerialKey(testCert(2).Serial),
		// testCert's shared name: all three issued in the same second,
		// the last row wins.
		"alt.studio.example.test": "certificate " + SerialKey(testCert(2).Serial),
	}
	if fmt.Sprint(bound) != fmt.Sprint(want) {
		t.Fatalf("bindings after migration %v, want %v", bound, want)
	}
	// The names index holds the old rows' names as well as the new one's.
	page, err := s.SearchCertificates(ctx, CertificateQuery{Name: "ALT.studio.example.test."})
	if err != nil || len(page.Certificates) != 4 || page.Certificates[0].Serial.Cmp(testCert(3).Serial) != 0 {
		t.Fatalf("search by a shared name after migration: %v %+v", err, page)
	}
	if page, err := s.SearchCertificates(ctx, CertificateQuery{Name: "n2.studio.example.test"}); err != nil || len(page.Certificates) != 1 {
		t.Fatalf("search by a migrated certificate's own name: %v %+v", err, page)
	}
	// The key index still refuses a key of the old rows.
	dup := testCert(9)
	dup.SPKIHash = testCert(0).SPKIHash
	if err := s.PutCertificate(ctx, dup); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("reused key after migration: %v", err)
	}
	// Opened again: nothing to migrate, nothing changes.
	s.Close()
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.ListCertificates(ctx, ListOptions{})
	if err != nil || len(list) != 4 {
		t.Fatalf("%d certificates, %v", len(list), err)
	}
}

// TestCloseReleasesTheFile: after Close no connection of the store is
// left open (a prepared statement left behind would keep its connection,
// and the file's locks, until the process ends): another program can
// take the database exclusively and change its journal mode.
func TestCloseReleasesTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "close.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCertificate(ctx, testCert(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(100)&_pragma=locking_mode(EXCLUSIVE)&_pragma=journal_mode(OFF)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM certificates`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the closed store's file: %d rows, %v", n, err)
	}
}
