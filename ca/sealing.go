package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// The CA keys of appliances that share a store (PostgreSQL). Each
// appliance keeps the keys it signs with in data_dir/ca, as a single one
// does. A generation made on one of them (a rollover) must reach the
// others: its key is also kept in the database, sealed with AES-256-GCM
// under a key-encryption key (KEK) that only the appliances hold
// (data_dir/ca/sealing.kek, 0600), the sealing bound to the generation's
// ID and public key. The first appliance on the database makes the KEK
// and records its fingerprint there; the others get it with the CA's keys
// by `nmos-certs backup` and `restore`. An appliance that finds a
// generation's key missing from its data directory takes the sealed one,
// opens it, checks it against the generation's certificate and writes
// it (0600, atomically). A key taken offline, or dropped when its
// generation retired, leaves the database in the same transaction.

// kekFile is the KEK's file name, in data_dir/ca; not a ".key" file, so
// that it is never taken for a generation's key.
const kekFile = "sealing.kek"

// sealVersion is the first byte of a sealed key: AES-256-GCM, a 12-byte
// nonce, PKCS#8 inside.
const sealVersion = 1

// keySharer is a store that keeps sealed CA keys (store.Postgres).
type keySharer interface {
	PutSealedKey(ctx context.Context, id string, spkiHash, sealed []byte) error
	SealedKey(ctx context.Context, id string, spkiHash []byte) ([]byte, error)
	ClaimKEK(ctx context.Context, fp []byte) ([]byte, error)
	KEKFingerprint(ctx context.Context) ([]byte, error)
}

func (a *Authority) kekPath() string { return filepath.Join(a.keyDir(), kekFile) }

// readKEK reads the KEK; nil when this appliance holds none.
func (a *Authority) readKEK() ([]byte, error) {
	path := a.kekPath()
	b, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%d bytes, want the 32 of an AES-256 key", len(b))}
	}
	return b, nil
}

// kekFingerprint identifies a KEK without giving it away.
func kekFingerprint(kek []byte) []byte {
	h := sha256.New()
	h.Write([]byte("nmos-certs key-encryption key\x00"))
	h.Write(kek)
	return h.Sum(nil)
}

// sealAAD binds a sealed key to its format, its generation and the
// public key of the generation's certificate.
func sealAAD(id string, spki []byte) []byte {
	h := sha256.Sum256(spki)
	return append([]byte{sealVersion}, append([]byte("nmos-certs CA key\x00"+id+"\x00"), h[:]...)...)
}

// sealKey seals key for generation id, whose certificate's public key is
// spki (its DER, as the certificate holds it).
func sealKey(kek []byte, id string, spki []byte, key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+gcm.NonceSize(), 1+gcm.NonceSize()+len(der)+gcm.Overhead())
	out[0] = sealVersion
	if _, err := io.ReadFull(rand.Reader, out[1:]); err != nil {
		return nil, err
	}
	return gcm.Seal(out, out[1:], der, sealAAD(id, spki)), nil
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// openSealed opens a key sealed for generation id, whose certificate's
// public key is spki.
func openSealed(kek []byte, id string, spki, sealed []byte) (crypto.Signer, error) {
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+gcm.NonceSize()+gcm.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("not a sealed key this program knows")
	}
	n := 1 + gcm.NonceSize()
	der, err := gcm.Open(nil, sealed[1:n], sealed[n:], sealAAD(id, spki))
	if err != nil {
		return nil, errors.New("it does not open with this appliance's key-encryption key, or was not sealed for this generation")
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T is not a signing key", k)
	}
	return signer, nil
}

