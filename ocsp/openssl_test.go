package ocsp

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	xocsp "golang.org/x/crypto/ocsp"
)

// startResponder starts a Responder over p on a loopback HTTP server.
func (p *pki) startResponder(t *testing.T, mut func(*Options)) (*Responder, *httptest.Server) {
	t.Helper()
	o := p.options()
	o.Registerer = prometheus.NewRegistry()
	if mut != nil {
		mut(&o)
	}
	r, err := NewResponder(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		srv.Close()
		r.bg.Wait()
	})
	return r, srv
}

// opensslOCSP asks the responder about leaf with the openssl client,
// verifying against the roots with the intermediates untrusted.
func (p *pki) opensslOCSP(t *testing.T, url string, issuer *testCA, leafPath string, extra ...string) (string, error) {
	t.Helper()
	// Digest options must come before -cert.
	args := append([]string{"ocsp", "-issuer", issuer.path}, extra...)
	args = append(args, "-cert", leafPath, "-url", url, "-CAfile", p.chain, "-verify_other", p.inters, "-resp_text")
	return run(t, "openssl", args...)
}

func wantContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func wantLacks(t *testing.T, out string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Errorf("output has %q:\n%s", b, out)
		}
	}
}

func TestOpenSSLStatus(t *testing.T) {
	needOpenSSL(t)
	for _, mode := range []string{ModeDelegated, ModeIssuer} {
		t.Run(mode, func(t *testing.T) {
			p := newPKI(t)
			_, srv := p.startResponder(t, func(o *Options) { o.Mode = mode })
			url := srv.URL + "/ocsp"
			for _, ca := range []*testCA{p.ecInt, p.rsaInt} {
				leaf := p.leaf(ca, nil, true)
				for _, tc := range []struct {
					name  string
					extra []string
				}{
					{"sha1-nonce", nil},
					{"sha1-no-nonce", []string{"-no_nonce"}},
					{"sha256-nonce", []string{"-sha256"}},
					{"sha256-no-nonce", []string{"-sha256", "-no_nonce"}},
				} {
					t.Run(ca.id+"/"+tc.name, func(t *testing.T) {
						out, err := p.opensslOCSP(t, url, ca, leaf.path, tc.extra...)
						if err != nil {
							t.Fatalf("openssl ocsp: %v\n%s", err, out)
						}
						wantContains(t, out, leaf.path+": good", "Response verify OK", "This Update:", "Next Update:")
						wantLacks(t, out, "WARNING")
						if strings.Contains(tc.name, "no-nonce") {
							wantLacks(t, out, "OCSP Nonce")
						} else {
							wantContains(t, out, "OCSP Nonce")
						}
						if strings.HasPrefix(tc.name, "sha256") {
							wantContains(t, out, "Hash Algorithm: sha256")
						} else {
							wantContains(t, out, "Hash Algorithm: sha1")
						}
						if mode == ModeDelegated {
							wantContains(t, out, "OCSP responder for "+ca.id, "OCSP Signing", "OCSP No Check")
						}
					})
				}
			}
			// The intermediate's own status, answered for the root.
			t.Run("intermediate", func(t *testing.T) {
				out, err := p.opensslOCSP(t, url, p.ecRoot, p.ecInt.path)
				if err != nil {
					t.Fatalf("openssl ocsp: %v\n%s", err, out)
				}
				wantContains(t, out, p.ecInt.path+": good", "Response verify OK")
			})
		})
	}
}

func TestOpenSSLRevocation(t *testing.T) {
	needOpenSSL(t)
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	url := srv.URL + "/ocsp"
	for _, ca := range []*testCA{p.ecInt, p.rsaInt} {
		t.Run(ca.id, func(t *testing.T) {
			leaf := p.leaf(ca, nil, true)
			out, err := p.opensslOCSP(t, url, ca, leaf.path, "-no_nonce")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			wantContains(t, out, leaf.path+": good")

			p.revoke(leaf.cert.SerialNumber, xocsp.KeyCompromise)
			// The signed answer is cached until invalidated...
			out, _ = p.opensslOCSP(t, url, ca, leaf.path, "-no_nonce")
			wantContains(t, out, leaf.path+": good")
			// ...but a nonce asks for a live answer.
			out, err = p.opensslOCSP(t, url, ca, leaf.path)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			wantContains(t, out, leaf.path+": good") // status comes from the cache too

			r.Invalidate(ca.id, leaf.cert.SerialNumber)
			for _, extra := range [][]string{{"-no_nonce"}, {"-no_nonce", "-sha256"}, nil} {
				out, err = p.opensslOCSP(t, url, ca, leaf.path, extra...)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				wantContains(t, out, leaf.path+": revoked", "Reason: keyCompromise", "Revocation Time:", "Response verify OK")
			}
		})
	}
}

