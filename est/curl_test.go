package est

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive the server the way RFC 7030's examples do: curl for
// HTTP, openssl for keys, CSRs and PKCS#7, over TLS 1.2 and TLS 1.3.

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: install it (.ci/run does) to run this test", tool)
		}
	}
}

// run runs a command and returns its standard output.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// curl posts or gets with the fixture's CA roots, returning the status and
// the headers (the body is in out).
func (f *fixture) curl(t *testing.T, dir string, tlsArgs []string, out, path string, args ...string) (int, http.Header) {
	t.Helper()
	all := append([]string{"-sS", "--cacert", f.pki.caRootsFile, "-o", out, "-D", "headers.txt", "-w", "%{http_code}"}, tlsArgs...)
	all = append(all, args...)
	all = append(all, f.url(path))
	code := run(t, dir, "curl", all...)
	raw, err := os.ReadFile(filepath.Join(dir, "headers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The header file holds one block per response (100 Continue first).
	blocks := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(raw), "\r\n", "\n")), "\n\n")
	last := blocks[len(blocks)-1]
	_, hdrText, _ := strings.Cut(last, "\n")
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(hdrText + "\n\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	status := 0
	for _, c := range code {
		status = status*10 + int(c-'0')
	}
	return status, http.Header(h)
}

func TestCurlOpenSSL(t *testing.T) {
	needTools(t, "curl", "openssl")
	f := newFixture(t)
	p := f.pki
	for _, v := range []struct {
		name string
		args []string
	}{
		{"TLS 1.2", []string{"--tlsv1.2", "--tls-max", "1.2"}},
		{"TLS 1.3", []string{"--tlsv1.3"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			// cacerts, as in RFC 7030 4.1.3.
			status, h := f.curl(t, dir, v.args, "cacerts.b64", "/.well-known/est/cacerts")
			if status != 200 || h.Get("Content-Type") != mediaCertsOnly || h.Get("Strict-Transport-Security") == "" {
				t.Fatalf("cacerts: %d %v", status, h)
			}
			run(t, dir, "openssl", "base64", "-d", "-in", "cacerts.b64", "-out", "cacerts.der")
			certs := run(t, dir, "openssl", "pkcs7", "-inform", "DER", "-in", "cacerts.der", "-print_certs")
			if n := strings.Count(certs, "subject="); n != 4 {
				t.Fatalf("openssl sees %d certificates in cacerts:\n%s", n, certs)
			}

			// simpleenroll with an ECDSA key and the maker A certificate
			// (and its intermediate, from the same file).
			name := "curl-ec-" + strings.ToLower(strings.ReplaceAll(v.name, " ", "")) + "." + testDomain
			run(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
				"-keyout", "ec.key", "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name, "-outform", "DER", "-out", "ec.csr")
			run(t, dir, "openssl", "base64", "-in", "ec.csr", "-out", "ec.csr.b64")
			status, h = f.curl(t, dir, v.args, "ec.p7.b64", enrollPath, "--cert", p.devAFile, "--key", p.devAKeyFile,
				"--data-binary", "@ec.csr.b64", "-H", "Content-Type: application/pkcs10")
			if status != 200 || h.Get("Content-Transfer-Encoding") != "base64" {
				t.Fatalf("enroll: %d %v %s", status, h, readFile(t, dir, "ec.p7.b64"))
			}
			run(t, dir, "openssl", "base64", "-d", "-in", "ec.p7.b64", "-out", "ec.p7")
			run(t, dir, "openssl", "pkcs7", "-inform", "DER", "-in", "ec.p7", "-print_certs", "-out", "ec.pem")
			if n := strings.Count(readFile(t, dir, "ec.pem"), "BEGIN CERTIFICATE"); n != 1 {
				t.Fatalf("%d certificates in the enroll answer", n)
			}
			text := run(t, dir, "openssl", "x509", "-in", "ec.pem", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage")
			if !strings.Contains(text, "CN = "+name) || !strings.Contains(text, "DNS:"+name) ||
				!strings.Contains(text, "TLS Web Server Authentication") || !strings.Contains(text, "TLS Web Client Authentication") {
				t.Fatalf("issued certificate:\n%s", text)
			}

			// simplereenroll with that certificate and a new RSA key.
			run(t, dir, "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-subj", "/CN="+name,
				"-addext", "subjectAltName=DNS:"+name, "-out", "rsa.csr.pem")
			status, _ = f.curl(t, dir, v.args, "re.p7.b64", "/.well-known/est/nmos/simplereenroll", "--cert", "ec.pem", "--key", "ec.key",
				"--data-binary", "@rsa.csr.pem", "-H", "Content-Type: application/pkcs10")
			if status != 200 {
				t.Fatalf("reenroll: %d %s", status, readFile(t, dir, "re.p7.b64"))
			}
			run(t, dir, "openssl", "base64", "-d", "-in", "re.p7.b64", "-out", "re.p7")
			text = run(t, dir, "openssl", "pkcs7", "-inform", "DER", "-in", "re.p7", "-print_certs", "-text", "-noout")
			if !strings.Contains(text, "rsaEncryption") || !strings.Contains(text, "Test RSA Issuing") {
				t.Fatalf("renewed certificate:\n%s", text)
			}

			// Basic authentication without a certificate: 401, no challenge.
			status, h = f.curl(t, dir, v.args, "basic.txt", enrollPath, "-u", "admin:admin",
				"--data-binary", "@ec.csr.b64", "-H", "Content-Type: application/pkcs10")
			if status != 401 || len(h.Values("Www-Authenticate")) != 0 {
				t.Fatalf("basic: %d %v", status, h)
			}
			// A revoked manufacturer certificate.
			status, _ = f.curl(t, dir, v.args, "revoked.txt", enrollPath, "--cert", p.devARevokedFile, "--key", p.devARevKeyFile,
				"--data-binary", "@ec.csr.b64", "-H", "Content-Type: application/pkcs10")
			if status != 403 || !strings.Contains(readFile(t, dir, "revoked.txt"), "revoked") {
				t.Fatalf("revoked: %d %s", status, readFile(t, dir, "revoked.txt"))
			}
		})
	}
}

// TestCurlServerKeyGenOpenSSL decrypts an encrypted server-generated key
// with openssl cms.
func TestCurlServerKeyGenOpenSSL(t *testing.T) {
	needTools(t, "curl", "openssl")
	f := newFixture(t)
	dev := f.pki.devB // RSA, so the key can be encrypted to it
	csr := csrWithAttrs(t, ecKey(), "kg-openssl."+testDomain, asymmKeyID(dev.cert.SubjectKeyId))
	k := curlServerKeyGen(t, f, dev, "--tlsv1.2", "/.well-known/est/serverkeygen", csr)
	run(t, k.dir, "openssl", "cms", "-decrypt", "-inform", "DER", "-in", "key.p7", "-recip", k.devCert, "-inkey", k.devKey, "-out", "signed.der")
	opensslKeyIsCertificates(t, f, k)
}

// keygenFiles are the files of one serverkeygen exchange made by curl.
type keygenFiles struct {
	dir             string
	devCert, devKey string // the device's TLS certificate chain and key
}

// curlServerKeyGen posts csr to path with curl as dev, checks that the
// answer is multipart/mixed with a server-generated-key part then a
// certs-only part, both base64, and leaves key.p7 (DER) and cert.b64 in
// the returned directory.
func curlServerKeyGen(t *testing.T, f *fixture, dev *issued, tlsFlag, path string, csr *x509.CertificateRequest) keygenFiles {
	t.Helper()
	k := keygenFiles{dir: t.TempDir()}
	k.devCert = writeFile(k.dir, "dev.pem", pemCerts(dev.certs()...))
	k.devKey = writeFile(k.dir, "dev.key", pemKey(dev.key))
	writeFile(k.dir, "csr.b64", []byte(b64(csr.Raw)))
	status, h := f.curl(t, k.dir, []string{tlsFlag}, "reply.txt", path,
		"--cert", k.devCert, "--key", k.devKey, "--data-binary", "@csr.b64", "-H", "Content-Type: application/pkcs10")
	if status != 200 {
		t.Fatalf("serverkeygen: %d %s", status, readFile(t, k.dir, "reply.txt"))
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q", h.Get("Content-Type"))
	}
	mr := multipart.NewReader(strings.NewReader(readFile(t, k.dir, "reply.txt")), params["boundary"])
	var types []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct := part.Header.Get("Content-Type")
		types = append(types, ct)
		if part.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("part %q without base64 transfer encoding", ct)
		}
		body, _ := io.ReadAll(part)
		switch ct {
		case mediaServerKey:
			writeFile(k.dir, "key.b64", body)
		case mediaCertsOnly:
			writeFile(k.dir, "cert.b64", body)
		}
	}
	if strings.Join(types, ",") != mediaServerKey+","+mediaCertsOnly {
		t.Fatalf("parts %v", types)
	}
	run(t, k.dir, "openssl", "base64", "-d", "-in", "key.b64", "-out", "key.p7")
	return k
}