// prepareSharing runs when the authority opens on a shared store: the
// first appliance makes the KEK (when it may create: not when a restore
// checks a backup) and records its fingerprint; every appliance that
// holds the recorded KEK seals the keys it holds that the database lacks.
// An appliance without it, or with another, says so in the log; it finds
// out for good when it needs a key (fetchKey).
func (a *Authority) prepareSharing(ctx context.Context, create bool) error {
	ks, ok := a.o.Store.(keySharer)
	if !ok {
		return nil
	}
	kek, err := a.readKEK()
	if err != nil {
		return err
	}
	recorded, err := ks.KEKFingerprint(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read the key-encryption key's fingerprint: %w", err)
	}
	if kek == nil && recorded == nil {
		if !create {
			return nil
		}
		if kek, err = a.makeKEK(); err != nil {
			return err
		}
	}
	if kek != nil && recorded == nil {
		if _, err := ks.ClaimKEK(ctx, kekFingerprint(kek)); err != nil {
			return fmt.Errorf("record the key-encryption key's fingerprint: %w", err)
		}
	}
	kek, err = a.sharingKEK(ctx, ks)
	if err != nil || kek == nil {
		return err
	}
	a.mu.RLock()
	gens := a.gens
	a.mu.RUnlock()
	for _, g := range gens {
		if g.key == nil {
			continue
		}
		spki := g.cert.RawSubjectPublicKeyInfo
		if _, err := ks.SealedKey(ctx, g.rec.ID, spkiHashOf(spki)); !errors.Is(err, store.ErrNotFound) {
			if err != nil {
				return fmt.Errorf("read the sealed key of %s: %w", g.rec.ID, err)
			}
			continue
		}
		if err := a.putSealed(ctx, ks, kek, g.rec.ID, spki, g.key); err != nil {
			return err
		}
	}
	return nil
}

func spkiHashOf(spki []byte) []byte {
	h := sha256.Sum256(spki)
	return h[:]
}

// sharingKEK returns the KEK when this appliance holds the one recorded
// in the store; nil, said in the log, when it holds none or another.
func (a *Authority) sharingKEK(ctx context.Context, ks keySharer) ([]byte, error) {
	kek, err := a.readKEK()
	if err != nil {
		return nil, err
	}
	recorded, err := ks.KEKFingerprint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		recorded = nil
	} else if err != nil {
		return nil, fmt.Errorf("read the key-encryption key's fingerprint: %w", err)
	}
	switch {
	case kek == nil:
		a.o.Logger.Warn("this appliance does not hold the key-encryption key of the CA keys in the shared store: it cannot take or share the keys of new CA generations (copy the CA's keys from another appliance: nmos-certs backup there, restore --force here)",
			"file", a.kekPath())
		return nil, nil
	case !bytes.Equal(recorded, kekFingerprint(kek)):
		a.o.Logger.Warn("this appliance holds another key-encryption key than the one recorded in the shared store: it cannot take or share the keys of new CA generations (copy the CA's keys from another appliance: nmos-certs backup there, restore --force here)",
			"file", a.kekPath())
		return nil, nil
	}
	return kek, nil
}

// makeKEK writes a new KEK, 0600, never over an existing file.
func (a *Authority) makeKEK() ([]byte, error) {
	kek := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, kek); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(a.keyDir(), 0o700); err != nil {
		return nil, err
	}
	err := WriteNew(a.kekPath(), 0o600, func(w io.Writer) error { _, err := w.Write(kek); return err })
	if errors.Is(err, fs.ErrExist) {
		return a.readKEK() // another process made it meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("write the key-encryption key: %w", err)
	}
	matchDirOwner(a.kekPath())
	a.o.Logger.Info("made the key-encryption key of the CA keys kept in the shared store; other appliances get it with the CA's keys (nmos-certs backup and restore)", "file", a.kekPath())
	return kek, nil
}

func (a *Authority) putSealed(ctx context.Context, ks keySharer, kek []byte, id string, spki []byte, key crypto.Signer) error {
	sealed, err := sealKey(kek, id, spki, key)
	if err != nil {
		return fmt.Errorf("seal the key of %s: %w", id, err)
	}
	if err := ks.PutSealedKey(ctx, id, spkiHashOf(spki), sealed); err != nil {
		return fmt.Errorf("keep the sealed key of %s: %w", id, err)
	}
	return nil
}

