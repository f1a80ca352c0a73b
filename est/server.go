package est

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nmos-certs/nmos-certs/ca/policy"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/est/kek"
)

// CA is what the server needs from the authority.
type CA interface {
	// CACerts returns the certificates for /cacerts: issuing CAs first,
	// roots last, both hierarchies, plus rollover certificates.
	CACerts(ctx context.Context) ([]*x509.Certificate, error)
	// CheckCSR runs the issuance policy (names, key, signature, reserved
	// names, key reuse, name bindings) for req without issuing; refusals
	// are *policy.Refusal. It returns the bindings of other holders the
	// CSR's names conflict with (a refusal unless req.ListConflicts, or
	// req.TakeOver names that holder for that name).
	CheckCSR(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) ([]*store.NameBinding, error)
	// Issue checks and signs the CSR; the certificate is durable in the
	// store, and its names bound to req.Holder, when it returns. Refusals
	// are *policy.Refusal.
	Issue(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error)
	// IssuedBefore returns the certificate issued moments ago for the
	// very same request (key, subject, names, holder), to answer again a
	// device whose first answer was lost; store.ErrNotFound when none.
	IssuedBefore(ctx context.Context, csr *x509.CertificateRequest, req policy.Requester) (*x509.Certificate, error)
	// Certificate looks up a certificate we issued (store.ErrNotFound if
	// not ours).
	Certificate(ctx context.Context, serial *big.Int) (*store.Certificate, error)
	// Chains returns our own root and intermediate certificates (all
	// generations still valid) to verify client certificates we issued.
	Chains(ctx context.Context) (roots, intermediates []*x509.Certificate, err error)
}

// Approvals keeps enrollment requests waiting for an operator (a subset
// of store.Store).
type Approvals interface {
	PutPending(ctx context.Context, p *store.Pending) error
	CountPending(ctx context.Context, state store.PendingState) (int, error)
	PendingByKey(ctx context.Context, spkiHash []byte) (*store.Pending, error)
	SetPendingIssued(ctx context.Context, id string, serial *big.Int) error
}

// pendingLister is implemented by stores that can count waiting requests
// for the pending-requests gauge (store.Store does).
type pendingLister interface {
	ListPending(ctx context.Context, state store.PendingState) ([]*store.Pending, error)
}

// Options configure a Server. CA is required; Approvals is required with
// ManualApproval.
type Options struct {
	CA        CA
	Approvals Approvals
	// Trust holds the manufacturer roots and CRLs; nil trusts no
	// manufacturer (only certificates we issued, and manual approval).
	// Replace it at run time with SetTrust.
	Trust *Trust
	// Clock is the time used for every validity and expiry decision
	// (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Labels are the RFC 7030 3.2.2 path labels served besides the bare
	// path (BCP-003-03 api_selector).
	Labels []string
	// ManualApproval queues requests without a trusted client
	// certificate for an operator instead of refusing them.
	ManualApproval bool
	// QueueNameConflicts queues, for an operator, requests refused
	// because another identity holds one of their names
	// (ca.name_binding: approve), with the conflict shown; approving one
	// moves the names.
	QueueNameConflicts bool
	// AllowRenewalWithSameKey certifies a simplereenroll CSR carrying the
	// public key of the certificate being renewed (RFC 7030 4.2.2 allows
	// it; BCP-003-03 asks devices for a new key). Enrollments still refuse
	// a reused key.
	AllowRenewalWithSameKey bool
	// RetryAfter is what 202 answers tell clients to wait (default 60s).
	RetryAfter time.Duration
	// PendingLifetime is how long a queued request waits for a decision
	// (default 7 days).
	PendingLifetime time.Duration
	// MaxPending bounds the requests waiting for an operator (default
	// 1000); beyond it new requests get 503 with Retry-After.
	MaxPending int
	// MaxPendingPerAddress bounds the requests one client address may
	// queue in an hour (default 20); beyond it, 503 with Retry-After.
	MaxPendingPerAddress int
	// AllowExpiredClientCerts accepts a manufacturer certificate outside
	// its validity period (BCP-003-03 MAY); never a revoked one.
	AllowExpiredClientCerts bool
	// RequireChannelBinding refuses CSRs without a challengePassword that
	// binds them to the TLS connection (RFC 7030 3.5).
	RequireChannelBinding bool
	// DisableServerKeyGen answers /serverkeygen with 501.
	DisableServerKeyGen bool
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64
	// HSTSMaxAge is the Strict-Transport-Security max-age (default one
	// year).
	HSTSMaxAge time.Duration
	// KeySigner returns the certificate and key that sign server-generated
	// keys before they are encrypted for the client (RFC 7030 4.4.2),
	// normally the EST server's own TLS certificate. Without it, requests
	// for an encrypted key get 501.
	KeySigner func() *tls.Certificate
	// DecryptKeys are the symmetric keys, shared with clients out of
	// band, that a CSR's DecryptKeyIdentifier may name to have its
	// server-generated key encrypted (RFC 7030 4.4.1.1). nil: none, and
	// such requests are refused.
	DecryptKeys *kek.Set
	// CACacheTTL bounds how long the CA certificates are cached (default:
	// until Invalidate is called).
	CACacheTTL time.Duration
}

