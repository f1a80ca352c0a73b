// Package store defines how the authority's records are kept: issued
// certificates, CA key generations, pending enrollment requests, CRL
// numbers and a change feed. SQLite is the default backend; the Store
// interface is what a shared PostgreSQL backend implements too.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"
)

var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrKeyReused is returned by PutCertificate when the public key was
	// already certified: devices must use a new key pair for every CSR.
	ErrKeyReused = errors.New("public key already certified")
	// ErrAlreadyRevoked is returned when revoking a revoked certificate.
	ErrAlreadyRevoked = errors.New("certificate already revoked")
	// ErrConflict is returned when a state change is not allowed from the
	// record's current state.
	ErrConflict = errors.New("conflicting state")
)

// Certificate is an issued certificate and its status.
type Certificate struct {
	Serial    *big.Int
	IssuerID  string // the issuing generation
	Subject   string
	SANs      []string
	KeyType   string // "ECDSA P-256", "RSA 2048", ...
	SPKIHash  []byte // SHA-256 of the SubjectPublicKeyInfo
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	// Identity describes who asked for the certificate.
	Identity string
	// Profile is what the certificate is for: "leaf", "server", "ocsp".
	Profile string
	DER     []byte
	// Holder is the identity the certificate's names are bound to, which
	// a renewal with this certificate carries over ("" for none).
	Holder string
	// Renews is the serial of the certificate renewed with the same key
	// (a renewal RFC 7030 4.2.2 allows); only such a certificate may
	// repeat a public key. nil for every other certificate.
	Renews *big.Int
	// Bind, when set on PutCertificate, binds SANs to Holder in the
	// commit that stores the certificate (not stored itself).
	Bind *Binding

	Revoked   bool
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason
}

// GenerationState is the life-cycle state of a CA key generation.
type GenerationState string

const (
	// StateActive generations issue new certificates.
	StateActive GenerationState = "active"
	// StateRetiring generations issue nothing new but still sign CRLs and
	// OCSP answers for what they issued.
	StateRetiring GenerationState = "retiring"
	// StateRetired generations have nothing valid left.
	StateRetired GenerationState = "retired"
	// StateNext generations are published (a new root and its
	// intermediate during a root rollover's overlap) but issue nothing
	// until ActiveFrom.
	StateNext GenerationState = "next"
)

// Generation is one CA certificate and key of a hierarchy.
type Generation struct {
	ID        string // e.g. "ecdsa-int-1"
	Hierarchy string // "ecdsa" or "rsa"
	Role      string // "root" or "intermediate"
	Seq       int
	ParentID  string // the generation that signed it; empty for a root
	State     GenerationState
	CertDER   []byte
	KeyFile   string // relative to the data dir; empty when the key is not held
	CreatedAt time.Time
	// ActiveFrom is when a StateNext generation becomes active.
	ActiveFrom time.Time
}

// PendingState is the state of an enrollment request awaiting an operator.
type PendingState string

const (
	PendingWaiting  PendingState = "pending"
	PendingApproved PendingState = "approved"
	PendingDenied   PendingState = "denied"
	PendingIssued   PendingState = "issued"
	PendingExpired  PendingState = "expired"
)

// Pending is an enrollment request waiting for manual approval.
type Pending struct {
	ID        string
	Operation string // simpleenroll, simplereenroll, serverkeygen
	Label     string
	CSR       []byte // DER
	SPKIHash  []byte
	Subject   string
	SANs      []string
	// Client describes the requester for the operator: the presented
	// certificate (if any), why it was not trusted, the remote address.
	Client string
	// Holder is the identity the names will be bound to, as it was when
	// the request was queued.
	Holder string
	// Conflicts are the names other identities held when the request was
	// queued, as "name\tholder": what the operator is shown, and all an
	// approval may take over.
	Conflicts []string
	// Remote is the client's IP address, for requests deny --all-from.
	Remote    string
	State     PendingState
	CreatedAt time.Time
	ExpiresAt time.Time
	DecidedAt time.Time
	DecidedBy string
	Serial    *big.Int // set once issued
}

