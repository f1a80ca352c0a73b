package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the default Store: one database file in WAL mode whose
// commits are synced before they return, so a certificate is on disk
// before anyone sees it. Several processes (the appliance and the CLI)
// may open it at once.
//
// Certificates are stored by group commit (see PutCertificate): one
// goroutine owns certificate inserts and commits every certificate handed
// to it while the previous commit was being synced in one transaction, so
// that concurrent enrollments share one sync instead of queueing for one
// each. That goroutine has a connection of its own, on which the WAL is
// synced by walSyncer rather than by SQLite; every other write is
// synchronous=FULL.
type SQLite struct {
	w  *sql.DB    // the writer connection of everything but certificates
	cw *sql.DB    // the certificate writer's connection (synchronous=NORMAL)
	r  *sql.DB    // readers
	ws *walSyncer // syncs the WAL after each certificate commit

	// The certificate writer's statements, prepared once on wc, cw's
	// one connection, which the writer keeps for the store's life: a
	// transaction is BEGIN IMMEDIATE, INSERTs and COMMIT run as prepared
	// statements rather than through sql.Tx, which parses BEGIN and
	// COMMIT again and starts a goroutine for every transaction.
	wc                      *sql.Conn
	begin, commit, rollback *sql.Stmt
	insert, insertName      *sql.Stmt
	keyUsedInTx             *sql.Stmt
	binding, bind, audit    *sql.Stmt
	keyUsed                 *sql.Stmt // KeyUsed's query, prepared on the readers

	*groupWriter // certificates, by group commit
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database at path and applies
// migrations.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	// The database holds no keys, but pending requests and client
	// descriptions are nobody else's business: create it private.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	dsn := func(synchronous string) string {
		q := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + synchronous + ")", "foreign_keys(1)"} {
			q.Add("_pragma", p)
		}
		return "file:" + path + "?" + q.Encode()
	}
	s := &SQLite{ws: newWALSyncer(path)}
	s.groupWriter = newGroupWriter(s.insertBatch)
	fail := func(err error) (*SQLite, error) {
		s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var err error
	if s.w, err = sql.Open("sqlite", dsn("FULL")+"&_txlock=immediate"); err != nil {
		return fail(err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		return fail(fmt.Errorf("migrate: %w", err))
	}
	// The certificate writer's connection stays open for the store's
	// life: walSyncer relies on it to keep the WAL in place.
	if s.cw, err = sql.Open("sqlite", dsn("NORMAL")+"&_txlock=immediate"); err != nil {
		return fail(err)
	}
	s.cw.SetMaxOpenConns(1)
	s.cw.SetMaxIdleConns(1)
	s.cw.SetConnMaxIdleTime(0)
	if s.r, err = sql.Open("sqlite", dsn("FULL")); err != nil {
		return fail(err)
	}
	s.r.SetMaxOpenConns(8)
	// Keep the readers open: a connection closed for being idle is a
	// database to open again (file, WAL index, pragmas, schema).
	s.r.SetMaxIdleConns(8)
	if s.wc, err = s.cw.Conn(ctx); err != nil {
		return fail(err)
	}
	for _, st := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.begin, "BEGIN IMMEDIATE"}, {&s.commit, "COMMIT"}, {&s.rollback, "ROLLBACK"},
		{&s.insert, insertCertSQL}, {&s.insertName, insertNameSQL}, {&s.keyUsedInTx, keyUsedSQL},
		{&s.binding, bindingSQL}, {&s.bind, bindSQL}, {&s.audit, auditSQL},
	} {
		if *st.stmt, err = s.wc.PrepareContext(ctx, st.sql); err != nil {
			return fail(err)
		}
	}
	if s.keyUsed, err = s.r.PrepareContext(ctx, keyUsedSQL); err != nil {
		return fail(err)
	}
	s.start()
	return s, nil
}

