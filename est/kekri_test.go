package est

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nmos-certs/nmos-certs/est/kek"
)

// The EnvelopedData as the tests read it back, with encoding/asn1 (the
// server writes it with cryptobyte).
type testContentInfo struct {
	Type    asn1.ObjectIdentifier
	Content asn1.RawValue `asn1:"explicit,tag:0"`
}

type testEnvelopedData struct {
	Version        int
	RecipientInfos []asn1.RawValue `asn1:"set"`
	Content        testEncryptedContentInfo
}

type testEncryptedContentInfo struct {
	Type      asn1.ObjectIdentifier
	Algorithm pkix.AlgorithmIdentifier
	Encrypted []byte `asn1:"tag:0"`
}

type testKEKRecipientInfo struct {
	Version int
	KEKID   struct {
		KeyIdentifier []byte
	}
	Algorithm    pkix.AlgorithmIdentifier
	EncryptedKey []byte
}

// openKEK checks the shape of a KEK EnvelopedData and decrypts it with
// secret, returning the content, its type and the recipient info.
func openKEK(t testing.TB, der, secret []byte) ([]byte, asn1.ObjectIdentifier, *testKEKRecipientInfo) {
	t.Helper()
	var ci testContentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) != 0 {
		t.Fatalf("ContentInfo: %v (%d bytes left)", err, len(rest))
	}
	if !ci.Type.Equal(oidEnvelopedData) {
		t.Fatalf("content type %v, want id-envelopedData", ci.Type)
	}
	var env testEnvelopedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &env); err != nil || len(rest) != 0 {
		t.Fatalf("EnvelopedData: %v (%d bytes left)", err, len(rest))
	}
	if env.Version != 2 {
		t.Errorf("EnvelopedData version %d, want 2 (RFC 5652 6.1: a kekri is version 4)", env.Version)
	}
	if len(env.RecipientInfos) != 1 {
		t.Fatalf("%d recipient infos, want 1", len(env.RecipientInfos))
	}
	ri := env.RecipientInfos[0]
	if ri.Class != asn1.ClassContextSpecific || ri.Tag != 2 || !ri.IsCompound {
		t.Fatalf("recipient info tag class %d number %d: want kekri [2]", ri.Class, ri.Tag)
	}
	var kri testKEKRecipientInfo
	if rest, err := asn1.UnmarshalWithParams(ri.FullBytes, &kri, "tag:2"); err != nil || len(rest) != 0 {
		t.Fatalf("KEKRecipientInfo: %v", err)
	}
	if kri.Version != 4 {
		t.Errorf("KEKRecipientInfo version %d, want 4", kri.Version)
	}
	wantWrap, err := aesWrapOID(len(secret))
	if err != nil {
		t.Fatal(err)
	}
	if !kri.Algorithm.Algorithm.Equal(wantWrap) {
		t.Errorf("key wrap %v, want %v for a %d-byte key", kri.Algorithm.Algorithm, wantWrap, len(secret))
	}
	if len(kri.Algorithm.Parameters.FullBytes) != 0 {
		t.Errorf("key wrap parameters present (%x): RFC 3565 says absent", kri.Algorithm.Parameters.FullBytes)
	}
	cek, err := aesKeyUnwrap(secret, kri.EncryptedKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(cek) != 32 {
		t.Fatalf("content-encryption key of %d bytes, want 32 (AES-256)", len(cek))
	}
	alg := env.Content.Algorithm
	if !alg.Algorithm.Equal(oidAES256CBC) {
		t.Fatalf("content encryption %v, want id-aes256-CBC", alg.Algorithm)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
		t.Fatalf("AES-CBC IV: %v, %d bytes", err, len(iv))
	}
	ct := env.Content.Encrypted
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		t.Fatalf("encrypted content of %d bytes", len(ct))
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > aes.BlockSize || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		t.Fatalf("bad padding %x", pt[len(pt)-aes.BlockSize:])
	}
	return pt[:len(pt)-pad], env.Content.Type, &kri
}

