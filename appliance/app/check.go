package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/est"
)

// CheckConfig runs every check serve runs before it touches the data
// directory, so that `config check` passes only what serve accepts:
// the files the configuration names, read as serve reads them
// (manufacturer roots as CA certificates, CRL files as CRLs, key-encryption
// key files), the DNS zone built from it, and the permissions of what the
// data directory already holds (the directory itself, the database and
// every private key: group or other access is an error, never a reason
// to make a new key). cfg has been loaded, so its values are valid.
func CheckConfig(ctx context.Context, cfg *config.Config) error {
	var errs []error
	if err := cfg.CheckFiles(); err != nil {
		errs = append(errs, err)
	} else if len(cfg.EST.TrustedClientRoots) > 0 || len(cfg.EST.ClientCRLs) > 0 {
		// CRLs at URLs are fetched by serve later and retried; files
		// must be right now.
		var files []string
		for _, c := range cfg.EST.ClientCRLs {
			if !strings.Contains(c, "://") {
				files = append(files, c)
			}
		}
		if _, err := est.LoadTrust(ctx, est.TrustConfig{RootFiles: cfg.EST.TrustedClientRoots, CRLSources: files}); err != nil {
			errs = append(errs, fmt.Errorf("%s: est: %w", cfg.Source, err))
		}
	}
	if o, err := dnsOptions(cfg); err != nil {
		errs = append(errs, fmt.Errorf("%s: dns: %w", cfg.Source, err))
	} else if err := dns.Check(o); err != nil {
		errs = append(errs, fmt.Errorf("%s: dns: %w", cfg.Source, err))
	}
	if p, ok, err := pushOptions(cfg); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", cfg.Source, err))
	} else if ok {
		if _, err := dns.NewPusher(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cfg.Source, err))
		}
	}
	if cfg.Store.Driver == "postgres" {
		if _, err := readDSN(cfg); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cfg.Source, err))
		}
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		errs = append(errs, err)
	}
	if cfg.CA.RootKey == "offline" {
		keys, _ := filepath.Glob(filepath.Join(cfg.DataDir, "ca", "*-root-*.key"))
		set, _ := filepath.Glob(filepath.Join(cfg.DataDir, "ca", "orphaned", "*-root-*.key*"))
		keys = append(keys, set...)
		for _, k := range keys {
			errs = append(errs, fmt.Errorf("%s: ca.root_key is offline, but %s holds a root key: take it off the appliance with 'nmos-certs ca export-root-key'", cfg.Source, k))
		}
	}
	return errors.Join(errs...)
}

// checkDataDir refuses a data directory, database or private key that
// group or others may access. A data directory that does not exist yet
// is fine: serve creates it private.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data_dir %s is not a directory", dir)
	}
	var errs []error
	private := func(path, what, fix string) {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err != nil {
			errs = append(errs, err)
			return
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			errs = append(errs, fmt.Errorf("%s %s is mode %04o, open to group or others: make it private (chmod %s %s)", what, path, perm, fix, path))
		}
	}
	private(dir, "data_dir", "700")
	for _, f := range []string{DBFile, DBFile + "-wal", DBFile + "-shm"} {
		private(filepath.Join(dir, f), "the database", "600")
	}
	for _, sub := range []string{"ca", "server", "ocsp"} {
		private(filepath.Join(dir, sub), "the key directory", "700")
		keys, _ := filepath.Glob(filepath.Join(dir, sub, "*.key"))
		for _, k := range keys {
			private(k, "the private key", "600")
		}
	}
	return errors.Join(errs...)
}