// CheckWritable takes the database's write lock and makes a write it then
// rolls back: it fails when the database cannot be written (closed, read
// only, disk full, locked past the busy timeout).
func (s *SQLite) CheckWritable(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = version`); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Close stops the certificate writer, after the batch it is committing,
// and closes the database. PutCertificate calls made after Close fail.
func (s *SQLite) Close() error {
	s.stop()
	var errs []error
	for _, st := range []*sql.Stmt{s.begin, s.commit, s.rollback, s.insert, s.insertName, s.keyUsedInTx, s.binding, s.bind, s.audit, s.keyUsed} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.wc != nil {
		if err := s.wc.Close(); !errors.Is(err, sql.ErrConnDone) {
			errs = append(errs, err) // closed by an earlier Close otherwise
		}
	}
	for _, db := range []*sql.DB{s.cw, s.w, s.r} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(append(errs, s.ws.Close())...)
}

var migrations = []string{
	`CREATE TABLE certificates (
		serial      TEXT PRIMARY KEY,
		issuer_id   TEXT NOT NULL,
		subject     TEXT NOT NULL,
		sans        TEXT NOT NULL,
		key_type    TEXT NOT NULL,
		spki_sha256 BLOB NOT NULL UNIQUE,
		not_before  INTEGER NOT NULL,
		not_after   INTEGER NOT NULL,
		issued_at   INTEGER NOT NULL,
		identity    TEXT NOT NULL,
		profile     TEXT NOT NULL,
		der         BLOB NOT NULL,
		revoked     INTEGER NOT NULL DEFAULT 0,
		revoked_at  INTEGER,
		reason      INTEGER
	);
	CREATE INDEX certificates_revoked ON certificates(issuer_id, serial) WHERE revoked = 1;
	CREATE TABLE generations (
		id         TEXT PRIMARY KEY,
		hierarchy  TEXT NOT NULL,
		role       TEXT NOT NULL,
		seq        INTEGER NOT NULL,
		parent_id  TEXT NOT NULL,
		state      TEXT NOT NULL,
		cert_der   BLOB NOT NULL,
		key_file   TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE pending (
		id          TEXT PRIMARY KEY,
		operation   TEXT NOT NULL,
		label       TEXT NOT NULL,
		csr         BLOB NOT NULL,
		spki_sha256 BLOB NOT NULL,
		subject     TEXT NOT NULL,
		sans        TEXT NOT NULL,
		client      TEXT NOT NULL,
		state       TEXT NOT NULL,
		created_at  INTEGER NOT NULL,
		expires_at  INTEGER NOT NULL,
		decided_at  INTEGER,
		decided_by  TEXT NOT NULL DEFAULT '',
		serial      TEXT
	);
	CREATE INDEX pending_key ON pending(spki_sha256);
	CREATE TABLE crl_numbers (
		issuer_id TEXT PRIMARY KEY,
		number    INTEGER NOT NULL
	);
	CREATE TABLE events (
		id   INTEGER PRIMARY KEY AUTOINCREMENT,
		kind TEXT NOT NULL,
		ref  TEXT NOT NULL,
		at   INTEGER NOT NULL
	);`,
	// Certificates per issuer, kept by triggers in the transaction that
	// changes the table, so that counting (the operator UI's status,
	// every few seconds) does not scan a table of a million rows.
	`CREATE TABLE certificate_counts (
		issuer_id TEXT PRIMARY KEY,
		n         INTEGER NOT NULL
	);
	INSERT INTO certificate_counts (issuer_id, n)
		SELECT issuer_id, count(*) FROM certificates GROUP BY issuer_id;
	CREATE TRIGGER certificates_counted AFTER INSERT ON certificates BEGIN
		INSERT INTO certificate_counts (issuer_id, n) VALUES (NEW.issuer_id, 1)
			ON CONFLICT (issuer_id) DO UPDATE SET n = n + 1;
	END;
	CREATE TRIGGER certificates_uncounted AFTER DELETE ON certificates BEGIN
		UPDATE certificate_counts SET n = n - 1 WHERE issuer_id = OLD.issuer_id;
	END;`,
	// Name bindings, the audit trail, and what a certificate's holder is
	// and which certificate it renews with the same key. The key's unique
	// index leaves out same-key renewals, the only certificates that may
	// repeat a key; SQLite cannot drop a column's UNIQUE, so the table is
	// built again.
	`CREATE TABLE certificates_new (
		serial      TEXT PRIMARY KEY,
		issuer_id   TEXT NOT NULL,
		subject     TEXT NOT NULL,
		sans        TEXT NOT NULL,
		key_type    TEXT NOT NULL,
		spki_sha256 BLOB NOT NULL,
		not_before  INTEGER NOT NULL,
		not_after   INTEGER NOT NULL,
		issued_at   INTEGER NOT NULL,
		identity    TEXT NOT NULL,
		profile     TEXT NOT NULL,
		der         BLOB NOT NULL,
		revoked     INTEGER NOT NULL DEFAULT 0,
		revoked_at  INTEGER,
		reason      INTEGER,
		holder      TEXT NOT NULL DEFAULT '',
		renews      TEXT
	);
	INSERT INTO certificates_new (serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after,
			issued_at, identity, profile, der, revoked, revoked_at, reason)
		SELECT serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after,
			issued_at, identity, profile, der, revoked, revoked_at, reason FROM certificates ORDER BY rowid;
	DROP TABLE certificates;
	ALTER TABLE certificates_new RENAME TO certificates;
	CREATE INDEX certificates_revoked ON certificates(issuer_id, serial) WHERE revoked = 1;
	CREATE UNIQUE INDEX certificates_key ON certificates(spki_sha256) WHERE renews IS NULL;
	CREATE TRIGGER certificates_counted AFTER INSERT ON certificates BEGIN
		INSERT INTO certificate_counts (issuer_id, n) VALUES (NEW.issuer_id, 1)
			ON CONFLICT (issuer_id) DO UPDATE SET n = n + 1;
	END;
	CREATE TRIGGER certificates_uncounted AFTER DELETE ON certificates BEGIN
		UPDATE certificate_counts SET n = n - 1 WHERE issuer_id = OLD.issuer_id;
	END;
	CREATE TABLE name_bindings (
		name    TEXT PRIMARY KEY,
		holder  TEXT NOT NULL,
		since   INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		serial  TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX name_bindings_holder ON name_bindings(holder);
	CREATE TABLE audit (
		id     INTEGER PRIMARY KEY AUTOINCREMENT,
		at     INTEGER NOT NULL,
		actor  TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		detail TEXT NOT NULL
	);`,
	// The client address of a pending request, for the operator's bulk
	// decisions; requests stored before have none.
	`ALTER TABLE pending ADD COLUMN remote TEXT NOT NULL DEFAULT '';
	ALTER TABLE pending ADD COLUMN holder TEXT NOT NULL DEFAULT '';
	ALTER TABLE pending ADD COLUMN conflicts TEXT NOT NULL DEFAULT '';
	CREATE INDEX pending_state ON pending(state);
	CREATE INDEX certificates_key_renewals ON certificates(spki_sha256) WHERE renews IS NOT NULL;`,
	// When a generation published ahead (a root rollover's) becomes active.
	`ALTER TABLE generations ADD COLUMN active_from INTEGER NOT NULL DEFAULT 0;`,
	// CRLs signed away from the appliance (an offline root's).
	`CREATE TABLE static_crls (
		issuer_id   TEXT PRIMARY KEY,
		number      INTEGER NOT NULL,
		der         BLOB NOT NULL,
		next_update INTEGER NOT NULL
	);`,
	// Operator accounts and their sessions (the web UI); where each
	// audited action came from.
	`CREATE TABLE users (
		name         TEXT PRIMARY KEY,
		role         TEXT NOT NULL,
		password     TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL,
		failures     INTEGER NOT NULL,
		locked_until INTEGER NOT NULL,
		last_login   INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE sessions (
		token_hash BLOB PRIMARY KEY,
		user       TEXT NOT NULL,
		csrf       TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		remote     TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX sessions_user ON sessions(user);
	ALTER TABLE audit ADD COLUMN remote TEXT NOT NULL DEFAULT '';
	CREATE INDEX audit_actor ON audit(actor);`,
	// The operator's certificate search: an index of names (filled in
	// Go, here for the certificates stored before and by the writer
	// after), and indexes whose order within a value is the table's, so
	// that a page of results reads only its rows.
	`CREATE TABLE certificate_names (
		name TEXT NOT NULL,
		cert INTEGER NOT NULL,
		PRIMARY KEY (name, cert)
	) WITHOUT ROWID;
	CREATE INDEX certificates_identity ON certificates(identity);
	CREATE INDEX certificates_issuer ON certificates(issuer_id);
	CREATE INDEX certificates_issued ON certificates(issued_at);
	CREATE INDEX certificates_revoked_order ON certificates(revoked) WHERE revoked = 1;
	CREATE INDEX certificates_not_after ON certificates(not_after);`,
}

// afterMigration are steps in Go that follow a migration, in its
// transaction, by the migration's number.
var afterMigration = map[int]func(context.Context, *sql.Tx) error{
	3: bindExisting,
	8: indexNames,
}

// bindExisting gives the device certificates issued before names were
// bound a holder, the certificate itself ("certificate <serial>", which
// a renewal with it carries over), and binds their names to it, the
// newest certificate of a name winning: after an upgrade no name that a
// device holds is free for another to take. Bindings of expired
// certificates lapse as any other.
func bindExisting(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE certificates SET holder = 'certificate ' || serial WHERE profile = 'leaf' AND holder = ''`); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT serial, sans, issued_at, not_after, holder FROM certificates WHERE profile = 'leaf' ORDER BY issued_at, rowid`)
	if err != nil {
		return err
	}
	type cert struct {
		serial, sans, holder string
		issued, notAfter     int64
	}
	var certs []cert
	for rows.Next() {
		var c cert
		if err := rows.Scan(&c.serial, &c.sans, &c.issued, &c.notAfter, &c.holder); err != nil {
			rows.Close()
			return err
		}
		certs = append(certs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range certs {
		for _, n := range splitNames(c.sans) {
			if _, err := tx.ExecContext(ctx, bindSQL, n, c.holder, c.issued, c.notAfter, c.serial); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program knows (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if after := afterMigration[i+1]; after != nil {
			if err := after(ctx, tx); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return err
	}
	return tx.Commit()
}

// ReasonKeyCompromise is the RFC 5280 CRLReason keyCompromise: Revoke
// with it revokes every certificate of the same key.
const ReasonKeyCompromise = 1

// SerialKey is the canonical text form of a serial in the store.
func SerialKey(n *big.Int) string { return n.Text(16) }

func parseSerial(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		return nil, fmt.Errorf("bad serial %q in store", s)
	}
	return n, nil
}

// ParseSerial reads a serial as an operator writes it: hexadecimal, any
// case, with or without colons or a 0x prefix. It must be positive.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), ":", ""), "0x"))
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || n.Sign() <= 0 {
		return nil, fmt.Errorf("%q is not a certificate serial (hexadecimal)", s)
	}
	return n, nil
}

func unix(t time.Time) int64 { return t.Unix() }

func fromUnix(n int64) time.Time { return time.Unix(n, 0).UTC() }

func joinNames(n []string) string { return strings.Join(n, "\n") }

func splitNames(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

const insertCertSQL = `INSERT INTO certificates
	(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, holder, renews)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// The name-binding statements of the certificate writer.
const (
	bindingSQL = `SELECT holder, expires FROM name_bindings WHERE name = ?`
	bindSQL    = `INSERT INTO name_bindings (name, holder, since, expires, serial) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET
			since = CASE WHEN holder = excluded.holder THEN since ELSE excluded.since END,
			expires = CASE WHEN holder = excluded.holder THEN max(expires, excluded.expires) ELSE excluded.expires END,
			holder = excluded.holder, serial = excluded.serial`
	auditSQL = `INSERT INTO audit (at, actor, action, target, detail, remote) VALUES (?, ?, ?, ?, ?, ?)`
)

// rowError is an INSERT failing for a reason other than a constraint.
type rowError struct{ err error }

func (e *rowError) Error() string { return e.err.Error() }
func (e *rowError) Unwrap() error { return e.err }

// insertBatch inserts and commits reqs in one transaction. It returns each
// row's outcome, or an error for the whole batch, in which case nothing
// was committed: a *rowError when an INSERT failed, else the failure of
// BEGIN or COMMIT.
func (s *SQLite) insertBatch(ctx context.Context, reqs []*putRequest) ([]error, error) {
	if _, err := s.begin.ExecContext(ctx); err != nil {
		// A transaction left open by a ROLLBACK that failed would
		// refuse every BEGIN after it: end it, and try once more.
		if _, rerr := s.rollback.ExecContext(ctx); rerr != nil {
			return nil, err
		}
		if _, err := s.begin.ExecContext(ctx); err != nil {
			return nil, err
		}
	}
	committed := false
	defer func() {
		if !committed {
			// Ends the transaction, whatever failed in it; an error
			// here is one SQLite already ended it for.
			_, _ = s.rollback.ExecContext(ctx)
		}
	}()
	errs := make([]error, len(reqs))
	stored := 0
	for i, r := range reqs {
		c := r.cert
		var takeOver []*NameBinding
		if c.Bind != nil {
			var err error
			if takeOver, err = s.checkBindings(ctx, c); err != nil {
				var nb *NameBoundError
				if !errors.As(err, &nb) {
					return nil, &rowError{err}
				}
				errs[i] = nb
				continue
			}
		}
		var renews any
		if c.Renews != nil {
			renews = SerialKey(c.Renews)
		}
		_, err := s.insert.ExecContext(ctx, SerialKey(c.Serial), c.IssuerID, c.Subject, joinNames(c.SANs), c.KeyType, c.SPKIHash,
			unix(c.NotBefore), unix(c.NotAfter), unix(c.IssuedAt), c.Identity, c.Profile, c.DER, c.Holder, renews)
		if err == nil {
			for _, n := range c.SANs {
				if _, err := s.insertName.ExecContext(ctx, normName(n)); err != nil {
					return nil, &rowError{err}
				}
			}
		}
		if err == nil && c.Bind != nil {
			if err = s.bindNames(ctx, c, takeOver); err != nil {
				// The INSERT stands in a transaction that now fails whole.
				return nil, &rowError{err}
			}
		}
		switch {
		case err == nil:
			stored++
		case isUnique(err):
			var n int
			if s.keyUsedInTx.QueryRowContext(ctx, c.SPKIHash).Scan(&n) == nil && n > 0 {
				errs[i] = ErrKeyReused
			} else {
				errs[i] = fmt.Errorf("store certificate %s: serial already used: %w", SerialKey(c.Serial), ErrConflict)
			}
		case isConstraint(err):
			// Only this statement was undone; the transaction goes on.
			errs[i] = fmt.Errorf("store certificate: %w", err)
		default:
			return nil, &rowError{err}
		}
	}
	if stored == 0 {
		return errs, nil // nothing to commit; the deferred ROLLBACK ends it
	}
	if _, err := s.commit.ExecContext(ctx); err != nil {
		return nil, err
	}
	committed = true
	// Committed, visible to readers, and durable once the WAL is synced:
	// nobody is answered before that (see walSyncer). Should the sync
	// fail, the batch's callers get the error and no certificate; the
	// rows may stay, as certificates nobody received.
	if err := s.ws.Sync(); err != nil {
		return nil, err
	}
	return errs, nil
}

const certCols = `serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, revoked, revoked_at, reason, holder, renews`

type scanner interface{ Scan(...any) error }

func scanCert(r scanner) (*Certificate, error) {
	var (
		c                 Certificate
		serial, sans      string
		nb, na, ia        int64
		revoked           bool
		revokedAt, reason sql.NullInt64
		renews            sql.NullString
	)
	if err := r.Scan(&serial, &c.IssuerID, &c.Subject, &sans, &c.KeyType, &c.SPKIHash, &nb, &na, &ia, &c.Identity, &c.Profile, &c.DER, &revoked, &revokedAt, &reason, &c.Holder, &renews); err != nil {
		return nil, err
	}
	var err error
	if c.Serial, err = parseSerial(serial); err != nil {
		return nil, err
	}
	if renews.Valid {
		if c.Renews, err = parseSerial(renews.String); err != nil {
			return nil, err
		}
	}
	c.SANs = splitNames(sans)
	c.NotBefore, c.NotAfter, c.IssuedAt = fromUnix(nb), fromUnix(na), fromUnix(ia)
	c.Revoked = revoked
	if revokedAt.Valid {
		c.RevokedAt = fromUnix(revokedAt.Int64)
	}
	c.Reason = int(reason.Int64)
	return &c, nil
}

// Certificate implements Store.
func (s *SQLite) Certificate(ctx context.Context, serial *big.Int) (*Certificate, error) {
	c, err := scanCert(s.r.QueryRowContext(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = ?`, SerialKey(serial)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

// CertificateByKey implements Store.
func (s *SQLite) CertificateByKey(ctx context.Context, spkiHash []byte) (*Certificate, error) {
	c, err := scanCert(s.r.QueryRowContext(ctx, `SELECT `+certCols+` FROM certificates WHERE spki_sha256 = ? ORDER BY rowid DESC LIMIT 1`, spkiHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

// CertificateStatus implements Store.
func (s *SQLite) CertificateStatus(ctx context.Context, issuerID string, serial *big.Int) (*Certificate, error) {
	var (
		c                 = Certificate{Serial: serial, IssuerID: issuerID}
		na                int64
		revokedAt, reason sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT not_after, revoked, revoked_at, reason FROM certificates WHERE serial = ? AND issuer_id = ?`,
		SerialKey(serial), issuerID).Scan(&na, &c.Revoked, &revokedAt, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.NotAfter = fromUnix(na)
	if revokedAt.Valid {
		c.RevokedAt = fromUnix(revokedAt.Int64)
	}
	c.Reason = int(reason.Int64)
	return &c, nil
}

// ListCertificates implements Store.
func (s *SQLite) ListCertificates(ctx context.Context, opt ListOptions) ([]*Certificate, error) {
	q := `SELECT ` + certCols + ` FROM certificates WHERE 1=1`
	var args []any
	if opt.IssuerID != "" {
		q += ` AND issuer_id = ?`
		args = append(args, opt.IssuerID)
	}
	if opt.Revoked != nil {
		q += ` AND revoked = ?`
		args = append(args, *opt.Revoked)
	}
	q += ` ORDER BY rowid DESC`
	if opt.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, opt.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanCerts(rows)
}

// scanCerts reads rows of certCols.
func scanCerts(rows rowIter) ([]*Certificate, error) {
	var out []*Certificate
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CountCertificates implements Store.
func (s *SQLite) CountCertificates(ctx context.Context) (map[string]int, error) {
	return s.countsByIssuer(ctx, `SELECT issuer_id, n FROM certificate_counts WHERE n > 0`)
}

// countsByIssuer runs a query whose rows are an issuer and a count.
func (s *SQLite) countsByIssuer(ctx context.Context, q string, args ...any) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanCounts(rows)
}

// scanCounts reads rows of an issuer and a count.
func scanCounts(rows rowIter) (map[string]int, error) {
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

const keyUsedSQL = `SELECT count(*) FROM certificates WHERE spki_sha256 = ? AND renews IS NULL`

// KeyUsed implements Store.
func (s *SQLite) KeyUsed(ctx context.Context, spkiHash []byte) (bool, error) {
	var n int
	err := s.keyUsed.QueryRowContext(ctx, spkiHash).Scan(&n)
	return n > 0, err
}

// Revoke implements Store.
func (s *SQLite) Revoke(ctx context.Context, serial *big.Int, at time.Time, reason int) (*Certificate, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	c, err := scanCert(tx.QueryRowContext(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = ?`, SerialKey(serial)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if c.Revoked {
		return c, ErrAlreadyRevoked
	}
	var also []string // other certificates of the key, on keyCompromise
	if _, err := tx.ExecContext(ctx, `UPDATE certificates SET revoked = 1, revoked_at = ?, reason = ? WHERE serial = ?`,
		unix(at), reason, SerialKey(serial)); err != nil {
		return nil, err
	}
	if err := addEvent(ctx, tx, EventRevoked, c.IssuerID+"/"+SerialKey(serial), at); err != nil {
		return nil, err
	}
	if reason == ReasonKeyCompromise {
		// The key is compromised, not one certificate: every other
		// certificate of the same key (same-key renewals) goes too.
		for _, q := range []string{
			`SELECT serial, issuer_id FROM certificates WHERE spki_sha256 = ? AND renews IS NULL AND revoked = 0`,
			`SELECT serial, issuer_id FROM certificates WHERE spki_sha256 = ? AND renews IS NOT NULL AND revoked = 0`,
		} {
			var others [][2]string
			rows, err := tx.QueryContext(ctx, q, c.SPKIHash)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var o [2]string
				if err := rows.Scan(&o[0], &o[1]); err != nil {
					rows.Close()
					return nil, err
				}
				others = append(others, o)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			for _, o := range others {
				if _, err := tx.ExecContext(ctx, `UPDATE certificates SET revoked = 1, revoked_at = ?, reason = ? WHERE serial = ?`, unix(at), reason, o[0]); err != nil {
					return nil, err
				}
				if err := addEvent(ctx, tx, EventRevoked, o[1]+"/"+o[0], at); err != nil {
					return nil, err
				}
				also = append(also, o[0])
			}
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
		if err := addAuditTx(ctx, tx, &rec); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	c.Revoked, c.RevokedAt, c.Reason = true, fromUnix(unix(at)), reason
	return c, nil
}

// Revocations implements Store.
func (s *SQLite) Revocations(ctx context.Context, issuerID string, fn func(Revocation) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT serial, revoked_at, reason FROM certificates WHERE issuer_id = ? AND revoked = 1 ORDER BY serial`, issuerID)
	if err != nil {
		return err
	}
	defer rows.Close()
	return scanRevocations(rows, fn)
}

// scanRevocations calls fn for each row of a serial, its revocation time
// and reason.
func scanRevocations(rows rowIter, fn func(Revocation) error) error {
	for rows.Next() {
		var serial string
		var at, reason int64
		if err := rows.Scan(&serial, &at, &reason); err != nil {
			return err
		}
		n, err := parseSerial(serial)
		if err != nil {
			return err
		}
		if err := fn(Revocation{Serial: n, RevokedAt: fromUnix(at), Reason: int(reason)}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// NextCRLNumber implements Store.
func (s *SQLite) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO crl_numbers (issuer_id, number) VALUES (?, 1)
		ON CONFLICT(issuer_id) DO UPDATE SET number = number + 1 RETURNING number`, issuerID).Scan(&n)
	return n, err
}

// PutGeneration implements Store.
func (s *SQLite) PutGeneration(ctx context.Context, g *Generation) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := insertGeneration(ctx, tx, g); err != nil {
		return err
	}
	return tx.Commit()
}

// inTx runs fn in a transaction of the writer connection and commits it
// when fn succeeds.
func (s *SQLite) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// PutGenerations implements Store.
func (s *SQLite) PutGenerations(ctx context.Context, gens ...*Generation) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, g := range gens {
			if err := insertGeneration(ctx, tx, g); err != nil {
				return err
			}
		}
		return nil
	})
}

// ActivateHierarchy implements Store.
func (s *SQLite) ActivateHierarchy(ctx context.Context, hierarchy string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var next int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM generations WHERE hierarchy = ? AND state = ?`, hierarchy, string(StateNext)).Scan(&next); err != nil {
			return err
		}
		if next == 0 {
			return fmt.Errorf("no generation of %s waits to become active: %w", hierarchy, ErrConflict)
		}
		// Roots and intermediates move; link certificates stay published.
		if _, err := tx.ExecContext(ctx, `UPDATE generations SET state = ? WHERE hierarchy = ? AND state = ? AND role IN ('root', 'intermediate')`,
			string(StateRetiring), hierarchy, string(StateActive)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE generations SET state = ? WHERE hierarchy = ? AND state = ?`,
			string(StateActive), hierarchy, string(StateNext)); err != nil {
			return err
		}
		if err := addEvent(ctx, tx, EventGenerations, hierarchy, at); err != nil {
			return err
		}
		return nil
	})
}

// insertGeneration records g, with its event, in tx.
func insertGeneration(ctx context.Context, tx *sql.Tx, g *Generation) error {
	var activeFrom int64
	if !g.ActiveFrom.IsZero() {
		activeFrom = unix(g.ActiveFrom)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO generations (id, hierarchy, role, seq, parent_id, state, cert_der, key_file, created_at, active_from)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, g.ID, g.Hierarchy, g.Role, g.Seq, g.ParentID, string(g.State), g.CertDER, g.KeyFile, unix(g.CreatedAt), activeFrom); err != nil {
		if isUnique(err) {
			return fmt.Errorf("generation %s exists: %w", g.ID, ErrConflict)
		}
		return err
	}
	return addEvent(ctx, tx, EventGenerations, g.ID, g.CreatedAt)
}

// Generations implements Store.
func (s *SQLite) Generations(ctx context.Context) ([]*Generation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, hierarchy, role, seq, parent_id, state, cert_der, key_file, created_at, active_from FROM generations ORDER BY rowid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Generation
	for rows.Next() {
		var g Generation
		var state string
		var created, activeFrom int64
		if err := rows.Scan(&g.ID, &g.Hierarchy, &g.Role, &g.Seq, &g.ParentID, &state, &g.CertDER, &g.KeyFile, &created, &activeFrom); err != nil {
			return nil, err
		}
		g.State, g.CreatedAt = GenerationState(state), fromUnix(created)
		if activeFrom != 0 {
			g.ActiveFrom = fromUnix(activeFrom)
		}
		out = append(out, &g)
	}
	return out, rows.Err()
}

// RollGeneration implements Store.
func (s *SQLite) RollGeneration(ctx context.Context, next *Generation, old string, oldState GenerationState, revoked *Certificate) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE generations SET state = ? WHERE id = ? AND state = ?`, string(oldState), old, string(StateActive))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("generation %s is not active: %w", old, ErrConflict)
		}
		if err := insertGeneration(ctx, tx, next); err != nil {
			return err
		}
		if c := revoked; c != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO certificates
				(serial, issuer_id, subject, sans, key_type, spki_sha256, not_before, not_after, issued_at, identity, profile, der, holder, revoked, revoked_at, reason)
				VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, '', 1, ?, ?)
				ON CONFLICT (serial) DO UPDATE SET revoked = 1, revoked_at = excluded.revoked_at, reason = excluded.reason`,
				SerialKey(c.Serial), c.IssuerID, c.Subject, c.KeyType, c.SPKIHash, unix(c.NotBefore), unix(c.NotAfter), unix(c.IssuedAt),
				c.Identity, c.Profile, c.DER, unix(c.RevokedAt), c.Reason); err != nil {
				return fmt.Errorf("revoke %s: %w", SerialKey(c.Serial), err)
			}
			if err := addEvent(ctx, tx, EventRevoked, c.IssuerID+"/"+SerialKey(c.Serial), c.RevokedAt); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetKey implements Store.
func (s *SQLite) ForgetKey(ctx context.Context, id string, at time.Time, crl *StaticCRL) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if crl != nil {
			if err := putStaticCRL(ctx, tx, crl); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE generations SET key_file = '' WHERE id = ? AND key_file <> ''`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("generation %s holds no key: %w", id, ErrConflict)
		}
		return addEvent(ctx, tx, EventGenerations, id, at)
	})
}

// PutStaticCRL implements Store.
func (s *SQLite) PutStaticCRL(ctx context.Context, crl *StaticCRL) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := putStaticCRL(ctx, tx, crl); err != nil {
			return err
		}
		return addEvent(ctx, tx, EventGenerations, crl.IssuerID, time.Now())
	})
}

// putStaticCRL keeps crl in tx: its number must be one the appliance gave
// out (ca crl-request) and greater than the one published.
func putStaticCRL(ctx context.Context, tx *sql.Tx, crl *StaticCRL) error {
	var have, given sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT number FROM static_crls WHERE issuer_id = ?`, crl.IssuerID).Scan(&have); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if have.Valid && crl.Number <= have.Int64 {
		return fmt.Errorf("CRL number %d is not greater than %d, the one published: %w", crl.Number, have.Int64, ErrConflict)
	}
	if err := tx.QueryRowContext(ctx, `SELECT number FROM crl_numbers WHERE issuer_id = ?`, crl.IssuerID).Scan(&given); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !given.Valid || crl.Number > given.Int64 {
		return fmt.Errorf("CRL number %d was never given out for %s: sign the CRL of a 'ca crl-request': %w", crl.Number, crl.IssuerID, ErrConflict)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO static_crls (issuer_id, number, der, next_update) VALUES (?, ?, ?, ?)
		ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number, der = excluded.der, next_update = excluded.next_update`,
		crl.IssuerID, crl.Number, crl.DER, unix(crl.NextUpdate))
	return err
}

