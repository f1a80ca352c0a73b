package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/webroot/auth"
)

// TestUsersCommands: accounts are made, listed, changed and removed from
// the CLI, with argon2id hashes and an audit record each; the last admin
// stays; bad names, roles and passwords are refused with the reason.
func TestUsersCommands(t *testing.T) {
	cfg, dir := initSite(t, "")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600)

	if r := run(t, "users", "list", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "no accounts") || !strings.Contains(r.stdout, "users add NAME --role admin") {
		t.Fatalf("list with none: %+v", r)
	}
	if r := run(t, "users", "add", "alice", "--role", "admin", "--password-file", pwFile, "--config", cfg); r.code != 0 {
		t.Fatalf("add alice: %+v", r)
	}
	// From standard input, options after the argument.
	if r := runWithInput(t, "another long passphrase\n", "users", "add", "bob", "--password-file", "-", "--role", "operator", "--config", cfg); r.code != 0 {
		t.Fatalf("add bob: %+v", r)
	}
	for _, bad := range []struct {
		args []string
		in   string
		want string
	}{
		{[]string{"users", "add", "alice", "--password-file", pwFile}, "", "exists"},
		{[]string{"users", "add", "Mallory", "--password-file", pwFile}, "", "account name"},
		{[]string{"users", "add", "carol", "--role", "root", "--password-file", pwFile}, "", "want viewer, operator or admin"},
		{[]string{"users", "add", "carol", "--password-file", "-"}, "short\n", "at least 12 characters"},
		{[]string{"users", "add", "carol"}, "", "no terminal"},
		{[]string{"users", "remove", "alice"}, "", "last admin"},
		{[]string{"users", "role", "alice", "viewer"}, "", "last admin"},
		{[]string{"users", "role", "nobody", "viewer"}, "", "not found"},
	} {
		r := runWithInput(t, bad.in, append(bad.args, "--config", cfg)...)
		if r.code == 0 || !strings.Contains(r.stderr, bad.want) {
			t.Errorf("%v: %+v, want %q", bad.args, r, bad.want)
		}
	}
	r := run(t, "users", "list", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "alice  admin") || !strings.Contains(r.stdout, "bob    operator") || strings.Contains(r.stdout, "carol") {
		t.Fatalf("list: %+v", r)
	}
	if r := run(t, "users", "role", "bob", "admin", "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	if r := run(t, "users", "passwd", "alice", "--password-file", pwFile, "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "sessions ended") {
		t.Fatal(r)
	}
	if r := run(t, "users", "unlock", "bob", "--config", cfg); r.code != 0 {
		t.Fatal(r)
	}
	if r := run(t, "users", "remove", "alice", "--config", cfg); r.code != 0 {
		t.Fatalf("remove alice with bob an admin: %+v", r)
	}

	c, err := config.LoadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(context.Background(), filepath.Join(c.DataDir, "nmos-certs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.User(context.Background(), "bob")
	if err != nil || u.Role != "admin" || auth.Verify(u.PasswordHash, "another long passphrase") != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Fatalf("bob: %+v %v", u, err)
	}
	recs, _ := st.Audit(context.Background(), 0)
	actions := map[string]int{}
	for _, a := range recs {
		actions[a.Action]++
		if strings.HasPrefix(a.Action, "user_") && (a.Remote != "cli" || !strings.Contains(a.Actor, "(cli)")) {
			t.Errorf("audit record %+v", a)
		}
		if strings.Contains(a.Detail, "horse") || strings.Contains(a.Detail, "argon2") {
			t.Errorf("a password or a hash in the audit trail: %+v", a)
		}
	}
	for action, n := range map[string]int{"user_added": 2, "user_role": 1, "user_password": 1, "user_unlocked": 1, "user_removed": 1} {
		if actions[action] != n {
			t.Errorf("%s: %d records, want %d", action, actions[action], n)
		}
	}
}
