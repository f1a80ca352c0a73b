package est

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TrustConfig says where the manufacturer trust comes from: the roots that
// vouch for devices' factory certificates, and their revocation lists.
type TrustConfig struct {
	// RootFiles are PEM files of manufacturer root certificates; each may
	// hold several certificates.
	RootFiles []string
	// IntermediateFiles are PEM files of manufacturer intermediate CAs for
	// devices that do not send their chain. Devices may also present
	// intermediates in the TLS handshake.
	IntermediateFiles []string
	// CRLSources are CRL files or http(s) URLs, DER or PEM. A CRL is used
	// only when its signature verifies against the certificate that issued
	// the certificate being checked.
	CRLSources []string
	// HTTPClient fetches CRL URLs; nil means a client with FetchTimeout.
	HTTPClient *http.Client
	// FetchTimeout bounds one CRL download (default 10s).
	FetchTimeout time.Duration
	// MaxCRLBytes bounds one CRL (default 32 MiB).
	MaxCRLBytes int64
	// RefreshInterval is how often a CRL without nextUpdate is fetched
	// again (default 1h); a failed download is retried after at most 10
	// minutes.
	RefreshInterval time.Duration
	Clock           func() time.Time
	Logger          *slog.Logger
}

// Trust is a loaded manufacturer trust store: roots, known intermediates
// and CRLs. It is safe for concurrent use; CRLs are refreshed in place by
// Refresh or Run, while roots change only by loading a new Trust and
// handing it to (*Server).SetTrust.
type Trust struct {
	cfg           TrustConfig
	log           *slog.Logger
	roots         *x509.CertPool
	rootCerts     []*x509.Certificate
	intermediates []*x509.Certificate
	known         []*x509.Certificate // roots and intermediates, to check CRL signatures early

	mu      sync.Mutex // serialises refreshes; guards sources
	sources []*crlSource
	index   atomic.Pointer[crlIndex]
	// sigOK caches "this CRL is signed by this certificate" verdicts.
	sigOK sync.Map // sigKey -> bool
	// verified remembers the chains found for a presented certificate
	// list; see verifyChains.
	verified chainCache
}

// maxRetryInterval bounds the wait before a failed CRL download is tried
// again.
const maxRetryInterval = 10 * time.Minute

type crlSource struct {
	loc     string
	isURL   bool
	crl     *loadedCRL
	lastErr error
	nextTry time.Time
}

// loadedCRL is one parsed CRL with its serials indexed.
type loadedCRL struct {
	source   string
	list     *x509.RevocationList
	revoked  map[string]*x509.RevocationListEntry // by serial, hex
	id       [32]byte                             // SHA-256 of the DER
	loadedAt time.Time
}

type crlIndex struct {
	byIssuer map[string][]*loadedCRL // by the issuer's encoded Name
}

type sigKey struct{ crl, issuer [32]byte }

// CRLStatus describes one CRL source, for operators.
type CRLStatus struct {
	Source     string
	Issuer     string
	ThisUpdate time.Time
	NextUpdate time.Time
	Revoked    int
	// Err is the last load failure, nil when the last load worked.
	Err error
}

