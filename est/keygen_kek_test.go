package est

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mozilla.org/pkcs7"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/est/kek"
)

// kekSet is the symmetric keys the server of these tests holds: an
// AES-256 key with a text identifier, an AES-128 key with a binary one.
func kekSet(t testing.TB) (*kek.Set, *kek.Key, *kek.Key) {
	t.Helper()
	k256 := testKEK(t, "studio-kek-1", 32)
	secret128 := make([]byte, 16)
	for i := range secret128 {
		secret128[i] = byte(0xc0 + i)
	}
	k128, err := kek.New([]byte{0x0b, 0xad, 0xca, 0xfe}, secret128, "")
	if err != nil {
		t.Fatal(err)
	}
	set, err := kek.NewSet(k256, k128)
	if err != nil {
		t.Fatal(err)
	}
	return set, k256, k128
}

// checkSignedKey checks what the EnvelopedData held: the PKCS#8 key in a
// SignedData signed by the server's certificate, for cert's public key.
func checkSignedKey(t testing.TB, f *fixture, signed []byte, cert *x509.Certificate) {
	t.Helper()
	sd, err := pkcs7.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.pki.ecRoot.cert)
	sd.Certificates = append(sd.Certificates, f.pki.ecInt.cert)
	if err := sd.VerifyWithChain(roots); err != nil {
		t.Fatalf("key package signature: %v", err)
	}
	if !sd.GetOnlySigner().Equal(f.pki.serverEC.cert) {
		t.Fatal("key package not signed by the server certificate")
	}
	key, err := x509.ParsePKCS8PrivateKey(sd.Content)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeyEqual(cert.PublicKey, key.(crypto.Signer).Public()) {
		t.Fatal("certificate is not for the returned key")
	}
}

// TestServerKeyGenSymmetric: a CSR with a DecryptKeyIdentifier gets its
// key in an EnvelopedData under that symmetric key (RFC 7030 4.4.2).
func TestServerKeyGenSymmetric(t *testing.T) {
	set, k256, k128 := kekSet(t)
	f := newFixture(t, func(o *Options) { o.DecryptKeys = set })
	for _, tc := range []struct {
		name string
		who  *issued
		key  *kek.Key
		csrK crypto.Signer
	}{
		{"AES-256 text identifier, ECDSA client", f.pki.devA, k256, ecKey()},
		{"AES-128 binary identifier, RSA client", f.pki.devB, k128, rsaKey(2048)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrWithAttrs(t, tc.csrK, "sym."+testDomain, decryptKeyID(tc.key.ID()))
			cert, blob, err := f.client(tc.who).ServerKeyGen(ctx(t), csr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509.ParsePKCS8PrivateKey(blob); err == nil {
				t.Fatal("key returned in clear")
			}
			signed, typ, kri := openKEK(t, blob, tc.key.Secret())
			if string(kri.KEKID.KeyIdentifier) != string(tc.key.ID()) {
				t.Fatalf("kekid %x, want %x", kri.KEKID.KeyIdentifier, tc.key.ID())
			}
			if !typ.Equal(oidData) {
				t.Fatalf("encrypted content type %v", typ)
			}
			checkSignedKey(t, f, signed, cert)
		})
	}

	// Without the attribute nothing changes: the key comes in clear.
	t.Run("no attribute", func(t *testing.T) {
		cert, keyDER, err := f.client(f.pki.devA).ServerKeyGen(ctx(t), newCSR(t, ecKey(), "plain."+testDomain))
		if err != nil {
			t.Fatal(err)
		}
		key, err := x509.ParsePKCS8PrivateKey(keyDER)
		if err != nil || !publicKeyEqual(cert.PublicKey, key.(crypto.Signer).Public()) {
			t.Fatalf("plain key: %v", err)
		}
	})
	// Nor does the asymmetric form.
	t.Run("asymmetric", func(t *testing.T) {
		dev := f.pki.devB
		cert, blob, err := f.client(dev).ServerKeyGen(ctx(t), csrWithAttrs(t, ecKey(), "asym."+testDomain, asymmKeyID(dev.cert.SubjectKeyId)))
		if err != nil {
			t.Fatal(err)
		}
		env, err := pkcs7.Parse(blob)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := env.Decrypt(dev.cert, dev.key)
		if err != nil {
			t.Fatal(err)
		}
		checkSignedKey(t, f, signed, cert)
	})

	for _, tc := range []struct {
		name   string
		opt    func(*Options)
		attrs  []csrAttr
		status int
		reason []string
	}{
		{"unknown identifier", nil, []csrAttr{decryptKeyID([]byte("studio-kek-9"))}, 400,
			[]string{`DecryptKeyIdentifier "studio-kek-9" (hex 73747564696f2d6b656b2d39)`, "no symmetric key"}},
		{"unknown binary identifier", nil, []csrAttr{decryptKeyID([]byte{0xde, 0xad})}, 400,
			[]string{"DecryptKeyIdentifier dead:", "no symmetric key"}},
		{"no keys configured", func(o *Options) { o.DecryptKeys = nil }, []csrAttr{decryptKeyID([]byte("studio-kek-1"))}, 400,
			[]string{`DecryptKeyIdentifier "studio-kek-1"`, "no symmetric key"}},
		{"empty identifier", nil, []csrAttr{decryptKeyID(nil)}, 400, []string{"DecryptKeyIdentifier attribute is empty"}},
		{"two identifiers", nil, []csrAttr{decryptKeyID(k256.ID()), decryptKeyID(k128.ID())}, 400, []string{"more than one DecryptKeyIdentifier"}},
		{"both kinds", nil, []csrAttr{decryptKeyID(k256.ID()), asymmKeyID(f.pki.devB.cert.SubjectKeyId)}, 400,
			[]string{"both DecryptKeyIdentifier and AsymmetricDecryptKeyIdentifier"}},
		{"no signer configured", func(o *Options) { o.KeySigner = nil }, []csrAttr{decryptKeyID(k256.ID())}, 501, []string{"not configured"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.opt != nil {
				g = newFixture(t, func(o *Options) { o.DecryptKeys = set }, tc.opt)
			}
			before := g.ca.count(t)
			_, _, err := g.client(f.pki.devB).ServerKeyGen(ctx(t), csrWithAttrs(t, ecKey(), "sym2."+testDomain, tc.attrs...))
			if estStatus(err) != tc.status {
				t.Fatalf("err %v, want %d", err, tc.status)
			}
			for _, r := range tc.reason {
				if !strings.Contains(err.Error(), r) {
					t.Errorf("reason %q does not contain %q", err, r)
				}
			}
			if g.ca.count(t) != before {
				t.Fatal("a refused request was issued")
			}
		})
	}
	// The logs name identifiers, never keys.
	for _, k := range []*kek.Key{k256, k128} {
		if s := hex.EncodeToString(k.Secret()); strings.Contains(strings.ToLower(f.logs.String()), s) {
			t.Fatal("the log shows a key-encryption key")
		}
	}
	if !strings.Contains(f.logs.String(), "studio-kek-9") {
		t.Error("the log does not show the refused identifier")
	}
}

