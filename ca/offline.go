package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/youmark/pkcs8"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// Taking a root offline: its key leaves the appliance encrypted under a
// passphrase (ExportRootKey), and from then on what the root signs is
// signed where the key is: intermediates (see ceremony.go) and the root's
// CRL (CRLRequest on the appliance, SignCRL offline, ImportCRL back).

// keyOpts encrypt an exported key: PBES2 with PBKDF2-HMAC-SHA256 and
// AES-256-CBC, which openssl reads (openssl pkey -in FILE).
var keyOpts = &pkcs8.Opts{
	Cipher:  pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 600_000, HMACHash: crypto.SHA256},
}

// EncryptKey is key as an ENCRYPTED PRIVATE KEY PEM block.
func EncryptKey(key crypto.Signer, passphrase []byte) ([]byte, error) {
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, keyOpts)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// ReadEncryptedKey reads a key file written by EncryptKey (or an
// unencrypted PKCS#8 one when passphrase is nil).
func ReadEncryptedKey(path string, passphrase []byte) (crypto.Signer, error) {
	if passphrase == nil {
		return readKey(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not an ENCRYPTED PRIVATE KEY PEM file", path)
	}
	k, err := decryptPKCS8(blk.Bytes, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot decrypt it (wrong passphrase, or not a key this program wrote)", path)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// decryptPKCS8 decrypts an encrypted PKCS#8 key; a malformed one (the
// library does not check every length) is an error, not a panic.
func decryptPKCS8(der, passphrase []byte) (k any, err error) {
	defer func() {
		if recover() != nil {
			k, err = nil, errors.New("malformed encrypted key")
		}
	}()
	return pkcs8.ParsePKCS8PrivateKey(der, passphrase)
}

// ExportRootKey takes the active root of hier offline: it signs the
// root's CRL one last time here, valid for crlValidity (published until
// the next one is imported), writes the key to out encrypted under
// passphrase (never over an existing file) and checks that it decrypts
// to the same key, then removes the key from the appliance.
func (a *Authority) ExportRootKey(ctx context.Context, hier, out string, passphrase []byte, crlValidity time.Duration) (GenerationInfo, error) {
	a.rollMu.Lock()
	defer a.rollMu.Unlock()
	if err := a.Reload(ctx); err != nil {
		return GenerationInfo{}, err
	}
	var root *generation
	a.mu.RLock()
	for _, g := range a.gens {
		if g.rec.Hierarchy == hier && g.rec.Role == RoleRoot && g.rec.State == store.StateActive {
			root = g
		}
	}
	a.mu.RUnlock()
	if root == nil || root.key == nil {
		return GenerationInfo{}, fmt.Errorf("the active %s root's key is not on this appliance", hier)
	}
	if len(passphrase) < 12 {
		return GenerationInfo{}, errors.New("the passphrase must have at least 12 characters")
	}
	req, err := a.CRLRequest(ctx, root.rec.ID)
	if err != nil {
		return GenerationInfo{}, err
	}
	crl, err := SignCRL(req, root.cert, root.key, crlValidity, a.o.Clock())
	if err != nil {
		return GenerationInfo{}, fmt.Errorf("sign the root's CRL: %w", err)
	}
	enc, err := EncryptKey(root.key, passphrase)
	if err != nil {
		return GenerationInfo{}, err
	}
	err = WriteNew(out, 0o600, func(w io.Writer) error {
		_, err := w.Write(enc)
		return err
	})
	if err != nil {
		return GenerationInfo{}, fmt.Errorf("write the exported key: %w", err)
	}
	back, err := ReadEncryptedKey(out, passphrase)
	if err != nil || !publicKeysEqual(back.Public(), root.cert.PublicKey) {
		os.Remove(out)
		return GenerationInfo{}, fmt.Errorf("the exported key does not read back: %v; the key stays on the appliance", err)
	}
	// The last CRL and the key's departure are one transaction: a
	// running appliance never signs a CRL after the one kept here.
	if err := a.o.Store.ForgetKey(ctx, root.rec.ID, a.o.Clock(),
		&store.StaticCRL{IssuerID: root.rec.ID, Number: crl.Number.Int64(), DER: crl.Raw, NextUpdate: crl.NextUpdate}); err != nil {
		return GenerationInfo{}, err
	}
	keyPath := filepath.Join(a.o.DataDir, root.rec.KeyFile)
	if err := os.Remove(keyPath); err != nil {
		return GenerationInfo{}, fmt.Errorf("the key is exported and off the record, but %s could not be removed: remove it by hand: %w", keyPath, err)
	}
	if err := SyncDir(filepath.Dir(keyPath)); err != nil {
		return GenerationInfo{}, err
	}
	if err := a.Reload(ctx); err != nil {
		return GenerationInfo{}, err
	}
	a.o.Logger.Warn("CA root key exported and removed: the root is offline", "root", root.rec.ID)
	for _, g := range a.Generations() {
		if g.ID == root.rec.ID {
			return g, nil
		}
	}
	return GenerationInfo{}, nil
}

// CRLRequestDoc is what the offline root needs to sign a CRL: the next
// CRL number and the certificates to list.
type CRLRequestDoc struct {
	Issuer string `json:"issuer"`
	// RootSHA256 is the SHA-256 of the root's certificate: the root that
	// must sign the CRL.
	RootSHA256 string       `json:"root_sha256"`
	Number     int64        `json:"number"`
	Revoked    []CRLRevoked `json:"revoked"`
}

// CRLRevoked is one entry of a CRL request.
type CRLRevoked struct {
	Serial    string    `json:"serial"` // hex
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason"`
}

// CRLRequest is what the root issuerID's next CRL must say.
func (a *Authority) CRLRequest(ctx context.Context, issuerID string) (*CRLRequestDoc, error) {
	n, err := a.o.Store.NextCRLNumber(ctx, issuerID)
	if err != nil {
		return nil, err
	}
	cert, ok := a.CACertificate(issuerID)
	if !ok {
		return nil, fmt.Errorf("no CA generation %q", issuerID)
	}
	doc := &CRLRequestDoc{Issuer: issuerID, Number: n, RootSHA256: fingerprintOf(cert)}
	err = a.o.Store.Revocations(ctx, issuerID, func(r store.Revocation) error {
		doc.Revoked = append(doc.Revoked, CRLRevoked{Serial: r.Serial.Text(16), RevokedAt: r.RevokedAt, Reason: r.Reason})
		return nil
	})
	return doc, err
}

// Marshal is the request as JSON, for the file carried to the root.
func (d *CRLRequestDoc) Marshal() ([]byte, error) { return json.MarshalIndent(d, "", "  ") }

// SignCRL is the root's step: the CRL of req signed by rootKey, valid
// from now for validity (crypto/x509's CreateRevocationList).
func SignCRL(req *CRLRequestDoc, rootCert *x509.Certificate, rootKey crypto.Signer, validity time.Duration, now time.Time) (*x509.RevocationList, error) {
	if !publicKeysEqual(rootKey.Public(), rootCert.PublicKey) {
		return nil, errors.New("the root key does not match the root certificate")
	}
	if req.RootSHA256 != fingerprintOf(rootCert) {
		return nil, fmt.Errorf("the request is for %s (SHA-256 %s), not this root certificate", req.Issuer, req.RootSHA256)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(req.Number), ThisUpdate: now, NextUpdate: now.Add(validity)}
	for _, r := range req.Revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("bad serial %q in the request", r.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, rootCert, rootKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseRevocationList(der)
}

// ImportCRL keeps a CRL the offline root signed, for the appliance to
// publish at the root's CRL URL: it must be signed by a root of this CA
// and carry a number greater than the one published.
func (a *Authority) ImportCRL(ctx context.Context, crl *x509.RevocationList) error {
	now := a.o.Clock()
	for _, g := range a.Generations() {
		if g.Role != RoleRoot || g.KeyHeld || !bytes.Equal(crl.RawIssuer, g.Cert.RawSubject) || crl.CheckSignatureFrom(g.Cert) != nil {
			continue
		}
		switch {
		case crl.Number == nil || !crl.Number.IsInt64():
			return errors.New("the CRL has no usable CRL number")
		case crl.NextUpdate.IsZero() || !now.Before(crl.NextUpdate):
			return fmt.Errorf("the CRL expired (nextUpdate %s)", crl.NextUpdate.UTC().Format(time.RFC3339))
		case crl.ThisUpdate.After(now.Add(time.Hour)):
			return fmt.Errorf("the CRL starts in the future (thisUpdate %s)", crl.ThisUpdate.UTC().Format(time.RFC3339))
		}
		// It lists every revocation on record for that root.
		listed := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			listed[e.SerialNumber.Text(16)] = true
		}
		var missing string
		if err := a.o.Store.Revocations(ctx, g.ID, func(r store.Revocation) error {
			if !listed[r.Serial.Text(16)] && missing == "" {
				missing = r.Serial.Text(16)
			}
			return nil
		}); err != nil {
			return err
		}
		if missing != "" {
			return fmt.Errorf("the CRL does not list %s, which %s revoked: sign the CRL of a new 'ca crl-request'", missing, g.ID)
		}
		if err := a.o.Store.PutStaticCRL(ctx, &store.StaticCRL{IssuerID: g.ID, Number: crl.Number.Int64(), DER: crl.Raw, NextUpdate: crl.NextUpdate}); err != nil {
			return err
		}
		a.o.Logger.Info("root CRL imported", "root", g.ID, "number", crl.Number, "next_update", crl.NextUpdate)
		return nil
	}
	return errors.New("the CRL is not signed by a root of this CA whose key is offline")
}

func fingerprintOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
