package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"

	"go.mozilla.org/pkcs7"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/est/kek"
)

// pkcs7.Encrypt reads the content cipher from a package variable whose
// default is single DES. Set it once, before any goroutine runs, to
// AES-256-CBC: the strongest cipher both go.mozilla.org/pkcs7 and OpenSSL
// decrypt inside a CMS EnvelopedData.
func init() {
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
}

// Server-generated RSA keys are the size of the CSR's key within these
// bounds: big enough for the policy, small enough that a request cannot
// keep the server busy for seconds.
const (
	minServerRSABits = 2048
	maxServerRSABits = 4096
)

// keyDelivery says how a server-generated key is returned. With neither
// recipient nor kek set, it is returned unencrypted.
type keyDelivery struct {
	// recipient, when set, is the client certificate whose (RSA) key the
	// private key is encrypted to (RFC 7030 4.4.1.2).
	recipient *x509.Certificate
	// kek, when set, is the symmetric key the private key is encrypted
	// under (RFC 7030 4.4.1.1).
	kek    *kek.Key
	signer *tls.Certificate
}

// encrypted reports whether the key is returned encrypted.
func (kd *keyDelivery) encrypted() bool {
	return kd != nil && (kd.recipient != nil || kd.kek != nil)
}

// planKeyDelivery checks, before anything is issued, that an encrypted
// key can be delivered as the CSR asks.
//
// A DecryptKeyIdentifier must name one of the symmetric keys the server
// was given (Options.DecryptKeys): RFC 7030 4.4.1.1 has the server fail
// the request otherwise.
//
// An AsymmetricDecryptKeyIdentifier must identify the key of the TLS
// client certificate (by its subjectKeyIdentifier, or the SHA-1 or
// SHA-256 key identifier of RFC 5280 4.2.1.2 / RFC 7093): that is the key
// the client proved it holds in the handshake. Only RSA recipients are
// possible: go.mozilla.org/pkcs7, which clients of this family decrypt
// with, implements key transport, not key agreement.
//
// Either way the key is signed by the server before it is encrypted, so
// both need the KeySigner.
func (s *Server) planKeyDelivery(attrs *csrAttributes, leaf *x509.Certificate) (*keyDelivery, error) {
	if attrs.hasDecryptKeyID && attrs.hasAsymmKeyID {
		return nil, badRequest("the CSR has both DecryptKeyIdentifier and AsymmetricDecryptKeyIdentifier: ask for one way of encrypting the server-generated key")
	}
	if attrs.hasDecryptKeyID {
		k, ok := s.o.DecryptKeys.Lookup(attrs.decryptKeyID)
		if !ok {
			return nil, badRequest("DecryptKeyIdentifier %s: this server holds no symmetric key with that identifier (RFC 7030 4.4.1.1): ask with the identifier of a key shared with this server, or for an unencrypted key", kek.DescribeID(attrs.decryptKeyID))
		}
		signer, err := s.keySigner()
		if err != nil {
			return nil, err
		}
		return &keyDelivery{kek: k, signer: signer}, nil
	}
	if !attrs.hasAsymmKeyID {
		return &keyDelivery{}, nil
	}
	if leaf == nil {
		return nil, badRequest("AsymmetricDecryptKeyIdentifier: present the TLS client certificate holding the key it identifies")
	}
	if !keyIDMatches(leaf, attrs.asymmKeyID) {
		return nil, badRequest("AsymmetricDecryptKeyIdentifier %x does not identify the key of the TLS client certificate", attrs.asymmKeyID)
	}
	if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
		return nil, badRequest("AsymmetricDecryptKeyIdentifier names a %s key: server-generated keys can only be encrypted to an RSA key", leaf.PublicKeyAlgorithm)
	}
	signer, err := s.keySigner()
	if err != nil {
		return nil, err
	}
	return &keyDelivery{recipient: leaf, signer: signer}, nil
}

// keySigner returns the certificate and key that sign encrypted
// server-generated keys, or a 501 when there is none.
func (s *Server) keySigner() (*tls.Certificate, error) {
	var signer *tls.Certificate
	if s.o.KeySigner != nil {
		signer = s.o.KeySigner()
	}
	if signer == nil || len(signer.Certificate) == 0 || signer.PrivateKey == nil {
		return nil, errorf(http.StatusNotImplemented, "encrypted server-generated keys are not configured on this server: ask for an unencrypted key")
	}
	return signer, nil
}

// keyIDMatches reports whether id identifies the certificate's key.
func keyIDMatches(c *x509.Certificate, id []byte) bool {
	if len(id) == 0 {
		return false
	}
	if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, id) {
		return true
	}
	in := cryptobyte.String(c.RawSubjectPublicKeyInfo)
	var spki cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.SkipASN1(cbasn1.SEQUENCE) || !spki.ReadASN1BitString(&bits) {
		return false
	}
	s1 := sha1.Sum(bits.Bytes)
	s256 := sha256.Sum256(bits.Bytes)
	return bytes.Equal(id, s1[:]) || bytes.Equal(id, s256[:20]) || bytes.Equal(id, s256[:])
}

