package est

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"go.mozilla.org/pkcs7"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func TestDecodeBody(t *testing.T) {
	der := newCSR(t, ecKey(), "w."+testDomain).Raw
	std := base64.StdEncoding.EncodeToString(der)
	ok := map[string]string{
		"one line":          std,
		"CRLF 76":           string(base64Wrapped(der)),
		"LF 64":             b64(der),
		"no padding":        strings.TrimRight(std, "="),
		"spaces tabs":       "\t " + std[:7] + " \t " + std[7:] + "\f\v",
		"surrounding blank": "\r\n\r\n" + std + "\r\n\r\n",
		"PEM":               string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		"old PEM label":     string(pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der})),
		"bare DER":          string(der),
	}
	for name, in := range ok {
		t.Run(name, func(t *testing.T) {
			got, err := decodeBody([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, der) {
				t.Fatal("decoded DER differs")
			}
		})
	}
	bad := map[string]string{
		"empty":              "",
		"blank":              " \r\n\t",
		"illegal character":  std[:20] + "!" + std[20:],
		"URL-safe alphabet":  strings.NewReplacer("+", "-", "/", "_").Replace(std) + "-_",
		"padding in between": std[:8] + "==" + std[8:],
		"PEM garbage":        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n",
		"PEM wrong type":     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"PEM then junk":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})) + "junk",
		"lone character":     "A",
		"empty PEM":          "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----",
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := decodeBody([]byte(in))
			he, ok := asHTTPError(err)
			if !ok || he.status != http.StatusBadRequest || he.msg == "" {
				t.Fatalf("err %v, want a 400 with a reason", err)
			}
		})
	}
}

// FuzzDecodeBody: the body decoder and CSR parser never panic, and what
// the decoder accepts is never empty.
func FuzzDecodeBody(f *testing.F) {
	der := newCSR(f, ecKey(), "fz."+testDomain).Raw
	f.Add([]byte(base64.StdEncoding.EncodeToString(der)))
	f.Add(base64Wrapped(der))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(der)
	f.Add([]byte("-----BEGIN "))
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte("===="))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----"))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := decodeBody(body)
		if err != nil {
			if _, ok := asHTTPError(err); !ok {
				t.Fatalf("error %v is not an httpError", err)
			}
			return
		}
		if len(out) == 0 {
			t.Fatal("accepted an empty body")
		}
		if csr, err := decodeCSR(body); err == nil {
			parseCSRAttributes(csr)
		}
	})
}

func TestBase64Wrapped(t *testing.T) {
	for _, n := range []int{0, 1, 56, 57, 58, 114, 1000} {
		data := bytes.Repeat([]byte{0xa5}, n)
		out := string(base64Wrapped(data))
		if n > 0 && !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("%d: no final CRLF", n)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if len(l) > 76 {
				t.Fatalf("%d: line of %d", n, len(l))
			}
		}
		back, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(out, "\r\n", ""))
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("%d: round trip %v", n, err)
		}
	}
}

// TestCertsOnly: the hand-built degenerate SignedData is what
// go.mozilla.org/pkcs7 builds and reads.
func TestCertsOnly(t *testing.T) {
	p := getPKI(t)
	a, b := p.ecInt.cert, p.ecRoot.cert
	got := certsOnly(a.Raw, b.Raw)
	p7, err := pkcs7.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Certificates) != 2 || !p7.Certificates[0].Equal(a) || !p7.Certificates[1].Equal(b) {
		t.Fatal("certificates lost or reordered")
	}
	ref, err := pkcs7.DegenerateCertificate(append(bytes.Clone(a.Raw), b.Raw...))
	if err != nil {
		t.Fatal(err)
	}
	refP7, _ := pkcs7.Parse(ref)
	if len(refP7.Certificates) != 2 {
		t.Fatal("reference")
	}
	// Same structure but for the empty CRL set the library adds.
	if !bytes.Contains(ref, got[len(got)-len(a.Raw)-len(b.Raw)-2:len(got)-2]) {
		t.Fatal("certificate set differs from the library's")
	}
}

