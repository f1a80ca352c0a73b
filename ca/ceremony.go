package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/csr"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// The offline-root ceremony: when the root key is not on the appliance,
// an intermediate rollover is made in three steps. The appliance makes
// the new key and a CSR (RequestIntermediate); the root signs it on the
// machine that holds the root key (SignIntermediate, which needs no
// store); the appliance takes the certificate back (ImportIntermediate),
// which rolls over as RolloverIntermediate does. Between the steps the
// new key waits in data_dir/ca/pending/, outside the key directory
// proper.

func (a *Authority) pendingDir() string { return filepath.Join(a.keyDir(), "pending") }

// RequestIntermediate makes the key of the next intermediate of hier and
// returns its CSR (PEM), to be signed by the offline root. The key is
// kept (0600) in data_dir/ca/pending/ until ImportIntermediate.
func (a *Authority) RequestIntermediate(ctx context.Context, hier string) ([]byte, string, error) {
	if err := a.Reload(ctx); err != nil {
		return nil, "", err
	}
	seq := 0
	for _, g := range a.Generations() {
		if g.Hierarchy == hier && g.Role == RoleIntermediate {
			if n := generationSeq(g.ID); n > seq {
				seq = n
			}
		}
	}
	if seq == 0 {
		return nil, "", fmt.Errorf("no %s hierarchy", strings.ToUpper(hier))
	}
	id := a.genID(hier, RoleIntermediate, seq+1)
	algo, size := "ecdsa", 256
	if hier == RSA {
		algo, size = "rsa", a.o.RSAIntermediateBits
	}
	key, err := newKey(algo, size)
	if err != nil {
		return nil, "", err
	}
	req, err := csr.Generate(key, a.subject(hier, RoleIntermediate, seq+1))
	if err != nil {
		return nil, "", err
	}
	// A request made before and never imported is replaced: one
	// ceremony at a time per hierarchy.
	os.Remove(filepath.Join(a.pendingDir(), id+".key"))
	if err := writeNewKey(filepath.Join(a.pendingDir(), id+".key"), key); err != nil {
		return nil, "", err
	}
	return req, id, nil
}

func generationSeq(id string) int {
	var n int
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0
	}
	fmt.Sscanf(id[i+1:], "%d", &n)
	return n
}

