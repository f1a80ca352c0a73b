package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUsersAndSessions: accounts with their audit records, the last
// admin kept, lockout, sessions ended by a new password or role, and
// expiry.
func TestUsersAndSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		t0 := time.Unix(1_800_000_000, 0).UTC()
		audit := func(action, target string) *AuditRecord {
			return &AuditRecord{At: t0, Actor: "root", Action: action, Target: target, Remote: "cli"}
		}
		if n, _ := s.CountUsers(ctx); n != 0 {
			t.Fatalf("%d users in a new store", n)
		}
		if err := s.PutUser(ctx, &User{Name: "alice", Role: "admin", PasswordHash: "h1", CreatedAt: t0}, audit("user_added", "alice")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutUser(ctx, &User{Name: "alice", Role: "viewer", PasswordHash: "h", CreatedAt: t0}, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("a second alice: %v", err)
		}
		if err := s.PutUser(ctx, &User{Name: "bob", Role: "operator", PasswordHash: "h2", CreatedAt: t0}, audit("user_added", "bob")); err != nil {
			t.Fatal(err)
		}
		// The last admin cannot go, nor lose the role.
		if err := s.DeleteUser(ctx, "alice", nil); !errors.Is(err, ErrLastAdmin) {
			t.Fatalf("delete the last admin: %v", err)
		}
		if _, err := s.UpdateUser(ctx, "alice", UserUpdate{Role: "viewer"}, t0, nil); !errors.Is(err, ErrLastAdmin) {
			t.Fatalf("demote the last admin: %v", err)
		}
		if _, err := s.UpdateUser(ctx, "nobody", UserUpdate{Role: "viewer"}, t0, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update nobody: %v", err)
		}

		// Sessions.
		sess := &Session{TokenHash: []byte("token-hash-bob-1"), User: "bob", CSRF: "csrf", CreatedAt: t0, LastSeen: t0, Remote: "192.0.2.7"}
		if err := s.LoginSucceeded(ctx, "bob", t0, "", sess); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, sess.TokenHash)
		if err != nil || got.User != "bob" || got.CSRF != "csrf" || got.Remote != "192.0.2.7" || !got.CreatedAt.Equal(t0) {
			t.Fatalf("session %+v %v", got, err)
		}
		if err := s.TouchSession(ctx, sess.TokenHash, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Session(ctx, sess.TokenHash); !got.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Fatalf("touched %v", got.LastSeen)
		}
		// A role change ends bob's sessions.
		if u, err := s.UpdateUser(ctx, "bob", UserUpdate{Role: "viewer"}, t0, audit("user_role", "bob")); err != nil || u.Role != "viewer" {
			t.Fatalf("%+v %v", u, err)
		}
		if _, err := s.Session(ctx, sess.TokenHash); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session after a role change: %v", err)
		}

		// Five failures lock bob; the lock is audited; Unlock clears it.
		var u *User
		for i := range 5 {
			if u, err = s.LoginFailed(ctx, "bob", t0.Add(time.Duration(i)*time.Second), 5, 15*time.Minute, "192.0.2.7"); err != nil {
				t.Fatal(err)
			}
		}
		if u.Failures != 5 || !u.LockedUntil.Equal(t0.Add(4*time.Second+15*time.Minute)) {
			t.Fatalf("after five failures: %+v", u)
		}
		if u, _ = s.User(ctx, "bob"); u.LockedUntil.IsZero() {
			t.Fatal("the lock is not stored")
		}
		// A failure while locked does not move the end of the lock.
		if u, _ = s.LoginFailed(ctx, "bob", t0.Add(time.Minute), 5, 15*time.Minute, "192.0.2.7"); !u.LockedUntil.Equal(t0.Add(4*time.Second + 15*time.Minute)) {
			t.Fatalf("locked until %v", u.LockedUntil)
		}
		if u, _ = s.UpdateUser(ctx, "bob", UserUpdate{Unlock: true}, t0, audit("user_unlocked", "bob")); u.Failures != 0 || !u.LockedUntil.IsZero() {
			t.Fatalf("unlocked %+v", u)
		}
		// A sign-in with a rehash replaces the hash.
		if err := s.LoginSucceeded(ctx, "bob", t0, "h2-new", nil); err != nil {
			t.Fatal(err)
		}
		if u, _ = s.User(ctx, "bob"); u.PasswordHash != "h2-new" || !u.LastLogin.Equal(t0) {
			t.Fatalf("%+v", u)
		}

		// Expiry: idle, and too old.
		for i, at := range []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
			_ = s.LoginSucceeded(ctx, "alice", at, "", &Session{TokenHash: []byte{byte(i)}, User: "alice", CSRF: "c", CreatedAt: at, LastSeen: at})
		}
		if n, err := s.ExpireSessions(ctx, t0.Add(30*time.Minute), t0.Add(90*time.Minute)); err != nil || n != 2 {
			t.Fatalf("expired %d, %v", n, err)
		}
		if _, err := s.Session(ctx, []byte{2}); err != nil {
			t.Fatal("the fresh session expired")
		}
		// Removing bob ends his sessions; every change is audited, with
		// where it came from.
		if err := s.DeleteUser(ctx, "bob", audit("user_removed", "bob")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.User(ctx, "bob"); !errors.Is(err, ErrNotFound) {
			t.Fatal("bob is still there")
		}
		recs, _ := s.Audit(ctx, 0)
		want := map[string]int{"user_added": 2, "user_role": 1, "user_locked": 1, "user_unlocked": 1, "user_removed": 1, "user_signed_in": 5}
		got2 := map[string]int{}
		for _, r := range recs {
			got2[r.Action]++
			if r.Action == "user_locked" && (r.Remote != "192.0.2.7" || r.Target != "bob") {
				t.Errorf("lock record %+v", r)
			}
			if r.Action == "user_added" && r.Remote != "cli" {
				t.Errorf("add record %+v", r)
			}
		}
		for k, v := range want {
			if got2[k] != v {
				t.Errorf("%s: %d audit records, want %d", k, got2[k], v)
			}
		}
	})
}

