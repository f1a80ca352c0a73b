package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/ca/store/pgtest"
)

// A sealed key opens with its KEK, for its generation and public key
// only; any change to it is refused.
func TestSealedKey(t *testing.T) {
	kek := make([]byte, 32)
	kek[0] = 1
	key := ecKey(t, elliptic.P256())
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	sealed, err := sealKey(kek, "ecdsa-int-2", spki, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := openSealed(kek, "ecdsa-int-2", spki, sealed)
	if err != nil || !publicKeysEqual(got.Public(), key.Public()) {
		t.Fatalf("open: %v", err)
	}
	other := ecKey(t, elliptic.P256())
	otherSPKI, _ := x509.MarshalPKIXPublicKey(other.Public())
	wrongKEK := make([]byte, 32)
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for desc, c := range map[string]struct {
		kek    []byte
		id     string
		spki   []byte
		sealed []byte
	}{
		"another KEK":        {wrongKEK, "ecdsa-int-2", spki, sealed},
		"another generation": {kek, "ecdsa-int-3", spki, sealed},
		"another public key": {kek, "ecdsa-int-2", otherSPKI, sealed},
		"a bit changed":      {kek, "ecdsa-int-2", spki, tampered},
		"cut short":          {kek, "ecdsa-int-2", spki, sealed[:20]},
		"another version":    {kek, "ecdsa-int-2", spki, append([]byte{2}, sealed[1:]...)},
	} {
		if _, err := openSealed(c.kek, c.id, c.spki, c.sealed); err == nil {
			t.Errorf("%s: opened", desc)
		}
	}
	// Two seals of one key differ (a fresh nonce each).
	again, _ := sealKey(kek, "ecdsa-int-2", spki, key)
	if string(again) == string(sealed) {
		t.Error("the same sealed bytes twice")
	}
}

// TestKeysSharedThroughPostgres: the first authority on a PostgreSQL
// store makes the key-encryption key and seals its keys there; another
// with the generation keys but not the KEK cannot take a new
// generation's key, and says why; with the KEK it takes it. A key taken
// offline leaves the database.
func TestKeysSharedThroughPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t).NewDatabase(t)
	open := func(dir string, create bool) (*Authority, *store.Postgres) {
		t.Helper()
		st, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		a, err := Open(ctx, testOptions(t, dir, st), create)
		if err != nil {
			t.Fatal(err)
		}
		return a, st
	}
	dirA := t.TempDir()
	a, st := open(dirA, true)
	if fi, err := os.Stat(filepath.Join(dirA, "ca", kekFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the KEK: %v %v", fi, err)
	}
	for _, g := range a.Generations() {
		if _, err := st.SealedKey(ctx, g.ID, spkiHashOf(g.Cert.RawSubjectPublicKeyInfo)); g.KeyHeld && err != nil {
			t.Errorf("the key of %s is not sealed in the database: %v", g.ID, err)
		}
	}
	// B has the generation keys, not the KEK.
	dirB := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dirB, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(dirA, "ca", "*.key"))
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, "ca", filepath.Base(k)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := open(dirB, false)
	if _, err := os.Stat(filepath.Join(dirB, "ca", kekFile)); !os.IsNotExist(err) {
		t.Fatalf("B made a KEK of its own: %v", err)
	}
	roll, err := a.RolloverIntermediate(ctx, "ecdsa", "operator")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err == nil || !strings.Contains(err.Error(), "key-encryption key this appliance does not hold") {
		t.Fatalf("B without the KEK: %v", err)
	}
	kek, err := os.ReadFile(filepath.Join(dirA, "ca", kekFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "ca", kekFile), kek, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatalf("B with the KEK: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dirB, "ca", roll.New.ID+".key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the new key on B: %v %v", fi, err)
	}
	if c, ok := b.CACertificate(roll.New.ID); !ok || !c.Equal(roll.New.Cert) {
		t.Fatalf("B does not hold %s", roll.New.ID)
	}
	// A root taken offline: its sealed key leaves the database.
	root := a.Generations()[0]
	if err := st.ForgetKey(ctx, root.ID, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	rootHash := spkiHashOf(root.Cert.RawSubjectPublicKeyInfo)
	if _, err := st.SealedKey(ctx, root.ID, rootHash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the key of %s, taken offline, is still in the database: %v", root.ID, err)
	}
	// Nor does it come back: an appliance that still held it opens (and
	// would seal what the database lacks), or puts it again. That
	// appliance's copy goes.
	if _, err := os.Stat(filepath.Join(dirB, "ca", root.ID+".key")); err != nil {
		t.Fatalf("B's copy of the root key before: %v", err)
	}
	open(dirB, false)
	if _, err := os.Stat(filepath.Join(dirB, "ca", root.ID+".key")); !os.IsNotExist(err) {
		t.Fatalf("B's copy of the root key taken offline is still there: %v", err)
	}
	if err := st.PutSealedKey(ctx, root.ID, rootHash, []byte{sealVersion}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SealedKey(ctx, root.ID, rootHash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the key of %s, taken offline, is back in the database: %v", root.ID, err)
	}
}

// fetchKey writes only a generation's own file in data_dir/ca, whatever
// path the database names.
func TestFetchKeyPath(t *testing.T) {
	a, dir := newAuthority(t)
	g := a.Generations()[1]
	missing := errors.New("missing")
	for _, r := range []*store.Generation{
		{ID: g.ID, KeyFile: "../outside.key"},
		{ID: g.ID, KeyFile: "ca/other.key"},
		{ID: "../x", KeyFile: "ca/../x.key"},
	} {
		share := &sharingStore{Store: a.o.Store, sealed: []byte("anything")}
		a.o.Store = share
		if _, err := a.fetchKey(context.Background(), r, g.Cert, filepath.Join(dir, r.KeyFile), missing); err != missing || share.asked {
			t.Errorf("%+v: %v (asked the store: %t)", r, err, share.asked)
		}
		a.o.Store = share.Store
	}
	if _, err := os.Stat(filepath.Join(dir, "outside.key")); !os.IsNotExist(err) {
		t.Fatal("a key was written outside data_dir/ca")
	}
}

// sharingStore is a store that says it keeps one sealed key.
type sharingStore struct {
	store.Store
	sealed []byte
	asked  bool
}

func (s *sharingStore) PutSealedKey(context.Context, string, []byte, []byte) error { return nil }
func (s *sharingStore) SealedKey(context.Context, string, []byte) ([]byte, error) {
	s.asked = true
	return s.sealed, nil
}
func (s *sharingStore) ClaimKEK(_ context.Context, fp []byte) ([]byte, error) { return fp, nil }
func (s *sharingStore) KEKFingerprint(context.Context) ([]byte, error)        { return nil, store.ErrNotFound }