// StaticCRL implements Store.
func (s *SQLite) StaticCRL(ctx context.Context, issuerID string) ([]byte, int64, time.Time, error) {
	var der []byte
	var number, next int64
	err := s.r.QueryRowContext(ctx, `SELECT der, number, next_update FROM static_crls WHERE issuer_id = ?`, issuerID).Scan(&der, &number, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, time.Time{}, ErrNotFound
	}
	return der, number, fromUnix(next), err
}

// DropGenerationKey implements Store.
func (s *SQLite) DropGenerationKey(ctx context.Context, id string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE generations SET key_file = '' WHERE id = ? AND state = ?`, id, string(StateRetired))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("generation %s is not retired: %w", id, ErrConflict)
		}
		if err := addEvent(ctx, tx, EventGenerations, id, at); err != nil {
			return err
		}
		return nil
	})
}

// ValidCounts implements Store.
func (s *SQLite) ValidCounts(ctx context.Context, now time.Time) (map[string]int, error) {
	return s.countsByIssuer(ctx, `SELECT issuer_id, count(*) FROM certificates
		WHERE not_after > ? AND revoked = 0 AND profile <> 'ocsp' GROUP BY issuer_id`, unix(now))
}

// LatestNotAfter implements Store.
func (s *SQLite) LatestNotAfter(ctx context.Context, issuerID string) (time.Time, error) {
	var n sql.NullInt64
	// The issuer's own delegated OCSP responder certificates do not
	// count: they are renewed for as long as it answers.
	if err := s.r.QueryRowContext(ctx, `SELECT max(not_after) FROM certificates WHERE issuer_id = ? AND profile <> 'ocsp'`, issuerID).Scan(&n); err != nil {
		return time.Time{}, err
	}
	if !n.Valid {
		return time.Time{}, nil
	}
	return fromUnix(n.Int64), nil
}

// SetGenerationState implements Store.
func (s *SQLite) SetGenerationState(ctx context.Context, id string, st GenerationState) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE generations SET state = ? WHERE id = ?`, string(st), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if err := addEvent(ctx, tx, EventGenerations, id, time.Now()); err != nil {
		return err
	}
	return tx.Commit()
}

