package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres keeps the store in a PostgreSQL database (store.driver
// postgres). It implements Store, and the store's test cases run on it as
// on SQLite. Sharing the database between appliances needs more (the
// keys' way to the second node, events by LISTEN/NOTIFY, jobs under
// advisory locks). Certificates are stored by the same group commit as
// on SQLite (groupWriter), a batch in one transaction (insertBatch).
type Postgres struct {
	*groupWriter
	pool *pgxpool.Pool
}

// pgMigrations are the schema's versions. A database newer than this
// program is refused.
var pgMigrations = []string{
	`CREATE TABLE certificates (
		id          bigserial PRIMARY KEY,
		serial      text NOT NULL UNIQUE,
		issuer_id   text NOT NULL,
		subject     text NOT NULL,
		sans        text NOT NULL,
		key_type    text NOT NULL,
		spki_sha256 bytea NOT NULL,
		not_before  bigint NOT NULL,
		not_after   bigint NOT NULL,
		issued_at   bigint NOT NULL,
		identity    text NOT NULL,
		profile     text NOT NULL,
		der         bytea NOT NULL,
		revoked     boolean NOT NULL DEFAULT false,
		revoked_at  bigint,
		reason      integer,
		holder      text NOT NULL DEFAULT '',
		renews      text
	);
	CREATE UNIQUE INDEX certificates_key ON certificates (spki_sha256) WHERE renews IS NULL;
	CREATE INDEX certificates_key_renewals ON certificates (spki_sha256) WHERE renews IS NOT NULL;
	CREATE INDEX certificates_revoked ON certificates (issuer_id, serial) WHERE revoked;
	CREATE INDEX certificates_identity ON certificates (identity, id);
	CREATE INDEX certificates_issuer ON certificates (issuer_id, id);
	CREATE INDEX certificates_issued ON certificates (issued_at);
	CREATE INDEX certificates_not_after ON certificates (not_after, id);
	CREATE TABLE certificate_names (
		name text COLLATE "C" NOT NULL,
		cert bigint NOT NULL REFERENCES certificates (id),
		PRIMARY KEY (name, cert)
	);
	CREATE TABLE certificate_counts (
		issuer_id text PRIMARY KEY,
		n         bigint NOT NULL
	);
	CREATE TABLE crl_numbers (
		issuer_id text PRIMARY KEY,
		number    bigint NOT NULL
	);
	CREATE TABLE name_bindings (
		name    text COLLATE "C" PRIMARY KEY,
		holder  text NOT NULL,
		since   bigint NOT NULL,
		expires bigint NOT NULL,
		serial  text NOT NULL
	);
	CREATE INDEX name_bindings_holder ON name_bindings (holder);
	CREATE TABLE audit (
		id     bigserial PRIMARY KEY,
		at     bigint NOT NULL,
		actor  text NOT NULL,
		action text NOT NULL,
		target text NOT NULL,
		detail text NOT NULL,
		remote text NOT NULL DEFAULT ''
	);
	CREATE TABLE events (
		id   bigserial PRIMARY KEY,
		kind text NOT NULL,
		ref  text NOT NULL,
		at   bigint NOT NULL
	);
	CREATE TABLE generations (
		n           bigserial,
		id          text PRIMARY KEY,
		hierarchy   text NOT NULL,
		role        text NOT NULL,
		seq         integer NOT NULL,
		parent_id   text NOT NULL,
		state       text NOT NULL,
		cert_der    bytea NOT NULL,
		key_file    text NOT NULL,
		created_at  bigint NOT NULL,
		active_from bigint NOT NULL DEFAULT 0
	);
	CREATE TABLE pending (
		n           bigserial,
		id          text PRIMARY KEY,
		operation   text NOT NULL,
		label       text NOT NULL,
		csr         bytea NOT NULL,
		spki_sha256 bytea NOT NULL,
		subject     text NOT NULL,
		sans        text NOT NULL,
		client      text NOT NULL,
		state       text NOT NULL,
		created_at  bigint NOT NULL,
		expires_at  bigint NOT NULL,
		decided_at  bigint,
		decided_by  text NOT NULL DEFAULT '',
		serial      text,
		remote      text NOT NULL DEFAULT '',
		holder      text NOT NULL DEFAULT '',
		conflicts   text NOT NULL DEFAULT ''
	);
	CREATE INDEX pending_key ON pending (spki_sha256, n);
	CREATE INDEX pending_state ON pending (state);
	CREATE TABLE users (
		name         text COLLATE "C" PRIMARY KEY,
		role         text NOT NULL,
		password     text NOT NULL,
		created_at   bigint NOT NULL,
		updated_at   bigint NOT NULL,
		failures     integer NOT NULL,
		locked_until bigint NOT NULL,
		last_login   bigint NOT NULL
	);
	CREATE TABLE sessions (
		token_hash bytea PRIMARY KEY,
		username   text NOT NULL,
		csrf       text NOT NULL,
		created_at bigint NOT NULL,
		last_seen  bigint NOT NULL,
		remote     text NOT NULL
	);
	CREATE INDEX sessions_user ON sessions (username);
	CREATE INDEX audit_actor ON audit (actor);
	CREATE TABLE static_crls (
		issuer_id   text PRIMARY KEY,
		number      bigint NOT NULL,
		der         bytea NOT NULL,
		next_update bigint NOT NULL
	);`,
	// 2: the appliances sharing the database, as they register
	// themselves (see Heartbeat).
	`CREATE TABLE nodes (
		hostname  text COLLATE "C" PRIMARY KEY,
		info      text NOT NULL,
		last_seen timestamptz NOT NULL
	);`,
	// 3: the CA keys, sealed under the appliances' key-encryption key,
	// for the appliances sharing the database (see PutSealedKey), and
	// that key's fingerprint, so that an appliance holding another one
	// knows it.
	`CREATE TABLE sealed_keys (
		id          text NOT NULL,
		spki_sha256 bytea NOT NULL,
		sealed      bytea NOT NULL CHECK (length(sealed) <= 16384),
		PRIMARY KEY (id, spki_sha256)
	);
	CREATE TABLE kek (
		one         boolean PRIMARY KEY DEFAULT true CHECK (one),
		fingerprint bytea NOT NULL
	);`,
}

// pgMigrationLock is the advisory lock that makes appliances starting
// together migrate one at a time; pgNameLock the key space of the locks
// on names being bound.
const (
	pgMigrationLock = 0x6e6d6f73 // "nmos"
	pgNameLock      = 0x6e616d65 // "name"
	pgEventLock     = 0x65766e74 // "evnt"
	pgJobLock       = 0x6a6f6273 // "jobs"
	pgUsersLock     = 0x75736572 // "user"
	// pgEventChannel is the NOTIFY channel of new events.
	pgEventChannel = "nmos_certs_events"
)

// OpenPostgres connects to the database of dsn and brings its schema to
// this program's version.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message would repeat the DSN, password and all.
		return nil, errors.New("store: the PostgreSQL DSN does not parse (see the PostgreSQL documentation's connection URI or key=value forms)")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	p := &Postgres{pool: pool}
	p.groupWriter = newGroupWriter(p.insertBatch)
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: PostgreSQL: %w", err)
	}
	p.start()
	return p, nil
}

