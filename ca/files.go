package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloudflare/cfssl/helpers"
)

// WriteFileAtomic writes data to path so that readers see either the old
// file or the whole new one: a temporary file in the same directory is
// written, synced and renamed over path, and the directory is synced.
// The file gets mode perm regardless of the umask.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteAtomic(path, bytes.NewReader(data), perm)
}

// WriteAtomic is WriteFileAtomic with the content read from r.
func WriteAtomic(path string, r io.Reader, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = io.Copy(f, r); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir syncs a directory, so that the names created or renamed in it
// are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeKey stores a private key as PKCS#8 PEM, mode 0600, atomically.
func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeNewKey stores a new CA generation's key as writeKey does, but
// never over an existing file (see WriteNew): two processes rolling over
// at once pick the same generation ID, and the one that loses must not
// replace the key of the one that wins.
func writeNewKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	err = WriteNew(path, 0o600, func(w io.Writer) error {
		_, err := w.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		return err
	})
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists and no generation names it yet: another rollover is under way, or one stopped (its key is set aside ten minutes later); try again then: %w", path, errKeyExists)
	}
	if err != nil {
		return err
	}
	matchDirOwner(path)
	return nil
}

// WriteNew creates path, mode perm, with what write puts in it, and never
// over an existing file: the content goes to a temporary file in the same
// directory, which is synced and then hard-linked to path (a link, unlike
// a rename, fails with fs.ErrExist when path exists, even one that
// appeared meanwhile); the directory is synced last. On failure nothing
// is left behind.
func WriteNew(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(perm)
	if err == nil {
		err = write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// errKeyExists is writeNewKey's refusal to replace a key file.
var errKeyExists = errors.New("key file exists")

// ReadKey reads a private key file (PEM), refusing one that group or
// others may read.
func ReadKey(path string) (crypto.Signer, error) { return readKey(path) }

// ReadCertificates reads the certificates of a PEM file.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return certs, nil
}

// KeyFileError names a key file the authority cannot use.
type KeyFileError struct {
	Path string
	Err  error
}

func (e *KeyFileError) Error() string { return fmt.Sprintf("key file %s: %v", e.Path, e.Err) }
func (e *KeyFileError) Unwrap() error { return e.Err }

// tooOpen is a KeyFileError's reason when group or others may access
// the key; it matches fs.ErrPermission, so that callers refuse to go on
// rather than make a new key.
type tooOpen fs.FileMode

func (m tooOpen) Error() string {
	return fmt.Sprintf("mode %04o is too open: private keys must be 0600 (chmod 600)", fs.FileMode(m))
}
func (tooOpen) Is(target error) bool { return target == fs.ErrPermission }

// errKeyMissing is a KeyFileError's reason when there is no file; it
// matches fs.ErrNotExist.
var errKeyMissing = missingKey{}

type missingKey struct{}

func (missingKey) Error() string        { return "missing" }
func (missingKey) Is(target error) bool { return target == fs.ErrNotExist }

// readKey loads a PEM private key (PKCS#8, PKCS#1 or SEC 1). It refuses
// key files readable by group or others.
func readKey(path string) (crypto.Signer, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	return parseKey(path, data)
}

// readPrivate reads a file of secrets, refusing one that group or others
// may access; a missing file is a *KeyFileError matching fs.ErrNotExist.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &KeyFileError{Path: path, Err: errKeyMissing}
		}
		return nil, &KeyFileError{Path: path, Err: err}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &KeyFileError{Path: path, Err: tooOpen(fi.Mode().Perm())}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	return data, nil
}

func parseKey(path string, data []byte) (crypto.Signer, error) {
	k, err := helpers.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: errors.New("not a valid PEM private key (corrupt?)")}
	}
	return k, nil
}

// readCerts loads every certificate in a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return out, nil
}