// TestManualApprovalServerKeyGenSymmetric: a device without a trusted
// certificate, once approved, gets its key under the shared key.
func TestManualApprovalServerKeyGenSymmetric(t *testing.T) {
	set, k256, _ := kekSet(t)
	f := newFixture(t, func(o *Options) {
		o.ManualApproval = true
		o.RetryAfter = 90 * time.Second
		o.PendingLifetime = 24 * time.Hour
		o.DecryptKeys = set
	})
	c := f.client(nil)
	// An unknown identifier is refused before anything is queued.
	if _, _, err := c.ServerKeyGen(ctx(t), csrWithAttrs(t, ecKey(), "kg3."+testDomain, decryptKeyID([]byte("other")))); estStatus(err) != http.StatusBadRequest {
		t.Fatalf("unknown identifier: %v", err)
	}
	if list, _ := f.ca.st.ListPending(ctx(t), ""); len(list) != 0 {
		t.Fatalf("%d requests queued", len(list))
	}
	key := ecKey()
	csr := csrWithAttrs(t, key, "kg3."+testDomain, decryptKeyID(k256.ID()))
	if _, _, err := c.ServerKeyGen(ctx(t), csr); estStatus(err) != http.StatusAccepted {
		t.Fatalf("first: %v", err)
	}
	p := f.pendingFor(csr)
	if _, err := f.ca.st.DecidePending(ctx(t), p.ID, store.PendingApproved, "carol", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	cert, blob, err := c.ServerKeyGen(ctx(t), csr)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, _ := openKEK(t, blob, k256.Secret())
	checkSignedKey(t, f, signed, cert)
}

// TestCurlServerKeyGenSymmetricOpenSSL: curl sends a CSR carrying a
// DecryptKeyIdentifier; openssl cms decrypts the key part with the
// shared key (-secretkey, -secretkeyid), verifies the server's signature,
// and the key is the certificate's.
func TestCurlServerKeyGenSymmetricOpenSSL(t *testing.T) {
	needTools(t, "curl", "openssl")
	set, k256, _ := kekSet(t)
	f := newFixture(t, func(o *Options) { o.DecryptKeys = set })
	csr := csrWithAttrs(t, ecKey(), "kg-kek."+testDomain, decryptKeyID(k256.ID()))
	k := curlServerKeyGen(t, f, f.pki.devA, "--tlsv1.3", "/.well-known/est/nmos/serverkeygen", csr)
	dir, devFile, devKey := k.dir, k.devCert, k.devKey
	printed := run(t, dir, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", "key.p7")
	for _, want := range []string{"d.kekri:", "studio-kek-1", "id-aes256-wrap", "aes-256-cbc"} {
		if !strings.Contains(printed, want) {
			t.Fatalf("openssl -print lacks %q:\n%s", want, printed)
		}
	}
	run(t, dir, "openssl", "cms", "-decrypt", "-inform", "DER", "-in", "key.p7", "-out", "signed.der",
		"-secretkey", hex.EncodeToString(k256.Secret()), "-secretkeyid", hex.EncodeToString(k256.ID()))
	opensslKeyIsCertificates(t, f, k)

	// An identifier the server does not hold: 400 with the reason.
	bad := csrWithAttrs(t, ecKey(), "kg-kek."+testDomain, decryptKeyID([]byte("no-such-kek")))
	writeFile(dir, "bad.b64", []byte(b64(bad.Raw)))
	status, _ := f.curl(t, dir, []string{"--tlsv1.2"}, "bad.txt", "/.well-known/est/serverkeygen",
		"--cert", devFile, "--key", devKey, "--data-binary", "@bad.b64", "-H", "Content-Type: application/pkcs10")
	if reason := readFile(t, dir, "bad.txt"); status != 400 || !strings.Contains(reason, `DecryptKeyIdentifier "no-such-kek"`) {
		t.Fatalf("unknown identifier: %d %s", status, reason)
	}
}
