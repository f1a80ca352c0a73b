package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyTable is a table copied from SQLite to PostgreSQL: the columns
// read and written, in the source's order. A column's SQLite expression
// may differ from its PostgreSQL name (the booleans, sessions' "user").
type copyTable struct {
	name  string
	from  []string // SQLite expressions
	to    []string // PostgreSQL columns
	order string
	// serial is the PostgreSQL sequence to move past the ids copied.
	serial string
	// boolCol is the column SQLite keeps as 0 or 1 and PostgreSQL as a
	// boolean (0: none).
	boolCol int
}

// copyTables are every table of the store, in an order that keeps the
// names index's references valid. Ids are kept (the rowid becomes the
// id), so the names index, the events' and the audit's order survive.
var copyTables = []copyTable{
	{name: "certificates",
		from: []string{"rowid", "serial", "issuer_id", "subject", "sans", "key_type", "spki_sha256", "not_before", "not_after", "issued_at",
			"identity", "profile", "der", "revoked <> 0", "revoked_at", "reason", "holder", "renews"},
		to: []string{"id", "serial", "issuer_id", "subject", "sans", "key_type", "spki_sha256", "not_before", "not_after", "issued_at",
			"identity", "profile", "der", "revoked", "revoked_at", "reason", "holder", "renews"},
		order: "rowid", serial: "certificates_id_seq", boolCol: 13},
	{name: "certificate_names", from: []string{"name", "cert"}, to: []string{"name", "cert"}, order: "name, cert"},
	{name: "crl_numbers", from: []string{"issuer_id", "number"}, to: []string{"issuer_id", "number"}, order: "issuer_id"},
	{name: "static_crls", from: []string{"issuer_id", "number", "der", "next_update"}, to: []string{"issuer_id", "number", "der", "next_update"}, order: "issuer_id"},
	{name: "generations",
		from:  []string{"rowid", "id", "hierarchy", "role", "seq", "parent_id", "state", "cert_der", "key_file", "created_at", "active_from"},
		to:    []string{"n", "id", "hierarchy", "role", "seq", "parent_id", "state", "cert_der", "key_file", "created_at", "active_from"},
		order: "rowid", serial: "generations_n_seq"},
	{name: "pending",
		from: []string{"rowid", "id", "operation", "label", "csr", "spki_sha256", "subject", "sans", "client", "state", "created_at", "expires_at",
			"decided_at", "decided_by", "serial", "remote", "holder", "conflicts"},
		to: []string{"n", "id", "operation", "label", "csr", "spki_sha256", "subject", "sans", "client", "state", "created_at", "expires_at",
			"decided_at", "decided_by", "serial", "remote", "holder", "conflicts"},
		order: "rowid", serial: "pending_n_seq"},
	{name: "name_bindings", from: []string{"name", "holder", "since", "expires", "serial"}, to: []string{"name", "holder", "since", "expires", "serial"}, order: "name"},
	{name: "audit", from: []string{"id", "at", "actor", "action", "target", "detail", "remote"}, to: []string{"id", "at", "actor", "action", "target", "detail", "remote"},
		order: "id", serial: "audit_id_seq"},
	{name: "events", from: []string{"id", "kind", "ref", "at"}, to: []string{"id", "kind", "ref", "at"}, order: "id", serial: "events_id_seq"},
	{name: "users", from: []string{"name", "role", "password", "created_at", "updated_at", "failures", "locked_until", "last_login"},
		to: []string{"name", "role", "password", "created_at", "updated_at", "failures", "locked_until", "last_login"}, order: "name"},
	{name: "sessions", from: []string{"token_hash", "user", "csrf", "created_at", "last_seen", "remote"},
		to: []string{"token_hash", "username", "csrf", "created_at", "last_seen", "remote"}, order: "token_hash"},
}

// CopyCounts are the rows of each table, as copied.
type CopyCounts map[string]int64

