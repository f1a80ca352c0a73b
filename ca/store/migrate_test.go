package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCopyToPostgres: a SQLite store with every kind of row moves to
// PostgreSQL whole; what the appliance reads there is what it read in
// SQLite, and what it writes next goes on from there (ids, CRL
// numbers). A database that holds records already is refused.
func TestCopyToPostgres(t *testing.T) {
	ctx := context.Background()
	src, _ := openTest(t)
	at := time.Unix(1_800_000_000, 0).UTC()
	gen := &Generation{ID: "ecdsa-root-1", Hierarchy: "ecdsa", Role: "root", Seq: 1, State: StateActive, CertDER: []byte{0x30, 1}, KeyFile: "ca/ecdsa-root-1.key", CreatedAt: at}
	gen2 := &Generation{ID: "ecdsa-int-1", Hierarchy: "ecdsa", Role: "intermediate", Seq: 1, ParentID: "ecdsa-root-1", State: StateActive, CertDER: []byte{0x30, 2}, KeyFile: "ca/ecdsa-int-1.key", CreatedAt: at}
	if err := src.PutGenerations(ctx, gen, gen2); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c := testCert(i)
		c.Holder, c.Bind = "vendor "+string(rune('A'+i)), &Binding{Lapsed: at.Add(-time.Hour)}
		c.SANs = []string{c.SANs[0]}
		if err := src.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	renewal := testCert(9)
	renewal.SPKIHash, renewal.Renews = testCert(1).SPKIHash, testCert(1).Serial
	if err := src.PutCertificate(ctx, renewal); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Revoke(WithAudit(ctx, &AuditRecord{At: at, Actor: "operator ada", Action: "certificate_revoked"}), testCert(2).Serial, at, 4); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := src.NextCRLNumber(ctx, "ecdsa-root-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.PutStaticCRL(ctx, &StaticCRL{IssuerID: "ecdsa-root-1", Number: 3, DER: []byte{0x30, 3}, NextUpdate: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	p := &Pending{ID: "req1", Operation: "simpleenroll", CSR: []byte{0x30, 4}, SPKIHash: []byte("pk"), Subject: "CN=cam", SANs: []string{"cam.studio.example.test"},
		Client: "no client certificate", State: PendingWaiting, CreatedAt: at, ExpiresAt: at.Add(time.Hour), Remote: "192.0.2.9", Holder: "request req1",
		Conflicts: []string{"cam.studio.example.test\tvendor Z"}}
	if err := src.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := src.PutUser(ctx, &User{Name: "ada", Role: "admin", PasswordHash: "$argon2id$x", CreatedAt: at}, &AuditRecord{At: at, Actor: "root", Action: "user_added", Target: "ada"}); err != nil {
		t.Fatal(err)
	}
	sess := &Session{TokenHash: []byte("token hash"), User: "ada", CSRF: "c", CreatedAt: at, LastSeen: at, Remote: "192.0.2.1"}
	if err := src.LoginSucceeded(ctx, "ada", at, "", sess); err != nil {
		t.Fatal(err)
	}
	srcEvents, _ := src.EventsSince(ctx, 0)
	srcAudit, _ := src.Audit(ctx, 0)

	dst := openPostgres(t)
	counts, err := CopyToPostgres(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if counts["certificates"] != 6 || counts["generations"] != 2 || counts["sessions"] != 1 || counts["certificate_names"] != 7 { // the renewal has two names
		t.Errorf("counts %v", counts)
	}

	// Read back through the store.
	c, err := dst.Certificate(ctx, testCert(2).Serial)
	if err != nil || !c.Revoked || c.Reason != 4 || c.Holder != "vendor C" || c.Subject != testCert(2).Subject {
		t.Errorf("certificate %+v %v", c, err)
	}
	if c, err := dst.Certificate(ctx, renewal.Serial); err != nil || c.Renews == nil || c.Renews.Cmp(testCert(1).Serial) != 0 || c.Revoked {
		t.Errorf("renewal %+v %v", c, err)
	}
	if gens, err := dst.Generations(ctx); err != nil || len(gens) != 2 || gens[1].ParentID != "ecdsa-root-1" || gens[0].KeyFile != gen.KeyFile {
		t.Errorf("generations %+v %v", gens, err)
	}
	if got, err := dst.PendingByID(ctx, "req1"); err != nil || got.Remote != "192.0.2.9" || len(got.Conflicts) != 1 || got.State != PendingWaiting {
		t.Errorf("pending %+v %v", got, err)
	}
	if bs, err := dst.NameBindings(ctx, BindingFilter{}); err != nil || len(bs) != 5 || bs[0].Holder != "vendor A" {
		t.Errorf("bindings %+v %v", bs, err)
	}
	if u, err := dst.User(ctx, "ada"); err != nil || u.Role != "admin" || u.LastLogin.IsZero() {
		t.Errorf("user %+v %v", u, err)
	}
	if s, err := dst.Session(ctx, sess.TokenHash); err != nil || s.User != "ada" {
		t.Errorf("session %+v %v", s, err)
	}
	if evs, err := dst.EventsSince(ctx, 0); err != nil || len(evs) != len(srcEvents) || evs[len(evs)-1].ID != srcEvents[len(srcEvents)-1].ID {
		t.Errorf("events %d of %d: %v", len(evs), len(srcEvents), err)
	}
	if recs, err := dst.Audit(ctx, 0); err != nil || len(recs) != len(srcAudit) || recs[0].ID != srcAudit[0].ID || recs[0].Action != srcAudit[0].Action {
		t.Errorf("audit %d of %d: %v", len(recs), len(srcAudit), err)
	}
	if der, n, _, err := dst.StaticCRL(ctx, "ecdsa-root-1"); err != nil || n != 3 || len(der) != 2 {
		t.Errorf("static CRL %d %v", n, err)
	}
	if counts, err := dst.CountCertificates(ctx); err != nil || counts["ecdsa-int-1"] != 6 {
		t.Errorf("counts %v %v", counts, err)
	}
	if page, err := dst.SearchCertificates(ctx, CertificateQuery{Name: "N3.studio.example.test"}); err != nil || len(page.Certificates) != 1 {
		t.Errorf("search by name %+v %v", page, err)
	}

	// What comes next goes on from the copy.
	if n, err := dst.NextCRLNumber(ctx, "ecdsa-root-1"); err != nil || n != 4 {
		t.Errorf("next CRL number %d %v", n, err)
	}
	next := testCert(20)
	if err := dst.PutCertificate(ctx, next); err != nil {
		t.Fatal(err)
	}
	list, _ := dst.ListCertificates(ctx, ListOptions{Limit: 1})
	if len(list) != 1 || list[0].Serial.Cmp(next.Serial) != 0 {
		t.Errorf("the newest after the copy: %+v", list)
	}
	if err := dst.AddEvent(ctx, EventIssued, "x", at); err != nil {
		t.Fatal(err)
	}
	if last, _ := dst.LastEvent(ctx); last <= srcEvents[len(srcEvents)-1].ID {
		t.Errorf("event ids went back: %d", last)
	}
	dup := testCert(21)
	dup.SPKIHash = testCert(0).SPKIHash
	if err := dst.PutCertificate(ctx, dup); !errors.Is(err, ErrKeyReused) {
		t.Errorf("a key of the copy reused: %v", err)
	}

	// Copying again into a database with records is refused.
	if _, err := CopyToPostgres(ctx, src, dst); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("a second copy: %v", err)
	}
}
