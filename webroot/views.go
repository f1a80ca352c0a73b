package webroot

import (
	"context"
	"time"
)

// Backend is what the pages show and do; appliance/app implements it
// with the same calls the CLI makes, each writing its audit record.
type Backend interface {
	// Status is the dashboard's data.
	Status(ctx context.Context) (*StatusView, error)
	// Pending lists the enrollment requests waiting for an operator.
	Pending(ctx context.Context) ([]PendingView, error)
	// Decide approves or denies a waiting enrollment request.
	Decide(ctx context.Context, id string, approve bool, actor, remote string) error
	// Revoke revokes a certificate with an RFC 5280 reason name.
	Revoke(ctx context.Context, serial, reason, actor, remote string) error
	// ReleaseName frees a name bound to a holder.
	ReleaseName(ctx context.Context, name, actor, remote string) error
	// Certificate is one certificate's record, PEM and OCSP answer
	// (ErrNotFound).
	Certificate(ctx context.Context, serial string) (*CertificateView, error)
	// Certificates is a page of the certificates a search selects.
	Certificates(ctx context.Context, q CertificateSearch) (*CertificateList, error)
	// CA is the certificate authority's generations and CRLs.
	CA(ctx context.Context) (*CAView, error)
	// RolloverPlan says what a rollover ("intermediate" or "root") of a
	// hierarchy would do, or why it cannot be made here.
	RolloverPlan(ctx context.Context, hierarchy, kind string) (*RolloverPlan, error)
	// Rollover makes it, and says what it did. from is the generation the
	// plan showed as the one to replace (RolloverPlan's From): when
	// another is active now (the rollover was made meanwhile), nothing is
	// done.
	Rollover(ctx context.Context, hierarchy, kind, from, actor, remote string) (string, error)
	// Config is the running configuration, secrets redacted, and the
	// outcome of the last reload.
	Config(ctx context.Context) (*ConfigView, error)
	// Reload reads the configuration file again and applies it, as
	// SIGHUP does.
	Reload(ctx context.Context, actor, remote string) error
}

// StatusView is the dashboard.
type StatusView struct {
	Version string    `json:"version"`
	Now     time.Time `json:"now"`
	// Health is each service's state, as /readyz checks it.
	Health       []HealthView     `json:"health"`
	Generations  []GenerationView `json:"generations"`
	Pending      []PendingView    `json:"pending"`
	Certificates []CertificateRow `json:"certificates"`
	// Issued24h counts the certificates issued in the last 24 hours;
	// Refused24h the requests refused since RefusedSince, which is 24
	// hours ago or, if later, when the appliance started.
	Issued24h       int           `json:"issued_24h"`
	Refused24h      int           `json:"refused_24h"`
	RefusedSince    time.Time     `json:"refused_since"`
	CRLs            []CRLView     `json:"crls"`
	OwnCertificates []OwnCertView `json:"own_certificates"`
	// RecentErrors are the last warnings and errors logged.
	RecentErrors []LogView `json:"recent_errors"`
	// Appliances are those registered alive in a store shared with
	// other appliances (PostgreSQL), this one included; none otherwise.
	Appliances []ApplianceView `json:"appliances,omitempty"`
}

// ApplianceView is an appliance registered in the shared store.
type ApplianceView struct {
	Hostname  string    `json:"hostname"`
	Addresses []string  `json:"addresses"`
	Instances []string  `json:"instances"`
	LastSeen  time.Time `json:"last_seen"`
	// Self is this appliance. Advertised says whether this appliance's
	// DNS-SD answers list it (as a live appliance or from dns.peers);
	// Problem is why not, when it breaks the rules of dns.peers.
	Self       bool   `json:"self"`
	Advertised bool   `json:"advertised"`
	Problem    string `json:"problem,omitempty"`
}

// HealthView is one readiness check.
type HealthView struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// GenerationView is one CA generation.
type GenerationView struct {
	ID          string    `json:"id"`
	Hierarchy   string    `json:"hierarchy"`
	Role        string    `json:"role"`
	State       string    `json:"state"`
	Key         string    `json:"key"`
	KeyHeld     bool      `json:"key_held"`
	Parent      string    `json:"parent,omitempty"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Issued      int       `json:"issued"`
	Fingerprint string    `json:"fingerprint"`
	LifeUsed    float64   `json:"life_used"`
	RolloverDue bool      `json:"rollover_due"`
}

// PendingView is a request waiting for an operator, with what the
// operator needs to decide it.
type PendingView struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Subject   string    `json:"subject"`
	Names     []string  `json:"names"`
	// Client is what the appliance saw of the requester: the certificate
	// it presented (issuer, subject, serial, validity) and why it was not
	// trusted, or that it presented none.
	Client string `json:"client"`
	Remote string `json:"remote"`
	// Key is the request's public key type and size; KeyFingerprint the
	// SHA-256 of its SubjectPublicKeyInfo, to compare with the device's.
	Key            string `json:"key"`
	KeyFingerprint string `json:"key_fingerprint"`
	// Holder is the identity the names will be bound to; Conflicts the
	// names others hold, which an approval moves to Holder.
	Holder    string         `json:"holder"`
	Conflicts []ConflictView `json:"conflicts"`
}

// ConflictView is a name a request asks for that another holds.
type ConflictView struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
}

// CertificateRow is a certificate in a list.
type CertificateRow struct {
	Serial   string    `json:"serial"`
	Status   string    `json:"status"`
	Issuer   string    `json:"issuer"`
	Key      string    `json:"key"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	Names    []string  `json:"names"`
	Identity string    `json:"identity"`
}

