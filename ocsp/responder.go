package ocsp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nmos-certs/nmos-certs/ca/store"
	xocsp "golang.org/x/crypto/ocsp"
)

const (
	// loadTimeout bounds one status lookup and signature. Loads run
	// detached from the request that started them, because other
	// requests may be waiting for the same answer.
	loadTimeout = 10 * time.Second
	// maxRefreshers bounds the asynchronous refreshes run at once.
	maxRefreshers = 4
	// renewRetry is how long a failed responder certificate renewal
	// waits before it is tried again while the current one is valid.
	renewRetry = time.Minute
	// responderBackdate is how far before now a responder certificate
	// starts, for relying parties whose clocks run a little late.
	responderBackdate = 5 * time.Minute
)

// autoContentLength is the largest answer whose Content-Length is left
// to net/http; see write.
const autoContentLength = 1024

// Header values shared by every response; see entry for why sharing the
// slices is safe.
var (
	hdrOCSPResponse = []string{"application/ocsp-response"}
	hdrAllow        = []string{"GET, POST"}
	hdrErrorLength  = []string{"5"}
	hdrNoStore      = []string{"no-store"}
)

// Responder is an OCSP responder (RFC 6960) for every issuer of a Source.
// It is an http.Handler that answers under Options.OCSPPrefix and must
// not be mounted on an http.ServeMux (see the package documentation).
type Responder struct {
	o      Options
	log    *slog.Logger
	met    *responderMetrics
	prefix string // OCSPPrefix without a trailing '/'

	// keeper keeps delegated responder keys across restarts when the
	// Source is a ResponderKeyKeeper; nil otherwise.
	keeper ResponderKeyKeeper

	set      atomic.Pointer[issuerSet]
	reloadMu sync.Mutex
	// indexes numbers issuer generations (ID and certificate) for cache
	// keys, never reusing a number, so that a key made with one issuer
	// set never finds an answer signed under another. Guarded by reloadMu.
	indexes map[string]uint32

	cache *cache
	// getAliases and postAliases find cached answers by the raw request:
	// the escaped GET path after the prefix, or the POST body.
	getAliases, postAliases *aliases
	flight                  flight
	// epoch changes on every invalidation; see cache.put.
	epoch atomic.Uint64

	refreshers chan struct{}
	bg         sync.WaitGroup
	bufs       sync.Pool // *[]byte of MaxRequestBytes+1, for POST bodies
}

// issuerSet is an immutable snapshot of the issuers answered for.
type issuerSet struct {
	list []*issuerState
	byID map[string]*issuerState
	// byKey finds issuers by hash algorithm index (first byte) and
	// issuer key hash. Several generations may share a key.
	byKey map[string][]*issuerState
}

// issuerState is one issuer with its precomputed CertID parts and the
// key that signs its answers.
type issuerState struct {
	Issuer
	idx      uint32
	nameHash [numHashAlgs][]byte
	keyHash  [numHashAlgs][]byte
	idPrefix [numHashAlgs][]byte

	key atomic.Pointer[responderKey]
	// mu serializes responder key renewals; retryAt and loaded are
	// guarded by it. loaded is set once the key kept by a
	// ResponderKeyKeeper was looked for.
	mu      sync.Mutex
	retryAt time.Time
	loaded  bool
}

