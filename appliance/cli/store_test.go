package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
)

// TestStoreMigrate: a SQLite appliance moves to PostgreSQL with store
// migrate, and its CA, read through the new configuration, is the same;
// a second copy into the now used database is refused; bad arguments
// are usage errors.
func TestStoreMigrate(t *testing.T) {
	cfg, dir := initSite(t, "")
	before := run(t, "ca", "status", "--config", cfg)
	if before.code != 0 {
		t.Fatal(before)
	}
	cluster := pgtest.Start(t)
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(cluster.NewDatabase(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "data", "nmos-certs.db")
	r := run(t, "store", "migrate", "--from", "sqlite:"+db, "--to-dsn-file", dsnFile)
	if r.code != 0 || !strings.Contains(r.stdout, "every table's count matches") || !strings.Contains(r.stdout, "generations        4") {
		t.Fatalf("migrate: %+v", r)
	}

	// The same appliance, on PostgreSQL.
	pgCfg := filepath.Join(dir, "pg.yaml")
	y, _ := os.ReadFile(cfg)
	if err := os.WriteFile(pgCfg, []byte(string(y)+fmt.Sprintf("store:\n  driver: postgres\n  dsn_file: %s\n", dsnFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "config", "check", pgCfg); r.code != 0 {
		t.Fatalf("config check: %+v", r)
	}
	after := run(t, "ca", "status", "--config", pgCfg)
	if after.code != 0 || after.stdout != before.stdout {
		t.Fatalf("ca status on PostgreSQL:\n%s\nwant\n%s\n%s", after.stdout, before.stdout, after.stderr)
	}

	if r := run(t, "store", "migrate", "--from", "sqlite:"+db, "--to-dsn-file", dsnFile); r.code == 0 || !strings.Contains(r.stderr, "empty") {
		t.Fatalf("a second copy: %+v", r)
	}
	for _, args := range [][]string{
		{"store", "migrate", "--from", db, "--to-dsn-file", dsnFile},
		{"store", "migrate", "--from", "sqlite:" + db},
		{"store", "migrate", "--from", "sqlite:" + db, "--to", "mysql:x"},
		{"store", "migrate", "--from", "sqlite:" + db, "--to", "postgres:x", "--to-dsn-file", dsnFile},
	} {
		if r := run(t, args...); r.code != 2 {
			t.Errorf("%v: %+v", args, r)
		}
	}
}