// CertificateSearch is the certificates page's query; every field set
// must match. Name ending in "*" is a prefix.
type CertificateSearch struct {
	Name     string `json:"name"`
	Serial   string `json:"serial"`
	Identity string `json:"identity"`
	Issuer   string `json:"issuer"`
	Status   string `json:"status"`
	// Before is the Next of the previous page.
	Before string `json:"before"`
	Limit  int    `json:"limit"`
}

// CertificateList is a page of certificates; Next, when set, is the
// Before of the following page.
type CertificateList struct {
	Certificates []CertificateRow `json:"certificates"`
	Next         string           `json:"next,omitempty"`
}

// CertificateView is a certificate's detail.
type CertificateView struct {
	Serial    string     `json:"serial"`
	Status    string     `json:"status"` // valid, revoked or expired
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Issuer    string     `json:"issuer"`
	Subject   string     `json:"subject"`
	Names     []string   `json:"names"`
	Key       string     `json:"key"`
	NotBefore time.Time  `json:"not_before"`
	NotAfter  time.Time  `json:"not_after"`
	IssuedAt  time.Time  `json:"issued_at"`
	Identity  string     `json:"identity"`
	Holder    string     `json:"holder"`
	Profile   string     `json:"profile"`
	// OCSP is what the appliance's OCSP responder answers for it now.
	OCSP *OCSPView `json:"ocsp,omitempty"`
	PEM  string    `json:"pem"`
	// ChainPEM is the certificate, its issuer and the issuer's chain up
	// to the root.
	ChainPEM string `json:"chain_pem"`
}

// OCSPView is an OCSP response's content.
type OCSPView struct {
	Status     string    `json:"status"` // good, revoked, unknown
	Reason     string    `json:"reason,omitempty"`
	ProducedAt time.Time `json:"produced_at"`
	NextUpdate time.Time `json:"next_update"`
	Error      string    `json:"error,omitempty"`
}

// CAView is the certificate authority.
type CAView struct {
	Hierarchies []HierarchyView `json:"hierarchies"`
	CRLs        []CRLView       `json:"crls"`
}

// HierarchyView is one hierarchy (ECDSA or RSA) and its generations.
type HierarchyView struct {
	Name        string           `json:"name"`
	Generations []GenerationView `json:"generations"`
}

// CRLView is the CRL published for an issuer.
type CRLView struct {
	Issuer     string    `json:"issuer"`
	Number     int64     `json:"number"`
	Entries    int       `json:"entries"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	// Stale: past half its validity, when the appliance builds the next.
	Stale bool   `json:"stale"`
	URL   string `json:"url"`
}

// OwnCertView is one of the appliance's own certificates.
type OwnCertView struct {
	Use      string    `json:"use"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// LogView is a logged warning or error, or Count of them in a row.
type LogView struct {
	At        time.Time `json:"at"`
	Level     string    `json:"level"`
	Component string    `json:"component"`
	Message   string    `json:"message"`
	Count     int       `json:"count"`
	// Detail is the record's attributes; the UI shows it to admins only.
	Detail string `json:"detail,omitempty"`
}

// RolloverPlan is what a rollover would do.
type RolloverPlan struct {
	Hierarchy string `json:"hierarchy"`
	Kind      string `json:"kind"`
	// From is the active generation the rollover replaces.
	From  string   `json:"from"`
	Steps []string `json:"steps"`
	// Possible is false when the rollover cannot be made here; Why says
	// why and what to do instead.
	Possible bool   `json:"possible"`
	Why      string `json:"why,omitempty"`
}

// ConfigView is what the config page shows.
type ConfigView struct {
	Source string `json:"source"`
	// YAML is the running configuration with secrets redacted.
	YAML       string    `json:"yaml"`
	ReloadOK   bool      `json:"last_reload_ok"`
	ReloadAt   time.Time `json:"last_reload_at"`
	ReloadErr  string    `json:"last_reload_error,omitempty"`
	Reloadable bool      `json:"reloadable"`
}
