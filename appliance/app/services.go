package app

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nmos-certs/nmos-certs/appliance/config"
	"github.com/nmos-certs/nmos-certs/appliance/dns"
	"github.com/nmos-certs/nmos-certs/ca"
	"github.com/nmos-certs/nmos-certs/ca/store"
	"github.com/nmos-certs/nmos-certs/est"
	"github.com/nmos-certs/nmos-certs/est/kek"
	"github.com/nmos-certs/nmos-certs/ocsp"
)

// ocspSource adapts the authority and its store to what the OCSP
// responder and CRL publisher need.
type ocspSource struct {
	ca    *ca.Authority
	store store.Store
}

func (s ocspSource) Issuers(ctx context.Context) ([]ocsp.Issuer, error) {
	var out []ocsp.Issuer
	for _, is := range s.ca.Issuers() {
		out = append(out, ocsp.Issuer{ID: is.ID, Cert: is.Cert, Signer: is.Signer})
	}
	return out, nil
}

func (s ocspSource) CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*store.Certificate, error) {
	return s.store.CertificateStatus(ctx, issuerID, serial)
}

func (s ocspSource) Revocations(ctx context.Context, issuerID string, fn func(store.Revocation) error) error {
	return s.store.Revocations(ctx, issuerID, fn)
}

func (s ocspSource) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	return s.store.NextCRLNumber(ctx, issuerID)
}

func (s ocspSource) IssueResponderCert(ctx context.Context, issuerID string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	return s.ca.IssueResponderCert(ctx, issuerID, pub, notBefore, notAfter)
}

func (s ocspSource) LoadResponderKey(ctx context.Context, issuerID string) (crypto.Signer, *x509.Certificate, error) {
	return s.ca.LoadResponderKey(ctx, issuerID)
}

func (s ocspSource) SaveResponderKey(ctx context.Context, issuerID string, key crypto.Signer, cert *x509.Certificate) error {
	return s.ca.SaveResponderKey(ctx, issuerID, key, cert)
}

// serverCerts holds the appliance's own TLS certificates (ECDSA first,
// then RSA) and renews them before they expire.
type serverCerts struct {
	ca          *ca.Authority
	hostname    string
	renewBefore time.Duration
	clock       func() time.Time
	log         *slog.Logger
	certs       atomic.Pointer[[]*tls.Certificate]
	// responder staples OCSP answers to the certificates once set.
	responder atomic.Pointer[ocsp.Responder]
}

func (s *serverCerts) refresh(ctx context.Context) error {
	var out []*tls.Certificate
	for _, h := range ca.Hierarchies {
		c, err := s.ca.ServerCertificate(ctx, h, s.hostname, s.renewBefore)
		if err != nil {
			return fmt.Errorf("%s server certificate: %w", strings.ToUpper(h), err)
		}
		if r := s.responder.Load(); r != nil {
			if stapled, err := staple(ctx, r, c, s.clock()); err != nil {
				s.log.Warn("no OCSP staple for the server certificate", "hierarchy", h, "err", err)
			} else {
				c = stapled
			}
		}
		out = append(out, c)
	}
	s.certs.Store(&out)
	return nil
}

func (s *serverCerts) get() []*tls.Certificate {
	if p := s.certs.Load(); p != nil {
		return *p
	}
	return nil
}

// estLabels are the api_selector labels of the advertisements.
func estLabels(cfg *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range cfg.DNS.Advertise {
		if a.APISelector != "" && !seen[a.APISelector] {
			seen[a.APISelector] = true
			out = append(out, a.APISelector)
		}
	}
	return out
}

// dnsOptions renders the DNS section of the configuration for the
// embedded server.
func dnsOptions(cfg *config.Config) (dns.Options, error) { return dnsOptionsWith(cfg, nil) }

