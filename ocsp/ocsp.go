// Package ocsp answers certificate status questions for every issuing CA
// generation of the appliance: an OCSP responder (RFC 6960, with the
// RFC 5019 lightweight profile for GET) and a CRL publisher (RFC 5280).
//
// Both are plain http.Handlers fed by a Source, which the authority
// implements; this package knows nothing of how certificates are issued or
// stored.
//
// # Mounting
//
// OCSP GET requests carry base64 in the URL path, and base64 contains '/',
// '+' and '='. Go's http.ServeMux cleans paths and answers a path with "//"
// (which base64 produces) with a redirect before any handler runs, so the
// Responder must not sit behind a ServeMux. It matches its own prefix
// (Options.OCSPPrefix, "/ocsp" by default) against the raw request URI.
// Either give it a listener of its own:
//
//	srv := &http.Server{Handler: responder}
//
// or put it in front of the application's mux:
//
//	srv := &http.Server{Handler: responder.Wrap(mux)}
//
// The Publisher serves "<CRLPrefix>/<issuerID>.crl" (DER) and
// "<CRLPrefix>/<issuerID>.pem" (PEM). Its paths are plain, so it may be
// mounted on a ServeMux: mux.Handle("/crl/", publisher).
package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Issuer is one issuing CA generation (a root or an intermediate, ECDSA or
// RSA hierarchy).
type Issuer struct {
	ID     string // stable, URL-safe, e.g. "ecdsa-int-1"
	Cert   *x509.Certificate
	Signer crypto.Signer // the CA key (signs CRLs, and OCSP answers in "issuer" mode)
}

// Source is what the responder and the publisher need from the authority.
type Source interface {
	Issuers(ctx context.Context) ([]Issuer, error)
	// CertificateStatus returns status fields (Serial, IssuerID, NotAfter,
	// Revoked, RevokedAt, Reason) or store.ErrNotFound.
	CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*store.Certificate, error)
	Revocations(ctx context.Context, issuerID string, fn func(store.Revocation) error) error
	NextCRLNumber(ctx context.Context, issuerID string) (int64, error) // persisted, only grows
	// IssueResponderCert certifies pub as a delegated OCSP responder of
	// issuerID (EKU OCSPSigning, id-pkix-ocsp-nocheck, the given validity).
	IssueResponderCert(ctx context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error)
}

// ResponderKeyKeeper may also be implemented by a Source, to keep the
// delegated responder keys and their certificates across restarts.
// Without it every start makes new keys (an RSA key takes a good part of
// a second) and has each issuer certify them again.
type ResponderKeyKeeper interface {
	// LoadResponderKey returns the key and certificate last saved for
	// issuerID, or an error wrapping fs.ErrNotExist when there are none.
	// The responder checks what it gets before using it.
	LoadResponderKey(ctx context.Context, issuerID string) (crypto.Signer, *x509.Certificate, error)
	// SaveResponderKey keeps key and cert for issuerID in place of any
	// saved before. The key must be readable by the appliance alone.
	SaveResponderKey(ctx context.Context, issuerID string, key crypto.Signer, cert *x509.Certificate) error
}

// Signing modes of the responder.
const (
	// ModeDelegated signs answers with a responder key of our own,
	// certified by each issuer for OCSP signing (RFC 6960 4.2.2.2). The CA
	// key then signs only one responder certificate per lifetime.
	ModeDelegated = "delegated"
	// ModeIssuer signs answers with the issuer's own key.
	ModeIssuer = "issuer"
)

// Defaults for Options.
const (
	DefaultValidity              = 24 * time.Hour
	DefaultResponderCertLifetime = 7 * 24 * time.Hour
	DefaultCacheSize             = 20000
	DefaultCacheMaxAge           = time.Hour
	DefaultCRLValidity           = 7 * 24 * time.Hour
	DefaultOCSPPrefix            = "/ocsp"
	DefaultCRLPrefix             = "/crl"
	// DefaultMaxRequestBytes caps a POST body and a decoded GET request.
	DefaultMaxRequestBytes = 10 << 10
)