// shareKey keeps a new generation's key, sealed, in a shared store,
// before the generation is recorded: an appliance that hears of the
// generation finds its key there. Nothing to do on a store of one
// appliance; without the recorded KEK the key is not shared, which the
// log says.
func (a *Authority) shareKey(ctx context.Context, id string, cert *x509.Certificate, key crypto.Signer) error {
	ks, ok := a.o.Store.(keySharer)
	if !ok {
		return nil
	}
	kek, err := a.sharingKEK(ctx, ks)
	if err != nil || kek == nil {
		return err
	}
	return a.putSealed(ctx, ks, kek, id, cert.RawSubjectPublicKeyInfo, key)
}

// fetchKey takes the key of generation r, missing from this appliance's
// data directory, from the shared store, and writes it there. It returns
// missing, the error of the missing file, when the store keeps no key for
// it.
func (a *Authority) fetchKey(ctx context.Context, r *store.Generation, cert *x509.Certificate, path string, missing error) (crypto.Signer, error) {
	ks, ok := a.o.Store.(keySharer)
	if !ok {
		return nil, missing
	}
	// The path comes from the database: only a generation's own file in
	// data_dir/ca is ever written.
	if !generationIDRE.MatchString(r.ID) || r.KeyFile != filepath.Join("ca", r.ID+".key") {
		return nil, missing
	}
	sealed, err := ks.SealedKey(ctx, r.ID, spkiHashOf(cert.RawSubjectPublicKeyInfo))
	if errors.Is(err, store.ErrNotFound) {
		return nil, missing
	}
	if err != nil {
		return nil, fmt.Errorf("read the sealed key of %s: %w", r.ID, err)
	}
	kek, err := a.readKEK()
	if err != nil {
		return nil, err
	}
	if kek == nil {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("missing here, and sealed in the shared store under a key-encryption key this appliance does not hold (%s): copy the CA's keys from another appliance (nmos-certs backup there, restore --force here)", a.kekPath())}
	}
	key, err := openSealed(kek, r.ID, cert.RawSubjectPublicKeyInfo, sealed)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("missing here, and the sealed copy in the shared store: %v (%s)", err, a.kekPath())}
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, &KeyFileError{Path: path, Err: errors.New("the sealed copy in the shared store does not match the CA certificate")}
	}
	if err := writeNewKey(path, key); err != nil {
		if !errors.Is(err, errKeyExists) {
			return nil, fmt.Errorf("write the key of %s: %w", r.ID, err)
		}
		// Another process of this appliance took it meanwhile.
		return readKey(path)
	}
	a.o.Logger.Info("took the key of a CA generation made by another appliance from the shared store", "generation", r.ID, "file", path)
	return key, nil
}

// generationIDRE is the shape of the generation IDs this program makes
// (ecdsa-int-2, rsa-root-1).
var generationIDRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// removeReleasedKey removes this appliance's copy of the key of a
// generation that the store says no appliance holds any more: a root
// taken offline, or a retired generation's key destroyed, by another
// appliance sharing the store (the one that did it removed its own).
func (a *Authority) removeReleasedKey(id string) {
	if !generationIDRE.MatchString(id) {
		return
	}
	path := filepath.Join(a.keyDir(), id+".key")
	if _, err := os.Lstat(path); err != nil {
		return
	}
	if err := os.Remove(path); err != nil {
		a.o.Logger.Error("the store says no appliance holds this CA key any more, but this appliance's copy could not be removed: remove it by hand", "generation", id, "file", path, "err", err)
		return
	}
	_ = SyncDir(a.keyDir())
	a.o.Logger.Warn("removed this appliance's copy of a CA key that was taken offline or destroyed", "generation", id, "file", path)
}