func TestOpenSSLUnknownAndUnauthorized(t *testing.T) {
	needOpenSSL(t)
	p := newPKI(t)
	_, srv := p.startResponder(t, nil)
	url := srv.URL + "/ocsp"

	t.Run("unknown serial", func(t *testing.T) {
		leaf := p.leaf(p.ecInt, nil, false) // never recorded
		out, err := p.opensslOCSP(t, url, p.ecInt, leaf.path)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		wantContains(t, out, leaf.path+": unknown", "Response verify OK")
	})
	t.Run("serial of another issuer", func(t *testing.T) {
		leaf := p.leaf(p.ecInt, nil, true)
		// The RSA intermediate never issued the ECDSA intermediate's serial.
		serial := "0x" + leaf.cert.SerialNumber.Text(16)
		out, err := run(t, "openssl", "ocsp", "-issuer", p.rsaInt.path, "-serial", serial, "-url", url,
			"-CAfile", p.chain, "-verify_other", p.inters, "-no_nonce")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		wantContains(t, out, serial+": unknown", "Response verify OK")
	})
	t.Run("name hash of another issuer", func(t *testing.T) {
		// openssl hashes the certificate's issuer name with the -issuer
		// key: the ECDSA intermediate's name with the RSA one's key
		// names no issuer.
		leaf := p.leaf(p.ecInt, nil, true)
		out, _ := p.opensslOCSP(t, url, p.rsaInt, leaf.path, "-no_nonce")
		wantContains(t, out, "Responder Error: unauthorized (6)")
	})
	t.Run("unknown issuer", func(t *testing.T) {
		stranger := p.newCA("stranger", "Stranger CA", mustEC(t), nil)
		leaf := p.leaf(stranger, nil, false)
		out, _ := p.opensslOCSP(t, url, stranger, leaf.path)
		wantContains(t, out, "Responder Error: unauthorized (6)")
	})
}

func TestOpenSSLVAfile(t *testing.T) {
	needOpenSSL(t)
	p := newPKI(t)
	r, srv := p.startResponder(t, nil)
	leaf := p.leaf(p.ecInt, nil, true)
	k := r.set.Load().byID[p.ecInt.id].key.Load()
	va := filepath.Join(p.dir, "responder.pem")
	if err := os.WriteFile(va, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "openssl", "ocsp", "-issuer", p.ecInt.path, "-cert", leaf.path, "-url", srv.URL+"/ocsp", "-VAfile", va)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wantContains(t, out, leaf.path+": good", "Response verify OK")
}

// TestCurlGET sends the requests openssl writes as RFC 6960 A.1 GETs with
// curl, raw and fully URL-escaped, and has openssl verify the answers.
func TestCurlGET(t *testing.T) {
	needOpenSSL(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed: apt-get install curl (.ci/run does) to run this test")
	}
	p := newPKI(t)
	_, srv := p.startResponder(t, nil)

	// Pick a serial whose request's base64 has '/', '+' and padding, so
	// the path holds every awkward character.
	var leaf *testLeaf
	var b64 string
	for i := 0; ; i++ {
		leaf = p.leaf(p.ecInt, nil, true)
		reqDER := filepath.Join(p.dir, "req.der")
		if out, err := run(t, "openssl", "ocsp", "-issuer", p.ecInt.path, "-cert", leaf.path, "-no_nonce", "-reqout", reqDER); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		der, err := os.ReadFile(reqDER)
		if err != nil {
			t.Fatal(err)
		}
		b64 = base64.StdEncoding.EncodeToString(der)
		if strings.Contains(b64, "/") && strings.Contains(b64, "+") && strings.HasSuffix(b64, "=") {
			break
		}
		if i == 200 {
			t.Fatal("no serial gave a base64 request with '/', '+' and '='")
		}
	}
	escaped := strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(b64)
	for name, path := range map[string]string{
		"raw":            "/ocsp/" + b64,
		"escaped":        "/ocsp/" + escaped,
		"double slash":   "/ocsp//" + b64,
		"lower-case hex": "/ocsp/" + strings.NewReplacer("%2F", "%2f", "%2B", "%2b", "%3D", "%3d").Replace(escaped),
	} {
		t.Run(name, func(t *testing.T) {
			resp := filepath.Join(t.TempDir(), "resp.der")
			out, err := run(t, "curl", "-sS", "--fail", "--path-as-is", "-D", "-", "-o", resp, srv.URL+path)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			wantContains(t, out, "HTTP/1.1 200", "Content-Type: application/ocsp-response", "Cache-Control: max-age=",
				"Etag: \"", "Last-Modified: ", "Expires: ")
			out, err = run(t, "openssl", "ocsp", "-respin", resp, "-issuer", p.ecInt.path, "-cert", leaf.path,
				"-CAfile", p.chain, "-verify_other", p.inters, "-no_nonce")
			if err != nil {
				t.Fatalf("openssl: %v\n%s", err, out)
			}
			wantContains(t, out, leaf.path+": good", "Response verify OK")
		})
	}
}

var maxAgeRE = regexp.MustCompile(`^max-age=(\d+), public, no-transform, must-revalidate$`)

// getResponse fetches url and returns the response and body.
func getResponse(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