func TestParseCSRAttributes(t *testing.T) {
	key := ecKey()
	csr := csrWithAttrs(t, key, "a."+testDomain, challengePassword("abc"), asymmKeyID([]byte{9, 8, 7}), decryptKeyID([]byte("k")))
	attrs, err := parseCSRAttributes(csr)
	if err != nil {
		t.Fatal(err)
	}
	if !attrs.hasChallengePassword || attrs.challengePassword != "abc" || !bytes.Equal(attrs.asymmKeyID, []byte{9, 8, 7}) || !attrs.hasDecryptKeyID {
		t.Fatalf("%+v", attrs)
	}
	plain, err := parseCSRAttributes(newCSR(t, key, "a."+testDomain))
	if err != nil || plain.hasChallengePassword || plain.hasAsymmKeyID {
		t.Fatalf("%+v %v", plain, err)
	}
	twice := csrWithAttrs(t, key, "a."+testDomain, challengePassword("a"), challengePassword("b"))
	if _, err := parseCSRAttributes(twice); err == nil {
		t.Fatal("two challengePasswords accepted")
	}
	notString := csrWithAttrs(t, key, "a."+testDomain, csrAttr{oidChallengePassword, func(b *cryptobyte.Builder) { b.AddASN1Int64(5) }})
	if _, err := parseCSRAttributes(notString); err == nil {
		t.Fatal("integer challengePassword accepted")
	}
	bmp := csrWithAttrs(t, key, "a."+testDomain, csrAttr{oidChallengePassword, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(30), func(b *cryptobyte.Builder) { b.AddBytes([]byte{0, 'h', 0, 'i'}) })
	}})
	if a, err := parseCSRAttributes(bmp); err != nil || a.challengePassword != "hi" {
		t.Fatalf("BMPString: %+v %v", a, err)
	}
}

func TestSameSubject(t *testing.T) {
	enc := func(n pkix.Name) []byte {
		b, err := asn1.Marshal(n.ToRDNSequence())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := enc(pkix.Name{CommonName: "x." + testDomain, Organization: []string{"O"}})
	// The same name with UTF8String instead of PrintableString.
	utf8, _ := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("O")}}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("x." + testDomain)}}},
	})
	if !sameSubject(a, a) {
		t.Fatal("equal names differ")
	}
	var r1, r2 pkix.RDNSequence
	asn1.Unmarshal(a, &r1)
	asn1.Unmarshal(utf8, &r2)
	if !sameSubject(a, utf8) {
		t.Fatalf("string types matter: %v vs %v", r1, r2)
	}
	for _, other := range [][]byte{
		enc(pkix.Name{CommonName: "y." + testDomain, Organization: []string{"O"}}),
		enc(pkix.Name{CommonName: "x." + testDomain}),
		{0x30, 0x01},
	} {
		if sameSubject(a, other) {
			t.Fatal("different names equal")
		}
	}
}

func BenchmarkDecodeCSR(b *testing.B) {
	body := base64Wrapped(newCSR(b, ecKey(), "bench."+testDomain).Raw)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeCSR(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeCertsOnly(b *testing.B) {
	p := getPKI(b)
	cert := p.serverEC.cert
	b.ReportAllocs()
	for b.Loop() {
		base64Wrapped(certsOnly(cert.Raw))
	}
}

// BenchmarkEncodeCertsOnlyPKCS7 is the library's way, for comparison.
func BenchmarkEncodeCertsOnlyPKCS7(b *testing.B) {
	p := getPKI(b)
	cert := p.serverEC.cert
	b.ReportAllocs()
	for b.Loop() {
		der, err := pkcs7.DegenerateCertificate(cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		base64Wrapped(der)
	}
}