// Close closes the connections.
func (p *Postgres) Close() error {
	p.stop()
	p.pool.Close()
	return nil
}

func (p *Postgres) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if v > len(pgMigrations) {
			return fmt.Errorf("database schema version %d is newer than this program knows (%d)", v, len(pgMigrations))
		}
		for i := v; i < len(pgMigrations); i++ {
			if _, err := tx.Exec(ctx, pgMigrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE schema_version SET version = $1`, len(pgMigrations))
		return err
	})
}

// pgUnique says whether err is a unique violation, and of which
// constraint.
func pgUnique(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return pe.ConstraintName, true
	}
	return "", false
}

// insertBatch stores reqs in one transaction, for the group-commit
// writer (see groupWriter.PutCertificate), in four round trips whatever
// the batch's size: BEGIN; the name locks, the bindings of the batch's
// names and the keys already certified, read in one pipeline; every
// INSERT and binding of the batch in a second; COMMIT, after which the
// certificates are durable (synchronous_commit as the server has it;
// see docs/ha.md). A certificate a row before it in the batch makes
// impossible (the same key, a name it bound) is refused as if the two
// had come one after the other.
//
// The bindings read are locked until the commit: the names by advisory
// locks taken in the order of their keys in one statement (a name not
// bound yet has no row to lock), the bound ones by FOR UPDATE, so that
// two appliances cannot both give a name away and two batches never wait
// on each other. A key certified meanwhile by another appliance makes an
// INSERT fail; the batch is then tried again one certificate at a time,
// and that one is refused ErrKeyReused. So does any error of a row's own
// (a data exception or a constraint, PostgreSQL's classes 22 and 23). A
// deadlock or serialization failure, which PostgreSQL resolves by
// aborting one transaction, tries the whole batch again; anything else (a
// connection lost, the database too slow for pgBatchTimeout) fails the
// batch, none of it stored, and no caller waits on another attempt.
func (p *Postgres) insertBatch(ctx context.Context, reqs []*putRequest) ([]error, error) {
	// The writer serves every enrollment: a database that stops
	// answering fails the batch rather than holding it for ever.
	ctx, cancel := context.WithTimeout(ctx, pgBatchTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		errs, err := p.tryBatch(ctx, reqs)
		if err == nil {
			return errs, nil
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return nil, err
		}
		switch {
		case (pe.Code == "40P01" || pe.Code == "40001") && attempt < 3:
			continue
		case len(reqs) == 1 && pe.Code == "23505":
			c := reqs[0].cert
			if pe.ConstraintName == "certificates_key" {
				return []error{ErrKeyReused}, nil
			}
			return []error{fmt.Errorf("store certificate %s: serial already used: %w", SerialKey(c.Serial), ErrConflict)}, nil
		case strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"):
			return nil, &rowError{err}
		}
		return nil, err
	}
}

func (p *Postgres) tryBatch(ctx context.Context, reqs []*putRequest) ([]error, error) {
	var names []string
	var keys [][]byte
	for _, r := range reqs {
		if r.cert.Bind != nil {
			names = append(names, r.cert.SANs...)
		}
		if r.cert.Renews == nil {
			keys = append(keys, r.cert.SPKIHash)
		}
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) // after Commit, does nothing
	type bound struct {
		holder  string
		expires int64
	}
	bindings := map[string]bound{}
	used := map[string]bool{}
	read := &pgx.Batch{}
	if len(names) > 0 {
		read.Queue(`SELECT pg_advisory_xact_lock($1, h)
			FROM (SELECT DISTINCT hashtext(n) AS h FROM unnest($2::text[]) AS n ORDER BY h) AS keys`, pgNameLock, names)
		read.Queue(`SELECT name, holder, expires FROM name_bindings WHERE name = ANY($1) FOR UPDATE`, names).Query(func(rows pgx.Rows) error {
			var n string
			var b bound
			_, err := pgx.ForEachRow(rows, []any{&n, &b.holder, &b.expires}, func() error {
				bindings[n] = b
				return nil
			})
			return err
		})
	}
	if len(keys) > 0 {
		read.Queue(`SELECT spki_sha256 FROM certificates WHERE spki_sha256 = ANY($1) AND renews IS NULL`, keys).Query(func(rows pgx.Rows) error {
			var k []byte
			_, err := pgx.ForEachRow(rows, []any{&k}, func() error {
				used[string(k)] = true
				return nil
			})
			return err
		})
	}
	if read.Len() > 0 {
		if err := tx.SendBatch(ctx, read).Close(); err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(reqs))
	write := &pgx.Batch{}
	counts := map[string]int{}
	serials := map[string]bool{}
	for i, r := range reqs {
		c := r.cert
		if c.Renews == nil && used[string(c.SPKIHash)] {
			errs[i] = ErrKeyReused
			continue
		}
		serial := SerialKey(c.Serial)
		if serials[serial] {
			errs[i] = fmt.Errorf("store certificate %s: serial already used: %w", serial, ErrConflict)
			continue
		}
		var taken []*NameBinding
		if c.Bind != nil {
			for _, n := range c.SANs {
				b, ok := bindings[n]
				if !ok {
					continue
				}
				t, err := judgeBinding(c, n, b.holder, b.expires)
				if err != nil {
					errs[i] = err
					break
				}
				if t != nil {
					taken = append(taken, t)
				}
			}
			if errs[i] != nil {
				continue
			}
		}
		if c.Renews == nil {
			used[string(c.SPKIHash)] = true
		}
		serials[serial] = true
		var renews any
		if c.Renews != nil {
			renews = SerialKey(c.Renews)
		}
		norm := make([]string, len(c.SANs))
		for j, n := range c.SANs {
			norm[j] = normName(n)
		}
		write.Queue(`WITH c AS (INSERT INTO certificates
			(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, holder, renews)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id)
			INSERT INTO certificate_names (name, cert) SELECT DISTINCT n, c.id FROM c, unnest($15::text[]) AS n ON CONFLICT DO NOTHING`,
			serial, c.IssuerID, c.Subject, joinNames(c.SANs), c.KeyType, c.SPKIHash,
			unix(c.NotBefore), unix(c.NotAfter), unix(c.IssuedAt), c.Identity, c.Profile, c.DER, c.Holder, renews, norm)
		counts[c.IssuerID]++
		if c.Bind == nil {
			continue
		}
		for _, n := range c.SANs {
			write.Queue(pgBindSQL, n, c.Holder, unix(c.IssuedAt), unix(c.NotAfter), serial)
			b, ok := bindings[n]
			if ok && b.holder == c.Holder {
				b.expires = max(b.expires, unix(c.NotAfter))
			} else {
				b = bound{holder: c.Holder, expires: unix(c.NotAfter)}
			}
			bindings[n] = b
		}
		for _, b := range taken {
			actor, detail := transferAudit(c, b)
			write.Queue(`INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, 'name_transferred', $3, $4)`,
				unix(c.IssuedAt), actor, b.Name, detail)
		}
	}
	if len(counts) == 0 {
		return errs, nil // nothing to store; the deferred ROLLBACK ends it
	}
	// In the order of the issuers: two appliances' batches lock the
	// counts' rows in the same order.
	for _, issuer := range slices.Sorted(maps.Keys(counts)) {
		write.Queue(`INSERT INTO certificate_counts (issuer_id, n) VALUES ($1, $2)
			ON CONFLICT (issuer_id) DO UPDATE SET n = certificate_counts.n + excluded.n`, issuer, counts[issuer])
	}
	if err := tx.SendBatch(ctx, write).Close(); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return errs, nil
}

// pgBatchTimeout bounds one batch's transaction.
const pgBatchTimeout = 30 * time.Second

// pgBindSQL binds a name to a holder, as bindSQL on SQLite: the holder's
// own binding keeps its start and the later expiry.
const pgBindSQL = `INSERT INTO name_bindings (name, holder, since, expires, serial) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (name) DO UPDATE SET
		since = CASE WHEN name_bindings.holder = excluded.holder THEN name_bindings.since ELSE excluded.since END,
		expires = CASE WHEN name_bindings.holder = excluded.holder THEN greatest(name_bindings.expires, excluded.expires) ELSE excluded.expires END,
		holder = excluded.holder, serial = excluded.serial`

// Certificate finds one certificate by serial (ErrNotFound).
func (p *Postgres) Certificate(ctx context.Context, serial *big.Int) (*Certificate, error) {
	c, err := scanCert(p.pool.QueryRow(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = $1`, SerialKey(serial)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

// CertificateByKey implements Store.
func (p *Postgres) CertificateByKey(ctx context.Context, spkiHash []byte) (*Certificate, error) {
	c, err := scanCert(p.pool.QueryRow(ctx, `SELECT `+certCols+` FROM certificates WHERE spki_sha256 = $1 ORDER BY id DESC LIMIT 1`, spkiHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

// CertificateStatus is the OCSP responder's lookup: status fields only.
func (p *Postgres) CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*Certificate, error) {
	c := Certificate{Serial: serial, IssuerID: issuerID}
	var na int64
	var revokedAt, reason *int64
	err := p.pool.QueryRow(ctx, `SELECT not_after, revoked, revoked_at, reason FROM certificates WHERE serial = $1 AND issuer_id = $2`,
		SerialKey(serial), issuerID).Scan(&na, &c.Revoked, &revokedAt, &reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.NotAfter = fromUnix(na)
	if revokedAt != nil {
		c.RevokedAt = fromUnix(*revokedAt)
	}
	if reason != nil {
		c.Reason = int(*reason)
	}
	return &c, nil
}

// ListCertificates lists certificates, newest first.
func (p *Postgres) ListCertificates(ctx context.Context, opt ListOptions) ([]*Certificate, error) {
	q := `SELECT ` + certCols + ` FROM certificates WHERE true`
	var args []any
	if opt.IssuerID != "" {
		args = append(args, opt.IssuerID)
		q += fmt.Sprintf(` AND issuer_id = $%d`, len(args))
	}
	if opt.Revoked != nil {
		args = append(args, *opt.Revoked)
		q += fmt.Sprintf(` AND revoked = $%d`, len(args))
	}
	q += ` ORDER BY id DESC`
	if opt.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, opt.Limit)
	}
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanCerts(rows)
}

// CountCertificates counts certificates by issuer, from counts kept in
// the transactions that add them.
func (p *Postgres) CountCertificates(ctx context.Context) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `SELECT issuer_id, n FROM certificate_counts WHERE n > 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanCounts(rows)
}

// KeyUsed says whether a public key was certified before.
func (p *Postgres) KeyUsed(ctx context.Context, spkiHash []byte) (bool, error) {
	var used bool
	err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM certificates WHERE spki_sha256 = $1 AND renews IS NULL)`, spkiHash).Scan(&used)
	return used, err
}

