package ocsp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
)

// ErrUnknownIssuer is returned by Rebuild for an issuer the Source does
// not list (or whose key is not held).
var ErrUnknownIssuer = errors.New("unknown issuer")

// oidIssuingDistributionPoint is id-ce-issuingDistributionPoint
// (RFC 5280 5.2.5).
var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// Publisher builds and serves one CRL per issuer generation.
type Publisher struct {
	o      Options
	log    *slog.Logger
	met    *crlMetrics
	prefix string

	mu      sync.Mutex // serializes changes of issuers
	issuers atomic.Pointer[map[string]*crlIssuer]
}

// crlIssuer is one issuer and the CRL it currently publishes.
type crlIssuer struct {
	Issuer
	doc atomic.Pointer[crlDoc]

	// Build requests are numbered; a build covers every request made
	// before it started reading revocations, so a burst of revocations
	// costs two builds, not one each.
	requested atomic.Uint64
	mu        sync.Mutex // one build at a time, so numbers follow thisUpdate
	covered   uint64     // last request number built; guarded by mu
	lastCount int        // entries in the last build; guarded by mu
}

// crlDoc is a built CRL ready to serve.
type crlDoc struct {
	number                 int64
	entries                int
	thisUpdate, nextUpdate time.Time
	der, pem               []byte
	etagDER, etagPEM       string
	expires                string
}

// NewPublisher builds the CRL of every issuer of o.Source.
func NewPublisher(ctx context.Context, o Options) (*Publisher, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	met, err := newCRLMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ocsp: CRL metrics: %w", err)
	}
	p := &Publisher{o: o, log: o.Logger.With("part", "crl"), met: met, prefix: strings.TrimSuffix(o.CRLPrefix, "/")}
	empty := map[string]*crlIssuer{}
	p.issuers.Store(&empty)
	if err := p.RebuildAll(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// loadIssuers reads the issuers from the Source, keeping the state (and
// the CRL being served) of those that did not change.
func (p *Publisher) loadIssuers(ctx context.Context) (map[string]*crlIssuer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list, err := p.o.Source.Issuers(ctx)
	if err != nil {
		return nil, fmt.Errorf("ocsp: list issuers: %w", err)
	}
	old := *p.issuers.Load()
	next := make(map[string]*crlIssuer, len(list))
	for _, is := range list {
		switch {
		case is.ID == "" || is.Cert == nil:
			return nil, errors.New("ocsp: issuer without ID or certificate")
		case next[is.ID] != nil:
			return nil, fmt.Errorf("ocsp: issuer %s listed twice", is.ID)
		case is.Signer == nil:
			p.log.Warn("issuer key not held; no CRL is published for it", "issuer", is.ID)
			continue
		}
		if prev := old[is.ID]; prev != nil && bytes.Equal(prev.Cert.Raw, is.Cert.Raw) {
			prev.mu.Lock()
			prev.Signer = is.Signer
			prev.mu.Unlock()
			next[is.ID] = prev
			continue
		}
		next[is.ID] = &crlIssuer{Issuer: is}
	}
	for id := range old {
		if next[id] == nil {
			p.met.forget(id)
		}
	}
	p.issuers.Store(&next)
	return next, nil
}

// RebuildAll reads the issuers again and builds every CRL.
func (p *Publisher) RebuildAll(ctx context.Context) error {
	issuers, err := p.loadIssuers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ci := range issuers {
		if err := p.build(ctx, ci); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Rebuild builds the CRL of one issuer now; call it after a revocation.
func (p *Publisher) Rebuild(ctx context.Context, issuerID string) error {
	ci := (*p.issuers.Load())[issuerID]
	if ci == nil {
		// Perhaps a generation created since the last load.
		issuers, err := p.loadIssuers(ctx)
		if err != nil {
			return err
		}
		if ci = issuers[issuerID]; ci == nil {
			return fmt.Errorf("ocsp: rebuild CRL of %s: %w", issuerID, ErrUnknownIssuer)
		}
	}
	return p.build(ctx, ci)
}

// Run rebuilds each CRL once half its validity has passed (or when its
// last build failed), until ctx ends. It does not look for new issuers:
// call RebuildAll when the generations change.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(min(max(p.o.CRLValidity/48, 10*time.Second), time.Hour))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.rebuildStale(ctx)
		}
	}
}