// NewResponder builds a Responder for the issuers of o.Source. In
// delegated mode it certifies a responder key for every issuer; an issuer
// that fails is logged and retried on first use.
func NewResponder(ctx context.Context, o Options) (*Responder, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	met, err := newResponderMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ocsp: metrics: %w", err)
	}
	r := &Responder{
		o:           o,
		log:         o.Logger,
		met:         met,
		prefix:      strings.TrimSuffix(o.OCSPPrefix, "/"),
		cache:       newCache(o.CacheSize),
		getAliases:  newAliases(o.CacheSize),
		postAliases: newAliases(o.CacheSize),
		refreshers:  make(chan struct{}, maxRefreshers),
		indexes:     make(map[string]uint32),
	}
	r.keeper, _ = o.Source.(ResponderKeyKeeper)
	r.bufs.New = func() any {
		b := make([]byte, o.MaxRequestBytes+1)
		return &b
	}
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the issuers from the Source again (after a rollover or a
// retirement) and drops every cached answer. Responder certificates of
// issuers whose certificate did not change are kept.
func (r *Responder) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	issuers, err := r.o.Source.Issuers(ctx)
	if err != nil {
		return fmt.Errorf("ocsp: list issuers: %w", err)
	}
	old := r.set.Load()
	set := &issuerSet{byID: make(map[string]*issuerState), byKey: make(map[string][]*issuerState)}
	for _, is := range issuers {
		if is.ID == "" || is.Cert == nil {
			return errors.New("ocsp: issuer without ID or certificate")
		}
		if _, dup := set.byID[is.ID]; dup {
			return fmt.Errorf("ocsp: issuer %s listed twice", is.ID)
		}
		if r.o.Mode == ModeIssuer && is.Signer == nil {
			r.log.Warn("issuer key not held; its certificates cannot be answered for", "issuer", is.ID)
			continue
		}
		gen := is.ID + "\x00" + string(is.Cert.Raw)
		idx, ok := r.indexes[gen]
		if !ok {
			idx = uint32(len(r.indexes))
			r.indexes[gen] = idx
		}
		st, err := newIssuerState(is, idx)
		if err != nil {
			return fmt.Errorf("ocsp: issuer %s: %w", is.ID, err)
		}
		if old != nil && r.o.Mode == ModeDelegated {
			if prev := old.byID[is.ID]; prev != nil && bytes.Equal(prev.Cert.Raw, is.Cert.Raw) {
				st.key.Store(prev.key.Load())
			}
		}
		if r.o.Mode == ModeIssuer && st.key.Load() == nil {
			k, err := newResponderKey(is.Signer, is.Cert)
			if err != nil {
				return fmt.Errorf("ocsp: issuer %s: %w", is.ID, err)
			}
			k.notAfter = is.Cert.NotAfter
			st.key.Store(k)
		}
		set.list = append(set.list, st)
		set.byID[is.ID] = st
		// A CertID names an issuer by name and key only, so of two
		// generations sharing both the first listed answers.
		if other := set.lookup(&request{alg: 0, nameHash: st.nameHash[0], keyHash: st.keyHash[0]}); other != nil {
			r.log.Warn("two issuers share a name and a key; requests go to the first", "issuer", other.ID, "shadowed", is.ID)
		}
		for alg := range hashAlgs {
			k := string(append([]byte{byte(alg)}, st.keyHash[alg]...))
			set.byKey[k] = append(set.byKey[k], st)
		}
	}
	if r.o.Mode == ModeDelegated {
		for _, st := range set.list {
			if _, err := r.responderKey(ctx, st); err != nil {
				r.log.Error("no responder certificate yet; retrying on use", "issuer", st.ID, "err", err)
			}
		}
	}
	r.set.Store(set)
	r.InvalidateAll()
	r.log.Info("issuers loaded", "count", len(set.list), "mode", r.o.Mode)
	return nil
}

