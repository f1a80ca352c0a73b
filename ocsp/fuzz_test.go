package ocsp

import (
	"bytes"
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nmos-certs/nmos-certs/ca/store"
	xocsp "golang.org/x/crypto/ocsp"
)

// FuzzParseRequest checks the parser never panics, agrees with
// x/crypto/ocsp on what both accept, and that the whole POST path answers
// any body with a well-formed OCSP response.
func FuzzParseRequest(f *testing.F) {
	ca := makeCA(f, "fuzz-ca", "Fuzz CA", mustEC(f), nil)
	leafSerial := big.NewInt(0x1234567)
	for alg := range hashAlgs {
		s := specFor(ca, alg, leafSerial)
		f.Add(buildRequest(f, s))
		s.nonce = []byte("0123456789abcdef")
		f.Add(buildRequest(f, s))
	}
	s := specFor(ca, 1, big.NewInt(-5))
	s.count = 2
	f.Add(buildRequest(f, s))
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("junk"))

	src := &mapSource{issuers: []Issuer{{ID: ca.id, Cert: ca.cert, Signer: ca.key}},
		certs: map[string]*store.Certificate{store.SerialKey(leafSerial): {Serial: leafSerial, IssuerID: ca.id}}}
	r, err := NewResponder(context.Background(), Options{Source: src, Mode: ModeIssuer})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, der []byte) {
		var p request
		err := parseRequest(der, &p)
		if err == nil {
			if p.alg < -1 || p.alg >= numHashAlgs || !minimalInteger(p.serial) {
				t.Fatalf("bad parse %+v", p)
			}
			if p.nonce != nil && (len(p.nonce) < 2+minNonceLen || len(p.nonce) > 2+maxNonceLen) {
				t.Fatalf("nonce %x", p.nonce)
			}
			if x, xerr := xocsp.ParseRequest(der); xerr == nil && p.alg >= 0 {
				if x.HashAlgorithm != hashAlgs[p.alg].hash || !bytes.Equal(x.IssuerKeyHash, p.keyHash) ||
					!bytes.Equal(x.IssuerNameHash, p.nameHash) || x.SerialNumber.Cmp(serialFromDER(p.serial)) != 0 {
					t.Fatalf("disagreement with x/crypto: %+v vs %+v", p, x)
				}
			}
		}

		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(der))
		r.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			if len(der) > DefaultMaxRequestBytes && w.Code == http.StatusRequestEntityTooLarge {
				return
			}
			t.Fatalf("status %d", w.Code)
		}
		body := w.Body.Bytes()
		switch {
		case err != nil:
			if !bytes.Equal(body, xocsp.MalformedRequestErrorResponse) {
				t.Fatalf("malformed request answered %x", body)
			}
		case bytes.Equal(body, xocsp.UnauthorizedErrorResponse):
		default:
			resp, perr := xocsp.ParseResponse(body, ca.cert)
			if perr != nil {
				t.Fatalf("answer does not parse: %v", perr)
			}
			if resp.SerialNumber.Cmp(serialFromDER(p.serial)) != 0 {
				t.Fatalf("answer for serial %s", resp.SerialNumber)
			}
		}
	})
}

func FuzzDecodeGET(f *testing.F) {
	for _, s := range []string{"MAP7//4=", "MAP7%2F%2F4%3D", "MAP7__4", "%", "%4", "=", "====", "%0A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a [8]byte
		var b [4]byte
		der, err := decodeGET(s, a[:0], b[:0], 64)
		if err == nil && (len(der) == 0 || len(der) > 64) {
			t.Fatalf("decoded %d bytes, want 1..64", len(der))
		}
	})
}
