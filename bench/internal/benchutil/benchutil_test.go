package benchutil

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// chain makes a P-384 root and a P-256 leaf under it.
func chain(t *testing.T) (root, leaf *x509.Certificate) {
	t.Helper()
	now := time.Now()
	root, rootKey, err := NewCert(elliptic.P384(), &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, err := NewCert(elliptic.P256(), &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}, root, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		t.Errorf("leaf is not signed by the root: %v", err)
	}
	if !leafKey.PublicKey.Equal(leaf.PublicKey) {
		t.Error("the key returned is not the leaf's")
	}
	if leaf.SerialNumber.Int64() != 7 || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("leaf serial %v, algorithm %v", leaf.SerialNumber, leaf.PublicKeyAlgorithm)
	}
	return root, leaf
}

func TestNewCert(t *testing.T) { chain(t) }

// TestIssuerHashes checks the hashes against those of x/crypto/ocsp's own
// requests.
func TestIssuerHashes(t *testing.T) {
	root, leaf := chain(t)
	for _, hash := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		der, err := xocsp.CreateRequest(leaf, root, &xocsp.RequestOptions{Hash: hash})
		if err != nil {
			t.Fatal(err)
		}
		want, err := xocsp.ParseRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		name, key, err := IssuerHashes(root, hash)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(name, want.IssuerNameHash) || !bytes.Equal(key, want.IssuerKeyHash) {
			t.Errorf("%v: hashes %x, %x; want %x, %x", hash, name, key, want.IssuerNameHash, want.IssuerKeyHash)
		}
	}
}