// CopyToPostgres copies every record of src into dst, whose database
// must hold none yet, in one transaction: dst has all of them or none.
// The counts of each table are then compared, source against copy.
// Nothing may write to src meanwhile (the appliance must be stopped).
func CopyToPostgres(ctx context.Context, src *SQLite, dst *Postgres) (CopyCounts, error) {
	// One read transaction of SQLite for the whole copy: every table as of
	// one moment, whatever writes the file meanwhile.
	conn, err := src.r.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer stx.Rollback()
	counts := CopyCounts{}
	err = pgx.BeginFunc(ctx, dst.pool, func(tx pgx.Tx) error {
		for _, t := range []string{"certificates", "generations", "pending", "users", "audit", "events", "name_bindings"} {
			var any bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t+`)`).Scan(&any); err != nil {
				return err
			}
			if any {
				return fmt.Errorf("the PostgreSQL database holds %s already: copy into an empty one: %w", t, ErrConflict)
			}
		}
		for _, t := range copyTables {
			rows, err := stx.QueryContext(ctx, `SELECT `+strings.Join(t.from, ", ")+` FROM `+t.name+` ORDER BY `+t.order)
			if err != nil {
				return fmt.Errorf("read %s: %w", t.name, err)
			}
			boolCol := -1
			if t.boolCol > 0 {
				boolCol = t.boolCol
			}
			n, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.to, &sqlSource{rows: rows, cols: len(t.from), boolCol: boolCol})
			rows.Close()
			if err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			counts[t.name] = n
			if t.serial != "" {
				if _, err := tx.Exec(ctx, `SELECT setval($1, (SELECT coalesce(max(`+t.to[0]+`), 0) + 1 FROM `+t.name+`), false)`, t.serial); err != nil {
					return err
				}
			}
		}
		// The counts the CA reads are kept by the writer; here they are
		// counted once.
		if _, err := tx.Exec(ctx, `INSERT INTO certificate_counts (issuer_id, n) SELECT issuer_id, count(*) FROM certificates GROUP BY issuer_id`); err != nil {
			return err
		}
		// Source and copy, table by table (and the revoked certificates),
		// before anything is committed.
		check := func(what, sqliteQ, pgQ string, copied int64) error {
			var a, b int64
			if err := stx.QueryRowContext(ctx, sqliteQ).Scan(&a); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, pgQ).Scan(&b); err != nil {
				return err
			}
			if a != b || (copied >= 0 && a != copied) {
				return fmt.Errorf("%s: %d in SQLite, %d in PostgreSQL (%d copied): nothing was committed", what, a, b, copied)
			}
			return nil
		}
		for _, t := range copyTables {
			if err := check(t.name, `SELECT count(*) FROM `+t.name, `SELECT count(*) FROM `+t.name, counts[t.name]); err != nil {
				return err
			}
		}
		return check("revoked certificates", `SELECT count(*) FROM certificates WHERE revoked <> 0`, `SELECT count(*) FROM certificates WHERE revoked`, -1)
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// sqlSource feeds database/sql rows to pgx's COPY.
type sqlSource struct {
	rows    *sql.Rows
	cols    int
	boolCol int
	vals    []any
	err     error
}

func (s *sqlSource) Next() bool {
	if !s.rows.Next() {
		return false
	}
	ptrs := make([]any, s.cols)
	vals := make([]any, s.cols)
	for i := range ptrs {
		ptrs[i] = &vals[i]
	}
	if s.err = s.rows.Scan(ptrs...); s.err != nil {
		return false
	}
	if s.boolCol >= 0 {
		n, ok := vals[s.boolCol].(int64)
		if !ok {
			s.err = fmt.Errorf("column %d: want 0 or 1, got %T", s.boolCol, vals[s.boolCol])
			return false
		}
		vals[s.boolCol] = n != 0
	}
	s.vals = vals
	return true
}

func (s *sqlSource) Values() ([]any, error) { return s.vals, nil }

func (s *sqlSource) Err() error {
	if s.err != nil {
		return s.err
	}
	if err := s.rows.Err(); err != nil {
		return err
	}
	return nil
}

var _ pgx.CopyFromSource = (*sqlSource)(nil)