// SignIntermediate is the offline root's step: it certifies the key of
// the intermediate CSR csrPEM with rootCert and rootKey, as the appliance
// certifies its own intermediates (a CA of path length 0 that signs
// certificates and CRLs), valid from now for lifetime but not past the
// root. baseURL, when given, is the appliance's plain-HTTP base: the
// certificate then names the root's CRL and certificate there (rootID is
// the root's generation ID, as `ca status` shows it).
func SignIntermediate(csrPEM []byte, rootCert *x509.Certificate, rootKey crypto.Signer, lifetime time.Duration, baseURL, rootID string, now time.Time) (*x509.Certificate, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || !strings.Contains(blk.Type, "CERTIFICATE REQUEST") {
		return nil, errors.New("not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the request's signature: %w", err)
	}
	if !publicKeysEqual(rootKey.Public(), rootCert.PublicKey) {
		return nil, errors.New("the root key does not match the root certificate")
	}
	if !rootCert.IsCA {
		return nil, errors.New("the root certificate is not a CA")
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(rootCert.NotAfter) {
		notAfter = rootCert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errors.New("the root has expired")
	}
	serial, err := randomSerial(now)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, RawSubject: req.RawSubject,
		NotBefore: now.Add(-5 * time.Minute), NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	if strings.TrimSuffix(baseURL, "/") != "" {
		tmpl.OCSPServer = []string{ocspURLAt(baseURL)}
		tmpl.CRLDistributionPoints = []string{crlURLAt(baseURL, rootID)}
		tmpl.IssuingCertificateURL = []string{issuerURLAt(baseURL, rootID)}
	}
	return (&generation{cert: rootCert, key: rootKey}).certify(tmpl, req.PublicKey)
}

// ImportIntermediate takes back the certificate the offline root signed
// for a key RequestIntermediate made, checks that the hierarchy's active
// root signed it and that it is a CA for the pending key, and makes it
// the active intermediate: the old one retires as after
// RolloverIntermediate.
func (a *Authority) ImportIntermediate(ctx context.Context, cert *x509.Certificate, reason string) (*Rollover, error) {
	a.rollMu.Lock()
	defer a.rollMu.Unlock()
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("the certificate is not a CA certificate that signs certificates")
	}
	if cert.MaxPathLen > 0 {
		return nil, fmt.Errorf("the certificate allows %d CAs below it: an intermediate here has path length 0", cert.MaxPathLen)
	}
	// The pending key it certifies.
	files, _ := filepath.Glob(filepath.Join(a.pendingDir(), "*.key"))
	var key crypto.Signer
	var id string
	for _, f := range files {
		k, err := readKey(f)
		if err == nil && publicKeysEqual(k.Public(), cert.PublicKey) {
			key, id = k, strings.TrimSuffix(filepath.Base(f), ".key")
		}
	}
	if key == nil {
		return nil, errors.New("no pending intermediate key matches this certificate: make the request with 'ca rollover intermediate --csr-out FILE' first")
	}
	a.mu.RLock()
	var hier string
	for _, h := range Hierarchies {
		if strings.HasPrefix(id, h+"-") {
			hier = h
		}
	}
	old := a.active[hier]
	a.mu.RUnlock()
	if old == nil || old.parent == nil {
		return nil, fmt.Errorf("no active %s intermediate under a known root", hier)
	}
	root := old.parent
	if err := cert.CheckSignatureFrom(root.cert); err != nil || !bytes.Equal(cert.RawIssuer, root.cert.RawSubject) {
		return nil, fmt.Errorf("not issued by the active root %s: %v", root.rec.ID, err)
	}
	now := a.o.Clock().Truncate(time.Second)
	if !now.Before(cert.NotAfter) || cert.NotBefore.After(now.Add(time.Hour)) {
		return nil, errors.New("the certificate is not valid now")
	}
	rec := &store.Generation{ID: id, Hierarchy: hier, Role: RoleIntermediate, Seq: generationSeq(id), ParentID: root.rec.ID,
		State: store.StateActive, CertDER: cert.Raw, KeyFile: filepath.Join("ca", id+".key"), CreatedAt: now}
	final := filepath.Join(a.o.DataDir, rec.KeyFile)
	if err := os.Link(filepath.Join(a.pendingDir(), id+".key"), final); err != nil {
		return nil, fmt.Errorf("move the pending key into place: %w", err)
	}
	step("imported intermediate key in place")
	if err := a.shareKey(ctx, id, cert, key); err != nil {
		os.Remove(final)
		return nil, err
	}
	// With a compromised key, the old intermediate is revoked in the same
	// transaction: the next 'ca crl-request' lists it for the root to sign.
	if err := a.o.Store.RollGeneration(ctx, rec, old.rec.ID, store.StateRetiring, compromised(old, root, reason, now)); err != nil {
		os.Remove(final)
		return nil, fmt.Errorf("record the rollover to %s: %w", id, err)
	}
	os.Remove(filepath.Join(a.pendingDir(), id+".key"))
	// On record as the root's, so that it can be revoked on the root's CRL.
	imported := &generation{rec: rec, cert: cert}
	if err := a.o.Store.PutCertificate(ctx, caRecord(imported, root)); err != nil {
		a.o.Logger.Warn("the imported intermediate is not on record as the root's certificate", "generation", id, "err", err)
	}
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	r := a.rolloverOf(hier, reason, old.rec.ID, id)
	a.metrics.rollovers.WithLabelValues(hier, RoleIntermediate).Inc()
	a.o.Logger.Warn("CA intermediate imported from the offline root", "hierarchy", hier, "old", old.rec.ID, "new", id, "new_sha256", r.New.Fingerprint)
	return r, nil
}