func newIssuerState(is Issuer, idx uint32) (*issuerState, error) {
	keyBits, err := publicKeyBits(is.Cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	st := &issuerState{Issuer: is, idx: idx}
	for alg, a := range hashAlgs {
		h := a.hash.New()
		h.Write(is.Cert.RawSubject)
		st.nameHash[alg] = h.Sum(nil)
		h.Reset()
		h.Write(keyBits)
		st.keyHash[alg] = h.Sum(nil)
		if st.idPrefix[alg], err = certIDPrefix(alg, st.nameHash[alg], st.keyHash[alg]); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// lookup finds the issuer a request names. It does not allocate.
func (s *issuerSet) lookup(p *request) *issuerState {
	if p.alg < 0 || len(p.keyHash) > 64 {
		return nil
	}
	var kb [65]byte
	kb[0] = byte(p.alg)
	n := 1 + copy(kb[1:], p.keyHash)
	for _, st := range s.byKey[string(kb[:n])] {
		if bytes.Equal(st.nameHash[p.alg], p.nameHash) {
			return st
		}
	}
	return nil
}

// responderKey returns the key signing iss's answers, certifying a new
// delegated one when none is valid or a third of its life is left.
func (r *Responder) responderKey(ctx context.Context, iss *issuerState) (*responderKey, error) {
	now := r.o.Clock()
	fresh := func(k *responderKey) bool {
		return k != nil && (k.renewAt.IsZero() || now.Before(k.renewAt))
	}
	if k := iss.key.Load(); fresh(k) {
		return k, nil
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	k := iss.key.Load()
	if fresh(k) {
		return k, nil
	}
	if k == nil && !iss.loaded {
		iss.loaded = true
		if kept := r.loadResponder(ctx, iss, now); kept != nil {
			iss.key.Store(kept)
			if fresh(kept) {
				return kept, nil
			}
			k = kept // still valid: the fallback if renewal fails
		}
	}
	usable := k != nil && now.Before(k.notAfter)
	if now.Before(iss.retryAt) {
		// A recent attempt failed: do not make a key and ask the CA
		// again on every request.
		if usable {
			return k, nil
		}
		return nil, fmt.Errorf("no responder certificate for %s; next attempt after %s", iss.ID, iss.retryAt.Format(time.RFC3339))
	}
	nk, err := r.certifyResponder(ctx, iss, now)
	if err != nil {
		iss.retryAt = now.Add(renewRetry)
		if usable {
			r.log.Warn("responder certificate renewal failed; the current one stays in use",
				"issuer", iss.ID, "not_after", k.notAfter, "err", err)
			return k, nil
		}
		return nil, err
	}
	iss.key.Store(nk)
	r.log.Info("responder certificate issued", "issuer", iss.ID,
		"serial", nk.cert.SerialNumber.Text(16), "not_after", nk.notAfter)
	if r.keeper != nil {
		if err := r.keeper.SaveResponderKey(ctx, iss.ID, nk.signer, nk.cert); err != nil {
			// The key serves from memory; the next start makes another.
			r.log.Warn("responder key not saved", "issuer", iss.ID, "err", err)
		}
	}
	return nk, nil
}

// loadResponder returns the responder key a ResponderKeyKeeper kept for
// iss, when there is one that is still fit to sign iss's answers at now
// (it may be due for renewal), and nil otherwise.
func (r *Responder) loadResponder(ctx context.Context, iss *issuerState, now time.Time) *responderKey {
	if r.keeper == nil {
		return nil
	}
	key, cert, err := r.keeper.LoadResponderKey(ctx, iss.ID)
	if err == nil {
		err = checkResponderCert(iss, key, cert, now)
	}
	var k *responderKey
	if err == nil {
		k, err = delegatedKey(key, cert)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("kept responder key not used; certifying a new one", "issuer", iss.ID, "err", err)
		}
		return nil
	}
	r.log.Info("responder certificate loaded", "issuer", iss.ID,
		"serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter)
	return k
}

// certifyResponder makes a responder key like the issuer's and has the
// Source certify it for OCSP signing.
func (r *Responder) certifyResponder(ctx context.Context, iss *issuerState, now time.Time) (*responderKey, error) {
	var key crypto.Signer
	var err error
	switch iss.Cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case *rsa.PublicKey:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("issuer %s: unsupported key type %T", iss.ID, iss.Cert.PublicKey)
	}
	if err != nil {
		return nil, fmt.Errorf("generate responder key: %w", err)
	}
	notBefore := now.Add(-responderBackdate).Truncate(time.Second)
	cert, err := r.o.Source.IssueResponderCert(ctx, iss.ID, key.Public(), notBefore, now.Add(r.o.ResponderCertLifetime))
	if err != nil {
		return nil, fmt.Errorf("issue responder certificate for %s: %w", iss.ID, err)
	}
	// Check what came back: a wrong certificate would make every answer
	// fail verification at the relying party.
	if err := checkResponderCert(iss, key, cert, now); err != nil {
		return nil, err
	}
	return delegatedKey(key, cert)
}

// checkResponderCert checks that cert certifies key as a delegated
// responder of iss, valid at now: relying parties would refuse answers
// signed under anything else.
func checkResponderCert(iss *issuerState, key crypto.Signer, cert *x509.Certificate, now time.Time) error {
	if cert == nil || key == nil {
		return fmt.Errorf("responder certificate for %s: none returned", iss.ID)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !ok || !pub.Equal(cert.PublicKey):
		return fmt.Errorf("responder certificate for %s: certifies another key", iss.ID)
	case !hasOCSPSigning(cert):
		return fmt.Errorf("responder certificate for %s: no OCSPSigning extended key usage", iss.ID)
	case !now.Before(cert.NotAfter) || now.Before(cert.NotBefore):
		return fmt.Errorf("responder certificate for %s: not valid now", iss.ID)
	case !bytes.Equal(cert.RawIssuer, iss.Cert.RawSubject):
		return fmt.Errorf("responder certificate for %s: issued by another CA", iss.ID)
	}
	if err := cert.CheckSignatureFrom(iss.Cert); err != nil {
		return fmt.Errorf("responder certificate for %s: not signed by the issuer: %w", iss.ID, err)
	}
	return nil
}

// delegatedKey prepares a checked delegated responder key, renewed when
// a third of its certificate's life is left.
func delegatedKey(key crypto.Signer, cert *x509.Certificate) (*responderKey, error) {
	k, err := newResponderKey(key, cert)
	if err != nil {
		return nil, err
	}
	k.cert = cert
	k.notAfter = cert.NotAfter
	k.renewAt = cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 3)
	return k, nil
}

func hasOCSPSigning(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return true
		}
	}
	return false
}