// EST operations.
const (
	opCACerts      = "cacerts"
	opCSRAttrs     = "csrattrs"
	opEnroll       = "simpleenroll"
	opReenroll     = "simplereenroll"
	opServerKeyGen = "serverkeygen"
	opFullCMC      = "fullcmc"
	opUnknown      = "unknown"
)

const wellKnownPrefix = "/.well-known/est/"

// maxDrainBytes is how much of an unread request body is read and
// dropped before answering.
const maxDrainBytes = 256 << 10

func knownOp(op string) bool {
	switch op {
	case opCACerts, opCSRAttrs, opEnroll, opReenroll, opServerKeyGen, opFullCMC:
		return true
	}
	return false
}

// Server is the EST http.Handler. Mount it for the whole EST listener (it
// answers 404 outside /.well-known/est/) or at "/.well-known/est/".
type Server struct {
	o        Options
	log      *slog.Logger
	m        *metrics
	labels   map[string]bool
	hsts     string
	csrattrs []byte // precomputed /csrattrs body

	trust atomic.Pointer[Trust]

	// The CA certificates and pools, rebuilt when gen changes.
	gen    atomic.Uint64
	cache  atomic.Pointer[caCache]
	fillMu sync.Mutex

	manualLocks keyLocks
	// queued remembers when each client address queued requests, for
	// MaxPendingPerAddress.
	queued addressWindow
}

// caCache is everything derived from the CA's certificates.
type caCache struct {
	gen      uint64
	loadedAt time.Time
	cacerts  []byte // base64 certs-only body
	roots    *x509.CertPool
	inters   *x509.CertPool
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.CA == nil {
		return nil, errors.New("est: Options.CA is required")
	}
	if o.ManualApproval && o.Approvals == nil {
		return nil, errors.New("est: Options.Approvals is required with ManualApproval")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Minute
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1000
	}
	if o.MaxPendingPerAddress <= 0 {
		o.MaxPendingPerAddress = 20
	}
	if o.PendingLifetime <= 0 {
		o.PendingLifetime = 7 * 24 * time.Hour
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.HSTSMaxAge <= 0 {
		o.HSTSMaxAge = 365 * 24 * time.Hour
	}
	s := &Server{
		o:      o,
		log:    o.Logger.With("component", "est"),
		labels: map[string]bool{},
		hsts:   "max-age=" + strconv.FormatInt(int64(o.HSTSMaxAge/time.Second), 10),
	}
	for _, l := range o.Labels {
		if l == "" || strings.ContainsAny(l, "/?#%") || knownOp(l) || l == "." || l == ".." {
			return nil, fmt.Errorf("est: label %q cannot be a path segment of its own", l)
		}
		s.labels[l] = true
	}
	s.csrattrs = base64Wrapped(csrAttrsDER(o.RequireChannelBinding))
	s.trust.Store(o.Trust)
	var pending func() (n, oldest float64)
	if pl, ok := o.Approvals.(pendingLister); ok && o.Approvals != nil {
		pending = func() (float64, float64) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			list, err := pl.ListPending(ctx, store.PendingWaiting)
			if err != nil {
				return math.NaN(), math.NaN() // unknown, not zero
			}
			now, n, oldest := s.now(), 0, time.Duration(0)
			for _, p := range list {
				if now.Before(p.ExpiresAt) {
					n++
					oldest = max(oldest, now.Sub(p.CreatedAt))
				}
			}
			// Whole seconds: the store keeps times to the second.
			return float64(n), oldest.Truncate(time.Second).Seconds()
		}
	}
	s.m = newMetrics(o.Registerer, pending)
	return s, nil
}

