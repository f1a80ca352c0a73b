package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"
)

// keepingSource is a testSource that also keeps responder keys, in
// memory, the way the authority keeps them in files.
type keepingSource struct {
	*testSource

	mu      sync.Mutex
	kept    map[string]keptResponder
	saves   map[string]int
	loadErr error // returned by every load when set
	saveErr error // returned by every save when set
}

type keptResponder struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func (s *keepingSource) LoadResponderKey(_ context.Context, issuerID string) (crypto.Signer, *x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		return nil, nil, s.loadErr
	}
	k, ok := s.kept[issuerID]
	if !ok {
		return nil, nil, fmt.Errorf("responder key of %s: %w", issuerID, fs.ErrNotExist)
	}
	return k.key, k.cert, nil
}

func (s *keepingSource) SaveResponderKey(_ context.Context, issuerID string, key crypto.Signer, cert *x509.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saves == nil {
		s.saves = map[string]int{}
		s.kept = map[string]keptResponder{}
	}
	s.saves[issuerID]++
	if s.saveErr != nil {
		return s.saveErr
	}
	s.kept[issuerID] = keptResponder{key, cert}
	return nil
}

func (s *keepingSource) get(issuerID string) keptResponder {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kept[issuerID]
}

func (s *keepingSource) set(issuerID string, k keptResponder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept[issuerID] = k
}