// ResponderCerts returns the delegated responder certificate in use for
// each issuer, by issuer ID (none in issuer mode, or before one is made).
func (r *Responder) ResponderCerts() map[string]*x509.Certificate {
	out := map[string]*x509.Certificate{}
	for _, iss := range r.set.Load().list {
		if k := iss.key.Load(); k != nil && k.cert != nil {
			out[iss.ID] = k.cert
		}
	}
	return out
}

// Invalidate drops the cached answers for one certificate, at once; call
// it when the certificate is revoked.
func (r *Responder) Invalidate(issuerID string, serial *big.Int) {
	st := r.set.Load().byID[issuerID]
	if st == nil || serial == nil {
		return
	}
	der := serialToDER(serial)
	var kb [64]byte
	for alg := range hashAlgs {
		r.cache.remove(appendKey(kb[:0], alg, st.idx, der), &r.epoch)
	}
}

// InvalidateAll drops every cached answer.
func (r *Responder) InvalidateAll() {
	r.epoch.Add(1)
	r.cache.clear()
	// The entries are no longer live, so the aliases would not be
	// followed; dropping them frees the memory at once.
	r.getAliases.clear()
	r.postAliases.clear()
}

// serialToDER gives the content of the DER INTEGER for n.
func serialToDER(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// Two's complement of a negative serial, as a relying party that
	// accepted one would send it.
	l := (n.BitLen() + 8) / 8
	m := new(big.Int).Add(n, new(big.Int).Lsh(big.NewInt(1), uint(l)*8))
	b := m.FillBytes(make([]byte, l))
	for len(b) > 1 && b[0] == 0xff && b[1]&0x80 != 0 {
		b = b[1:]
	}
	return b
}

// Match reports whether req is for the responder: its raw path is the
// prefix or lies under it.
func (r *Responder) Match(req *http.Request) bool {
	_, ok := r.tail(req)
	return ok
}

// Wrap returns a handler that sends OCSP requests to the responder and
// everything else to next (typically the application's ServeMux), so
// that OCSP GET paths never reach the mux's path cleaning.
func (r *Responder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if tail, ok := r.tail(req); ok {
			r.serve(w, req, tail)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// tail returns the raw (still escaped) path after the prefix, taken from
// the request URI as sent, and whether the path is under the prefix.
func (r *Responder) tail(req *http.Request) (string, bool) {
	p := req.RequestURI
	if p == "" || p[0] != '/' {
		// A request built in process, or one in absolute form.
		p = req.URL.EscapedPath()
	} else if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, r.prefix) {
		return "", false
	}
	p = p[len(r.prefix):]
	if p == "" {
		return "", true
	}
	if p[0] != '/' { // "/ocspfoo"
		return "", false
	}
	return strings.TrimLeft(p, "/"), true
}

// ServeHTTP answers OCSP requests: POST with a DER body, or GET with the
// base64 of the DER in the path.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	tail, ok := r.tail(req)
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.serve(w, req, tail)
}

