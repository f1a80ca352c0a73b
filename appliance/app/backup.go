package app

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/ca"
)

// A backup is one tar file: a manifest, the database as of one moment
// (SQLite's online backup), then every file of the data directory's key
// directories (CA keys, the appliance's TLS and OCSP responder keys and
// certificates). It holds private keys in clear: keep it as the keys are
// kept. The database is copied before the keys, so that every key a
// copied CA generation names is in the backup.

// backupDirs are the data directory's subdirectories a backup holds
// (ca/pending: an offline-root ceremony's key waiting for its
// certificate).
var backupDirs = []string{"ca", "ca/pending", "server", "ocsp"}

// keyDirs are what a backup of an appliance on PostgreSQL holds: the CA's
// keys. (The appliance's own TLS and OCSP responder keys are each
// appliance's; a second one makes its own.)
var keyDirs = []string{"ca", "ca/pending"}

const (
	manifestName = "nmos-certs-backup"
	backupFormat = "nmos-certs backup 1"
	// maxBackupEntry bounds one file read back from a backup.
	maxBackupEntry = 16 << 30
)

// CRLNumberJump is how far a restore moves every CRL number ahead: more
// CRLs than an appliance publishes between a backup and its restore, so
// that the restored appliance's CRL numbers are greater than any it
// published before (RFC 5280 5.2.3: they only grow).
const CRLNumberJump = 1 << 20

// BackupInfo says what a backup or a restore held.
type BackupInfo struct {
	Generations  int
	Certificates int
	Files        int
	// KeysOnly: the store is PostgreSQL's, backed up by its own tools;
	// the backup holds the CA's keys.
	KeysOnly bool
}

// Backup writes the data directory of cfg to the new file out (mode
// 0600, written to a temporary file, synced and linked into place; an
// existing out is never replaced). The appliance may be running.
func Backup(ctx context.Context, cfg *config.Config, out string) (BackupInfo, error) {
	var info BackupInfo
	if _, err := os.Lstat(out); err == nil {
		return info, fmt.Errorf("%s exists: not overwriting it", out)
	}
	auth, st, err := Open(ctx, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), time.Now, false)
	if err != nil {
		return info, err
	}
	defer st.Close()
	info.Generations = len(auth.Generations())
	counts, err := st.CountCertificates(ctx)
	if err != nil {
		return info, err
	}
	for _, n := range counts {
		info.Certificates += n
	}
	// With PostgreSQL the database is backed up by its own tools; the
	// backup holds the CA's keys, which is what a second appliance sharing
	// the database needs (restore puts them in its data_dir).
	dirs, snapshot := backupDirs, ""
	if bk, ok := st.(interface {
		Backup(context.Context, string) error
	}); ok {
		dir, err := os.MkdirTemp(filepath.Dir(out), ".nmos-certs-backup-")
		if err != nil {
			return info, err
		}
		defer os.RemoveAll(dir)
		snapshot = filepath.Join(dir, DBFile)
		if err := bk.Backup(ctx, snapshot); err != nil {
			return info, err
		}
	} else {
		dirs = keyDirs
		info.KeysOnly = true
	}

	err = ca.WriteNew(out, 0o600, func(f io.Writer) error {
		tw := tar.NewWriter(f)
		manifest := fmt.Sprintf("%s\nversion: %s\ncreated: %s\ngenerations: %d\ncertificates: %d\n",
			backupFormat, Version, time.Now().UTC().Format(time.RFC3339), info.Generations, info.Certificates)
		if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(manifest)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, manifest); err != nil {
			return err
		}
		if snapshot != "" {
			if err := addFile(tw, snapshot, DBFile); err != nil {
				return err
			}
		}
		for _, sub := range dirs {
			ents, err := os.ReadDir(filepath.Join(cfg.DataDir, sub))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			for _, e := range ents {
				if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				if err := addFile(tw, filepath.Join(cfg.DataDir, sub, e.Name()), sub+"/"+e.Name()); err != nil {
					return err
				}
				info.Files++
			}
		}
		return tw.Close()
	})
	if err != nil {
		return info, fmt.Errorf("write backup: %w", err)
	}
	return info, nil
}

func addFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// HasCA reports whether the data directory of cfg holds a CA: a database
// or CA key files.
func HasCA(cfg *config.Config) bool {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, DBFile)); err == nil {
		return true
	}
	keys, _ := filepath.Glob(filepath.Join(cfg.DataDir, "ca", "*.key"))
	return len(keys) > 0
}