// LoadTrust reads the roots, intermediates and CRLs. A root, intermediate
// or CRL file that cannot be read or parsed, or a CRL whose signature does
// not verify against the known CA that names it, is an error. A CRL URL
// that cannot be fetched is logged and retried by Refresh and Run, so that
// a manufacturer's server being down does not stop the appliance.
func LoadTrust(ctx context.Context, c TrustConfig) (*Trust, error) {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = 10 * time.Second
	}
	if c.MaxCRLBytes <= 0 {
		c.MaxCRLBytes = 32 << 20
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Hour
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.FetchTimeout}
	}
	t := &Trust{cfg: c, log: c.Logger.With("component", "est"), roots: x509.NewCertPool()}
	for _, f := range c.RootFiles {
		certs, err := readCertFile(f)
		if err == nil {
			err = checkAnchors(f, certs)
		}
		if err != nil {
			return nil, fmt.Errorf("manufacturer roots: %w", err)
		}
		for _, cert := range certs {
			t.roots.AddCert(cert)
		}
		t.rootCerts = append(t.rootCerts, certs...)
	}
	for _, f := range c.IntermediateFiles {
		certs, err := readCertFile(f)
		if err != nil {
			return nil, fmt.Errorf("manufacturer intermediates: %w", err)
		}
		t.intermediates = append(t.intermediates, certs...)
	}
	t.known = slices.Concat(t.rootCerts, t.intermediates)
	now := c.Clock()
	for _, loc := range c.CRLSources {
		s := &crlSource{loc: loc, isURL: strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://")}
		l, err := t.loadCRL(ctx, s, now)
		if err != nil {
			if !s.isURL {
				return nil, fmt.Errorf("manufacturer CRL: %w", err)
			}
			s.lastErr, s.nextTry = err, now
			t.log.Warn("manufacturer CRL not loaded, will retry", "source", loc, "error", err)
		}
		s.crl = l
		t.sources = append(t.sources, s)
	}
	t.rebuildIndex()
	return t, nil
}

// readCertFile reads every certificate of a PEM file.
func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			// Not read, not logged: its presence is the error.
			return nil, fmt.Errorf("%s holds a private key (PEM block %d, %q): a trust file holds certificates only; remove the key from it, and treat the key as exposed", path, len(out)+1, blk.Type)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return out, nil
}

// checkAnchors refuses certificates that cannot be a manufacturer's
// trust anchor: an end-entity certificate (a device's, say) signs no
// device certificates, and a file holding one is not what the operator
// meant.
func checkAnchors(path string, certs []*x509.Certificate) error {
	for i, c := range certs {
		v1Root := c.Version < 3 && bytes.Equal(c.RawIssuer, c.RawSubject)
		if !c.IsCA && !v1Root {
			return fmt.Errorf("%s: certificate %d (%q) is not a CA certificate (basicConstraints cA is not set): give the manufacturer's root CA, not a device certificate", path, i+1, c.Subject.String())
		}
	}
	return nil
}

// Roots returns the manufacturer root certificates.
func (t *Trust) Roots() []*x509.Certificate { return slices.Clone(t.rootCerts) }

// CRLs describes the CRL sources and what was last loaded from each.
func (t *Trust) CRLs() []CRLStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]CRLStatus, 0, len(t.sources))
	for _, s := range t.sources {
		st := CRLStatus{Source: s.loc, Err: s.lastErr}
		if s.crl != nil {
			st.Issuer = s.crl.list.Issuer.String()
			st.ThisUpdate, st.NextUpdate = s.crl.list.ThisUpdate, s.crl.list.NextUpdate
			st.Revoked = len(s.crl.revoked)
		}
		out = append(out, st)
	}
	return out
}

// loadCRL reads and checks one CRL.
func (t *Trust) loadCRL(ctx context.Context, s *crlSource, now time.Time) (*loadedCRL, error) {
	var data []byte
	var err error
	if s.isURL {
		data, err = t.fetch(ctx, s.loc)
	} else {
		data, err = readLimited(s.loc, t.cfg.MaxCRLBytes)
	}
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("%s: PEM block is %q, not X509 CRL", s.loc, blk.Type)
		}
		data = blk.Bytes
	}
	list, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.loc, err)
	}
	l := &loadedCRL{
		source:   s.loc,
		list:     list,
		revoked:  make(map[string]*x509.RevocationListEntry, len(list.RevokedCertificateEntries)),
		id:       sha256.Sum256(list.Raw),
		loadedAt: now,
	}
	for i := range list.RevokedCertificateEntries {
		e := &list.RevokedCertificateEntries[i]
		l.revoked[e.SerialNumber.Text(16)] = e
	}
	// When we know the issuer, check the signature now; otherwise (the
	// issuer is an intermediate devices send) it is checked on use.
	var named, verified bool
	for _, c := range t.known {
		if !bytes.Equal(c.RawSubject, list.RawIssuer) {
			continue
		}
		named = true
		if t.signedBy(l, c) {
			verified = true
			break
		}
	}
	if named && !verified {
		return nil, fmt.Errorf("%s: CRL signature does not verify against the CA %s", s.loc, list.Issuer)
	}
	if !list.NextUpdate.IsZero() && now.After(list.NextUpdate) {
		t.log.Warn("manufacturer CRL is past its nextUpdate", "source", s.loc, "issuer", list.Issuer.String(),
			"next_update", list.NextUpdate)
	}
	return l, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}