// rebuildStale is one pass of Run.
func (p *Publisher) rebuildStale(ctx context.Context) {
	now := p.o.Clock()
	for _, ci := range *p.issuers.Load() {
		if ctx.Err() != nil {
			return
		}
		if d := ci.doc.Load(); d != nil && now.Before(d.thisUpdate.Add(d.nextUpdate.Sub(d.thisUpdate)/2)) {
			continue
		}
		if err := p.build(ctx, ci); err != nil {
			p.log.Error("CRL rebuild failed", "issuer", ci.ID, "err", err)
		}
	}
}

// build makes a new CRL for ci and publishes it, unless a build that
// started after this call was made has already done so.
func (p *Publisher) build(ctx context.Context, ci *crlIssuer) error {
	req := ci.requested.Add(1)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if ci.covered >= req {
		return nil
	}
	covers := ci.requested.Load()
	start := time.Now()
	now := p.o.Clock().UTC().Truncate(time.Second)

	// Revocations arrive one by one from the store and are encoded as
	// they come (crlEncoder), in room sized from the previous build so
	// that a large CRL is not regrown.
	enc := newCRLEncoder(ci.lastCount + ci.lastCount/8 + 16)
	var fixed int
	err := p.o.Source.Revocations(ctx, ci.ID, func(rv store.Revocation) error {
		if rv.Serial == nil {
			return errors.New("revocation without a serial number")
		}
		reason, at := rv.Reason, rv.RevokedAt
		// RFC 5280 5.3.1: 7 is unused, removeFromCRL (8) belongs to
		// delta CRLs only; unspecified (0) is written as no reason.
		if reason < 0 || reason > 10 || reason == 7 || reason == 8 {
			reason = 0
			fixed++
		}
		if at.IsZero() {
			at = now
			fixed++
		}
		enc.add(rv.Serial, at, reason)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ocsp: CRL of %s: read revocations: %w", ci.ID, err)
	}
	if fixed > 0 {
		p.log.Warn("revocations with a bad reason or no time; written as unspecified or now", "issuer", ci.ID, "count", fixed)
	}
	number, err := p.o.Source.NextCRLNumber(ctx, ci.ID)
	if err != nil {
		return fmt.Errorf("ocsp: CRL of %s: next CRL number: %w", ci.ID, err)
	}
	params := crlParams{
		issuer:     ci.Cert,
		signer:     ci.Signer,
		number:     big.NewInt(number),
		thisUpdate: now,
		nextUpdate: now.Add(p.o.CRLValidity),
	}
	if p.o.CRLURL != nil {
		ext, err := issuingDistributionPoint(p.o.CRLURL(ci.ID))
		if err != nil {
			return fmt.Errorf("ocsp: CRL of %s: %w", ci.ID, err)
		}
		params.idp = ext.Value
	}
	entries := enc.n
	der, err := enc.finish(params)
	if err != nil {
		return fmt.Errorf("ocsp: CRL of %s: %w", ci.ID, err)
	}
	// The PEM is written into room for all of it: 4/3 of the DER in
	// base64, a newline every 64 characters, and the two lines around.
	var pemBuf bytes.Buffer
	pemBuf.Grow(len(der)/3*4 + len(der)/48 + 128)
	if err := pem.Encode(&pemBuf, &pem.Block{Type: "X509 CRL", Bytes: der}); err != nil {
		return fmt.Errorf("ocsp: CRL of %s: %w", ci.ID, err)
	}
	pemBytes := pemBuf.Bytes()
	sumDER, sumPEM := sha256.Sum256(der), sha256.Sum256(pemBytes)
	doc := &crlDoc{
		number:     number,
		entries:    entries,
		thisUpdate: params.thisUpdate,
		nextUpdate: params.nextUpdate,
		der:        der,
		pem:        pemBytes,
		etagDER:    `"` + hex.EncodeToString(sumDER[:]) + `"`,
		etagPEM:    `"` + hex.EncodeToString(sumPEM[:]) + `"`,
		expires:    params.nextUpdate.Format(http.TimeFormat),
	}
	ci.doc.Store(doc)
	ci.lastCount = entries
	ci.covered = covers

	p.met.number.WithLabelValues(ci.ID).Set(float64(number))
	p.met.bytes.WithLabelValues(ci.ID).Set(float64(len(der)))
	p.met.thisUpdate.WithLabelValues(ci.ID).Set(float64(doc.thisUpdate.Unix()))
	p.met.nextUpdate.WithLabelValues(ci.ID).Set(float64(doc.nextUpdate.Unix()))
	p.log.Info("CRL built", "issuer", ci.ID, "number", number, "entries", entries,
		"bytes", len(der), "duration_seconds", time.Since(start).Seconds())
	return nil
}

// issuingDistributionPoint encodes the IDP extension (RFC 5280 5.2.5)
// naming the CRL's own URL, marked critical as that section requires:
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	    distributionPoint          [0] DistributionPointName OPTIONAL,
//	    ... all other fields left at their defaults }
//	DistributionPointName ::= CHOICE {
//	    fullName                   [0] GeneralNames, ... }
func issuingDistributionPoint(url string) (pkix.Extension, error) {
	if url == "" {
		return pkix.Extension{}, errors.New("empty CRL URL")
	}
	for i := 0; i < len(url); i++ {
		if url[i] < 0x21 || url[i] > 0x7e {
			return pkix.Extension{}, fmt.Errorf("CRL URL %q is not printable ASCII", url)
		}
	}
	type distributionPointName struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	}
	type idp struct {
		DistributionPoint distributionPointName `asn1:"optional,tag:0"`
	}
	uri := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(url)} // uniformResourceIdentifier [6] IA5String
	v, err := asn1.Marshal(idp{DistributionPoint: distributionPointName{FullName: []asn1.RawValue{uri}}})
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode issuing distribution point: %w", err)
	}
	return pkix.Extension{Id: oidIssuingDistributionPoint, Critical: true, Value: v}, nil
}