func testKEK(t testing.TB, id string, size int) *kek.Key {
	t.Helper()
	secret := make([]byte, size)
	for i := range secret {
		secret[i] = byte(size + 7*i)
	}
	k, err := kek.New([]byte(id), secret, "")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEnvelopeKEK checks the EnvelopedData encoding for each AES key
// size and content length (padding to a whole block, and a whole block
// of padding).
func TestEnvelopeKEK(t *testing.T) {
	for _, size := range []int{16, 24, 32} {
		k := testKEK(t, "studio-kek-1", size)
		for _, n := range []int{0, 1, 15, 16, 17, 1000} {
			content := bytes.Repeat([]byte{0x5a}, n)
			der, err := envelopeKEK(content, oidData, k)
			if err != nil {
				t.Fatal(err)
			}
			got, typ, kri := openKEK(t, der, k.Secret())
			if !bytes.Equal(got, content) {
				t.Fatalf("size %d, %d bytes: content differs", size, n)
			}
			if !typ.Equal(oidData) {
				t.Errorf("content type %v", typ)
			}
			if string(kri.KEKID.KeyIdentifier) != "studio-kek-1" {
				t.Errorf("keyIdentifier %q", kri.KEKID.KeyIdentifier)
			}
		}
	}
	// Fresh content-encryption key and IV every time.
	k := testKEK(t, "k", 32)
	a, _ := envelopeKEK([]byte("same"), oidData, k)
	b, _ := envelopeKEK([]byte("same"), oidData, k)
	if bytes.Equal(a, b) {
		t.Fatal("two envelopes of the same content are equal")
	}
	// The exact DER of version and recipientInfos: INTEGER 2, SET { [2]
	// { INTEGER 4, SEQUENCE { OCTET STRING "k" }, SEQUENCE { OID
	// id-aes256-wrap }, OCTET STRING (40 bytes) } }.
	_, _, kri := openKEK(t, a, k.Secret())
	want := append([]byte{
		0x02, 0x01, 0x02, 0x31, 0x41, 0xa2, 0x3f,
		0x02, 0x01, 0x04,
		0x30, 0x03, 0x04, 0x01, 'k',
		0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d,
		0x04, 0x28}, kri.EncryptedKey...)
	if !bytes.Contains(a, want) {
		t.Fatalf("encoding % x\ndoes not contain % x", a, want)
	}
}

// TestEnvelopeKEKOpenSSL has openssl cms decrypt the EnvelopedData with
// -secretkey and -secretkeyid, for each key size.
func TestEnvelopeKEKOpenSSL(t *testing.T) {
	needTools(t, "openssl")
	dir := t.TempDir()
	for _, size := range []int{16, 24, 32} {
		k := testKEK(t, "kek-"+itoa(size), size)
		content := []byte("a server-generated key would be here, " + itoa(size))
		der, err := envelopeKEK(content, oidData, k)
		if err != nil {
			t.Fatal(err)
		}
		in := writeFile(dir, "env"+itoa(size)+".der", der)
		out := filepath.Join(dir, "out"+itoa(size))
		run(t, dir, "openssl", "cms", "-decrypt", "-inform", "DER", "-in", in, "-out", out,
			"-secretkey", hex.EncodeToString(k.Secret()), "-secretkeyid", hex.EncodeToString(k.ID()))
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("openssl decrypted %q", got)
		}
		// openssl describes the structure as RFC 5652 has it.
		text := run(t, dir, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", in)
		for _, want := range []string{"d.kekri:", "version: 4", "id-aes" + itoa(size*8) + "-wrap", "aes-256-cbc"} {
			if !bytes.Contains([]byte(text), []byte(want)) {
				t.Fatalf("openssl -print lacks %q:\n%s", want, text)
			}
		}
		// The wrong key fails.
		wrong := bytes.Repeat([]byte{0x11}, size)
		cmd := []string{"cms", "-decrypt", "-inform", "DER", "-in", in, "-out", out + ".wrong",
			"-secretkey", hex.EncodeToString(wrong), "-secretkeyid", hex.EncodeToString(k.ID())}
		if err := runErr(dir, "openssl", cmd...); err == nil {
			t.Fatal("openssl decrypted with the wrong key")
		}
	}
}

// runErr runs a command expected to fail, returning its error.
func runErr(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.Run()
}