func (t *Trust) fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	resp, err := t.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch CRL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch CRL %s: HTTP %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxCRLBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch CRL %s: %w", url, err)
	}
	if int64(len(data)) > t.cfg.MaxCRLBytes {
		return nil, fmt.Errorf("fetch CRL %s: larger than %d bytes", url, t.cfg.MaxCRLBytes)
	}
	return data, nil
}

// signedBy reports whether issuer signed the CRL, caching the answer.
func (t *Trust) signedBy(l *loadedCRL, issuer *x509.Certificate) bool {
	k := sigKey{crl: l.id, issuer: sha256.Sum256(issuer.Raw)}
	if v, ok := t.sigOK.Load(k); ok {
		return v.(bool)
	}
	ok := l.list.CheckSignatureFrom(issuer) == nil
	t.sigOK.Store(k, ok)
	return ok
}

func (t *Trust) rebuildIndex() {
	idx := &crlIndex{byIssuer: map[string][]*loadedCRL{}}
	current := map[[32]byte]bool{}
	for _, s := range t.sources {
		if s.crl != nil {
			k := string(s.crl.list.RawIssuer)
			idx.byIssuer[k] = append(idx.byIssuer[k], s.crl)
			current[s.crl.id] = true
		}
	}
	t.index.Store(idx)
	// Forget signature verdicts about CRLs no longer held.
	t.sigOK.Range(func(k, _ any) bool {
		if !current[k.(sigKey).crl] {
			t.sigOK.Delete(k)
		}
		return true
	})
}

// due reports when a source should be loaded again.
func (t *Trust) due(s *crlSource) time.Time {
	switch {
	case s.lastErr != nil:
		return s.nextTry
	case s.crl == nil:
		return time.Time{}
	case s.crl.list.NextUpdate.IsZero():
		return s.crl.loadedAt.Add(t.cfg.RefreshInterval)
	}
	// A source still serving a CRL past its nextUpdate is asked again
	// every few minutes, not continuously.
	soonest := s.crl.loadedAt.Add(min(t.cfg.RefreshInterval, maxRetryInterval))
	if s.crl.list.NextUpdate.Before(soonest) {
		return soonest
	}
	return s.crl.list.NextUpdate
}

// Refresh loads again every CRL that is due: past its nextUpdate, without
// one and older than RefreshInterval, or whose last load failed (retried
// after at most 10 minutes, or at once the first time). A CRL that fails to
// load or is older than the one held keeps the one held in use. It returns
// the load errors joined.
func (t *Trust) Refresh(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Clock()
	var errs []error
	changed := false
	for _, s := range t.sources {
		if now.Before(t.due(s)) {
			continue
		}
		l, err := t.loadCRL(ctx, s, now)
		if err != nil {
			s.lastErr, s.nextTry = err, now.Add(min(t.cfg.RefreshInterval, maxRetryInterval))
			t.log.Warn("manufacturer CRL refresh failed; keeping the CRL held", "source", s.loc, "error", err)
			errs = append(errs, err)
			continue
		}
		s.lastErr = nil
		if s.crl != nil && l.list.ThisUpdate.Before(s.crl.list.ThisUpdate) {
			// An older CRL than the one we hold (a replay or a stale
			// mirror): keep ours, look again later.
			s.crl.loadedAt = now
			t.log.Warn("manufacturer CRL source returned an older CRL; keeping the newer one", "source", s.loc)
			continue
		}
		s.crl = l
		changed = true
	}
	if changed {
		t.rebuildIndex()
	}
	return errors.Join(errs...)
}