// dnsOptionsWith is dnsOptions with live, the other appliances registered
// in a shared store, advertised after dns.peers.
func dnsOptionsWith(cfg *config.Config, live []config.Peer) (dns.Options, error) {
	o := dns.Options{
		Zone:       cfg.Domain,
		Hostname:   cfg.Hostname,
		Listen:     cfg.Listen.DNS,
		TTL:        cfg.DNS.TTL.D(),
		Forward:    cfg.DNS.Forward,
		SerialFile: filepath.Join(cfg.DataDir, SerialFile),
	}
	for _, a := range cfg.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return o, fmt.Errorf("addresses: %w", err)
		}
		o.Addresses = append(o.Addresses, ip)
	}
	for _, a := range cfg.DNS.Advertise {
		name := a.Instance
		if name == "" {
			name = config.DefaultInstance(cfg.Hostname, a)
		}
		o.Services = append(o.Services, dns.Service{
			Type: "_nmos-certs._tcp", Instance: name, Target: cfg.Hostname,
			Port: a.Port, Pri: a.Pri, Weight: a.Weight, APISelector: a.APISelector,
		})
	}
	for i, p := range append(slices.Clone(cfg.DNS.Peers), live...) {
		name := p.Instance
		if name == "" {
			name = config.DefaultInstance(p.Hostname, config.Advertisement{Pri: p.Pri, APISelector: p.APISelector})
		}
		ps := dns.Service{Type: "_nmos-certs._tcp", Instance: name, Target: p.Hostname,
			Port: p.Port, Pri: p.Pri, Weight: p.Weight, APISelector: p.APISelector}
		for _, a := range p.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				if i >= len(cfg.DNS.Peers) {
					return o, fmt.Errorf("the appliance %s sharing the store: address %w", p.Hostname, err)
				}
				return o, fmt.Errorf("dns.peers[%d].addresses: %w", i, err)
			}
			ps.TargetAddresses = append(ps.TargetAddresses, ip)
		}
		o.Services = append(o.Services, ps)
	}
	for i, s := range cfg.DNS.Services {
		ds := dns.Service{
			Type: s.Type, Instance: s.Instance, Target: s.Target,
			Port: s.Port, Pri: s.Pri, Weight: s.Weight, TXT: s.TXT,
		}
		for _, a := range s.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return o, fmt.Errorf("dns.services[%d].addresses: %w", i, err)
			}
			ds.TargetAddresses = append(ds.TargetAddresses, ip)
		}
		o.Services = append(o.Services, ds)
	}
	if t := cfg.DNS.Transfer; len(t.To) > 0 {
		key, err := readTSIGKey(t.TSIG)
		if err != nil {
			return o, fmt.Errorf("dns.transfer.tsig: %w", err)
		}
		o.Transfer = &dns.Transfer{To: t.To, Key: key}
	}
	return o, nil
}

// pushOptions is the dns.push section for dns.NewPusher; ok is false
// when pushing is off.
func pushOptions(cfg *config.Config) (p dns.Push, ok bool, err error) {
	c := cfg.DNS.Push
	if c.Server == "" {
		return p, false, nil
	}
	key, err := readTSIGKey(c.TSIG)
	if err != nil {
		return p, false, fmt.Errorf("dns.push.tsig: %w", err)
	}
	return dns.Push{Server: c.Server, Zone: c.Zone, Key: key, StateFile: filepath.Join(cfg.DataDir, PushStateFile)}, true, nil
}

// PushStateFile, in the data directory, lists the records last pushed;
// SerialFile keeps the zone's last SOA serial.
const (
	PushStateFile = "dns-push.state"
	SerialFile    = "dns-serial"
)

// A key clause as tsig-keygen and BIND's configuration write it:
//
//	key "NAME" {
//		algorithm hmac-sha256;
//		secret "BASE64";
//	};
var (
	keyClauseRE  = regexp.MustCompile(`key\s+"([^"]+)"\s*\{`)
	keySecretRE  = regexp.MustCompile(`secret\s+"([A-Za-z0-9+/=]+)"\s*;`)
	keyAlgRE     = regexp.MustCompile(`algorithm\s+"?([A-Za-z0-9-]+)"?\s*;`)
	keyCommentRE = regexp.MustCompile(`(?m)^\s*(#|//).*$`) // whole lines: "//" may be in a base64 secret
)