// Options configure a Responder and a Publisher. Only Source is required.
type Options struct {
	Source Source
	// Clock gives the current time; time.Now when nil.
	Clock func() time.Time
	// Logger receives the package's logs, tagged component=ocsp.
	Logger *slog.Logger
	// Registerer receives the metrics; none are registered when nil.
	Registerer prometheus.Registerer

	// Mode is ModeDelegated (the default) or ModeIssuer.
	Mode string
	// Validity is nextUpdate - thisUpdate of an OCSP answer. Answers are
	// signed again once half of it has passed.
	Validity time.Duration
	// ResponderCertLifetime is the validity of a delegated responder
	// certificate; it is renewed when a third of it is left.
	ResponderCertLifetime time.Duration
	// CacheSize bounds the number of signed answers kept in memory (one
	// per certificate and CertID hash algorithm asked about). An answer
	// with its headers takes about 1 KiB for ECDSA issuers and 2 KiB for
	// RSA ones in delegated mode, which sends the responder certificate
	// with every answer.
	CacheSize int
	// CacheMaxAge caps the max-age given to HTTP caches for OCSP GET
	// answers and CRLs, so that a revocation reaches clients behind a
	// cache within that time.
	CacheMaxAge time.Duration
	// MaxRequestBytes caps the size of an OCSP request.
	MaxRequestBytes int
	// OCSPPrefix is the path the responder answers under ("/ocsp").
	OCSPPrefix string

	// CRLValidity is nextUpdate - thisUpdate of a CRL. CRLs are rebuilt
	// once half of it has passed, and on Rebuild.
	CRLValidity time.Duration
	// CRLURL gives the URL of an issuer's CRL, written in the CRL's
	// issuing distribution point extension. No IDP is written when nil.
	CRLURL func(issuerID string) string
	// CRLPrefix is the path the publisher answers under ("/crl").
	CRLPrefix string
}

// withDefaults checks o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Source == nil {
		return o, errors.New("ocsp: options: Source is required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "ocsp")
	switch o.Mode {
	case "":
		o.Mode = ModeDelegated
	case ModeDelegated, ModeIssuer:
	default:
		return o, fmt.Errorf("ocsp: options: mode %q: want %q or %q", o.Mode, ModeDelegated, ModeIssuer)
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.ResponderCertLifetime == 0 {
		o.ResponderCertLifetime = DefaultResponderCertLifetime
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.CacheMaxAge == 0 {
		o.CacheMaxAge = DefaultCacheMaxAge
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.CRLValidity == 0 {
		o.CRLValidity = DefaultCRLValidity
	}
	if o.OCSPPrefix == "" {
		o.OCSPPrefix = DefaultOCSPPrefix
	}
	if o.CRLPrefix == "" {
		o.CRLPrefix = DefaultCRLPrefix
	}
	switch {
	case o.Validity < time.Minute:
		return o, fmt.Errorf("ocsp: options: validity %s is shorter than a minute", o.Validity)
	case o.ResponderCertLifetime < time.Hour:
		return o, fmt.Errorf("ocsp: options: responder certificate lifetime %s is shorter than an hour", o.ResponderCertLifetime)
	case o.CRLValidity < time.Minute:
		return o, fmt.Errorf("ocsp: options: CRL validity %s is shorter than a minute", o.CRLValidity)
	case o.CacheSize < 0:
		return o, fmt.Errorf("ocsp: options: negative cache size %d", o.CacheSize)
	case o.CacheMaxAge < 0:
		return o, fmt.Errorf("ocsp: options: negative cache max-age %s", o.CacheMaxAge)
	case o.MaxRequestBytes < 64:
		return o, fmt.Errorf("ocsp: options: request size cap %d is too small", o.MaxRequestBytes)
	}
	for _, p := range []string{o.OCSPPrefix, o.CRLPrefix} {
		if p[0] != '/' || (len(p) > 1 && p[len(p)-1] == '/') {
			return o, fmt.Errorf("ocsp: options: prefix %q must start and must not end with '/'", p)
		}
	}
	return o, nil
}
