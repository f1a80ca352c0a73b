package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitsByTree: three transactions on a database in WAL mode, its
// files copied while the connection is open, are three commits, and the
// pages they wrote are named after the table and index written.
func TestCommitsByTree(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE certs (id INTEGER PRIMARY KEY, k BLOB NOT NULL UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := db.ExecContext(ctx, `INSERT INTO certs (k) VALUES (?)`, []byte{byte(i), 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	// A copy of both files, as of an open connection.
	cp := filepath.Join(dir, "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wal, _ := os.ReadFile(cp + "-wal")
	commits, err := walCommits(wal)
	if err != nil {
		t.Fatal(err)
	}
	if len(commits) != 4 { // CREATE TABLE and three INSERTs
		t.Fatalf("%d commits, want 4", len(commits))
	}
	var out bytes.Buffer
	if err := run(&out, cp); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4 commits", "certs/leaf", "sqlite_autoindex_certs_1/leaf"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestNotAWAL(t *testing.T) {
	for name, b := range map[string][]byte{
		"short":       []byte("abc"),
		"bad magic":   make([]byte, 64),
		"page size 3": append([]byte{0x37, 0x7f, 0x06, 0x82, 0, 0x2d, 0xe2, 0x18, 0, 0, 0, 3}, make([]byte, 52)...),
	} {
		if _, err := walCommits(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