// TestAuditWithAction: a record carried by WithAudit commits with the
// revocation or the decision it describes, completed by the store, and
// is not written when the action fails.
func TestAuditWithAction(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0).UTC()
		c := testCert(1)
		if err := s.PutCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		rec := &AuditRecord{At: now, Actor: "operator otto (web)", Remote: "192.0.2.7", Action: "certificate_revoked", Detail: "reason keyCompromise"}
		actx := WithAudit(ctx, rec)
		if _, err := s.Revoke(actx, c.Serial, now, ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		// Failing actions leave no record.
		if _, err := s.Revoke(actx, c.Serial, now, ReasonKeyCompromise); !errors.Is(err, ErrAlreadyRevoked) {
			t.Fatal(err)
		}
		if _, err := s.Revoke(actx, testCert(99).Serial, now, 1); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		p := &Pending{ID: "req1", Operation: "simpleenroll", CSR: []byte{1}, SPKIHash: []byte{7}, Subject: "CN=cam", SANs: []string{"cam.studio.example.test"},
			Client: "no client certificate", State: PendingWaiting, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.PutPending(ctx, p); err != nil {
			t.Fatal(err)
		}
		dctx := WithAudit(ctx, &AuditRecord{At: now, Actor: "operator otto (web)", Remote: "192.0.2.7", Action: "request_approved"})
		if _, err := s.DecidePending(dctx, "req1", PendingApproved, "otto", now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DecidePending(dctx, "req1", PendingDenied, "otto", now); !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
		recs, _ := s.Audit(ctx, 0)
		if len(recs) != 2 {
			t.Fatalf("%d records: %+v", len(recs), recs)
		}
		d, r := recs[0], recs[1]
		if r.Target != SerialKey(c.Serial) || r.Detail != "reason keyCompromise; names "+strings.Join(c.SANs, ", ") || r.Remote != "192.0.2.7" {
			t.Errorf("revocation record %+v", r)
		}
		if d.Target != "req1" || d.Action != "request_approved" || !strings.Contains(d.Detail, "simpleenroll CN=cam (cam.studio.example.test); no client certificate") {
			t.Errorf("decision record %+v", d)
		}
	})
}