// Run refreshes CRLs when they are due until ctx is done. Call it in its
// own goroutine.
func (t *Trust) Run(ctx context.Context) {
	for {
		t.mu.Lock()
		now := t.cfg.Clock()
		next := now.Add(t.cfg.RefreshInterval)
		for _, s := range t.sources {
			if d := t.due(s); d.Before(next) {
				next = d
			}
		}
		t.mu.Unlock()
		wait := max(next.Sub(now), time.Minute)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		_ = t.Refresh(ctx) // failures are logged by Refresh
	}
}

// trustVerdict is the outcome of checking a manufacturer certificate.
type trustVerdict struct {
	chain   []*x509.Certificate
	expired bool // the chain is valid but for the validity period
	revoked *revocation
	// err is why the certificate is not trusted (nil when it is, or when
	// it is trusted but for expiry).
	err error
}

type revocation struct {
	cert   *x509.Certificate
	entry  *x509.RevocationListEntry
	source string
}

func (r *revocation) String() string {
	what := "the client certificate"
	if r.cert.IsCA {
		what = fmt.Sprintf("the CA %q in its chain", r.cert.Subject.String())
	}
	return fmt.Sprintf("%s (serial %s) was revoked at %s (reason %d), according to the CRL from %s",
		what, r.cert.SerialNumber.Text(16), r.entry.RevocationTime.UTC().Format(time.RFC3339), r.entry.ReasonCode, r.source)
}