const pendingCols = `id, operation, label, csr, spki_sha256, subject, sans, client, state, created_at, expires_at, decided_at, decided_by, serial, remote, holder, conflicts`

func scanPending(r scanner) (*Pending, error) {
	var (
		p                Pending
		sans, state      string
		created, expires int64
		decided          sql.NullInt64
		serial           sql.NullString
		conflicts        string
	)
	if err := r.Scan(&p.ID, &p.Operation, &p.Label, &p.CSR, &p.SPKIHash, &p.Subject, &sans, &p.Client, &state, &created, &expires, &decided, &p.DecidedBy, &serial, &p.Remote, &p.Holder, &conflicts); err != nil {
		return nil, err
	}
	p.Conflicts = splitNames(conflicts)
	p.SANs, p.State = splitNames(sans), PendingState(state)
	p.CreatedAt, p.ExpiresAt = fromUnix(created), fromUnix(expires)
	if decided.Valid {
		p.DecidedAt = fromUnix(decided.Int64)
	}
	if serial.Valid {
		n, err := parseSerial(serial.String)
		if err != nil {
			return nil, err
		}
		p.Serial = n
	}
	return &p, nil
}

// PutPending implements Store.
func (s *SQLite) PutPending(ctx context.Context, p *Pending) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO pending (id, operation, label, csr, spki_sha256, subject, sans, client, state, created_at, expires_at, remote, holder, conflicts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, p.Operation, p.Label, p.CSR, p.SPKIHash, p.Subject, joinNames(p.SANs), p.Client,
		string(p.State), unix(p.CreatedAt), unix(p.ExpiresAt), p.Remote, p.Holder, joinNames(p.Conflicts))
	if err != nil && isUnique(err) {
		return fmt.Errorf("pending request %s exists: %w", p.ID, ErrConflict)
	}
	return err
}