// Revoke marks a certificate revoked, with an EventRevoked; on
// keyCompromise every other certificate of its key too; with the audit
// record of ctx (WithAudit), in one transaction.
func (p *Postgres) Revoke(ctx context.Context, serial *big.Int, at time.Time, reason int) (*Certificate, error) {
	var c *Certificate
	err := p.eventTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, err = scanCert(tx.QueryRow(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = $1 FOR UPDATE`, SerialKey(serial)))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if c.Revoked {
			return ErrAlreadyRevoked
		}
		revoke := func(serial, issuer string) error {
			if _, err := tx.Exec(ctx, `UPDATE certificates SET revoked = true, revoked_at = $1, reason = $2 WHERE serial = $3`, unix(at), reason, serial); err != nil {
				return err
			}
			return pgAddEvent(ctx, tx, EventRevoked, issuer+"/"+serial, at)
		}
		if err := revoke(SerialKey(serial), c.IssuerID); err != nil {
			return err
		}
		var also []string
		if reason == ReasonKeyCompromise {
			// The key is compromised, not one certificate: every other
			// certificate of the same key (same-key renewals) goes too.
			rows, err := tx.Query(ctx, `SELECT serial, issuer_id FROM certificates WHERE spki_sha256 = $1 AND NOT revoked ORDER BY id FOR UPDATE`, c.SPKIHash)
			if err != nil {
				return err
			}
			others, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
				var o [2]string
				err := r.Scan(&o[0], &o[1])
				return o, err
			})
			if err != nil {
				return err
			}
			for _, o := range others {
				if err := revoke(o[0], o[1]); err != nil {
					return err
				}
				also = append(also, o[0])
			}
		}
		if a := auditFrom(ctx); a != nil {
			rec := *a
			if rec.Target == "" {
				rec.Target = SerialKey(serial)
			}
			rec.Detail = joinDetail(rec.Detail, "names "+strings.Join(c.SANs, ", "))
			if len(also) > 0 {
				rec.Detail = joinDetail(rec.Detail, "with the same key also revoked: "+strings.Join(also, ", "))
			}
			return pgAddAudit(ctx, tx, &rec)
		}
		return nil
	})
	if errors.Is(err, ErrAlreadyRevoked) {
		return c, err
	}
	if err != nil {
		return nil, err
	}
	c.Revoked, c.RevokedAt, c.Reason = true, fromUnix(unix(at)), reason
	return c, nil
}

// Revocations calls fn for every revoked certificate of the issuer, in
// serial order.
func (p *Postgres) Revocations(ctx context.Context, issuerID string, fn func(Revocation) error) error {
	rows, err := p.pool.Query(ctx, `SELECT serial, revoked_at, reason FROM certificates WHERE issuer_id = $1 AND revoked ORDER BY serial`, issuerID)
	if err != nil {
		return err
	}
	defer rows.Close()
	return scanRevocations(rows, fn)
}

// NextCRLNumber returns a CRL number greater than any returned before
// for the issuer, by any appliance sharing the database: the row's
// update serializes them.
func (p *Postgres) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, `INSERT INTO crl_numbers (issuer_id, number) VALUES ($1, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number`, issuerID).Scan(&n)
	return n, err
}

// NameBindings lists name bindings, by name.
func (p *Postgres) NameBindings(ctx context.Context, f BindingFilter) ([]*NameBinding, error) {
	q := `SELECT ` + bindingCols + ` FROM name_bindings WHERE true`
	var args []any
	if f.Name != "" {
		args = append(args, f.Name)
		q += fmt.Sprintf(` AND name = $%d`, len(args))
	}
	if f.Holder != "" {
		args = append(args, f.Holder)
		q += fmt.Sprintf(` AND strpos(holder, $%d) > 0`, len(args)) // a part of the holder, as in SQLite
	}
	q += ` ORDER BY name`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanBindings(rows)
}

func pgAddAudit(ctx context.Context, tx pgx.Tx, a *AuditRecord) error {
	_, err := tx.Exec(ctx, `INSERT INTO audit (at, actor, action, target, detail, remote) VALUES ($1, $2, $3, $4, $5, $6)`,
		unix(a.At), a.Actor, a.Action, a.Target, a.Detail, a.Remote)
	return err
}

// AddAudit records an operator action.
func (p *Postgres) AddAudit(ctx context.Context, a *AuditRecord) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return pgAddAudit(ctx, tx, a) })
}

// Audit lists audit records, newest first (limit 0: all).
func (p *Postgres) Audit(ctx context.Context, limit int) ([]*AuditRecord, error) {
	q := `SELECT id, at, actor, action, target, detail, remote FROM audit ORDER BY id DESC`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := p.pool.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAudits(rows)
}

// pgAddEvent records an event in a transaction of eventTx, and tells the
// appliances listening (NOTIFY is delivered when the transaction commits).
func pgAddEvent(ctx context.Context, tx pgx.Tx, kind, ref string, at time.Time) error {
	if _, err := tx.Exec(ctx, `INSERT INTO events (kind, ref, at) VALUES ($1, $2, $3)`, kind, ref, unix(at)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, pgEventChannel)
	return err
}

// AddEvent records an event for the processes sharing the store.
func (p *Postgres) AddEvent(ctx context.Context, kind, ref string, at time.Time) error {
	return p.eventTx(ctx, func(tx pgx.Tx) error { return pgAddEvent(ctx, tx, kind, ref, at) })
}

// LastEvent returns the newest event ID (0 when none).
func (p *Postgres) LastEvent(ctx context.Context) (int64, error) {
	var n *int64
	if err := p.pool.QueryRow(ctx, `SELECT max(id) FROM events`).Scan(&n); err != nil || n == nil {
		return 0, err
	}
	return *n, nil
}

// EventsSince returns events with an ID greater than id, oldest first.
// Events are added under one lock (eventTx), so ids follow commit order.
func (p *Postgres) EventsSince(ctx context.Context, id int64) ([]Event, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, kind, ref, at FROM events WHERE id > $1 ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEvents(rows)
}

// Notifications delivers a value soon after another transaction added
// events (LISTEN on the events' channel), until ctx ends; the appliance
// then reads them at once instead of at its next poll. A lost connection
// is listened on again after a second; polling covers the gap.
func (p *Postgres) Notifications(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			p.listen(ctx, ch)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch
}

func (p *Postgres) listen(ctx context.Context, ch chan<- struct{}) {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return
	}
	// A LISTENing connection does not go back to the pool: it is the
	// listener's until it closes.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+pgEventChannel); err != nil {
		return
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Lead runs fn if no other appliance sharing the database runs the job
// of that name now, and says whether it did. The job's advisory lock is
// held on a connection of its own while fn runs: if this appliance dies,
// PostgreSQL drops the lock with the connection and another takes the
// job over at its next turn.
func (p *Postgres) Lead(ctx context.Context, job string, fn func(context.Context)) (bool, error) {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer pc.Release()
	var got bool
	if err := pc.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, pgJobLock, job).Scan(&got); err != nil {
		return false, err
	}
	if !got {
		return false, nil
	}
	defer func() {
		if _, err := pc.Exec(context.Background(), `SELECT pg_advisory_unlock($1, hashtext($2))`, pgJobLock, job); err != nil {
			pc.Conn().Close(context.Background()) // closing it drops the lock too
		}
	}()
	fn(ctx)
	return true, nil
}