// serve answers a request whose path is under the prefix; tail is the
// escaped path after it.
func (r *Responder) serve(w http.ResponseWriter, req *http.Request, tail string) {
	switch req.Method {
	case http.MethodGet:
		// Fast path: this exact path was answered from the cache before.
		if e := r.getAliases.get(tail); e != nil && r.serveCached(w, req, e, true) {
			return
		}
		// The unescaped path fits this stack buffer unless the request
		// is unusually large (RFC 5019 keeps GET requests under 255
		// bytes). The DER goes to a pooled buffer, as the parser's
		// slices of it would move a stack one to the heap.
		var escaped [1024]byte
		bp := r.bufs.Get().(*[]byte)
		defer r.bufs.Put(bp)
		b, err := decodeGET(tail, escaped[:0], (*bp)[:0], r.o.MaxRequestBytes)
		switch {
		case errors.Is(err, errTooLarge):
			r.reject(w, req, http.StatusRequestURITooLong, err)
		case err != nil:
			r.malformed(w, req, err)
		default:
			r.answer(w, req, b, tail)
		}
	case http.MethodPost:
		if ct := req.Header["Content-Type"]; len(ct) > 0 && !isOCSPRequestType(ct[0]) {
			r.reject(w, req, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q", ct[0]))
			return
		}
		if req.ContentLength > int64(r.o.MaxRequestBytes) {
			r.reject(w, req, http.StatusRequestEntityTooLarge, errTooLarge)
			return
		}
		bp := r.bufs.Get().(*[]byte)
		defer r.bufs.Put(bp)
		n, err := readFull(req.Body, *bp)
		switch {
		case err != nil:
			r.reject(w, req, http.StatusBadRequest, err)
		case n > r.o.MaxRequestBytes:
			r.reject(w, req, http.StatusRequestEntityTooLarge, errTooLarge)
		default:
			// Neither path keeps anything of the buffer once it returns.
			body := (*bp)[:n]
			// The lookup string shares the buffer, which nothing writes
			// meanwhile, and is not kept: a copy would cost an allocation.
			if e := r.postAliases.get(unsafe.String(unsafe.SliceData(body), len(body))); e != nil && r.serveCached(w, req, e, false) {
				return
			}
			r.answer(w, req, body, "")
		}
	default:
		w.Header()["Allow"] = hdrAllow
		r.reject(w, req, http.StatusMethodNotAllowed, errors.New("method not allowed"))
	}
}

// readFull reads body into buf until EOF or buf is full.
func readFull(body io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read body: %w", err)
		}
	}
	return n, nil
}

func isOCSPRequestType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "application/ocsp-request")
}