// serverKeyGen makes a key like the CSR's, has it certified for the CSR's
// subject and names, and returns both (RFC 7030 4.4).
func (s *Server) serverKeyGen(ctx context.Context, csr *x509.CertificateRequest, kd *keyDelivery, req policy.Requester, rl *requestLog) (*response, *x509.Certificate, error) {
	// The client's CSR is checked as any other (names, key, signature);
	// the CSR made for the new key is then checked again by Issue.
	if _, err := s.o.CA.CheckCSR(ctx, csr, req); err != nil {
		return nil, nil, err
	}
	key, err := newKeyLike(csr.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	newCSR, err := csrForKey(csr, key)
	if err != nil {
		return nil, nil, err
	}
	req.Identity += ", server-generated key"
	req.Renewing = nil
	cert, err := s.o.CA.Issue(ctx, newCSR, req)
	if err != nil {
		return nil, nil, err
	}
	rl.serial = cert.SerialNumber.Text(16)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal server-generated key: %w", err)
	}
	defer clear(pkcs8)
	keyType, keyBody := mediaPKCS8, pkcs8
	if kd.encrypted() {
		env, err := encryptKey(pkcs8, kd)
		if err != nil {
			return nil, nil, err
		}
		keyType, keyBody = mediaServerKey, env
	}
	body, ctype, err := multipartBody(
		part{contentType: keyType, der: keyBody},
		part{contentType: mediaCertsOnly, der: certsOnly(cert.Raw)},
	)
	if err != nil {
		return nil, nil, err
	}
	return &response{status: http.StatusOK, contentType: ctype, body: body, sensitive: true}, cert, nil
}

// newKeyLike generates a key of the CSR key's algorithm: the same curve,
// or an RSA modulus of the same size within [2048, 4096] bits.
func newKeyLike(pub any) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		key, err := ecdsa.GenerateKey(k.Curve, rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ECDSA key: %w", err)
		}
		return key, nil
	case *rsa.PublicKey:
		bits := min(max(k.N.BitLen(), minServerRSABits), maxServerRSABits)
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		return key, nil
	}
	return nil, badRequest("server-side key generation makes RSA or ECDSA keys like the CSR's: the CSR's %T key is not one", pub)
}

// csrForKey builds and signs, with the new key, a CSR carrying the
// client CSR's subject and subjectAltName.
func csrForKey(csr *x509.CertificateRequest, key crypto.Signer) (*x509.CertificateRequest, error) {
	tmpl := &x509.CertificateRequest{RawSubject: csr.RawSubject}
	if ext, ok := sanExtension(csr); ok {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("build CSR for the server-generated key: %w", err)
	}
	out, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse CSR for the server-generated key: %w", err)
	}
	return out, nil
}

// encryptKey wraps the PKCS#8 key in a CMS SignedData signed by the
// server, then in an EnvelopedData for the client (RFC 7030 4.4.2, RFC
// 5958 4): to the client's certificate (KeyTransRecipientInfo), or under
// the shared symmetric key (KEKRecipientInfo). Both encrypt the same
// thing, the DER of the SignedData's ContentInfo as id-data content (as
// go.mozilla.org/pkcs7 does), so a client decrypts either and then reads
// a CMS signed message.
func encryptKey(pkcs8 []byte, kd *keyDelivery) ([]byte, error) {
	signed, err := signKey(pkcs8, kd.signer)
	if err != nil {
		return nil, err
	}
	defer clear(signed)
	var env []byte
	if kd.kek != nil {
		env, err = envelopeKEK(signed, oidData, kd.kek)
	} else {
		env, err = pkcs7.Encrypt(signed, []*x509.Certificate{kd.recipient})
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt server-generated key: %w", err)
	}
	return env, nil
}

// signKey returns a CMS SignedData holding the PKCS#8 key, signed with
// the signer's key and carrying its certificate chain.
func signKey(pkcs8 []byte, signer *tls.Certificate) ([]byte, error) {
	signerCert := signer.Leaf
	if signerCert == nil {
		c, err := x509.ParseCertificate(signer.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("key signer certificate: %w", err)
		}
		signerCert = c
	}
	sd, err := pkcs7.NewSignedData(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("sign server-generated key: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(signerCert, signer.PrivateKey, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("sign server-generated key: %w", err)
	}
	for _, der := range signer.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			sd.AddCertificate(c)
		}
	}
	signed, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("sign server-generated key: %w", err)
	}
	return signed, nil
}

type part struct {
	contentType string
	der         []byte
}

// multipartBody builds a multipart/mixed body of base64 parts.
func multipartBody(parts ...part) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.contentType)
		h.Set("Content-Transfer-Encoding", "base64")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		if _, err := w.Write(base64Wrapped(p.der)); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "multipart/mixed; boundary=" + mw.Boundary(), nil
}