// ServeHTTP serves "<prefix>/<issuerID>.crl" (DER) and
// "<prefix>/<issuerID>.pem" (PEM) to GET and HEAD.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name, ok := strings.CutPrefix(req.URL.Path, p.prefix+"/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		p.log.Debug("request rejected", "method", req.Method, "path", req.URL.Path, "remote", req.RemoteAddr)
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		http.NotFound(w, req)
		return
	}
	ci := (*p.issuers.Load())[name[:i]]
	if ci == nil {
		http.NotFound(w, req)
		return
	}
	doc := ci.doc.Load()
	if doc == nil {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "CRL not built yet", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	var body []byte
	switch name[i+1:] {
	case "crl":
		h.Set("Content-Type", "application/pkix-crl")
		h.Set("Etag", doc.etagDER)
		body = doc.der
	case "pem":
		h.Set("Content-Type", "application/x-pem-file")
		h.Set("Etag", doc.etagPEM)
		body = doc.pem
	default:
		http.NotFound(w, req)
		return
	}
	maxAge := min(p.o.CacheMaxAge, doc.nextUpdate.Sub(p.o.Clock()))
	h.Set("Cache-Control", cacheControl(int64(maxAge/time.Second)))
	h.Set("Expires", doc.expires)
	// ServeContent writes Last-Modified and answers If-None-Match,
	// If-Modified-Since, HEAD and ranges.
	http.ServeContent(w, req, "", doc.thisUpdate, bytes.NewReader(body))
}

// CRLInfo describes the CRL published for one issuer.
type CRLInfo struct {
	IssuerID               string
	Number                 int64
	Entries                int
	ThisUpdate, NextUpdate time.Time
}

// Published lists the CRL each issuer publishes now, by issuer; an issuer
// whose first CRL is not built yet is left out.
func (p *Publisher) Published() []CRLInfo {
	m := p.issuers.Load()
	if m == nil {
		return nil
	}
	var out []CRLInfo
	for id, ci := range *m {
		if d := ci.doc.Load(); d != nil {
			out = append(out, CRLInfo{IssuerID: id, Number: d.number, Entries: d.entries, ThisUpdate: d.thisUpdate, NextUpdate: d.nextUpdate})
		}
	}
	slices.SortFunc(out, func(a, b CRLInfo) int { return strings.Compare(a.IssuerID, b.IssuerID) })
	return out
}