// opensslKeyIsCertificates checks, once key.p7 was decrypted into
// signed.der, that the server signed it (openssl cms -verify against
// the fixture's ECDSA chain) and that the key is the certificate's.
func opensslKeyIsCertificates(t *testing.T, f *fixture, k keygenFiles) {
	t.Helper()
	signerCA := writeFile(k.dir, "signer-ca.pem", pemCerts(f.pki.ecRoot.cert))
	signerInt := writeFile(k.dir, "signer-int.pem", pemCerts(f.pki.ecInt.cert))
	run(t, k.dir, "openssl", "cms", "-verify", "-inform", "DER", "-in", "signed.der", "-CAfile", signerCA, "-certfile", signerInt,
		"-purpose", "any", "-out", "key.der")
	keyPub := run(t, k.dir, "openssl", "pkey", "-inform", "DER", "-in", "key.der", "-pubout")
	run(t, k.dir, "openssl", "base64", "-d", "-in", "cert.b64", "-out", "cert.p7")
	run(t, k.dir, "openssl", "pkcs7", "-inform", "DER", "-in", "cert.p7", "-print_certs", "-out", "cert.pem")
	certPub := run(t, k.dir, "openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey")
	if keyPub != certPub || !strings.Contains(keyPub, "PUBLIC KEY") {
		t.Fatalf("key and certificate differ:\n%s\n%s", keyPub, certPub)
	}
	// Sanity: the decrypted key parses in Go too.
	der, err := os.ReadFile(filepath.Join(k.dir, "key.der"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