// decodeGET turns the path tail of a GET request into DER: it undoes the
// URL escaping (%2F, %2B, %3D...) and the base64 (standard alphabet, or
// the URL-safe one some clients use; padding optional). escaped and out
// are scratch buffers, grown when too small.
func decodeGET(tail string, escaped, out []byte, maxDER int) ([]byte, error) {
	if tail == "" {
		return nil, parseError("empty GET request")
	}
	if len(tail) > 3*(maxDER/3*4+4) { // fully percent-escaped base64 of maxDER bytes
		return nil, errTooLarge
	}
	s := escaped
	if strings.IndexByte(tail, '%') < 0 {
		s = append(s, tail...)
	} else {
		for i := 0; i < len(tail); i++ {
			c := tail[i]
			if c == '%' {
				if i+2 >= len(tail) {
					return nil, parseError("bad percent escape")
				}
				hi, lo := unhex(tail[i+1]), unhex(tail[i+2])
				if hi < 0 || lo < 0 {
					return nil, parseError("bad percent escape")
				}
				c = byte(hi<<4 | lo)
				i += 2
			}
			s = append(s, c)
		}
	}
	urlSafe := bytes.IndexByte(s, '-') >= 0 || bytes.IndexByte(s, '_') >= 0
	var enc *base64.Encoding
	padded := len(s)%4 == 0
	switch {
	case urlSafe && padded:
		enc = base64.URLEncoding
	case urlSafe:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	if n := enc.DecodedLen(len(s)); n > maxDER {
		return nil, errTooLarge
	} else if cap(out) < n {
		out = make([]byte, n)
	} else {
		out = out[:n]
	}
	n, err := enc.Decode(out, s)
	switch {
	case err != nil:
		return nil, parseError("bad base64")
	case n == 0: // the decoder skips CR and LF: "%0A" decodes to nothing
		return nil, parseError("empty GET request")
	}
	return out[:n], nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// serveCached answers with e, found by an alias, unless it may no longer
// be served (it left the cache, or its nextUpdate passed), in which case
// it returns false and the request takes the full path.
func (r *Responder) serveCached(w http.ResponseWriter, req *http.Request, e *entry, get bool) bool {
	now := r.o.Clock().Unix()
	if now >= e.nextUpdate || !e.live.Load() {
		return false
	}
	if !e.ref.Load() { // a use, for the cache's CLOCK sweep, as cache.get does
		e.ref.Store(true)
	}
	r.met.cacheHits.Inc()
	if now >= e.refreshAt {
		r.refreshAsync(e)
	}
	r.write(w, req, e, now, get)
	return true
}

// answer handles a decoded request: der is the DER request, tail the
// escaped path of a GET ("" for a POST, whose raw request is der).
func (r *Responder) answer(w http.ResponseWriter, req *http.Request, der []byte, tail string) {
	get := req.Method == http.MethodGet
	var p request
	if err := parseRequest(der, &p); err != nil {
		r.malformed(w, req, err)
		return
	}
	iss := r.set.Load().lookup(&p)
	if iss == nil {
		r.met.responses[kindUnauthorized].Inc()
		r.debug(req, "issuer not served", nil)
		writeError(w, xocsp.UnauthorizedErrorResponse)
		return
	}
	var kb [64]byte
	key := appendKey(kb[:0], p.alg, iss.idx, p.serial)
	now := r.o.Clock().Unix()
	e := r.cache.get(key)
	if e != nil && now < e.nextUpdate {
		r.met.cacheHits.Inc()
		if now >= e.refreshAt {
			r.refreshAsync(e)
		}
	} else {
		e = nil
	}

	if p.nonce != nil {
		r.answerNonce(w, req, iss, &p, e)
		return
	}
	if e == nil {
		var err error
		if e, err = r.fill(req.Context(), iss, p.alg, key); err != nil {
			r.internalError(w, req, iss, err)
			return
		}
	}
	// Only an entry in the cache gets aliases: one that an invalidation
	// kept out (see load) is sent to this request and no other.
	if e.live.Load() {
		if get {
			r.getAliases.put(strings.Clone(tail), e)
		} else {
			r.postAliases.put(string(der), e)
		}
	}
	r.write(w, req, e, now, get)
}

// write sends a cached answer, with its HTTP caching headers for a GET.
func (r *Responder) write(w http.ResponseWriter, req *http.Request, e *entry, now int64, get bool) {
	r.met.responses[e.st.code].Inc()
	h := w.Header()
	h["Content-Type"] = hdrOCSPResponse
	if get {
		if now+e.maxAge > e.nextUpdate {
			// Past the refresh point and not refreshed yet: never let a
			// cache keep the answer beyond its nextUpdate.
			h["Cache-Control"] = []string{cacheControl(e.nextUpdate - now)}
		} else {
			h["Cache-Control"] = e.cacheControl
		}
		h["Last-Modified"] = e.lastModified
		h["Expires"] = e.expires
		h["Etag"] = e.etag
		if inm := req.Header["If-None-Match"]; len(inm) > 0 && etagMatch(inm, e.etag[0]) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	// net/http sends the Content-Length of a response written whole,
	// without a flush, by a handler that returns having written less
	// than its buffer (2 KiB; "a few KB" in the documentation of
	// ResponseWriter.Write), from outside the header map. Leaving it to
	// net/http then saves a map entry, its copy, its sorting and its
	// parsing on every request; larger answers (RSA hierarchies) say it.
	if len(e.body) > autoContentLength {
		h["Content-Length"] = e.contentLength
	}
	w.Write(e.body)
}

// answerNonce signs a fresh answer echoing the request's nonce; cached is
// the cached answer for the certificate, if any, whose status is reused.
func (r *Responder) answerNonce(w http.ResponseWriter, req *http.Request, iss *issuerState, p *request, cached *entry) {
	ctx := req.Context()
	var st status
	if cached != nil {
		st = cached.st
	} else {
		var err error
		if st, err = r.status(ctx, iss, p.serial); err != nil {
			r.internalError(w, req, iss, err)
			return
		}
	}
	k, err := r.responderKey(ctx, iss)
	if err != nil {
		r.internalError(w, req, iss, err)
		return
	}
	thisUpdate, nextUpdate, err := r.window(k)
	if err != nil {
		r.internalError(w, req, iss, err)
		return
	}
	start := time.Now()
	der, err := signResponse(k, iss.idPrefix[p.alg], p.serial, st, thisUpdate, thisUpdate, nextUpdate, p.nonce)
	r.met.signSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		r.internalError(w, req, iss, err)
		return
	}
	r.met.responses[st.code].Inc()
	h := w.Header()
	h["Content-Type"] = hdrOCSPResponse
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(der))}
	w.Write(der)
}