// SetTrust replaces the manufacturer trust (nil: trust no manufacturer).
func (s *Server) SetTrust(t *Trust) { s.trust.Store(t) }

// Invalidate drops the cached CA certificates: call it when the CA set
// changes (rollover, new generation). The next request reloads them.
func (s *Server) Invalidate() { s.gen.Add(1) }

func (s *Server) now() time.Time { return s.o.Clock() }

// caState returns the cached CA certificates, loading them when needed.
func (s *Server) caState(ctx context.Context) (*caCache, error) {
	fresh := func(c *caCache) bool {
		return c != nil && c.gen == s.gen.Load() &&
			(s.o.CACacheTTL <= 0 || s.now().Sub(c.loadedAt) < s.o.CACacheTTL)
	}
	if c := s.cache.Load(); fresh(c) {
		return c, nil
	}
	s.fillMu.Lock()
	defer s.fillMu.Unlock()
	if c := s.cache.Load(); fresh(c) {
		return c, nil
	}
	gen := s.gen.Load()
	certs, err := s.o.CA.CACerts(ctx)
	if err != nil {
		return nil, fmt.Errorf("load CA certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("load CA certificates: the CA has no certificates")
	}
	roots, inters, err := s.o.CA.Chains(ctx)
	if err != nil {
		return nil, fmt.Errorf("load CA chains: %w", err)
	}
	c := &caCache{gen: gen, loadedAt: s.now(), roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	der := make([][]byte, len(certs))
	for i, cert := range certs {
		der[i] = cert.Raw
	}
	c.cacerts = base64Wrapped(certsOnly(der...))
	for _, r := range roots {
		c.roots.AddCert(r)
	}
	for _, i := range inters {
		c.inters.AddCert(i)
	}
	s.cache.Store(c)
	return c, nil
}

// response is an answer ready to be written.
type response struct {
	status      int
	contentType string
	base64      bool // sets Content-Transfer-Encoding: base64
	body        []byte
	retryAfter  int
	allow       string
	// sensitive bodies (a private key) are wiped once written.
	sensitive bool
}

func textResponse(status int, msg string) *response {
	return &response{status: status, contentType: mediaTextPlain, body: []byte(msg + "\n")}
}

func certResponse(c *x509.Certificate) *response {
	return &response{status: http.StatusOK, contentType: mediaCertsOnly, base64: true, body: base64Wrapped(certsOnly(c.Raw))}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Strict-Transport-Security", s.hsts)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")

	rl := &requestLog{op: opUnknown, remote: r.RemoteAddr, method: r.Method}
	if a := r.Header.Get("Authorization"); a != "" {
		// Never authentication here (BCP-003-03 forbids Basic); noted
		// in the log by scheme only.
		scheme, _, _ := strings.Cut(strings.TrimSpace(a), " ")
		if len(scheme) > 32 {
			scheme = scheme[:32]
		}
		rl.ignoredAuth = scheme
	}
	resp, err := s.serve(w, r, rl)
	if err != nil {
		resp = s.errorResponse(err, rl)
	}
	// Read what is left of a refused body (within reason) before
	// answering: a client still sending when the connection closes
	// would see a reset instead of our answer.
	_, _ = io.CopyN(io.Discard, r.Body, maxDrainBytes)
	s.write(w, r, resp)
	if resp.sensitive {
		clear(resp.body)
	}
	elapsed := time.Since(start)
	s.m.requests.WithLabelValues(rl.op, outcome(resp.status)).Inc()
	s.m.duration.WithLabelValues(rl.op).Observe(elapsed.Seconds())
	s.logRequest(r.Context(), rl, resp, elapsed)
}

// route splits an EST path into label and operation.
func (s *Server) route(path string) (label, op string, ok bool) {
	rest, ok := strings.CutPrefix(path, wellKnownPrefix)
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	switch len(parts) {
	case 1:
		op = parts[0]
	case 2:
		label, op = parts[0], parts[1]
		if !s.labels[label] {
			return "", "", false
		}
	default:
		return "", "", false
	}
	return label, op, knownOp(op)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rl *requestLog) (*response, error) {
	label, op, ok := s.route(r.URL.Path)
	if !ok {
		return nil, errorf(http.StatusNotFound, "no EST operation at %q: operations are %s[<label>/]{cacerts,csrattrs,simpleenroll,simplereenroll,serverkeygen}", r.URL.Path, wellKnownPrefix)
	}
	rl.op, rl.label = op, label
	switch op {
	case opFullCMC:
		return nil, errorf(http.StatusNotImplemented, "fullcmc is not supported by this server")
	case opCACerts, opCSRAttrs:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return &response{status: http.StatusMethodNotAllowed, contentType: mediaTextPlain, allow: "GET, HEAD",
				body: []byte(op + " takes GET\n")}, nil
		}
		if op == opCSRAttrs {
			return &response{status: http.StatusOK, contentType: mediaCSRAttrs, base64: true, body: s.csrattrs}, nil
		}
		st, err := s.caState(r.Context())
		if err != nil {
			return nil, err
		}
		return &response{status: http.StatusOK, contentType: mediaCertsOnly, base64: true, body: st.cacerts}, nil
	}
	if r.Method != http.MethodPost {
		return &response{status: http.StatusMethodNotAllowed, contentType: mediaTextPlain, allow: "POST",
			body: []byte(op + " takes POST\n")}, nil
	}
	if op == opServerKeyGen && s.o.DisableServerKeyGen {
		return nil, errorf(http.StatusNotImplemented, "serverkeygen is disabled on this server: generate a key and use simpleenroll")
	}
	return s.enroll(w, r, op, label, rl)
}