// check verifies a client certificate against the manufacturer roots, at
// now. presented are the other certificates the client sent. A chain
// that is valid but for expiry is found too (expired set), so that
// revocation is checked and reported for expired certificates as well.
func (t *Trust) check(leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) trustVerdict {
	if len(t.rootCerts) == 0 {
		return trustVerdict{err: errors.New("no manufacturer roots are configured")}
	}
	opts := x509.VerifyOptions{
		Roots:       t.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	chains, err := t.verifyChains(leaf, presented, &opts)
	var v trustVerdict
	if err != nil {
		if !isExpiry(err) {
			return trustVerdict{err: err}
		}
		chains = verifyInPast(leaf, opts, slices.Concat(presented, t.known))
		if chains == nil {
			return trustVerdict{err: err}
		}
		v.expired = true
		v.err = err
	}
	v.chain = chains[0]
	// A chain without a revoked certificate wins; otherwise report the
	// first revocation (or the first unverifiable CRL) found.
	var firstErr error
	for _, chain := range chains {
		rev, err := t.revoked(chain)
		switch {
		case err != nil:
			if firstErr == nil {
				firstErr = err
			}
		case rev != nil:
			if v.revoked == nil {
				v.revoked = rev
			}
		default:
			v.chain, v.revoked = chain, nil
			return v
		}
	}
	if v.revoked == nil && firstErr != nil {
		return trustVerdict{err: firstErr}
	}
	return v
}

// verifyChains is leaf.Verify(*opts) with the manufacturer intermediates
// and the presented certificates as intermediates (left in opts when it
// verified), remembering chains found. Verification is a function of the certificates, the trust
// (fixed for a Trust; a reload makes a new one) and the time, and the
// time only matters through the validity periods of the certificates in
// the chains; so a verdict found for the same leaf and presented
// certificates is reused while the time is inside all those periods.
// Revocation is not part of it: check looks at the CRLs every time.
// Only successes are kept: a failure costs the caller nothing it would
// not pay again, and an attacker cannot fill the cache with them.
func (t *Trust) verifyChains(leaf *x509.Certificate, presented []*x509.Certificate, opts *x509.VerifyOptions) ([][]*x509.Certificate, error) {
	key := chainKey(leaf, presented)
	if chains, ok := t.verified.get(key, opts.CurrentTime); ok {
		return chains, nil
	}
	inter := x509.NewCertPool()
	for _, c := range t.intermediates {
		inter.AddCert(c)
	}
	for _, c := range presented {
		inter.AddCert(c)
	}
	opts.Intermediates = inter
	chains, err := leaf.Verify(*opts)
	if err == nil {
		t.verified.put(key, chains)
	}
	return chains, err
}

func chainKey(leaf *x509.Certificate, presented []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range append([]*x509.Certificate{leaf}, presented...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// chainCache holds verified chains with the period in which they stay
// valid. It is bounded: when full, it starts again empty, which costs a
// verification per device and nothing else.
type chainCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedChains
}

type verifiedChains struct {
	chains              [][]*x509.Certificate
	notBefore, notAfter time.Time
}

const chainCacheSize = 4096

func (c *chainCache) get(k [sha256.Size]byte, now time.Time) ([][]*x509.Certificate, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || now.Before(e.notBefore) || now.After(e.notAfter) {
		return nil, false
	}
	return e.chains, true
}

func (c *chainCache) put(k [sha256.Size]byte, chains [][]*x509.Certificate) {
	e := verifiedChains{chains: chains}
	for i, chain := range chains {
		for j, cert := range chain {
			if (i == 0 && j == 0) || cert.NotBefore.After(e.notBefore) {
				e.notBefore = cert.NotBefore
			}
			if (i == 0 && j == 0) || cert.NotAfter.Before(e.notAfter) {
				e.notAfter = cert.NotAfter
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= chainCacheSize {
		c.m = make(map[[sha256.Size]byte]verifiedChains)
	}
	c.m[k] = e
}

// isExpiry reports whether a verification error is about validity dates.
func isExpiry(err error) bool {
	var ie x509.CertificateInvalidError
	return errors.As(err, &ie) && ie.Reason == x509.Expired
}

// verifyInPast finds chains for a certificate that is valid but for its
// dates (or its CAs'), trying the moments the certificates involved
// expired, newest first.
func verifyInPast(leaf *x509.Certificate, opts x509.VerifyOptions, others []*x509.Certificate) [][]*x509.Certificate {
	times := []time.Time{leaf.NotAfter}
	for _, c := range others {
		if c.NotAfter.Before(leaf.NotAfter) && !c.NotAfter.Before(leaf.NotBefore) {
			times = append(times, c.NotAfter)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	times = slices.Compact(times)
	if len(times) > 8 {
		times = times[:8]
	}
	for _, at := range times {
		opts.CurrentTime = at
		if chains, err := leaf.Verify(opts); err == nil {
			return chains
		}
	}
	return nil
}

// errCRLUnverifiable is returned when CRLs name a certificate's issuer but
// none of them verifies against it: revocation cannot be determined and
// the certificate is not trusted.
var errCRLUnverifiable = errors.New("a CRL names the issuer but its signature does not verify: revocation status unknown")

// revoked checks every certificate of a chain but the root against the
// CRLs of its issuer.
func (t *Trust) revoked(chain []*x509.Certificate) (*revocation, error) {
	idx := t.index.Load()
	if idx == nil {
		return nil, nil
	}
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		cands := idx.byIssuer[string(c.RawIssuer)]
		if len(cands) == 0 {
			continue
		}
		var best *loadedCRL
		for _, l := range cands {
			if !t.signedBy(l, issuer) {
				continue
			}
			if best == nil || l.list.ThisUpdate.After(best.list.ThisUpdate) {
				best = l
			}
		}
		if best == nil {
			return nil, fmt.Errorf("checking %q: %w", c.Subject.String(), errCRLUnverifiable)
		}
		if e, ok := best.revoked[c.SerialNumber.Text(16)]; ok {
			return &revocation{cert: c, entry: e, source: best.source}, nil
		}
	}
	return nil, nil
}