// fill loads, signs and caches the answer for key, coalescing concurrent
// calls for the same key.
func (r *Responder) fill(ctx context.Context, iss *issuerState, alg int, key []byte) (*entry, error) {
	return r.flight.do(ctx, key, func() (*entry, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return r.load(ctx, iss, alg, string(key))
	})
}

// load reads the status, signs an answer and caches it unless an
// invalidation happened meanwhile.
func (r *Responder) load(ctx context.Context, iss *issuerState, alg int, key string) (*entry, error) {
	epoch := r.epoch.Load()
	serial := []byte(key[keyPrefixLen:])
	st, err := r.status(ctx, iss, serial)
	if err != nil {
		return nil, err
	}
	k, err := r.responderKey(ctx, iss)
	if err != nil {
		return nil, err
	}
	thisUpdate, nextUpdate, err := r.window(k)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	der, err := signResponse(k, iss.idPrefix[alg], serial, st, thisUpdate, thisUpdate, nextUpdate, nil)
	r.met.signSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	e := r.newEntry(key, iss, alg, serial, st, der, thisUpdate, nextUpdate)
	r.cache.put(e, &r.epoch, epoch)
	return e, nil
}

// window returns thisUpdate and nextUpdate for an answer signed now with
// k: nextUpdate never passes the end of the responder certificate.
func (r *Responder) window(k *responderKey) (time.Time, time.Time, error) {
	thisUpdate := r.o.Clock().UTC().Truncate(time.Second)
	nextUpdate := thisUpdate.Add(r.o.Validity)
	if !k.notAfter.IsZero() && nextUpdate.After(k.notAfter) {
		nextUpdate = k.notAfter.UTC().Truncate(time.Second)
	}
	if !nextUpdate.After(thisUpdate) {
		return thisUpdate, nextUpdate, errors.New("responder certificate expired")
	}
	return thisUpdate, nextUpdate, nil
}

// status reads the status of a certificate from the Source.
func (r *Responder) status(ctx context.Context, iss *issuerState, serial []byte) (status, error) {
	c, err := r.o.Source.CertificateStatus(ctx, iss.ID, serialFromDER(serial))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status{code: xocsp.Unknown}, nil
	case err != nil:
		return status{}, fmt.Errorf("status of %s/%x: %w", iss.ID, serial, err)
	case c.Revoked:
		reason := c.Reason
		if reason < 0 || reason > xocsp.AACompromise || reason == 7 {
			r.log.Warn("revocation reason out of range; answering unspecified", "issuer", iss.ID, "reason", reason)
			reason = xocsp.Unspecified
		}
		return status{code: xocsp.Revoked, revokedAt: c.RevokedAt, reason: reason}, nil
	default:
		return status{code: xocsp.Good}, nil
	}
}

func (r *Responder) newEntry(key string, iss *issuerState, alg int, serial []byte, st status, der []byte, thisUpdate, nextUpdate time.Time) *entry {
	sum := sha256.Sum256(der)
	tu, nu := thisUpdate.Unix(), nextUpdate.Unix()
	half := (nu - tu) / 2
	maxAge := min(int64(r.o.CacheMaxAge/time.Second), half)
	return &entry{
		key:           key,
		iss:           iss,
		alg:           alg,
		serial:        serial,
		st:            st,
		body:          der,
		contentLength: []string{strconv.Itoa(len(der))},
		cacheControl:  []string{cacheControl(maxAge)},
		lastModified:  []string{thisUpdate.UTC().Format(http.TimeFormat)},
		expires:       []string{nextUpdate.UTC().Format(http.TimeFormat)},
		etag:          []string{`"` + hex.EncodeToString(sum[:]) + `"`},
		thisUpdate:    tu,
		nextUpdate:    nu,
		refreshAt:     tu + half,
		maxAge:        maxAge,
	}
}