// Restore makes the data directory of cfg from the backup file in. A
// data directory that holds a CA is refused unless force, which moves it
// aside (to <data_dir>.replaced-<time>) rather than deleting it. The
// backup is unpacked into a new directory beside data_dir and opened
// (every CA key must match its certificate) before it takes data_dir's
// place, so a bad backup changes nothing. No serve may hold the data
// directory.
func Restore(ctx context.Context, cfg *config.Config, in string, force bool) (BackupInfo, string, error) {
	var info BackupInfo
	dataDir := filepath.Clean(cfg.DataDir)
	if fi, err := os.Stat(dataDir); err == nil && fi.IsDir() {
		lock, err := lockDataDir(dataDir)
		if err != nil {
			return info, "", err
		}
		defer lock.release()
		if HasCA(cfg) && !force {
			return info, "", fmt.Errorf("data_dir %s holds a CA: restore does not replace it unless --force, which moves it aside", dataDir)
		}
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	staging := dataDir + ".restore-" + stamp
	if err := os.MkdirAll(filepath.Dir(staging), 0o700); err != nil {
		return info, "", err
	}
	if err := os.Mkdir(staging, 0o700); err != nil {
		return info, "", err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(staging)
		}
	}()
	if err := unpack(in, staging, cfg.Store.Driver != "postgres"); err != nil {
		return info, "", fmt.Errorf("%s: %w", in, err)
	}
	check := *cfg
	check.DataDir = staging
	auth, st, err := Open(ctx, &check, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), time.Now, false)
	if err != nil {
		return info, "", fmt.Errorf("%s does not hold a usable CA: %w", in, err)
	}
	info.Generations = len(auth.Generations())
	counts, err := st.CountCertificates(ctx)
	if err == nil {
		if adv, ok := st.(interface {
			AdvanceCRLNumbers(context.Context, int64) error
		}); ok {
			err = adv.AdvanceCRLNumbers(ctx, CRLNumberJump)
		}
	}
	st.Close()
	if err != nil {
		return info, "", err
	}
	for _, n := range counts {
		info.Certificates += n
	}
	// A restore made by root into a service's directory leaves the files
	// to the service's user.
	owner := dataDir
	if _, err := os.Stat(owner); err != nil {
		owner = filepath.Dir(dataDir)
	}
	if err := copyOwner(owner, staging); err != nil {
		return info, "", err
	}
	moved := ""
	if _, err := os.Stat(dataDir); err == nil {
		moved = dataDir + ".replaced-" + stamp
		if err := os.Rename(dataDir, moved); err != nil {
			return info, "", err
		}
	}
	if err := os.Rename(staging, dataDir); err != nil {
		if moved != "" {
			_ = os.Rename(moved, dataDir)
		}
		return info, "", err
	}
	done = true
	return info, moved, ca.SyncDir(filepath.Dir(dataDir))
}

// unpack writes the backup's files under dir, refusing anything that is
// not one of the files a backup holds; withDB says whether it must hold
// the database (SQLite) or must not (the keys of an appliance on
// PostgreSQL).
func unpack(in, dir string, withDB bool) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	first := true
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not an nmos-certs backup (tar: %v)", err)
		}
		if first {
			b, err := io.ReadAll(io.LimitReader(tr, 4096))
			if err != nil || h.Name != manifestName || !strings.HasPrefix(string(b), backupFormat+"\n") {
				return errors.New("not an nmos-certs backup (no manifest)")
			}
			first = false
			continue
		}
		name := path.Clean(h.Name)
		sub, base := path.Split(name)
		allowed := name == DBFile
		for _, d := range backupDirs {
			allowed = allowed || (sub == d+"/" && base != "" && !strings.HasPrefix(base, "."))
		}
		if h.Typeflag != tar.TypeReg || !allowed || h.Size < 0 || h.Size > maxBackupEntry {
			return fmt.Errorf("unexpected entry %q in the backup", h.Name)
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(base, ".crt") {
			mode = 0o644
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := ca.WriteAtomic(dst, io.LimitReader(tr, h.Size), mode); err != nil {
			return err
		}
	}
	if first {
		return errors.New("empty file: not an nmos-certs backup")
	}
	_, err = os.Stat(filepath.Join(dir, DBFile))
	switch {
	case withDB && err != nil:
		return errors.New("the backup holds no database: it is the CA's keys of an appliance on PostgreSQL (restore it with store.driver postgres)")
	case !withDB && err == nil:
		return errors.New("the backup holds a SQLite database: with store.driver postgres, move a SQLite appliance with 'nmos-certs store migrate'")
	}
	return nil
}