// responderOf starts a responder on src and returns the delegated
// responder certificate of an answer about leaf, and what was logged.
func (p *pki) responderOf(t *testing.T, src Source, leaf *testLeaf) (*x509.Certificate, string) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	_, srv := p.startResponder(t, func(o *Options) {
		o.Source = src
		o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
	})
	der, err := xocsp.CreateRequest(leaf.cert, p.ecInt.cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, body := post(t, srv.URL+"/ocsp", der)
	resp := parseOK(t, body, leaf.cert, p.ecInt.cert)
	mu.Lock()
	defer mu.Unlock()
	return resp.Certificate, logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestResponderKeysKept: a responder started again uses the keys and
// certificates the first one kept, and renews them when they are due.
func TestResponderKeysKept(t *testing.T) {
	p := newPKI(t)
	src := &keepingSource{testSource: p.src}
	leaf := p.leaf(p.ecInt, nil, true)
	first, _ := p.responderOf(t, src, leaf)
	for _, ca := range []*testCA{p.ecRoot, p.ecInt, p.rsaRoot, p.rsaInt} {
		if n := p.src.responderCertCount(ca.id); n != 1 {
			t.Errorf("%s: %d responder certificates at first start", ca.id, n)
		}
		if k := src.get(ca.id); k.cert == nil {
			t.Errorf("%s: responder key not saved", ca.id)
		}
	}
	if !first.Equal(src.get(p.ecInt.id).cert) {
		t.Error("the answer is not signed under the saved responder certificate")
	}

	// Started again, a day later: nothing is certified again.
	p.clock.Advance(24 * time.Hour)
	again, logs := p.responderOf(t, src, leaf)
	if !again.Equal(first) {
		t.Error("a restart changed the responder certificate")
	}
	for _, ca := range []*testCA{p.ecRoot, p.ecInt, p.rsaRoot, p.rsaInt} {
		if n := p.src.responderCertCount(ca.id); n != 1 {
			t.Errorf("%s: %d responder certificates after a restart", ca.id, n)
		}
	}
	if !strings.Contains(logs, "responder certificate loaded") {
		t.Errorf("loading not logged:\n%s", logs)
	}

	// Past two thirds of the seven days: a new key and certificate,
	// kept in place of the old ones.
	p.clock.Advance(4 * 24 * time.Hour)
	renewed, _ := p.responderOf(t, src, leaf)
	if renewed.Equal(first) {
		t.Error("a kept certificate due for renewal was used as it is")
	}
	if n := p.src.responderCertCount(p.ecInt.id); n != 2 {
		t.Errorf("%d responder certificates after renewal", n)
	}
	if !renewed.Equal(src.get(p.ecInt.id).cert) {
		t.Error("the renewed responder certificate was not saved")
	}

	// Due for renewal while the CA cannot certify: the kept one, still
	// valid, goes on serving.
	p.clock.Advance(5 * 24 * time.Hour)
	p.src.failResponder.Store(true)
	stale, _ := p.responderOf(t, src, leaf)
	if !stale.Equal(renewed) {
		t.Error("a valid kept certificate was not used when renewal failed")
	}
}

// TestKeptResponderKeyRefused: a kept key or certificate that would make
// relying parties refuse the answers is not used; a new one is certified
// and saved in its place.
func TestKeptResponderKeyRefused(t *testing.T) {
	p := newPKI(t)
	ecInt, rsaInt := p.ecInt.issuer(), p.rsaInt.issuer()
	now := p.clock.Now()
	certify := func(ca *Issuer, pub crypto.PublicKey, notBefore, notAfter time.Time) *x509.Certificate {
		c, err := signResponderCert(ca, pub, notBefore, notAfter)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	noEKU := func(key crypto.Signer) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "not a responder"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ecInt.cert, key.Public(), p.ecInt.key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	key, other := mustEC(t), mustEC(t)
	cases := []struct {
		name    string
		kept    *keptResponder
		loadErr error
		warns   bool
	}{
		{name: "none kept", loadErr: fmt.Errorf("no file: %w", fs.ErrNotExist)},
		{name: "unreadable", loadErr: errors.New("mode 0644 is too open"), warns: true},
		{name: "key of another certificate", kept: &keptResponder{other, certify(&ecInt, key.Public(), now.Add(-time.Hour), now.Add(24*time.Hour))}, warns: true},
		{name: "another issuer's", kept: &keptResponder{key, certify(&rsaInt, key.Public(), now.Add(-time.Hour), now.Add(24*time.Hour))}, warns: true},
		{name: "expired", kept: &keptResponder{key, certify(&ecInt, key.Public(), now.Add(-48*time.Hour), now.Add(-time.Hour))}, warns: true},
		{name: "not yet valid", kept: &keptResponder{key, certify(&ecInt, key.Public(), now.Add(time.Hour), now.Add(48*time.Hour))}, warns: true},
		{name: "no OCSPSigning", kept: &keptResponder{key, noEKU(key)}, warns: true},
		{name: "no key", kept: &keptResponder{nil, certify(&ecInt, key.Public(), now.Add(-time.Hour), now.Add(24*time.Hour))}, warns: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &keepingSource{testSource: &testSource{st: p.src.st, issuers: p.src.issuers}, loadErr: tc.loadErr}
			src.saves = map[string]int{}
			src.kept = map[string]keptResponder{}
			if tc.kept != nil {
				src.set(p.ecInt.id, *tc.kept)
			}
			leaf := p.leaf(p.ecInt, nil, true)
			got, logs := p.responderOf(t, src, leaf)
			if tc.kept != nil && got.Equal(tc.kept.cert) {
				t.Fatal("the refused certificate signs answers")
			}
			if n := src.responderCertCount(p.ecInt.id); n != 1 {
				t.Errorf("%d responder certificates certified, want 1", n)
			}
			if tc.loadErr == nil && !got.Equal(src.get(p.ecInt.id).cert) {
				t.Error("the new responder certificate was not saved in place of the refused one")
			}
			if w := strings.Contains(logs, "kept responder key not used"); w != tc.warns {
				t.Errorf("warning logged: %v, want %v:\n%s", w, tc.warns, logs)
			}
		})
	}
}

// TestResponderKeySaveFailure: a key that cannot be saved still signs.
func TestResponderKeySaveFailure(t *testing.T) {
	p := newPKI(t)
	src := &keepingSource{testSource: p.src, saveErr: errors.New("disk full")}
	leaf := p.leaf(p.ecInt, nil, true)
	got, logs := p.responderOf(t, src, leaf)
	if got == nil {
		t.Fatal("no responder certificate in the answer")
	}
	if !strings.Contains(logs, "responder key not saved") || !strings.Contains(logs, "disk full") {
		t.Errorf("save failure not logged:\n%s", logs)
	}
}