// cacheControl is the RFC 5019 section 6.2 Cache-Control value.
func cacheControl(maxAge int64) string {
	return "max-age=" + strconv.FormatInt(max(maxAge, 0), 10) + ", public, no-transform, must-revalidate"
}

func etagMatch(inm []string, etag string) bool {
	for _, v := range inm {
		if strings.TrimSpace(v) == "*" || strings.Contains(v, etag) {
			return true
		}
	}
	return false
}

// refreshAsync signs e again in the background; the request that
// noticed it is due is answered with e meanwhile.
func (r *Responder) refreshAsync(e *entry) {
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	select {
	case r.refreshers <- struct{}{}:
	default:
		e.refreshing.Store(false) // busy: a later hit or Run will do it
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer func() { <-r.refreshers }()
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		if _, err := r.flight.do(ctx, []byte(e.key), func() (*entry, error) {
			return r.load(ctx, e.iss, e.alg, e.key)
		}); err != nil {
			e.refreshing.Store(false)
			r.log.Warn("refresh of an OCSP answer failed", "issuer", e.iss.ID, "err", err)
		}
	}()
}

// Run renews responder certificates and signs cached answers again when
// half their validity has passed, until ctx ends.
func (r *Responder) Run(ctx context.Context) {
	t := time.NewTicker(min(max(r.o.Validity/16, 10*time.Second), 5*time.Minute))
	defer t.Stop()
	defer r.bg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.maintain(ctx)
		}
	}
}

// maintain is one pass of Run.
func (r *Responder) maintain(ctx context.Context) {
	for _, iss := range r.set.Load().list {
		if _, err := r.responderKey(ctx, iss); err != nil {
			r.log.Error("no valid responder certificate", "issuer", iss.ID, "err", err)
		}
	}
	// Aliases of answers that left the cache are overwritten when their
	// request comes again; drop those whose request did not, so that they
	// do not keep old answers in memory.
	r.getAliases.sweep()
	r.postAliases.sweep()
	stale := r.cache.stale(r.o.Clock().Unix())
	failed := 0
	for _, e := range stale {
		if ctx.Err() != nil {
			return
		}
		if _, err := r.flight.do(ctx, []byte(e.key), func() (*entry, error) {
			lctx, cancel := context.WithTimeout(ctx, loadTimeout)
			defer cancel()
			return r.load(lctx, e.iss, e.alg, e.key)
		}); err != nil {
			failed++
		}
	}
	if len(stale) > 0 {
		r.log.Debug("cached answers refreshed", "count", len(stale), "failed", failed)
	}
}

func writeError(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = hdrOCSPResponse
	h["Content-Length"] = hdrErrorLength
	w.Write(body)
}

func (r *Responder) malformed(w http.ResponseWriter, req *http.Request, err error) {
	r.met.responses[kindMalformed].Inc()
	r.debug(req, "malformed request", err)
	writeError(w, xocsp.MalformedRequestErrorResponse)
}

func (r *Responder) internalError(w http.ResponseWriter, req *http.Request, iss *issuerState, err error) {
	r.met.responses[kindInternalError].Inc()
	r.log.Error("cannot answer OCSP request", "issuer", iss.ID, "err", err)
	writeError(w, xocsp.InternalErrorErrorResponse)
}

// reject answers with an HTTP error: the request is not OCSP at all.
func (r *Responder) reject(w http.ResponseWriter, req *http.Request, code int, err error) {
	if code != http.StatusMethodNotAllowed {
		r.met.responses[kindMalformed].Inc()
	}
	r.debug(req, "request rejected", err, "status", code)
	http.Error(w, http.StatusText(code), code)
}

func (r *Responder) debug(req *http.Request, msg string, err error, args ...any) {
	ctx := req.Context()
	if !r.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	args = append(args, "method", req.Method, "remote", req.RemoteAddr)
	if err != nil {
		args = append(args, "reason", err.Error())
	}
	r.log.DebugContext(ctx, msg, args...)
}