// errorResponse turns a handler error into an answer.
func (s *Server) errorResponse(err error, rl *requestLog) *response {
	if he, ok := asHTTPError(err); ok {
		rl.reason = he.msg
		resp := textResponse(he.status, he.msg)
		resp.retryAfter = he.retryAfter
		return resp
	}
	var ref *policy.Refusal
	if errors.As(err, &ref) {
		rl.reason, rl.refusal = ref.Msg, ref.Code
		status := http.StatusBadRequest
		if ref.Code == policy.CodeNameBound || ref.Code == policy.CodeReserved {
			// The request is well formed; this requester may not have it.
			status = http.StatusForbidden
		}
		return textResponse(status, ref.Msg)
	}
	if errors.Is(err, store.ErrKeyReused) {
		rl.reason, rl.refusal = "the public key was certified before: generate a new key pair for every request", policy.CodeKeyReused
		return textResponse(http.StatusBadRequest, rl.reason)
	}
	rl.err = err
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		rl.reason = "the request was cancelled or timed out"
		resp := textResponse(http.StatusServiceUnavailable, rl.reason)
		resp.retryAfter = int(s.o.RetryAfter / time.Second)
		return resp
	}
	rl.reason = "internal error"
	return textResponse(http.StatusInternalServerError, "internal error: the server could not complete the request, see its log")
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, resp *response) {
	h := w.Header()
	if resp.allow != "" {
		h.Set("Allow", resp.allow)
	}
	if resp.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(resp.retryAfter))
	}
	if resp.status == http.StatusNoContent {
		w.WriteHeader(resp.status)
		return
	}
	h.Set("Content-Type", resp.contentType)
	if resp.base64 {
		h.Set("Content-Transfer-Encoding", "base64")
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.body) // a client gone away is not our error
	}
}

// checkContentType accepts application/pkcs10 with any parameters, or no
// Content-Type at all.
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return errorf(http.StatusUnsupportedMediaType, "malformed Content-Type %q: send %s", ct, mediaPKCS10)
	}
	if mt != mediaPKCS10 {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %s is not accepted: send a base64-encoded PKCS#10 request as %s", mt, mediaPKCS10)
	}
	return nil
}

// readBody reads a request body of at most max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	tooLarge := errorf(http.StatusRequestEntityTooLarge, "the request body is larger than the %d bytes accepted", max)
	if r.ContentLength > max {
		return nil, tooLarge
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	return data, nil
}