// readTSIGKey reads a key's secret from its file, which must be private:
// one key clause, whose name and algorithm must be the configured ones,
// or the base64 secret alone.
func readTSIGKey(k config.TSIGKey) (dns.TSIGKey, error) {
	out := dns.TSIGKey{Name: k.Name, Algorithm: k.Algorithm}
	fi, err := os.Stat(k.SecretFile)
	if err != nil {
		return out, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return out, fmt.Errorf("%s is mode %04o, open to group or others: make it private (chmod 600 %s)", k.SecretFile, perm, k.SecretFile)
	}
	b, err := os.ReadFile(k.SecretFile)
	if err != nil {
		return out, err
	}
	text := strings.TrimSpace(keyCommentRE.ReplaceAllString(string(b), ""))
	if clauses := keyClauseRE.FindAllStringSubmatch(text, -1); len(clauses) > 0 {
		if len(clauses) > 1 {
			return out, fmt.Errorf("%s holds %d keys: keep the one for %s alone in it", k.SecretFile, len(clauses), k.Name)
		}
		if name := clauses[0][1]; !strings.EqualFold(strings.TrimSuffix(name, "."), strings.TrimSuffix(k.Name, ".")) {
			return out, fmt.Errorf("%s holds key %q, not %q", k.SecretFile, name, k.Name)
		}
		if m := keyAlgRE.FindStringSubmatch(text); m != nil && !strings.EqualFold(m[1], k.Algorithm) {
			return out, fmt.Errorf("%s holds a key of algorithm %s, but the configuration says %s", k.SecretFile, m[1], k.Algorithm)
		}
		secrets := keySecretRE.FindAllStringSubmatch(text, -1)
		if len(secrets) != 1 {
			return out, fmt.Errorf("%s: the key clause has %d secrets, want one", k.SecretFile, len(secrets))
		}
		text = secrets[0][1]
	}
	secret, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return out, fmt.Errorf("%s: want a key clause (tsig-keygen writes one) or a base64 secret", k.SecretFile)
	}
	if len(secret) < 16 {
		return out, fmt.Errorf("the secret in %s has %d bytes: want at least 16 (tsig-keygen makes 32)", k.SecretFile, len(secret))
	}
	out.Secret = secret
	return out, nil
}

// newEST builds the EST handler and the manufacturer trust of a.cfg.
func (a *App) newEST(ctx context.Context) (*est.Server, *est.Trust, error) {
	cfg := a.cfg
	var trust *est.Trust
	if len(cfg.EST.TrustedClientRoots) > 0 {
		t, err := est.LoadTrust(ctx, est.TrustConfig{
			RootFiles:  cfg.EST.TrustedClientRoots,
			CRLSources: cfg.EST.ClientCRLs,
			Clock:      a.o.Clock,
			Logger:     a.log.With("component", "est"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("est.trusted_client_roots: %w", err)
		}
		trust = t
	}
	decryptKeys, err := kek.Load(cfg.EST.ServerKeyGenKEKFiles)
	if err != nil {
		return nil, nil, fmt.Errorf("est.serverkeygen_kek_files: %w", err)
	}
	srv, err := est.New(est.Options{
		CA:                      a.ca,
		Approvals:               a.store,
		Trust:                   trust,
		Clock:                   a.o.Clock,
		Logger:                  a.log,
		Registerer:              a.reg,
		Labels:                  estLabels(cfg),
		ManualApproval:          cfg.EST.ManualApproval,
		QueueNameConflicts:      cfg.CA.NameBinding == config.NameBindingApprove,
		AllowRenewalWithSameKey: cfg.EST.AllowRenewalWithSameKey,
		RetryAfter:              cfg.EST.RetryAfter.D(),
		PendingLifetime:         cfg.EST.PendingLifetime.D(),
		MaxPending:              cfg.EST.MaxPending,
		MaxPendingPerAddress:    cfg.EST.MaxPendingPerAddress,
		AllowExpiredClientCerts: cfg.EST.AllowExpiredClientCerts,
		RequireChannelBinding:   cfg.EST.RequireChannelBinding,
		MaxBodyBytes:            int64(cfg.EST.MaxBodyBytes),
		HSTSMaxAge:              cfg.EST.HSTSMaxAge.D(),
		KeySigner: func() *tls.Certificate {
			if c := a.server.get(); len(c) > 0 {
				return c[0]
			}
			return nil
		},
		DecryptKeys: decryptKeys,
	})
	if err != nil {
		return nil, nil, err
	}
	return srv, trust, nil
}

func (a *App) newRevocation(ctx context.Context) error {
	o := ocsp.Options{
		Source:                ocspSource{ca: a.ca, store: a.store},
		Clock:                 a.o.Clock,
		Logger:                a.log,
		Registerer:            a.reg,
		Mode:                  a.cfg.OCSP.Signer,
		Validity:              a.cfg.OCSP.Validity.D(),
		ResponderCertLifetime: a.cfg.OCSP.ResponderCertLifetime.D(),
		CRLValidity:           a.cfg.CRL.Validity.D(),
		CRLURL:                a.ca.CRLURL,
	}
	r, err := ocsp.NewResponder(ctx, o)
	if err != nil {
		return err
	}
	p, err := ocsp.NewPublisher(ctx, o)
	if err != nil {
		return err
	}
	a.ocsp, a.crl = r, p
	return nil
}