// Binding says how PutCertificate binds a certificate's names to its
// holder: a name bound to another holder whose binding has not lapsed
// refuses the certificate with a *NameBoundError, unless TakeOver names
// that holder for that name.
type Binding struct {
	// Lapsed: a binding whose holder's certificates for the name all
	// expired before this time is free (now less the grace).
	Lapsed time.Time
	// TakeOver maps names to the holders they may be moved from (an
	// operator's decision, with the conflict shown), with an audit record.
	TakeOver map[string]string
	// Actor is who decided a take-over, for the audit record.
	Actor string
}

// StaticCRL is a CRL signed away from the appliance, for an issuer.
type StaticCRL struct {
	IssuerID   string
	Number     int64
	DER        []byte
	NextUpdate time.Time
}

// NameBoundError is a certificate refused because another identity
// holds one of its names.
type NameBoundError struct {
	Name, Holder string
}

func (e *NameBoundError) Error() string {
	return fmt.Sprintf("name %s is bound to %s", e.Name, e.Holder)
}

// NameBinding is a name and the identity that holds it.
type NameBinding struct {
	Name   string
	Holder string
	Since  time.Time
	// Expires is the latest notAfter of the holder's certificates that
	// carry the name; the binding lapses a grace period after it.
	Expires time.Time
	// Serial is the newest certificate that carried the name.
	Serial *big.Int
}

// BindingFilter selects name bindings: by exact name, by a substring of
// the holder, or all when both are empty.
type BindingFilter struct {
	Name   string
	Holder string
	Limit  int
}

// AuditRecord is one operator action.
type AuditRecord struct {
	ID     int64
	At     time.Time
	Actor  string
	Action string
	Target string
	Detail string
	// Remote is where the action came from: a web client's address, or
	// "cli" for the command line on the appliance.
	Remote string
}

// Event is a change that other processes sharing the store react to.
type Event struct {
	ID   int64
	Kind string // EventRevoked, EventPendingDecided, EventGenerations
	Ref  string
	At   time.Time
}

// Event kinds.
const (
	EventRevoked        = "revoked"
	EventPendingDecided = "pending_decided"
	EventGenerations    = "generations"
	EventNameReleased   = "name_released"
	// EventIssued and EventRefused count, in the running appliance's
	// metrics, what another process (the CLI) issued or refused: Ref
	// is "hierarchy/profile" or the refusal code.
	EventIssued  = "issued"
	EventRefused = "refused"
)

// ListOptions filters ListCertificates.
type ListOptions struct {
	IssuerID string
	// Revoked filters by status when not nil.
	Revoked *bool
	// Limit caps the number of results (0: no limit).
	Limit int
}

// Revocation is one entry of a CRL.
type Revocation struct {
	Serial    *big.Int
	RevokedAt time.Time
	Reason    int
}

