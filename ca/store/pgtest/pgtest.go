// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb
// and pg_ctl from Debian's postgresql package, in a directory of its own,
// on 127.0.0.1 at a free port, stopped and removed when the test ends.
package pgtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running PostgreSQL server.
type Cluster struct {
	dir, data string
	port      int
	bin       string
	as        []string // runuser prefix when the tests run as root
}

// bin finds PostgreSQL's server programs: where the initdb on the PATH
// lives, or the newest /usr/lib/postgresql/*/bin (Debian keeps them off
// the PATH).
func bin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed: apt-get install postgresql (make test does) to run the PostgreSQL store tests")
	}
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

// Start starts a cluster for t, stopped when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// New initialises a cluster and starts it; Stop stops it and removes its
// files. PostgreSQL will not run as root: as root, it runs as the
// postgres account the package makes.
func New() (*Cluster, error) {
	b, err := bin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: b}
	if c.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(c.dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root, PostgreSQL needs an account to run as: %w (the postgresql package makes one)", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return fail(err)
		}
		c.as = []string{"runuser", "-u", "postgres", "--"}
	}
	c.data = filepath.Join(c.dir, "data")
	if out, err := c.cmd("initdb", "-D", c.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return fail(err)
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off", c.port, c.dir)
		out, err := c.cmd("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput()
		if err == nil {
			return c, nil
		}
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		if attempt < 3 && strings.Contains(string(log), "in use") {
			continue
		}
		return fail(fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log))
	}
}

// Stop stops the server and removes its files.
func (c *Cluster) Stop() {
	_ = c.cmd("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop").Run()
	os.RemoveAll(c.dir)
}

func (c *Cluster) cmd(name string, args ...string) *exec.Cmd {
	argv := append(append(slices.Clone(c.as), filepath.Join(c.bin, name)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	return cmd
}

var dbs atomic.Int64

// NewDatabase creates an empty database and returns its DSN.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", dbs.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return c.DSN(name)
}

// DSN is the URL of database name on the cluster.
func (c *Cluster) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// freePort is a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EnableTLS turns TLS on for the cluster with a server certificate for
// localhost (not for 127.0.0.1) from a CA made here, and returns that CA's
// certificate file, for sslmode=verify-full and sslrootcert.
func (c *Cluster) EnableTLS(t testing.TB) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name string, block *pem.Block, mode os.FileMode) string {
		p := filepath.Join(c.dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), mode); err != nil {
			t.Fatal(err)
		}
		if len(c.as) > 0 {
			u, _ := user.Lookup("postgres")
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			_ = os.Chown(p, uid, gid)
		}
		return p
	}
	crt := write("server.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der}, 0o644)
	keyFile := write("server.key", &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}, 0o600)
	caFile := write("root.crt", &pem.Block{Type: "CERTIFICATE", Bytes: caDER}, 0o644)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		fmt.Sprintf("ALTER SYSTEM SET ssl_cert_file = '%s'", crt),
		fmt.Sprintf("ALTER SYSTEM SET ssl_key_file = '%s'", keyFile),
		"ALTER SYSTEM SET ssl = on",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return caFile
}

// TLSDSN is the URL of database name over TLS, verified against caFile
// (sslmode=verify-full), with host as the server's name.
func (c *Cluster) TLSDSN(name, host, caFile string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=verify-full&sslrootcert=%s", host, c.port, name, caFile)
}