func (s *SQLite) pendingRow(ctx context.Context, where string, arg any) (*Pending, error) {
	p, err := scanPending(s.r.QueryRowContext(ctx, `SELECT `+pendingCols+` FROM pending WHERE `+where+` ORDER BY rowid DESC LIMIT 1`, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return p, err
}

// PendingByID implements Store.
func (s *SQLite) PendingByID(ctx context.Context, id string) (*Pending, error) {
	return s.pendingRow(ctx, `id = ?`, id)
}

// PendingByKey implements Store.
func (s *SQLite) PendingByKey(ctx context.Context, spkiHash []byte) (*Pending, error) {
	return s.pendingRow(ctx, `spki_sha256 = ?`, spkiHash)
}

// CountPending implements Store.
func (s *SQLite) CountPending(ctx context.Context, state PendingState) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM pending WHERE state = ?`, string(state)).Scan(&n)
	return n, err
}

// ListPending implements Store.
func (s *SQLite) ListPending(ctx context.Context, state PendingState) ([]*Pending, error) {
	q := `SELECT ` + pendingCols + ` FROM pending`
	var args []any
	if state != "" {
		q += ` WHERE state = ?`
		args = append(args, string(state))
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY rowid DESC`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Pending
	for rows.Next() {
		p, err := scanPending(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DecidePending implements Store.
func (s *SQLite) DecidePending(ctx context.Context, id string, st PendingState, by string, at time.Time) (*Pending, error) {
	if st != PendingApproved && st != PendingDenied {
		return nil, fmt.Errorf("decide pending: bad state %q", st)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	p, err := scanPending(tx.QueryRowContext(ctx, `SELECT `+pendingCols+` FROM pending WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if p.State != PendingWaiting {
		return p, fmt.Errorf("request %s is %s: %w", id, p.State, ErrConflict)
	}
	if !at.Before(p.ExpiresAt) {
		return p, fmt.Errorf("request %s expired at %s: %w", id, p.ExpiresAt.Format(time.RFC3339), ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE pending SET state = ?, decided_at = ?, decided_by = ? WHERE id = ?`, string(st), unix(at), by, id); err != nil {
		return nil, err
	}
	if err := addEvent(ctx, tx, EventPendingDecided, id, at); err != nil {
		return nil, err
	}
	if a := auditFrom(ctx); a != nil {
		rec := *a
		if rec.Target == "" {
			rec.Target = id
		}
		rec.Detail = joinDetail(rec.Detail, fmt.Sprintf("%s %s (%s); %s", p.Operation, p.Subject, strings.Join(p.SANs, ", "), p.Client))
		if err := addAuditTx(ctx, tx, &rec); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	p.State, p.DecidedAt, p.DecidedBy = st, fromUnix(unix(at)), by
	return p, nil
}

// SetPendingIssued implements Store.
func (s *SQLite) SetPendingIssued(ctx context.Context, id string, serial *big.Int) error {
	res, err := s.w.ExecContext(ctx, `UPDATE pending SET state = ?, serial = ? WHERE id = ? AND state = ?`,
		string(PendingIssued), SerialKey(serial), id, string(PendingApproved))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("request %s is not approved: %w", id, ErrConflict)
	}
	return nil
}

// ExpirePending implements Store.
func (s *SQLite) ExpirePending(ctx context.Context, now time.Time) (int, error) {
	// An approval not collected by the request's expiry lapses too: the
	// device asks again, and an operator decides again.
	res, err := s.w.ExecContext(ctx, `UPDATE pending SET state = ? WHERE state IN (?, ?) AND expires_at <= ?`,
		string(PendingExpired), string(PendingWaiting), string(PendingApproved), unix(now))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func addEvent(ctx context.Context, tx *sql.Tx, kind, ref string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO events (kind, ref, at) VALUES (?, ?, ?)`, kind, ref, unix(at))
	return err
}

// AddEvent implements Store.
func (s *SQLite) AddEvent(ctx context.Context, kind, ref string, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO events (kind, ref, at) VALUES (?, ?, ?)`, kind, ref, unix(at))
	return err
}

// LastEvent implements Store.
func (s *SQLite) LastEvent(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT max(id) FROM events`).Scan(&n)
	return n.Int64, err
}

// EventsSince implements Store.
func (s *SQLite) EventsSince(ctx context.Context, id int64) ([]Event, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, kind, ref, at FROM events WHERE id > ? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEvents(rows)
}

// scanEvents reads rows of an event's id, kind, ref and time.
func scanEvents(rows rowIter) ([]Event, error) {
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Ref, &at); err != nil {
			return nil, err
		}
		e.At = fromUnix(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