// Store keeps everything the authority must not lose. Every write is
// durable when the call returns.
type Store interface {
	// PutCertificate records a newly issued certificate. ErrKeyReused
	// when the public key was certified before.
	PutCertificate(ctx context.Context, c *Certificate) error
	// Certificate finds one certificate by serial.
	Certificate(ctx context.Context, serial *big.Int) (*Certificate, error)
	// CertificateByKey finds the newest certificate of a public key
	// (SHA-256 of its SPKI); ErrNotFound when none.
	CertificateByKey(ctx context.Context, spkiHash []byte) (*Certificate, error)
	// CertificateStatus is the fast path for OCSP: status fields only
	// (DER and names are left empty).
	CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*Certificate, error)
	// ListCertificates lists certificates, newest first.
	ListCertificates(ctx context.Context, opt ListOptions) ([]*Certificate, error)
	// SearchCertificates is the operator's search, a page at a time.
	SearchCertificates(ctx context.Context, q CertificateQuery) (*CertificatePage, error)
	// CountIssuedSince counts the certificates issued from since on.
	CountIssuedSince(ctx context.Context, since time.Time) (int, error)
	// CountCertificates counts certificates by issuer.
	CountCertificates(ctx context.Context) (map[string]int, error)
	// KeyUsed reports whether a public key (SHA-256 of its SPKI) was
	// certified before.
	KeyUsed(ctx context.Context, spkiHash []byte) (bool, error)
	// Revoke marks a certificate revoked and records an EventRevoked.
	Revoke(ctx context.Context, serial *big.Int, at time.Time, reason int) (*Certificate, error)
	// Revocations calls fn for every revoked certificate of the issuer,
	// in serial order.
	Revocations(ctx context.Context, issuerID string, fn func(Revocation) error) error
	// NextCRLNumber returns a CRL number greater than any returned before
	// for that issuer.
	NextCRLNumber(ctx context.Context, issuerID string) (int64, error)

	// PutGeneration records a new CA generation.
	PutGeneration(ctx context.Context, g *Generation) error
	// Generations lists every generation, oldest first.
	Generations(ctx context.Context) ([]*Generation, error)
	// SetGenerationState changes a generation's state.
	SetGenerationState(ctx context.Context, id string, s GenerationState) error
	// RollGeneration records next and moves generation old to oldState in
	// one transaction, with one EventGenerations: a rollover is seen
	// whole or not at all. ErrConflict when old is not active any more
	// (another process rolled it over first). revoked, when not nil, is
	// the old generation's CA certificate as its root revokes it (key
	// compromise), recorded revoked in the same transaction.
	RollGeneration(ctx context.Context, next *Generation, old string, oldState GenerationState, revoked *Certificate) error
	// PutGenerations records several generations in one transaction,
	// with an EventGenerations each (a root rollover's new root, link
	// certificates and intermediate).
	PutGenerations(ctx context.Context, gens ...*Generation) error
	// ActivateHierarchy makes the StateNext generations of a hierarchy
	// active and its active ones retiring, in one transaction: the end of
	// a root rollover's overlap. ErrConflict when none is next.
	ActivateHierarchy(ctx context.Context, hierarchy string, at time.Time) error
	// ForgetKey records that a generation's key is no longer held here
	// (a root taken offline), with an EventGenerations; crl, when not
	// nil, is kept as the root's CRL in the same transaction.
	ForgetKey(ctx context.Context, id string, at time.Time, crl *StaticCRL) error
	// PutStaticCRL keeps a CRL signed away from the appliance (an offline
	// root's) for it to publish; ErrConflict unless its number is greater
	// than the one kept.
	PutStaticCRL(ctx context.Context, crl *StaticCRL) error
	// StaticCRL returns the CRL kept for an issuer (ErrNotFound when none).
	StaticCRL(ctx context.Context, issuerID string) (der []byte, number int64, nextUpdate time.Time, err error)
	// DropGenerationKey records that a retired generation's key is gone.
	// ErrConflict when the generation is not retired.
	DropGenerationKey(ctx context.Context, id string, at time.Time) error
	// ValidCounts counts, per issuer, the certificates valid at now (not
	// expired, not revoked), OCSP responder certificates aside. It reads
	// the whole table: call it seldom.
	ValidCounts(ctx context.Context, now time.Time) (map[string]int, error)
	// LatestNotAfter returns the latest notAfter of the certificates an
	// issuer signed, its OCSP responder certificates aside (the zero time
	// when none).
	LatestNotAfter(ctx context.Context, issuerID string) (time.Time, error)

	// PutPending records a request awaiting approval.
	PutPending(ctx context.Context, p *Pending) error
	// PendingByID finds a request by ID.
	PendingByID(ctx context.Context, id string) (*Pending, error)
	// PendingByKey finds the newest request for a public key.
	PendingByKey(ctx context.Context, spkiHash []byte) (*Pending, error)
	// CountPending counts the requests in a state.
	CountPending(ctx context.Context, state PendingState) (int, error)
	// ListPending lists requests in a state ("" for all), newest first.
	ListPending(ctx context.Context, state PendingState) ([]*Pending, error)
	// DecidePending moves a waiting request to approved or denied.
	DecidePending(ctx context.Context, id string, s PendingState, by string, at time.Time) (*Pending, error)
	// SetPendingIssued marks an approved request issued with a serial.
	SetPendingIssued(ctx context.Context, id string, serial *big.Int) error
	// ExpirePending marks waiting requests past their expiry expired and
	// returns how many.
	ExpirePending(ctx context.Context, now time.Time) (int, error)

	// NameBindings lists name bindings, by name.
	NameBindings(ctx context.Context, f BindingFilter) ([]*NameBinding, error)
	// ReleaseName removes a name's binding, records an audit entry for
	// actor and an EventNameReleased, in one transaction. ErrNotFound
	// when the name is not bound.
	ReleaseName(ctx context.Context, name, actor, remote string, at time.Time) (*NameBinding, error)
	// AddAudit records an operator action.
	AddAudit(ctx context.Context, a *AuditRecord) error
	// Audit lists audit records, newest first (limit 0: all).
	Audit(ctx context.Context, limit int) ([]*AuditRecord, error)
	// SearchAudit finds audit records, newest first.
	SearchAudit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error)

	// PutUser creates an operator account (ErrConflict when the name is
	// taken), with its audit record, in one transaction.
	PutUser(ctx context.Context, u *User, audit *AuditRecord) error
	// UpdateUser changes an account's password, role or lockout, with
	// its audit record; a new password or role ends its sessions.
	// ErrLastAdmin when the last admin would lose the role.
	UpdateUser(ctx context.Context, name string, up UserUpdate, at time.Time, audit *AuditRecord) (*User, error)
	// DeleteUser removes an account and its sessions, with its audit
	// record. ErrLastAdmin for the last admin.
	DeleteUser(ctx context.Context, name string, audit *AuditRecord) error
	// User returns an account (ErrNotFound).
	User(ctx context.Context, name string) (*User, error)
	// Users lists the accounts by name.
	Users(ctx context.Context) ([]*User, error)
	// CountUsers counts the accounts.
	CountUsers(ctx context.Context) (int, error)
	// LoginFailed counts a failed sign-in of an account; the
	// lockAfter-th in a row locks it for lockFor (audited).
	LoginFailed(ctx context.Context, name string, at time.Time, lockAfter int, lockFor time.Duration, remote string) (*User, error)
	// LoginSucceeded resets an account's failures, replaces its hash
	// when rehash is not empty, and opens sess (when not nil), audited,
	// in one transaction.
	LoginSucceeded(ctx context.Context, name string, at time.Time, rehash string, sess *Session) error
	// Session finds a session by its token's hash (ErrNotFound).
	Session(ctx context.Context, tokenHash []byte) (*Session, error)
	// TouchSession records a session's use.
	TouchSession(ctx context.Context, tokenHash []byte, at time.Time) error
	// DeleteSession ends a session, with its audit record when not nil.
	DeleteSession(ctx context.Context, tokenHash []byte, audit *AuditRecord) error
	// ExpireSessions ends the sessions idle since idleBefore or opened
	// before createdBefore, and returns how many.
	ExpireSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error)

	// AddEvent records an event for the processes sharing the store.
	AddEvent(ctx context.Context, kind, ref string, at time.Time) error
	// LastEvent returns the newest event ID (0 when none).
	LastEvent(ctx context.Context) (int64, error)
	// EventsSince returns events with an ID greater than id, oldest first.
	EventsSince(ctx context.Context, id int64) ([]Event, error)

	Close() error
}
